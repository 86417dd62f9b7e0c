# Two commands a user needs: `make test` and `make demo`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Leave empty where pip already finds a CPU build of torch (as on this project's machines);
# elsewhere on Linux set TORCH_INDEX=https://download.pytorch.org/whl/cpu to avoid a CUDA download.
TORCH_INDEX ?=

.PHONY: venv test demo bench horovod clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: venv
	$(PY) -m pytest

demo: venv
	PYTHON=$(abspath $(PY)) bash scripts/demo.sh

bench: venv
	$(PY) bench/run_all.py $(if $(QUICK),--quick)

# Optional: Horovod for NEZHA pretraining with --horovod (about 4 minutes to compile).
horovod: venv
	PYTHON=$(abspath $(PY)) bash scripts/install_horovod.sh

clean:
	rm -rf output build *.egg-info .pytest_cache
