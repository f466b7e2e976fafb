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

install-python: deps
	$(PYTHON) -m pip install --no-build-isolation -v . 2>&1 | grep -E "flashmfa:|Successfully|error|Error" || true
	$(PYTHON) -c "import flashmfa, sys; print(flashmfa.build_info())"

test-python: install-python
	$(PYTHON) -m pytest -q tests/python

test: test-cpp test-python

demo: build
	$(BUILD)/bench/flashmfa-bench

clean:
	rm -rf $(BUILD)
