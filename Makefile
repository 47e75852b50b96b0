# Each target creates or reuses its own virtual environment in .venv; only python3 and pip are needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

OUT ?= gpu-check

.PHONY: smoke test install gpu-check clean

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

## The CUDA path checked in one short slot on a GPU machine: gpu tests, the gpu-check suite, its report, in $(OUT)/.
gpu-check: $(STAMP)
	$(BIN)/attnbench gpu-check --out $(OUT)

clean:
	rm -rf $(VENV)
