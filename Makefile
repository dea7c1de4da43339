# One command to set up and run the default pipeline, one to set up and run the tests.
#   make run     # venv + pinned deps, then `snakemake --profile profiles/local all`
#   make test    # venv + pinned deps, then the whole test suite (incl. Slurm if present)
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
ENVS := envs/data.yaml envs/workflow.yaml
TARGET ?= all
TEST_WORKERS ?= 2   # pytest-xdist workers for `make test` (CI has 2 cores)

.PHONY: setup run test lint clean
setup: $(VENV)/.installed $(VENV)/.native

$(VENV)/.installed: $(ENVS) envs/nodeps.txt pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip pyyaml==6.0.3
	$(PY) -m pip install -q torch==2.13.0
	$(PY) envs/pip_requirements.py $(ENVS) > $(VENV)/requirements.txt
	$(PY) -m pip install -q -r $(VENV)/requirements.txt
	$(PY) -m pip install -q --no-deps -r envs/nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# filmorph._native (the arms' C loops, setup.py) is rebuilt in place when its source changes
$(VENV)/.native: $(VENV)/.installed src/filmorph/_native.c
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: setup
	$(VENV)/bin/snakemake --profile profiles/local $(TARGET)

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

lint: setup
	$(VENV)/bin/ruff check src tests workflow_scripts envs tools
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf resources results logs benchmarks .snakemake
