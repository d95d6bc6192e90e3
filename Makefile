# Thin wrappers; the real build is CMake. See README.md.
BUILD ?= build
JOBS ?= 2
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=

.PHONY: deps configure build test test-avx2 demo bench fuzz test-asan clean format

deps:
	bash scripts/deps.sh

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The suite runs twice: on this CPU's native kernels, then with every kernel
# library held to AVX2 (no AVX-512, no AVX512-BF16), as on an AVX2-only
# machine, so that a submission that passes here passes there too. On an
# AVX2-only CPU the second pass repeats the first. See docs/portability.md.
# An OPENBLAS_CORETYPE that the machine already sets (some CPUs need one to
# avoid known OpenBLAS faults) is kept.
FORCE_AVX2 = OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 \
  MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "== the same suite with the kernels held to AVX2 ($(FORCE_AVX2))"
	cd $(BUILD) && env $(FORCE_AVX2) ctest --output-on-failure -j $(JOBS)

test-avx2: build
	cd $(BUILD) && env $(FORCE_AVX2) ctest --output-on-failure -j $(JOBS)

# The demo needs only the dfar binary: building it alone (not the tests and
# benchmarks) keeps a fresh machine's `make demo` inside its 20 minutes.
demo: configure
	cmake --build $(BUILD) -j $(JOBS) --target dfar
	bash scripts/demo.sh $(BUILD)

# The CPU benchmark suite (<= 15 min): benchmarks/results/*.json, plots, and
# a regenerated docs/benchmarks.md. QUICK=1 for a smoke run.
bench: build
	bash scripts/bench_deps.sh
	bash benchmarks/run.sh $(BUILD)

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
	rm -rf $(BUILD)
