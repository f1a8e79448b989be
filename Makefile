# Two commands on a fresh machine: `make reproduce` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
FMNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: env data browser reproduce estimate unlock record test test-slow clean

env: $(VENV)/.installed

# torch is installed first and pinned: the CPU wheel where a local one is offered, else PyPI's build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[workflow,test,slurm]"
	touch $@

# Offline machines: Fashion-MNIST from Debian's package. Online machines without it: the CLI
# downloads the official files and checks their pinned checksums.
data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist) \
		|| echo "apt-get failed: the official download will be used"; \
	fi

# Debian's headless Chromium, for the test that opens the report in a browser (`make test-slow`).
browser:
	@command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1 || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium-headless-shell)

# The workflow's default target on config/config.yaml, then the HTML report.
reproduce: env data
	$(VENV)/bin/snakemake --cores all
	$(VENV)/bin/snakemake --cores all --report results/report.html

# How long the default will take on this machine (a one-minute yardstick scaled by docs/runs/records.csv).
estimate: env data
	$(PY) benchmarks/estimate.py

# After an interrupted run: release Snakemake's lock (it asks for cores: the rules' threads are shares of them).
unlock: env
	$(VENV)/bin/snakemake --unlock --cores 1

# Results of record: the last default run's tables and figures, copied into docs/ for readers who do not run it
# (RECORD=docs/results/cifar10 for the CIFAR-10 default's).
RESULTS ?= results
RECORD ?= docs/results
record:
	@test -f $(RESULTS)/tables/claims.md || { echo "no $(RESULTS)/tables/claims.md: run 'make reproduce' first"; exit 1; }
	mkdir -p $(RECORD)
	for t in summary pareto claims noise cost; do cp $(RESULTS)/tables/$$t.md $(RECORD)/; done
	cp $(RESULTS)/figures/*.png $(RECORD)/

test: env
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

# The shortened paper config (every seed method on its paper's backbones, synthetic CIFAR-shaped data)
# and the smoke run's report opened in headless Chromium.
test-slow: env browser
	$(PY) -m pytest -q -p no:cacheprovider -m slow -s

clean:
	rm -rf $(VENV) .pytest_cache
