"""A notebook opened alone (as in Colab) downloads utils.py and names.txt, verifies them, and stops if it can't."""
import contextlib
import shutil
import socket
import subprocess
import sys
import time

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

import build_notebooks as bn

LEARNER = sorted(bn.LEARNER.glob("[0-9][0-9]_*.ipynb"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(directory):
    """`python -m http.server` on 127.0.0.1, serving `directory`."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def run_alone(notebook, tmp_path, base_url):
    """Copy the notebook alone into an empty folder and run it there, top to bottom."""
    work = tmp_path / "alone"
    work.mkdir()
    shutil.copy(notebook, work)
    nb = nbformat.read(work / notebook.name, as_version=4)
    for c in nb.cells:  # forget the stored run, so what ran here is what has an execution count
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    try:
        bn.execute(nb, work, extra_env={"BACKPROP_NINJA_BASE_URL": base_url})
        return nb, None, work
    except CellExecutionError as e:
        return nb, e, work


def executed_after_setup(nb) -> list:
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [c for c in code[1:] if c.execution_count is not None]


def test_every_learner_notebook_is_there():
    assert len(LEARNER) == 4


@pytest.mark.parametrize("notebook", LEARNER, ids=lambda p: p.stem)
def test_runs_alone_against_the_served_repository(notebook, tmp_path):
    with serve(bn.ROOT) as url:
        nb, err, work = run_alone(notebook, tmp_path, url)
    assert err is None, err
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert "downloaded from http://127.0.0.1" in setup.outputs[0]["text"] and "verified" in setup.outputs[0]["text"]
    assert (work / "utils.py").read_bytes() == (bn.ROOT / "utils.py").read_bytes()
    assert (work / "names.txt").read_bytes() == (bn.ROOT / "names.txt").read_bytes()


@pytest.mark.parametrize("tampered", ["names.txt", "utils.py"])
def test_tampered_file_stops_the_notebook(tampered, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    for f in bn.VERIFIED_FILES:
        shutil.copy(bn.ROOT / f, served / f)
    with open(served / tampered, "a") as fh:
        fh.write("\nimport os  # tampered\n")
    with serve(served) as url:
        nb, err, work = run_alone(LEARNER[0], tmp_path, url)
    assert err is not None and "does not match its sha256 checksum" in str(err) and tampered in str(err)
    assert executed_after_setup(nb) == [], "cells after the set-up cell ran"
    assert not (work / tampered).exists(), "the unverified file was saved"


def test_no_server_gives_the_network_message(tmp_path):
    nb, err, work = run_alone(LEARNER[0], tmp_path, f"http://127.0.0.1:{free_port()}")
    assert err is not None and "could not download utils.py" in str(err) and "internet connection" in str(err)
    assert executed_after_setup(nb) == []
