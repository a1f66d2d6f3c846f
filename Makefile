# The commands README and CI use, and nothing else.
.PHONY: setup test lint bench

setup:
	pip install torch==2.13.0 -e ".[test]"

test:
	python -m pytest -q

lint:
	ruff check fishopt tests bench
	ruff format --check fishopt tests bench

bench:
	python -m bench
