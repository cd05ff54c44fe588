# One command to set up and run the main job, one to set up and run the tests.
#   make quickstart   # venv + install + the offline quickstart sweep
#   make test         # venv + install + the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rnnlab-installed
RAY    := $(VENV)/.rnnlab-ray-installed

.PHONY: setup quickstart test
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
