"""One set of fixtures for every package's tests (tasks/tests/fixtures.py): the
embedded servers start once per run, whichever feature's tests ask first."""

pytest_plugins = ["tasks.tests.fixtures"]
