PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install test bench

# torch and tensorflow are pinned: an unpinned torch pulls gigabytes of CUDA wheels.
install:
	$(PIP) install --quiet torch==2.13.0 tensorflow-cpu==2.21.0
	$(PIP) install --quiet -e ".[torch,tf,serve,train,test]"
	@# The web app's browser tests drive Debian's Chromium (Playwright's own browser download fails offline).
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test:
	$(PYTHON) -m pytest -q tests

bench:
	$(PYTHON) bench/run_all.py
