# Two commands set the course up on a fresh machine whose python3 is 3.11, 3.12 or 3.13:
#   make lab    create .venv if needed, install, start JupyterLab on notebooks/ (localhost, token auth on)
#   make test   create .venv if needed, install, run every test (unit tests + nbval on all 8 notebooks)
# Maintainers: make notebooks | make notebook NB=03 | make figures | make bench   (see README)
# Teachers:    make grade SUBMISSIONS=path   (grades a class with nbgrader; see README)

PYTHON ?= python3
# the Pythons the course was tried on (README, Set-up); another one gets a plain message, not a failed install
PYTHONS := 3.11 3.12 3.13
VENV   := .venv
PY     := $(VENV)/bin/python
# make test runs on 2 workers (pytest-xdist); --dist loadfile keeps each notebook's cells, in order, on one worker;
# --no-loadscope-reorder hands out the files in conftest.py's order (the longest first), not by their test counts;
# OMP_NUM_THREADS=1: two workers, each with its kernels, on 2 cores; torch's threads on top only fight for them
# (measured: 03's solution beside 04's took 35 s with torch's threads, 15 s with one each)
# jupyter refuses to start as root unless told; containers and CI machines often run as root
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Optional extra package index for torch, passed to pip as --extra-index-url; on Linux without a GPU,
#   make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu
# installs the CPU-only build (a few hundred MB) instead of PyPI's CUDA build (several GB). It only acts when
# the install below runs (no .venv yet, or requirements.txt changed): an installed torch==2.13.0 already
# satisfies the pin, so pip would not swap its build; to switch, rm -rf .venv first. Unset: pip line unchanged.
TORCH_INDEX ?=
# The venv's own pip first: the one Python 3.11.7 bundles (23.2) took 100 and 123 s to install requirements.txt here,
# pip 26.3 76 and 109 s (the same files, alternated on one machine; it costs 4 s to install)
PIP_VERSION := 26.3
TORCH_INDEX_OPT := $(if $(TORCH_INDEX), --extra-index-url $(TORCH_INDEX))

.PHONY: lab test notebooks notebook figures bench grade export-course

$(VENV)/installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v in "$(PYTHONS)".split() else "$(PYTHON) is Python %s; the course needs Python $(PYTHONS): run make with PYTHON=python3.12, for example" % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt$(TORCH_INDEX_OPT)
	touch $@

# Teachers only (make grade; make test runs the grading test): nbgrader. make lab never installs it.
$(VENV)/teacher-installed: requirements-teacher.txt $(VENV)/installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-teacher.txt
	touch $@

lab: $(VENV)/installed
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --notebook-dir=notebooks $(ROOT_FLAG)

# nbval trains notebook 04's solution for 500 steps, not 200,000 (conftest.py); make notebooks stores the full run
test: $(VENV)/installed $(VENV)/teacher-installed
	env -u MPLBACKEND OMP_NUM_THREADS=1 $(PY) -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -v -n 2 --dist loadfile --no-loadscope-reorder --durations=15

notebooks: $(VENV)/installed
	$(PY) tools/build_notebooks.py

# One notebook (both versions) from its source: make notebook NB=03
notebook: $(if $(NB),$(VENV)/installed)
	@test -n "$(NB)" || { echo "usage: make notebook NB=03   (the first digits of course/NN_name.py)"; exit 2; }
	$(PY) tools/build_notebooks.py $(NB)

figures: $(VENV)/installed
	$(PY) tools/make_figures.py

# bench also records its output in course/bench_as_run.txt, which notebook 04 shows (make notebooks after it)
bench: $(VENV)/installed
	$(PY) tools/bench.py --record course/bench_as_run.txt

# Grade a class with nbgrader: make grade SUBMISSIONS=path, path/<learner>/<notebook>.ipynb (README, For teachers)
grade: $(VENV)/installed $(VENV)/teacher-installed
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/class"; exit 2; }
	$(PY) tools/grade.py "$(SUBMISSIONS)"

# A complete nbgrader course for JupyterHub: make export-course COURSE=path (README, For teachers)
export-course: $(VENV)/installed $(VENV)/teacher-installed
	@test -n "$(COURSE)" || { echo "usage: make export-course COURSE=path/to/course"; exit 2; }
	$(PY) tools/grade.py --export-source "$(COURSE)"
