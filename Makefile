# Two commands: `make run` (set up, build the demo workspace, open the workbench) and `make test` (set up + test).
# Both create .venv when missing and reinstall only when pyproject.toml or constraints.txt change.
# constraints.txt is the full lock of the tested dependency set (`make lock` refreshes it from
# pyproject.toml and the hand-held pins in constraints.in); make run, make test and the Dockerfile use it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
WORKSPACE ?= workspace
PORT ?= 8501

export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-fast lint lock install chromium postgres demo clean

run: install
	$(BIN)/inspekt demo --workspace $(WORKSPACE)
	$(BIN)/inspekt app --workspace $(WORKSPACE) --port $(PORT)

test: install chromium postgres lint
	$(BIN)/python -m pytest

# The inner loop: lint and the tests not marked slow (under a minute).
test-fast: install lint
	$(BIN)/python -m pytest -m "not slow and not datasets" -q

# ruff (lint + format check) and import-linter (layers, no cycles); rules and contracts in pyproject.toml.
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports


# The browser tests drive Debian's chromium through Playwright (`playwright install` cannot
# download browsers here); install it when missing, or say why the browser tests will skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null; } || echo "chromium could not be installed; browser tests will skip"

# The PostgreSQL history test starts a throw-away server from Debian's postgresql package;
# install it when missing, or say why that test will skip.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq postgresql >/dev/null; } || echo "postgresql could not be installed; the PostgreSQL test will skip"

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch and torchvision are pinned together in constraints.txt: an unpinned torch is a
# multi-GB CUDA download.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,app,serve,dist,postgres]'
	touch $@

# Refresh the lock: resolve pyproject.toml (every extra) under constraints.in's pins in a fresh
# environment and freeze it. Run it on purpose (new dependency, upgrade), then run make test.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -c constraints.in '.[dev,app,serve,dist,postgres]'
	{ echo "# The tested dependency set, written by 'make lock' from pyproject.toml and constraints.in: do not edit."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^inspekt[= @]' \
	  | sed -E 's/^(torch[a-z]*==[^+]+)\+.*/\1/'; } > constraints.txt  # '==2.13.0' also takes a +cpu build
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(WORKSPACE) runs .pytest_cache test-artifacts
