"""The set-up commands' pip line, read with `make -n` (a dry run: nothing is created or installed).

With no TORCH_INDEX the line is exactly the one the course always ran; `TORCH_INDEX=URL` (for example
https://download.pytorch.org/whl/cpu, torch's CPU-only build) adds `--extra-index-url URL`, for every target
that installs.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PIP = ".venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TARGETS = ["lab", "test", "notebooks", "figures", "bench"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def pip_lines(target, *make_args, **env_extra):
    # -B: print the install rule even where .venv/installed is up to date. A `make test TORCH_INDEX=...` that
    # runs this test exports its variables through MAKEFLAGS: drop them so each case sets its own.
    env = {k: v for k, v in os.environ.items()
           if k not in ("TORCH_INDEX", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")}
    env.update(env_extra)
    proc = subprocess.run(["make", "-n", "-B", target, *make_args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the line that installs requirements.txt (and torch with it); not e.g. requirements-teacher.txt's
    return [line for line in proc.stdout.splitlines() if " -m pip " in line and " -r requirements.txt" in line]


@pytest.mark.parametrize("target", TARGETS)
def test_default_pip_line_unchanged(target):
    assert pip_lines(target) == [DEFAULT_PIP]


@pytest.mark.parametrize("target", TARGETS)
def test_torch_index_adds_extra_index_url(target):
    expected = [f"{DEFAULT_PIP} --extra-index-url {CPU_INDEX}"]
    assert pip_lines(target, f"TORCH_INDEX={CPU_INDEX}") == expected
    assert pip_lines(target, TORCH_INDEX=CPU_INDEX) == expected  # from the environment too


def test_an_unsupported_python_gets_a_plain_message(tmp_path):
    """A python3 outside the tried versions stops before any venv exists, saying what to do (PYTHONS set here to
    a version nobody has, so the test runs on any Python)."""
    for f in ("Makefile", "requirements.txt"):
        shutil.copy(ROOT / f, tmp_path / f)
    proc = subprocess.run(["make", ".venv/installed", "PYTHONS=3.99"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "the course needs Python 3.99: run make with PYTHON=" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / ".venv").exists()


def test_one_notebook_is_one_command():
    proc = subprocess.run(["make", "-n", "notebook", "NB=03"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and ".venv/bin/python tools/build_notebooks.py 03" in proc.stdout, proc.stdout
    proc = subprocess.run(["make", "notebook"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: make notebook NB=03" in proc.stdout, proc.stdout + proc.stderr
