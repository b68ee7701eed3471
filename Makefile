# ctx: the top-level driver. CMake does the building, in build/ (and build-*/).
#   make          build everything (library, example, tests)
#   make run      install dependencies if missing, build, start ctxd and show a session
#                 (scripts/demo.sh; serves until Ctrl-C, CI=true stops after the demo)
#   make example  build and run the library example (examples/example.c)
#   make test     install dependencies if missing, build, run the whole suite
#   make asan     the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make tsan     the suite under ThreadSanitizer
#   make coverage line and branch coverage of src/ (gcovr), report in build/coverage/
#   make bench    benchmarks against SQLite and LMDB, then bench-server (QUICK=1 for short runs)
#   make bench-server  ctxd against redis-server with redis-benchmark (QUICK=1: smoke run)
#   make fuzz     the libFuzzer targets (clang, ASan+UBSan), FUZZ_SECONDS each
#                 (default 60), in build-fuzz; see tests/fuzz/README.md
#   make install  install header, libraries and ctx.pc (PREFIX=/usr/local)

PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
# Tests run twice as many at a time as there are CPUs: most of them spend
# their time waiting for fsyncs (durability always), for a server or for a
# background thread, not on a CPU (docs/benchmarks.md, round 16, r16-ci); none
# times itself, so one slowed by a neighbour still checks what it checks.
TEST_JOBS ?= $(shell echo $$(( $(JOBS) * 2 )))
CMAKE_FLAGS ?=
CTEST = ctest --output-on-failure -j$(TEST_JOBS)

.PHONY: all build deps run example test asan tsan coverage bench bench-server fuzz install format clean

all: build

deps:
	@scripts/deps.sh

build/Makefile: CMakeLists.txt
	cmake -S . -B build -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS) >/dev/null

build: build/Makefile
	cmake --build build -j$(JOBS)

run: deps build
	scripts/demo.sh

example: deps build
	rm -rf data/example
	./build/ctx_example data/example

test: deps build
	cd build && $(CTEST)

asan: deps
	cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	      -DCTX_SANITIZE=address,undefined -DCTX_WERROR=ON >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

tsan: deps
	cmake -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	      -DCTX_SANITIZE=thread -DCTX_WERROR=ON >/dev/null
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" $(CTEST)

coverage: deps
	cmake -S . -B build-coverage -DCMAKE_BUILD_TYPE=Debug -DCTX_COVERAGE=ON >/dev/null
	cmake --build build-coverage -j$(JOBS)
	find build-coverage -name '*.gcda' -delete
	cd build-coverage && $(CTEST)
	mkdir -p build/coverage
	gcovr -r . --filter 'src/' --gcov-ignore-parse-errors build-coverage \
	      --html-details build/coverage/index.html --txt build/coverage/report.txt \
	      --print-summary | tee build/coverage/summary.txt

bench: BENCH_MODE = $(if $(QUICK),quick,full)
bench:
	@scripts/deps.sh bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCTX_BENCH=ON >/dev/null
	cmake --build build-bench -j$(JOBS) --target ctxbench ctxfeatures ctxreclaim ctxrecovery
	bench/run.sh build-bench $(if $(QUICK),quick,full)
	@echo "== ctxfeatures: points, restore, diffs, trackers, watchers, paging, compare-and-set"
	bash -o pipefail -c 'build-bench/bench/ctxfeatures $(if $(QUICK),3,15) | tee bench/results/$(BENCH_MODE)-features.md'
	@echo "== ctxreclaim: small commits after a large transaction leaves history"
	bash -o pipefail -c 'build-bench/bench/ctxreclaim $(if $(QUICK),100000 2,1000000 5) | tee bench/results/$(BENCH_MODE)-reclaim.md'
	@echo "== ctxrecovery: log replay and checkpoint speed, commit latency under checkpoints"
	bash -o pipefail -c 'build-bench/bench/ctxrecovery $(if $(QUICK),16 200000 3 0.3 2,128 1000000 5 1.5 3) \
	    build-bench | tee bench/results/$(BENCH_MODE)-recovery.md'
	@$(MAKE) --no-print-directory bench-server

bench-server:
	@scripts/deps.sh bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCTX_BENCH=ON >/dev/null
	cmake --build build-bench -j$(JOBS) --target ctxd
	bench/redis/run.sh build-bench $(if $(QUICK),quick,full)

# The targets run FUZZ_JOBS at a time (default: one per CPU, each for
# FUZZ_SECONDS; tests/fuzz/run.sh); add new ones (and their sources, in
# CMakeLists.txt's CTX_FUZZ section) to FUZZ_TARGETS.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= fuzz_record fuzz_checkpoint fuzz_recovery fuzz_resp fuzz_dispatch
fuzz: deps
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	      -DCTX_SANITIZE=address,undefined -DCTX_WERROR=ON -DCTX_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target $(FUZZ_TARGETS)
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

install: build
	cmake --install build

format:
	clang-format -i include/*.h src/*/*.[ch] tests/*.[ch] examples/*.c bench/*.[ch]

clean:
	rm -rf build build-asan build-tsan build-coverage build-bench build-fuzz data
