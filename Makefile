# flashmfa: the two commands of the README, and their parts.
#   make demo   installs what is missing, builds, runs flashmfa-bench on its default preset
#   make test   installs what is missing, builds, runs every test (C++ and Python)
BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_ARGS ?=
PYTHON   ?= python3

.PHONY: all deps build test test-cpp test-python demo install-python clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test-cpp: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# pip's full log goes to $(BUILD)/pip.log; its status decides, the last lines show on failure.
install-python: deps
	@mkdir -p $(BUILD)
	$(PYTHON) -m pip install --no-build-isolation -v . > $(BUILD)/pip.log 2>&1 || \
	  { tail -n 40 $(BUILD)/pip.log; echo "pip install failed (full log: $(BUILD)/pip.log)"; exit 1; }
	@grep -E "flashmfa:|Successfully installed" $(BUILD)/pip.log || true
	$(PYTHON) -c "import flashmfa, sys; print(flashmfa.build_info())"

test-python: install-python
	$(PYTHON) -m pytest -q tests/python

test: test-cpp test-python

demo: build
	$(BUILD)/bench/flashmfa-bench

clean:
	rm -rf $(BUILD)
