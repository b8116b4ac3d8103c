# `make run` and `make test` install what they need by themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: run test lint install bench clean browser pgbouncer

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Taskline needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/taskline dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The dashboard's browser tests drive Debian's Chromium (no browser download).
browser:
	@test -x $(CHROMIUM) || { \
		command -v apt-get >/dev/null || { echo "no $(CHROMIUM): install Chromium and run make test CHROMIUM=/path/to/it"; exit 1; }; \
		echo "installing Debian's chromium for the dashboard's browser tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# The PgBouncer tests (tasks/tests/test_pgbouncer.py) start Debian's pgbouncer;
# where it cannot be installed they are skipped, and say why.
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { \
		command -v apt-get >/dev/null || { echo "no pgbouncer and no apt-get: the PgBouncer tests will be skipped"; exit 0; }; \
		echo "installing Debian's pgbouncer for the PgBouncer tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		{ $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer; } \
			|| echo "could not install pgbouncer: the PgBouncer tests will be skipped"; }

test: lint browser pgbouncer
	CHROMIUM=$(CHROMIUM) $(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/drain.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
