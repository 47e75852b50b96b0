# Each target creates or reuses its own virtual environment in .venv; only python3 and pip are needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: smoke test install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The main job: the smoke suite on the CPU, then a Markdown report of results/.
smoke: $(STAMP)
	$(BIN)/attnbench run --suite smoke
	$(BIN)/attnbench report results/

## The tests (CPU; tests marked gpu are skipped without CUDA).
test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
