# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck pytest pytest-postgres serve bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(STAMP)

demo: $(STAMP)
	SEAMLINE_DATA_DIR=$${SEAMLINE_DATA_DIR:-.seamline-demo} $(BIN)/seamline demo

serve: $(STAMP)
	$(BIN)/seamline serve

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP)
	$(BIN)/pytest

# Runs only when SEAMLINE_TEST_DATABASE_URL points at a PostgreSQL server (CI sets it).
pytest-postgres: $(DEV_STAMP)
	@if [ -n "$$SEAMLINE_TEST_DATABASE_URL" ]; then \
		$(BIN)/pytest --db postgres; \
	else \
		echo "SEAMLINE_TEST_DATABASE_URL not set: skipping the PostgreSQL run"; \
	fi

# The SQLite and PostgreSQL runs go side by side (two cores: each run is mostly one busy
# process); make prints each run's output whole when it ends, and fails if either fails.
test: lint typecheck
	@$(MAKE) --no-print-directory -j2 --output-sync=target pytest pytest-postgres

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
