# tern: the two commands are `make run` and `make test`.
#
#   make run           install what is missing, build, start ternd (foreground)
#   make test          install what is missing, build, run every test this machine can
#   make build         configure and build into build/ (executables in build/bin/)
#   make release       build with CUDA architectures 80;90a into build-release/
#   make bench         build and run the benchmarks
#   make device-bundle build for sm_90a and pack binaries + libraries into .device-bundle/
#
# Variables: BUILD_DIR, CUDA_ARCHS (default: this machine's GPU, else 90a),
# TERN_CUDA (ON when /usr/local/cuda/bin/nvcc exists), JOBS, GRPC_PORT, HTTP_PORT.

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
TERN_CUDA ?= $(if $(wildcard /usr/local/cuda/bin/nvcc),ON,OFF)
CUDA_ARCHS ?= $(shell tools/dev/cuda_arch.sh)
GRPC_PORT ?= 50051
HTTP_PORT ?= 8000
CMAKE_FLAGS ?=

.PHONY: deps configure build release test run bench device-bundle clean

deps:
	@tools/dev/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTERN_CUDA=$(TERN_CUDA) -DTERN_CUDA_ARCHITECTURES="$(CUDA_ARCHS)" $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

release: deps
	@cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_CUDA=$(TERN_CUDA) \
	  -DTERN_CUDA_ARCHITECTURES="80;90a" -DTERN_BUILD_TESTS=OFF $(CMAKE_FLAGS)
	@cmake --build build-release -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

run: build
	@tools/dev/run_demo.sh $(BUILD_DIR) $(GRPC_PORT) $(HTTP_PORT)

bench: build
	@tools/dev/run_benchmarks.sh $(BUILD_DIR)

# The working tree travels with the bundle under a 64 MiB limit: by default
# carry the GPU tests and the offline tools; name more executables with
# TERN_BUNDLE_BINARIES="ternd tern tern-load ..." (and TERN_BUNDLE_TESTS=0).
TERN_BUNDLE_BINARIES ?= tern-run tern-mkmodel
device-bundle: deps
	@TERN_BUNDLE_BINARIES="$(TERN_BUNDLE_BINARIES)" tools/device/bundle.sh

clean:
	rm -rf $(BUILD_DIR) build-release build-device .device-bundle
