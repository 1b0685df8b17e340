# durable_flows: `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint docs bench chaos soak clean

# The demo needs only Python: the runtime dependencies.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# The tests and tools: the dev set, and Debian's Chromium for the browser tests
# (never `playwright install`).
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/python manage.py migrate --verbosity 0
	$(BIN)/python manage.py demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check durable_flows project tests bench
	$(BIN)/ruff format --check durable_flows project tests bench
	$(BIN)/mypy
	$(BIN)/mypy tests/typing/steps_good.py
	$(BIN)/lint-imports
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python manage.py makemigrations --check --dry-run

# The documentation site (mkdocs.yml; docs/), warnings as errors, into site/.
# mkdocstrings reads the docstrings statically: Django is not configured.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: $(DEV_STAMP) lint docs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python bench/suite.py
	$(BIN)/python bench/linear_steps.py

chaos: $(DEV_STAMP)
	$(BIN)/python -m tests.chaos --runs 2000 --workers 3

# Model-based, differential: 500 random programs on PostgreSQL, then on SQLite
# (tests/model_based.py; MODEL_SEED=<seed> reproduces a run's programs).
soak: $(DEV_STAMP)
	$(BIN)/python -m tests.model_based --programs 500 --database postgres
	$(BIN)/python -m tests.model_based --programs 500 --database sqlite

clean:
	rm -rf $(VENV) site db.sqlite3 db.sqlite3-wal db.sqlite3-shm
