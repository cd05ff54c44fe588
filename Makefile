# One command to set up and run the main job, one to set up and run the tests.
#   make quickstart   # venv + install + the offline quickstart sweep
#   make test         # venv + install + the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rnnlab-installed
RAY    := $(VENV)/.rnnlab-ray-installed

.PHONY: setup quickstart test test-gpu
setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,dashboard]'
	touch $@

quickstart: setup
	$(VENV)/bin/rnnlab sweep studies/quickstart.yaml
	@echo "rnnlab is installed in $(VENV): run '. $(VENV)/bin/activate' to use it in this shell"

# The tests run a real Ray cluster: the ray extra, which the quickstart's install leaves out.
$(RAY): $(STAMP)
	$(PY) -m pip install -q -e '.[ray]'
	touch $@

test: setup $(RAY)
	$(PY) -m pytest -q

# On a machine with an NVIDIA GPU: the tests that need one (tests/test_gpu.py, skipped by
# `make test` where torch sees no GPU). PyPI's torch for Linux is a CUDA build.
test-gpu: setup
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
	'make test-gpu: torch ' + torch.__version__ + ' sees no CUDA GPU here (no NVIDIA driver, or a CPU build of torch in $(VENV))')"
	$(PY) -m pytest -q tests/test_gpu.py
