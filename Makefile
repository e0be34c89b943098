# drboot: the two commands a fresh Debian 12 machine (as root) needs are
#   make demo   - a full local DR drill on the lab (embedded default site)
#   make test   - the whole test suite, after installing and building what it needs
# Both do all their own set-up.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup venv testbed test unit lint demo clean-lab

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@python3 -m venv --help >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The test bed: apt packages, the lab's golden image and apt cache, and the real
# kube-apiserver / kube-controller-manager built from Debian source (cached).
testbed:
	bash bootstrap/lab/scripts/setup-lab.sh
	bash bootstrap/lab/scripts/build-kube.sh >/dev/null

setup: venv testbed

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check bootstrap tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: setup
	$(VENV)/bin/drboot demo

# Tear down the demo's lab (hosts, network, stand-ins) if a demo was interrupted.
clean-lab:
	-test -f /var/lib/drboot-lab/demo/site.yaml && $(VENV)/bin/drboot lab down /var/lib/drboot-lab/demo/site.yaml
