#!/usr/bin/env bash
# `make images`: container images for every program, built without a container daemon or a
# registry. mmdebstrap extracts exactly the Debian packages the binaries load (images/
# runtime-packages.txt, plus their dependencies) into a base layer; umoci writes one OCI image per
# program (base layer + a layer with the binary), user 65532, no shell. Outputs under OUT_DIR:
#   oci/            an OCI image layout, one tag per program (skopeo copy oci:OUT_DIR/oci:server ...)
#   <image>.tar     a docker-archive per image (kind load image-archive, docker/podman load)
#   report.md       size and library list per image (docs/images.md quotes it)
# Then every image is smoke-tested from its unpacked root filesystem: --version names this build,
# --help exits 0, the server answers /healthz.
# Usage: build-images.sh [BUILD_DIR] [OUT_DIR]. Env: IMAGE_REPO (default localhost/inference-cache),
# IMAGE_TAG (default: the binaries' version), DEBIAN_MIRROR (default: mmdebstrap's), SKIP_SMOKE=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
out=${2:-$build/images}
repo=${IMAGE_REPO:-localhost/inference-cache}
started=$(date +%s)

# image name : binary path in the build tree
programs=(
  "server:src/server/inferencecache-server"
  "controller:src/controller/inferencecache-controller"
  "kvevent-subscriber:src/subscriber/kvevent-subscriber"
  "fake-engine:src/fake-engine/fake-engine"
  "inferencecache:src/cli/inferencecache"
)

die() { echo "make images: $*" >&2; exit 1; }
for t in mmdebstrap umoci skopeo; do
  command -v "$t" >/dev/null || die "$t is not installed (scripts/install-deps.sh installs it)"
done
# Without root, everything that needs it runs in a user namespace where we are root.
asroot=()
umoci_flags=()
if [ "$(id -u)" -ne 0 ]; then
  asroot=(unshare --user --map-root-user --mount)
  umoci_flags=(--rootless)
fi

