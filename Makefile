# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv with the python3 on PATH and install what they need into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_BASE := $(VENV)/.installed-base
STAMP_DEV  := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean install dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(STAMP_BASE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP_BASE) $@

install: $(STAMP_BASE)
dev: $(STAMP_DEV)

demo: $(STAMP_BASE)
	$(BIN)/loopml demo

test: $(STAMP_DEV)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest --durations=15

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Benchmarks compare against other tools (MLflow, statsforecast, Evidently), kept out of .venv in their
# own venv. Evidently 0.7 does not import under pandas 3, hence the pandas pin here only.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade "pip>=24"
	$(BENCH_VENV)/bin/pip install --quiet -e ".[dev]" "mlflow>=2.14,<4" "statsforecast>=2,<3" \
		"evidently==0.7.23" "pandas>=2.2,<3"
	touch $@

bench: $(STAMP_DEV) $(BENCH_VENV)/.installed
	$(BIN)/loopml bench all --python $(BENCH_VENV)/bin/python

clean:
	rm -rf $(VENV) $(BENCH_VENV) .loopml .pytest_cache build *.egg-info src/*.egg-info
