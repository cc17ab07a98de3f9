# The README's commands. `make demo` and `make test` each set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEB_PACKAGES := dataset-fashion-mnist espeak-ng bible-kjv bible-kjv-text chromium

.PHONY: setup system-packages demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject.toml: the CPU wheel on the lab machines' disk satisfies it.
	$(PIP) install --quiet -e '.[dev]'
	touch $@

system-packages:
	@bash scripts/install-system-packages.sh $(DEB_PACKAGES)

setup: system-packages $(VENV)/.installed

demo: setup
	$(VENV)/bin/dllab report --rerun --quick

test: setup
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pytest -q

bench: setup
	$(VENV)/bin/dllab bench vision

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs report .pytest_cache
