# The two commands of the README. Both work on a fresh machine with only
# Python 3.11 and pip: they create .venv, install the pinned versions and run.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra pip options for the test install, e.g. PyTorch's CPU-only wheels on
# Linux: make test PIP_ARGS='--extra-index-url https://download.pytorch.org/whl/cpu'
PIP_ARGS ?=
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast lint format constraints clean

# The package alone (what `make demo` needs: never PyTorch), then the test
# extra on top (PyTorch, torchvision and timm for the parity tests).
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; run make PYTHON=python3 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet $(PIP_ARGS) -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.main --workdir runs/demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(TEST_STAMP) lint
	$(BIN)/python -m pytest -n 2 -q --durations=25

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

format: $(TEST_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Local version labels (torch's '+cpu') are dropped: no public index has
# them, and '==2.13.0' still matches a local CPU build of that release.
constraints: $(TEST_STAMP)
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable \
	  | sed -E 's/\+[A-Za-z0-9.]+$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV)
