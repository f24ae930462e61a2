# The two commands a new user needs: `make demo` (whole pipeline on the local stack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.paydata-installed

.PHONY: demo test lint unit integration security stack-up stack-down stack-status bench clean-stack airflow airflow-down airflow-status

# Reinstall only when the dependency pins or the build change: a second run costs nothing here.
# (The editable install also compiles the optional C decoder, plugins/paydata/_speedups.c.)
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml setup.py plugins/paydata/_speedups.c
	@echo "installing the dependencies into $(VENV) (the first time takes a few minutes) ..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -r requirements-dev.txt
	@echo "building the paydata package (and its optional C accelerator) ..."
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(PY) -m paydata.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/dags

integration: $(STAMP)
	$(PY) -m pytest tests/integration

security: $(STAMP)
	$(PY) -m pytest tests/security

stack-up: $(STAMP)
	$(PY) -m paydata.stack up

stack-down: $(STAMP)
	$(PY) -m paydata.stack down

stack-status: $(STAMP)
	$(PY) -m paydata.stack status

# `make bench` lists the benchmarks; `make bench BENCH=<name> ARGS="..."` runs one (docs/benchmarks.md).
bench: $(STAMP)
	$(PY) -m bench $(BENCH) $(ARGS)

# Scheduled mode: api-server (127.0.0.1:$(AIRFLOW_PORT)), scheduler, dag-processor and triggerer, with a login.
AIRFLOW_PORT ?= $(or $(PAYDATA_AIRFLOW_PORT),8080)
airflow: $(STAMP)
	$(PY) -m paydata.stack airflow up --port $(AIRFLOW_PORT)

airflow-down: $(STAMP)
	$(PY) -m paydata.stack airflow down

airflow-status: $(STAMP)
	$(PY) -m paydata.stack airflow status
