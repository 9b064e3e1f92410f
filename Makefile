# Thin wrapper over CMake/CTest. `make run` and `make test` are the README's two commands.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps build build-asan run test test-fast clean

all: build

deps:
	@bash scripts/setup.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGLINT_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# A chat with the embedded demo model (models/demo): streaming answers, /reset, /think on|off, /quit.
run: build
	@$(BUILD)/glint run

# The whole CPU suite: the optimized build, then the same tests under ASan+UBSan. Tests run in
# parallel, so OpenMP threads sleep instead of spinning while they wait (no oversubscription storms).
TEST_ENV = OMP_WAIT_POLICY=PASSIVE
test: build build-asan
	@cd $(BUILD) && $(TEST_ENV) ctest --output-on-failure -j $(JOBS)
	@cd $(ASAN_BUILD) && $(TEST_ENV) ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

test-fast: build
	@cd $(BUILD) && $(TEST_ENV) ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
