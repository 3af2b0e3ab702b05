# heed: a thin wrapper over CMake. See README.md.
#   make demo   install what is missing, build, run the main job on the examples
#   make test   install what is missing, build, run the whole suite (CTest)
#   make build  build/heed        make asan   the suite under ASan+UBSan
#   make fuzz   the libFuzzer targets, FUZZ_SECONDS each (default 60)
BUILD ?= build
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
# No "gmake[N]: Entering directory" lines (the flag reaches the makes that
# cmake --build runs through the environment).
MAKEFLAGS += --no-print-directory

.PHONY: all deps build test demo asan fuzz clean

all: build

deps:
	@scripts/install-deps.sh $(BUILD)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)/heed

asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHEED_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j $(JOBS)

fuzz: deps
	@CC=clang-19 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DHEED_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_frontend fuzz_safetensors fuzz_json fuzz_checkpoint fuzz_data
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz

# heed's generated sgemm against OpenBLAS (bench/README.md); needs Debian's
# libopenblas0-openmp + libopenblas-dev (benchmark only). BENCH_ARGS: e.g.
# --m 512 --threads 1.
.PHONY: bench-gemm
bench-gemm:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target gemm_bench
	@bench/gemm_bench.sh $(BUILD)/gemm_bench $(BENCH_ARGS)

# Whole models, heed bench against PyTorch CPU eager (bench/README.md); needs
# Debian's python3-torch (+ libopenblas0-openmp for its OpenMP BLAS).
# MODEL_BENCH_ARGS: e.g. --cases bytegpt,bytegpt-train --threads 1, or
# --cases pieces (GPT-2's ops one at a time).
.PHONY: bench-model
bench-model:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target heed
	@/usr/bin/python3 bench/model_bench.py --heed $(BUILD)/heed $(MODEL_BENCH_ARGS)

# heed train against a PyTorch CPU training loop: time to a validation loss on
# ../shared/data/moby-dick.txt (bench/README.md). TRAIN_BENCH_ARGS: e.g.
# --steps 300 --target 2.6 --threads 1.
.PHONY: bench-train
bench-train:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target heed
	@/usr/bin/python3 bench/train_bench.py --heed $(BUILD)/heed $(TRAIN_BENCH_ARGS)

# Decode tokens/s, `heed generate` (KV cache) against PyTorch CPU with a KV
# cache (bench/decode_bench.py); DECODE_BENCH_ARGS: e.g. --threads 2 -n 256.
.PHONY: bench-decode
bench-decode:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release > /dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target heed
	@/usr/bin/python3 bench/decode_bench.py --heed $(BUILD)/heed $(DECODE_BENCH_ARGS)
