# Set-up and everyday commands. Each target creates .venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo console test test-quick bench lint

$(INSTALLED): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[nudenet,demo,test]'
	touch $(INSTALLED)

## Runs the job on the embedded default model over the bundled sample photos.
demo: $(INSTALLED)
	$(BIN)/python -m pipeline.demo --workdir demo

## Serves the web console over an embedded S3 with sample images, no AWS account (Ctrl-C stops).
console: $(INSTALLED)
	$(BIN)/python -m service.console.demo

## The whole test suite (what CI runs).
test: $(INSTALLED)
	$(BIN)/python -m pytest -q

## Tests that need neither the models nor whole pipeline runs.
test-quick: $(INSTALLED)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(INSTALLED)
	$(BIN)/python -m bench.run

lint: $(INSTALLED)
	$(BIN)/ruff check storage model transforms pipeline training scheduler service templates bench tests