images=()
for p in "${programs[@]}"; do
  name=${p%%:*}; bin=$build/${p#*:}
  [ -x "$bin" ] || die "$bin is not built (run 'make build' first)"
  images+=("$name")
done
binary_of() {
  for p in "${programs[@]}"; do
    if [ "${p%%:*}" = "$1" ]; then echo "$build/${p#*:}"; fi
  done
}

version_line=$("$(binary_of server)" --version)
tag=${IMAGE_TAG:-$(sed -n 's/^.* version \([^ ]*\) (commit \(.*\))$/\1/p' <<<"$version_line")}
commit=$(sed -n 's/^.* (commit \(.*\))$/\1/p' <<<"$version_line")
[ -n "$tag" ] || die "cannot read the version from: $version_line"

# ---- the Debian packages each binary loads --------------------------------------------------
# ldd's libraries mapped to their packages with one dpkg -S call (it knows a file under /usr/lib
# or /lib depending on the package: ask for every spelling).
lib_candidates() {
  for i in "${images[@]}"; do ldd "$(binary_of "$i")"; done |
    awk '/=>/ {print $3} /^[ \t]*\// {print $1}' | sort -u | while read -r lib; do
      real=$(realpath "$lib")
      printf '%s\n' "$lib" "$real" "${real#/usr}" "/usr$real" "${lib#/usr}" "/usr$lib"
    done | sort -u
}
listed=$(grep -v '^#' "$root/images/runtime-packages.txt" | tr -s ' \n' '\n' | sed '/^$/d' | sort -u)
needed=$(lib_candidates | xargs dpkg -S 2>/dev/null | cut -d: -f1 | tr ',' '\n' | sed 's/^ *//' | sort -u || true)
[ -n "$needed" ] || die "dpkg -S found none of the binaries' libraries"
missing=$(comm -23 <(echo "$needed") <(echo "$listed"))
[ -z "$missing" ] || die "images/runtime-packages.txt lacks packages the binaries load: $missing"

rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/ic-images.XXXXXX")
trap 'rm -rf "$work" 2>/dev/null || "${asroot[@]}" rm -rf "$work"' EXIT

# ---- base root filesystem: the runtime packages, nothing else ----------------------------------
echo "make images: mmdebstrap (bookworm, $(echo "$listed" | wc -l) packages + dependencies)" >&2
mirror=()
[ -n "${DEBIAN_MIRROR:-}" ] && mirror=("$DEBIAN_MIRROR")
mmdebstrap --quiet --variant=extract --include="$(echo "$listed" | paste -sd,)" \
  bookworm "$work/base.tar" "${mirror[@]}"
mkdir -p "$work/base/rootfs"
"${asroot[@]}" sh -c '
  set -e
  r=$1/base/rootfs
  tar -xf "$1/base.tar" -C "$r"
  # What no program reads at run time: docs, manuals, locales, package manager state.
  rm -rf "$r"/usr/share/doc "$r"/usr/share/man "$r"/usr/share/info "$r"/usr/share/locale \
         "$r"/usr/share/lintian "$r"/usr/share/gdb "$r"/usr/share/gcc "$r"/var/cache/apt \
         "$r"/var/lib/apt "$r"/var/log/apt "$r"/var/cache/ldconfig
  mkdir -p "$r"/etc "$r"/tmp "$r"/home/nonroot "$r"/proc "$r"/dev "$r"/sys
  chmod 1777 "$r"/tmp
  chown 65532:65532 "$r"/home/nonroot
  printf "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" >"$r"/etc/passwd
  printf "root:x:0:\nnonroot:x:65532:\n" >"$r"/etc/group
  printf "hosts: files dns\n" >"$r"/etc/nsswitch.conf
' sh "$work"

# ---- OCI images: the base layer once, then one layer per program -----------------------------
layout=$out/oci
umoci init --layout "$layout"
umoci new --image "$layout:base"
"${asroot[@]}" sh -c 'umoci unpack "$@"' sh "${umoci_flags[@]}" --image "$layout:base" "$work/base-bundle" >/dev/null
"${asroot[@]}" sh -c 'rmdir "$1/base-bundle/rootfs" && mv "$1/base/rootfs" "$1/base-bundle/rootfs"' sh "$work"
"${asroot[@]}" sh -c 'umoci repack "$@"' sh "${umoci_flags[@]}" --history.created_by="mmdebstrap --variant=extract: runtime libraries" \
  --image "$layout:base" "$work/base-bundle"

for i in "${images[@]}"; do
  bin=$(binary_of "$i")
  exe=$(basename "$bin")
  umoci tag --image "$layout:base" "$i"
  mkdir -p "$work/bin-$i"
  install -m 0755 "$bin" "$work/bin-$i/$exe"
  strip --strip-unneeded "$work/bin-$i/$exe" 2>/dev/null || true
  umoci insert "${umoci_flags[@]}" --image "$layout:$i" "$work/bin-$i/$exe" "/usr/local/bin/$exe" >/dev/null
  ports=()
  case "$i" in
    server) ports=(--config.exposedports 9090/tcp --config.exposedports 8080/tcp --config.exposedports 8081/tcp) ;;
    controller) ports=(--config.exposedports 8080/tcp --config.exposedports 8081/tcp --config.exposedports 9443/tcp) ;;
    kvevent-subscriber) ports=(--config.exposedports 8090/tcp) ;;
    fake-engine) ports=(--config.exposedports 5557/tcp) ;;
  esac
  umoci config --image "$layout:$i" --config.entrypoint "/usr/local/bin/$exe" \
    --config.user 65532:65532 --config.workingdir / \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.label "org.opencontainers.image.title=$exe" \
    --config.label "org.opencontainers.image.version=$tag" \
    --config.label "org.opencontainers.image.revision=$commit" \
    --manifest.annotation "org.opencontainers.image.ref.name=$repo/$i:$tag" \
    "${ports[@]}" --history.created_by="$exe $tag ($commit)"
  skopeo copy --quiet "oci:$layout:$i" "docker-archive:$out/$i.tar:$repo/$i:$tag"
