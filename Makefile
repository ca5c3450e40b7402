# Thin wrapper over CMake, as neovim's: `make`, `make test`, `make demo`.
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE ?= cmake
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps test test-asan demo bench clean

all: $(BUILD)/sluice

$(BUILD)/CMakeCache.txt:
	@./scripts/deps.sh
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

$(BUILD)/sluice: $(BUILD)/CMakeCache.txt FORCE
	$(CMAKE) --build $(BUILD) -j$(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	@./scripts/deps.sh
	$(CMAKE) -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON

deps:
	./scripts/deps.sh

# The normal suite, then the same suite in the sanitizer build; a failure
# stops at once.  The last lines are ctest's summary of the second run.
test: all
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	@$(MAKE) --no-print-directory test-asan

test-asan: $(ASAN_BUILD)/CMakeCache.txt
	$(CMAKE) --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS)

demo: all
	$(BUILD)/sluice examples/webhook_storm.lua

bench: all
	bench/run.sh
	bench/limits.sh
	bench/flow.sh
	bench/redis.sh
	bench/http.sh
	$(BUILD)/sluice bench/redis_limits.lua
	$(BUILD)/sluice bench/workers.lua

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

FORCE:
