# Everything a fresh machine needs (Debian, python3 >= 3.10 with venv, make):
# the first `make demo` or `make test` creates .venv and installs the package
# with its extras; it reinstalls whenever pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra arguments for pytest: make test ARGS='-k iterate -x'
ARGS ?=

.PHONY: demo test lint install clean-venv

demo: $(STAMP)
	$(BIN)/python -m aiodatabases demo

test: $(STAMP)
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check aiodatabases tests
	$(BIN)/mypy

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "aiodatabases needs Python >= 3.10; $(PYTHON) is older (try PYTHON=python3.12)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "creating $(VENV) failed; on Debian: apt-get install python3-venv" >&2; exit 1; }

# Order-only on the interpreter: an existing venv is reused, only the install is redone.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $@

clean-venv:
	rm -rf $(VENV)