done
umoci rm --image "$layout:base"
umoci gc --layout "$layout"

# ---- report: size and libraries per image -------------------------------------------------------
mb() { /usr/bin/python3 -c 'import sys; print("%.1f" % (int(sys.argv[1]) / 1e6))' "$1"; }
{
  echo "| image | compressed: all layers (its own layer) | unpacked | libraries loaded |"
  echo "|---|---|---|---|"
  for i in "${images[@]}"; do
    bin=$(binary_of "$i")
    read -r comp own < <(skopeo inspect --raw "oci:$layout:$i" | /usr/bin/python3 -c \
      'import json,sys; l=json.load(sys.stdin)["layers"]; print(sum(x["size"] for x in l), l[-1]["size"])')
    "${asroot[@]}" sh -c 'umoci unpack "$@"' sh "${umoci_flags[@]}" --image "$layout:$i" "$work/u-$i" >/dev/null
    unp=$("${asroot[@]}" du -sb "$work/u-$i/rootfs" | cut -f1)
    libs=$(ldd "$bin" | awk '/=>/ {print $1}' | sed 's/\.so.*//' | sort -u | paste -sd' ')
    printf '| `%s/%s:%s` | %s MB (%s MB) | %s MB | %s: %s |\n' "$repo" "$i" "$tag" \
      "$(mb "$comp")" "$(mb "$own")" "$(mb "$unp")" "$(ldd "$bin" | grep -c '=>')" "$libs"
  done
} >"$out/report.md"

# ---- smoke tests from the unpacked root filesystems --------------------------------------------
smoke() {
  local i=$1 exe rootfs
  exe=$(basename "$(binary_of "$i")")
  rootfs=$work/u-$i/rootfs
  local run=("${asroot[@]}" chroot)
  [ "$(id -u)" -eq 0 ] && run+=(--userspec=65532:65532)
  local v
  v=$("${run[@]}" "$rootfs" "/usr/local/bin/$exe" --version) || die "$i: --version failed"
  [ "$v" = "$exe version $tag (commit $commit)" ] || [ -n "${IMAGE_TAG:-}" ] ||
    die "$i: --version says '$v', expected version $tag commit $commit"
  "${run[@]}" "$rootfs" "/usr/local/bin/$exe" --help >"$work/help-$i" || die "$i: --help failed"
  grep -q "^Usage: $exe \[flags\]" "$work/help-$i" || die "$i: --help printed no usage"
  echo "  $i: --version ok ($v), --help ok" >&2
}
if [ "${SKIP_SMOKE:-0}" != 1 ]; then
  echo "make images: smoke tests (each binary run from its unpacked image, as user 65532)" >&2
  for i in "${images[@]}"; do smoke "$i"; done
  # The server from its image answers /healthz on free loopback ports.
  ports=$(/usr/bin/python3 -c 'import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  read -r gp hp sp <<<"$ports"
  run=("${asroot[@]}" chroot)
  [ "$(id -u)" -eq 0 ] && run+=(--userspec=65532:65532)
  "${run[@]}" "$work/u-server/rootfs" /usr/local/bin/inferencecache-server --insecure-disable-auth \
    --grpc-bind-address=127.0.0.1:$gp --http-bind-address=127.0.0.1:$hp \
    --snapshot-bind-address=127.0.0.1:$sp 2>"$work/server.log" &
  spid=$!
  ok=0
  for _ in $(seq 100); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/healthz")" = 200 ]; then ok=1; break; fi
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  [ "$ok" = 1 ] || { cat "$work/server.log" >&2; die "server image: /healthz did not answer 200"; }
  grep -q '"msg":"startup".*"commit":"'"$commit"'"' "$work/server.log" ||
    die "server image: startup log lacks the commit"
  echo "  server: /healthz 200 from the image's root filesystem" >&2
fi
echo "make images: ${images[*]} -> $out (oci/, *.tar, report.md) in $(($(date +%s) - started)) s" >&2
cat "$out/report.md"
