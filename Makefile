# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# port of the demo's HTTP API: make demo PORT=8080
PORT   ?= 8000

.PHONY: install demo test test-fast lint bench stress clean

# torch first, pinned to the CPU build that installs offline; an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/pgrecs demo --port $(PORT)

test: install lint
	$(BIN)/pytest -q

# everything that needs neither dbt, nor the embedding model, nor fuzzing, nor seconds of waiting
test-fast: install
	$(BIN)/pytest -q -m "not slow and not stress"

# ruff for Python; sqlfluff (.sqlfluff) for sql/ and the dbt models
lint: install
	$(BIN)/ruff check .
	$(BIN)/sqlfluff lint sql dbt_project/models

bench: install
	$(BIN)/python -m benchmarks.run all

stress: install
	$(BIN)/pytest -q -m stress tests/stress

clean:
	-$(BIN)/pgrecs db stop
	rm -rf .pgrecs dbt_project/target dbt_project/logs
