# The commands README and CI use, and nothing else.
.PHONY: setup test lint bench

setup:
	pip install torch==2.13.0 -e ".[test]"

# A test process per core (pytest-xdist), slow tests first and idle processes taking queued
# tests from busy ones; tests that stop PostgreSQL wait for the others (conftest.py, pg_url).
test:
	python -m pytest -q -n auto --dist worksteal --durations=25

lint:
	ruff check fishopt tests bench
	ruff format --check fishopt tests bench

bench:
	python -m bench
