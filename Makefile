# The two commands of the README: `make demo` (main job on the embedded default) and `make test`.
# Both run the idempotent set-up first.
VENV := .venv/bin

.PHONY: setup demo test test-slow lint bench lock

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
	@for f in benchmarks/*.py; do echo "== $$f"; $(VENV)/python -c "import ast,sys; print(ast.get_docstring(ast.parse(open(sys.argv[1]).read())) or '')" $$f | head -12; done
	@echo "Run one with: $(VENV)/python benchmarks/NAME.py --help"


# Rewrite constraints.txt from .venv after a deliberate upgrade there (keeps its header).
lock:
	{ sed -n '/^#/p' constraints.txt; $(VENV)/pip freeze --exclude-editable | grep -vi '^py-spy=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
