# Container images for users with a normal build system (docker/podman/buildah build). The same
# images come from `make images` without any daemon (scripts/build-images.sh, docs/images.md):
# a runtime of exactly the Debian bookworm packages in images/runtime-packages.txt (and their
# dependencies), extracted without maintainer scripts, user 65532, no shell, one binary each.
#   docker build --target server --build-arg IC_GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#     -t localhost/inference-cache/server:0.1.0 .
# Targets: server, controller, kvevent-subscriber, fake-engine, inferencecache (the CLI).
ARG DEBIAN_IMAGE=debian:bookworm

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config ca-certificates protobuf-compiler protobuf-c-compiler \
      libprotobuf-c-dev libprotobuf-dev libgrpc-dev protobuf-compiler-grpc libmicrohttpd-dev \
      libgnutls28-dev zlib1g-dev libcurl4-openssl-dev libjansson-dev libmsgpack-dev libzmq3-dev \
      libxxhash-dev libssl-dev libyaml-dev libcriterion-dev libpcre2-dev libutf8proc-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The source tree carries no .git here: the commit --version prints comes from this argument.
ARG IC_GIT_COMMIT=unknown
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DIC_GIT_COMMIT=${IC_GIT_COMMIT} \
    && cmake --build /build -j"$(nproc)" --target inferencecache-server \
         inferencecache-controller kvevent-subscriber fake-engine inferencecache \
    && strip --strip-unneeded /build/src/server/inferencecache-server \
         /build/src/controller/inferencecache-controller \
         /build/src/subscriber/kvevent-subscriber /build/src/fake-engine/fake-engine \
         /build/src/cli/inferencecache

# The runtime root filesystem: the listed packages and everything they depend on, unpacked.
FROM ${DEBIAN_IMAGE} AS rootfs
COPY images/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update && mkdir -p /tmp/debs /rootfs && cd /tmp/debs \
    && pkgs=$(grep -v '^#' /tmp/runtime-packages.txt) \
    && apt-get download $(apt-cache depends --recurse --no-recommends --no-suggests \
         --no-conflicts --no-breaks --no-replaces --no-enhances $pkgs | grep '^[a-z0-9]' | sort -u) \
    && for d in *.deb; do dpkg-deb -x "$d" /rootfs; done \
    && cd /rootfs && rm -rf usr/share/doc usr/share/man usr/share/info usr/share/locale \
         usr/share/lintian usr/share/gdb usr/share/gcc bin sbin usr/bin usr/sbin \
    && mkdir -p etc tmp home/nonroot && chmod 1777 tmp && chown 65532:65532 home/nonroot \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' >etc/group \
    && printf 'hosts: files dns\n' >etc/nsswitch.conf

FROM scratch AS runtime
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532
WORKDIR /

FROM runtime AS inferencecache
COPY --from=build /build/src/cli/inferencecache /usr/local/bin/inferencecache
ENTRYPOINT ["/usr/local/bin/inferencecache"]

FROM runtime AS fake-engine
COPY --from=build /build/src/fake-engine/fake-engine /usr/local/bin/fake-engine
EXPOSE 5557
ENTRYPOINT ["/usr/local/bin/fake-engine"]

FROM runtime AS kvevent-subscriber
COPY --from=build /build/src/subscriber/kvevent-subscriber /usr/local/bin/kvevent-subscriber
EXPOSE 8090
ENTRYPOINT ["/usr/local/bin/kvevent-subscriber"]

FROM runtime AS controller
COPY --from=build /build/src/controller/inferencecache-controller /usr/local/bin/inferencecache-controller
EXPOSE 8080 8081 9443
ENTRYPOINT ["/usr/local/bin/inferencecache-controller"]

FROM runtime AS server
COPY --from=build /build/src/server/inferencecache-server /usr/local/bin/inferencecache-server
EXPOSE 9090 8080 8081
ENTRYPOINT ["/usr/local/bin/inferencecache-server"]
