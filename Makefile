# Thin wrapper over CMake/ctest for the README commands. Real build logic is in CMakeLists.txt.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
BENCH      ?= all
FUZZ_SECONDS ?= 10
CMAKE_FLAGS ?=

.PHONY: all deps build test test-unit test-asan test-integration fuzz fuzz-short run bench format clean images soak

all: build

# Installs missing Debian packages (no-op when everything is present).
deps:
	@./scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DIC_SANITIZE=ON -DIC_UNIT_ONLY=ON

test-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

$(FUZZ_BUILD)/CMakeCache.txt: | deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DIC_FUZZ=ON

fuzz-build: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# Short runs of every fuzz target (part of `make test`); `make fuzz FUZZ_SECONDS=600` for longer.
fuzz-short: fuzz-build
	./scripts/run-fuzzers.sh $(FUZZ_BUILD) 5

fuzz: fuzz-build
	./scripts/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

test-integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

# Sanitizers and fuzzers first, so the output ends with the main ctest summary line.
test: build test-asan fuzz-short
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	./scripts/run-demo.sh $(BUILD)

# Container images without a daemon or registry (mmdebstrap + umoci; needs the Debian mirror):
# OCI layout and docker-archives under $(BUILD)/images, each smoke-tested. docs/images.md.
images: build
	./scripts/build-images.sh $(BUILD) $(BUILD)/images

bench: build
	./scripts/run-bench.sh $(BUILD) $(BENCH)

# Long-running soak (not part of `make test`): engines restarting and evicting, checked lookups,
# RSS per process; JSON lines on stdout, non-zero exit on any loss. docs/soak.md.
SOAK_MINUTES ?= 20
soak: build
	/usr/bin/python3 scripts/soak.py --build $(BUILD) --minutes $(SOAK_MINUTES)

format:
	find include lib src tests bench -name '*.[ch]' -print0 | xargs -0 -r clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
