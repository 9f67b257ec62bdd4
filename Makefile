# Two commands set the course up on a fresh machine with Python 3.11:
#   make lab    create .venv if needed, install, start JupyterLab on notebooks/ (localhost, token auth on)
#   make test   create .venv if needed, install, run every test (unit tests + nbval on all 8 notebooks)
# Maintainers: make notebooks | make figures | make bench   (see README)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# jupyter refuses to start as root unless told; containers and CI machines often run as root
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test notebooks figures bench

$(VENV)/installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

lab: $(VENV)/installed
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --notebook-dir=notebooks $(ROOT_FLAG)

test: $(VENV)/installed
	env -u MPLBACKEND $(PY) -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -v

notebooks: $(VENV)/installed
	$(PY) tools/build_notebooks.py

figures: $(VENV)/installed
	$(PY) tools/make_figures.py

bench: $(VENV)/installed
	$(PY) tools/bench.py
