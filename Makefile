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
	@scripts/install-deps.sh build-asan  # heed serve's test client in build-asan/pyenv
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

# The quantized decode matmuls (runtime/quant.c) against f32 and OpenBLAS
# sgemv (docs/quantize.md; OpenBLAS: SkylakeX kernels on AVX-512, else Haswell).
# QGEMV_ARGS: e.g. --threads 2 --reps 21.
.PHONY: bench-qgemv
bench-qgemv:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target qgemv_bench
	@OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-$$(grep -qw avx512f /proc/cpuinfo && echo SkylakeX || echo Haswell)} \
	  $(BUILD)/qgemv_bench $(QGEMV_ARGS)

# The accuracy cost of each weight-only scheme (docs/quantize.md): trains
# bytegpt QUANT_STEPS steps on ../shared/data/moby-dick.txt unless
# QUANT_CKPT names a checkpoint, then f32 vs int8/q4_0/q4_1/bf16 val loss
# against the error budgets (exit 1 when one is over).
QUANT_STEPS ?= 400
.PHONY: bench-quant-accuracy
bench-quant-accuracy:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target heed quant_fake
	@set -e; d=$$(mktemp -d); trap 'rm -rf '$$d EXIT; ckpt=$${QUANT_CKPT:-}; \
	if [ -z "$$ckpt" ]; then $(BUILD)/heed train examples/bytegpt.heed --data ../shared/data/moby-dick.txt \
	  --steps $(QUANT_STEPS) --out $$d/train --sample 0 >/dev/null; ckpt=$$(ls $$d/train/ckpt-*.safetensors | tail -n 1); fi; \
	bench/quant_accuracy.sh $(BUILD)/heed $(BUILD)/quant_fake examples/bytegpt.heed ../shared/data/moby-dick.txt $$ckpt $$d/q

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
# One whole train step (fwd, bwd, clip, AdamW) of a tiny GPT (L4 C256 V512,
# B8 T64) as a fraction of the FP32 FMA peak, against PyTorch CPU
# (bench/step_bench.py). STEP_BENCH_ARGS: e.g. --threads 2 --rounds 3.
.PHONY: bench-step
bench-step:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target heed
	@/usr/bin/python3 bench/step_bench.py --heed $(BUILD)/heed $(STEP_BENCH_ARGS)

.PHONY: bench-decode
bench-decode:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release > /dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target heed
	@/usr/bin/python3 bench/decode_bench.py --heed $(BUILD)/heed $(DECODE_BENCH_ARGS)
