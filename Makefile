# Thin wrappers; the real build is CMake. See README.md.
#
# Two libtorch builds, both built and tested by `make test`:
#   1.13  Debian's libtorch-dev (CPU)
#   2.11  the torch pip wheel (CUDA 13 + NCCL, the GPU hosts' version), in
#         .cache/torch-2.11.0 (scripts/torch_wheel.sh); the GPU bundle's
# DEFAULT_TORCH is the one `make build`, `make demo` and `make bench` use, in
# $(BUILD); the other is built in $(BUILD_ALT). Why 1.13 is the default, with
# the measurements: README.md, "Which libtorch". DEFAULT_TORCH=2.11 swaps them.
DEFAULT_TORCH ?= 1.13
BUILD ?= build
BUILD_ALT ?= build-alt
JOBS ?= 2
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=
ALT_TORCH = $(if $(filter 2.11,$(DEFAULT_TORCH)),1.13,2.11)
# Torch_DIR of each version, resolved when a recipe runs (the first use of
# 2.11 installs the wheel).
TORCH_DIR_2.11 = $$(bash scripts/torch_wheel.sh)
TORCH_DIR_1.13 = /usr/lib/x86_64-linux-gnu/cmake/Torch
# The build against the wheel: the one the GPU bundle is made from.
BUILD_2.11 = $(if $(filter 2.11,$(DEFAULT_TORCH)),$(BUILD),$(BUILD_ALT))
GPU_BUNDLE ?= .gpu

.PHONY: deps configure build configure-alt build-alt test test-avx2 gpu-bundle demo experiment bench fuzz test-asan clean format

deps:
	bash scripts/deps.sh

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DTorch_DIR=$(TORCH_DIR_$(DEFAULT_TORCH)) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

configure-alt: deps
	cmake -S . -B $(BUILD_ALT) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DTorch_DIR=$(TORCH_DIR_$(ALT_TORCH)) $(CMAKE_FLAGS)

build-alt: configure-alt
	cmake --build $(BUILD_ALT) -j $(JOBS)

# The bundle that scripts/gpu_check.sh runs from on a GPU host: binaries of
# the torch 2.11 build and their library closure, at most 64 MiB, checked
# (scripts/check_bundle.sh). See docs/gpu.md.
gpu-bundle: $(if $(filter 2.11,$(DEFAULT_TORCH)),build,build-alt)
	bash scripts/gpu_bundle.sh $(BUILD_2.11) $(GPU_BUNDLE)

# The suite runs three times: the default build on this CPU's native
# kernels; the default build with every kernel library held to AVX2 (no
# AVX-512, no AVX512-BF16), as on an AVX2-only machine, so that a submission
# that passes here passes there too (on an AVX2-only CPU it repeats the
# first); and the other libtorch's build, natively. The GPU bundle is made
# first: the 2.11 build's suite checks it and runs scripts/gpu_check.sh
# --dry-run from it (label gpu_bundle, left out of the AVX2 pass, which
# guards numerics). The live SLURM test (label slurm) runs in the first pass
# only: it checks the job scripts, not the kernels or the libtorch. See
# docs/portability.md.
# An OPENBLAS_CORETYPE that the machine already sets (some CPUs need one to
# avoid known OpenBLAS faults) is kept.
FORCE_AVX2 = OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 \
  MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2
test: build build-alt gpu-bundle
	@echo "== libtorch $(DEFAULT_TORCH) ($(BUILD)), native kernels"
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "== libtorch $(DEFAULT_TORCH) ($(BUILD)), kernels held to AVX2 ($(FORCE_AVX2))"
	cd $(BUILD) && env $(FORCE_AVX2) ctest --output-on-failure -j $(JOBS) -LE 'gpu_bundle|slurm|experiment'
	@echo "== libtorch $(ALT_TORCH) ($(BUILD_ALT)), native kernels"
	cd $(BUILD_ALT) && ctest --output-on-failure -j $(JOBS) -LE 'slurm|experiment'

test-avx2: build
	cd $(BUILD) && env $(FORCE_AVX2) ctest --output-on-failure -j $(JOBS) -LE 'gpu_bundle|slurm|experiment'

# The demo needs only the dfar binary: building it alone (not the tests and
# benchmarks) keeps a fresh machine's `make demo` inside its 20 minutes.
# A 1.13 demo needs no torch wheel: `deps` skips it (4.0 GB) for this target.
demo: export DFAR_SKIP_TORCH_WHEEL = $(if $(filter 1.13,$(DEFAULT_TORCH)),1,0)
demo: configure
	cmake --build $(BUILD) -j $(JOBS) --target dfar
	bash scripts/demo.sh $(BUILD)

# The paper's experiment at this machine's scale (scripts/experiment.sh: all
# DFAR train rows, 3 seeds per objective, DFAR test + ETHOS + held-out; about
# 2 h on the 2-core reference machine). Resumable: rerun after an
# interruption. Writes docs/results.md, its PNGs and the README's headline row.
experiment: export DFAR_SKIP_TORCH_WHEEL = $(if $(filter 1.13,$(DEFAULT_TORCH)),1,0)
experiment: configure
	cmake --build $(BUILD) -j $(JOBS) --target dfar
	EXP_README=$${EXP_README-README.md} bash scripts/experiment.sh $(BUILD)

# The CPU benchmark suite (<= 15 min): benchmarks/results/*.json, plots, and
# a regenerated docs/benchmarks.md. QUICK=1 for a smoke run.
# Timed on the torch 2.11 build, against Python baselines on the same torch
# 2.11 wheel with current transformers + peft (scripts/bench_deps.sh).
# The evaluator's throughput, a dfar-only figure, runs on the default build.
bench: build build-alt
	bash scripts/bench_deps.sh >/dev/null
	DEFAULT_BUILD=$(BUILD) bash benchmarks/run.sh $(BUILD_2.11)

# libFuzzer targets (clang, ASan + UBSan) on every parser of untrusted bytes;
# each runs FUZZ_SECONDS or FUZZ_RUNS executions, whichever comes first.
# Results: $(FUZZ_BUILD)/fuzz-results.tsv. See docs/reliability.md.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_RUNS ?= 1000000
FUZZ_CC ?= clang-14
FUZZ_CXX ?= clang++-14
fuzz:
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) -DDFAR_BUILD_FUZZERS=ON -DDFAR_SANITIZE=ON \
	  -DDFAR_BUILD_TESTS=OFF -DDFAR_BUILD_BENCHMARKS=OFF -DDFAR_WITH_CUDA=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_RUNS)

# The torch-free unit tests and MPI tests under ASan + UBSan (leak checking
# on). Torch binaries are left out: see docs/reliability.md.
ASAN_BUILD ?= build-asan
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:strict_string_checks=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp
test-asan:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFAR_SANITIZE=ON \
	  -DDFAR_BUILD_BENCHMARKS=OFF -DDFAR_WITH_CUDA=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target dfar_tests sampler_mpitest ckpt_mpitest comm_mpitest
	$(ASAN_ENV) $(ASAN_BUILD)/bin/dfar_tests
	for t in sampler_mpitest ckpt_mpitest comm_mpitest; do for np in 2 3; do \
	  $(ASAN_ENV) mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -x ASAN_OPTIONS -x UBSAN_OPTIONS \
	    -x LSAN_OPTIONS -np $$np $(ASAN_BUILD)/bin/$$t || exit 1; done; done

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ALT) $(GPU_BUNDLE)
