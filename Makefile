# The two set-up commands of the README. Each installs everything it needs first.
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PODLAB_VENV := $(VENV)

.PHONY: install demo test unit integration bench clean-labs

install:
	@bash scripts/install.sh

demo: install
	@$(PY) -m lab demo

test: install
	@$(PY) -m pytest -q -p no:cacheprovider tests

unit: install
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit

integration: install
	@$(PY) -m pytest -q -p no:cacheprovider tests/integration

bench: install
	@$(PY) bench/run.py

clean-labs: install
	@$(VENV)/bin/podlab down --all
