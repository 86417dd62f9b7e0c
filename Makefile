# Two commands a user needs: `make test` and `make demo`. Both create the venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
TF_VERSION := 2.21.0

# The builds follow the machine (scripts/detect_device.sh): DEVICE=cuda where nvidia-smi reports a driver that
# runs TensorFlow's and PyTorch's CUDA builds, with the CUDA build of torch that driver takes (TORCH_CUDA: cu130
# from driver 580, else cu126); DEVICE=cpu elsewhere. `make DEVICE=cpu|cuda ...` overrides.
NVIDIA_SMI ?= nvidia-smi
DETECTED := $(shell NVIDIA_SMI='$(NVIDIA_SMI)' bash scripts/detect_device.sh)
DEVICE ?= $(firstword $(DETECTED))
TORCH_CUDA ?= $(or $(word 2,$(DETECTED)),cu126)
ifeq ($(filter cpu cuda,$(DEVICE)),)
$(error DEVICE must be cpu or cuda, got '$(DEVICE)')
endif
TF_PACKAGE_cpu := tensorflow-cpu==$(TF_VERSION)
TF_PACKAGE_cuda := tensorflow[and-cuda]==$(TF_VERSION)
# torch comes from PyTorch's index of the flavour: for cpu beside pip's own indexes (a local wheel of the CPU
# build serves, as on this project's machines), for cuda alone. TORCH_INDEX=URL: from that index instead.
TORCH_INDEX ?=
TORCH_SOURCE_cpu := --extra-index-url https://download.pytorch.org/whl/cpu
TORCH_SOURCE_cuda := --index-url https://download.pytorch.org/whl/$(TORCH_CUDA)
TORCH_SOURCE := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),$(TORCH_SOURCE_$(DEVICE)))

# The stamp records the flavour. Switching flavour removes the other's builds first (torch, both TensorFlow
# packages, the CUDA libraries, and Horovod, compiled against them: `make horovod` builds it again); within a
# flavour only the other TensorFlow package is ever removed, so that the venv never holds both.
STAMP := $(VENV)/.installed-$(DEVICE)
OTHER_STAMPS_cpu := $(VENV)/.installed-cuda
OTHER_STAMPS_cuda := $(VENV)/.installed $(VENV)/.installed-cpu
OTHER_TF_cpu := tensorflow
OTHER_TF_cuda := tensorflow[-_]cpu
SWITCH_REMOVES := torch|tensorflow|tensorflow[-_]cpu|horovod|nvidia-[^=@ ]+
REMOVE = $(if $(wildcard $(OTHER_STAMPS_$(DEVICE))),$(SWITCH_REMOVES),$(OTHER_TF_$(DEVICE)))

.PHONY: venv test demo bench horovod devices gpu-check clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip freeze | sed -n -E 's/^($(REMOVE)) ?(==| @).*/\1/p' | xargs -r $(PY) -m pip uninstall -y -q
	rm -f $(OTHER_STAMPS_$(DEVICE))
	$(PY) -m pip install -q torch==$(TORCH_VERSION) $(TORCH_SOURCE)
	$(PY) -m pip install -q "$(TF_PACKAGE_$(DEVICE))" -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m utils.devices --check $(DEVICE)
	touch $(STAMP)

test: venv
	$(PY) -m pytest

demo: venv
	PYTHON=$(abspath $(PY)) bash scripts/demo.sh

bench: venv
	$(PY) bench/run_all.py $(if $(QUICK),--quick)

# Optional: Horovod for NEZHA pretraining with --horovod (about 4 minutes to compile): NCCL on CUDA machines,
# MPI where an MPI library is installed, gloo otherwise.
horovod: venv
	PYTHON=$(abspath $(PY)) bash scripts/install_horovod.sh

# The devices TensorFlow and PyTorch see, and their builds.
devices: venv
	$(PY) -m utils.devices

# The GPU tests and benchmarks (scripts/gpu_check.sh); on a machine without a GPU it says so and succeeds.
gpu-check: $(if $(filter cuda,$(DEVICE)),venv)
	DEVICE=$(DEVICE) NVIDIA_SMI='$(NVIDIA_SMI)' PYTHON=$(abspath $(PY)) bash scripts/gpu_check.sh

clean:
	rm -rf output build *.egg-info .pytest_cache
