# `make run` and `make test` install what they need by themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium

.PHONY: run test lint install bench bench-peers clean browser pgbouncer

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

# Tests spend most of their time waiting on servers and processes, so two
# pytest processes (each with embedded servers of its own) halve the wall time
# even on 2 cores. TEST_PROCESSES=0 runs them in this one.
TEST_PROCESSES ?= 2

test: lint browser pgbouncer
	CHROMIUM=$(CHROMIUM) $(BIN)/pytest --numprocesses $(TEST_PROCESSES) $(PYTEST_ARGS)

# Taskline's own benchmarks, short settings (each script's --help for the full ones).
bench: $(STAMP)
	$(BIN)/python bench/drain.py --tasks 5000
	$(BIN)/python bench/latency.py --seconds 5
	$(BIN)/python bench/enqueue.py --tasks 2000 --rounds 1 --refusals 500

# Taskline beside Dramatiq, SAQ, Celery and PgQueuer (15-45 minutes): those come
# from PyPI into a virtualenv of their own, never the project's.
PEERS_VENV := bench/.peers-venv
$(PEERS_VENV)/.installed: bench/peers/requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	@touch $@

bench-peers: $(STAMP) $(PEERS_VENV)/.installed
	$(BIN)/python bench/peers/run.py $(PEERS_ARGS)

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache .mypy_cache .ruff_cache
