# The two commands of the README: `make demo` (main job on the embedded default) and `make test`.
# Both run the idempotent set-up first.
VENV := .venv/bin

.PHONY: setup demo test test-slow lint bench

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/codescaler demo

lint: setup
	$(VENV)/ruff check src tests benchmarks
	$(VENV)/mypy src

test: setup lint
	$(VENV)/python -m pytest -q

test-slow: setup
	$(VENV)/python -m pytest -q -m slow

bench: setup
	$(VENV)/python benchmarks/run_all.py
