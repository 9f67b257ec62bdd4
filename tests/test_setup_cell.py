"""A notebook opened alone (as in Colab) downloads its own versions of utils.py and names.txt, verifies them,
says when the course has a newer version, and stops with a plain message if it can't get them.

The set-up cell is tools/setup_cell.py as the build fills it in (bn.setup_cell_source); tests/test_notebooks.py
checks that every stored notebook carries exactly that cell.
"""
import contextlib
import functools
import http.server
import re
import shutil
import threading

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

import build_notebooks as bn
import facts
import utils

OTHER_SIZES = dict(batch_size=17, n_hidden=40)


@contextlib.contextmanager
def serve(directory):
    """An HTTP server on 127.0.0.1 (a free port), serving `directory` from a thread, quietly."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_url() -> str:
    """The URL of a port nobody listens on."""
    with serve(".") as url:
        pass
    return url


def run_alone(nb, folder, base_url):
    """Run the notebook alone in `folder` (nothing else there), top to bottom; (notebook, error or None)."""
    folder.mkdir(exist_ok=True)
    try:
        bn.execute(nb, folder, extra_env={"BACKPROP_NINJA_BASE_URL": base_url})
        return nb, None
    except CellExecutionError as e:
        return nb, e


def setup_notebook(checksums):
    """A notebook of the set-up cell (as the build writes it) and one cell after it, which needs utils."""
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(bn.setup_cell_source(checksums)),
                                           nbformat.v4.new_code_cell("print('after the set-up:', utils.vocab_size)")])


def said(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)


def ran_after_setup(nb) -> bool:
    return any(c.execution_count is not None for c in nb.cells[1:] if c.cell_type == "code")


def fake_course(folder):
    """A copy of the course's verified files, published as the build publishes them (checksums, versions/)."""
    folder.mkdir()
    for f in bn.VERIFIED_FILES:
        shutil.copy(bn.ROOT / f, folder / f)
    return bn.publish(folder)


def test_an_old_notebook_gets_its_own_version_and_hears_of_the_new_one(tmp_path):
    """Build, change utils.py, build again: the old notebook still starts, with its own utils.py, and says a
    newer version exists; the new notebook gets the new utils.py and says nothing of the kind."""
    course = tmp_path / "course"
    old = fake_course(course)
    old_notebook = setup_notebook(bn.read_checksums(course))
    (course / "utils.py").write_text((course / "utils.py").read_text() + "\nNEWER = True  # the course moved on\n")
    new = bn.publish(course)
    assert new["utils.py"] != old["utils.py"] and new["names.txt"] == old["names.txt"]
    new_notebook = setup_notebook(bn.read_checksums(course))
    # Run All once more, in the same kernel: the set-up cell finds its versions already there
    new_notebook.cells.append(nbformat.v4.new_code_cell(new_notebook.cells[0].source))

    with serve(course) as url:
        nb, err = run_alone(old_notebook, tmp_path / "old", url)
        assert err is None, err
        out = said(nb.cells[0])
        assert f"downloaded from {url} and verified" in out
        assert f"A newer version of this course exists: {bn.COURSE_URL}" in out
        assert (tmp_path / "old" / "utils.py").read_bytes() == (bn.ROOT / "utils.py").read_bytes()
        assert f"after the set-up: {utils.vocab_size}" in said(nb.cells[1])

        nb, err = run_alone(new_notebook, tmp_path / "new", url)
        assert err is None, err
        assert "newer version" not in said(nb.cells[0])
        assert (tmp_path / "new" / "utils.py").read_text().endswith("NEWER = True  # the course moved on\n")
        assert "versions are here already (verified)" in said(nb.cells[2]), said(nb.cells[2])

    (course / "checksums.sha256").unlink()  # nothing to compare with (like no network): the set-up says nothing
    with serve(course) as url:
        nb, err = run_alone(old_notebook, tmp_path / "old, no news", url)
    assert err is None and "newer" not in said(nb.cells[0]) and "downloaded" in said(nb.cells[0]), err


@pytest.mark.parametrize("tampered", ["names.txt", "utils.py"])
def test_tampered_file_stops_the_notebook(tampered, tmp_path):
    digests = fake_course(tmp_path / "served")
    with open(bn.version_path(tampered, digests[tampered], tmp_path / "served"), "a") as fh:
        fh.write("\nimport os  # tampered\n")
    with serve(tmp_path / "served") as url:
        nb, err = run_alone(setup_notebook(digests), tmp_path / "alone", url)
    assert err is not None and "does not match its sha256 checksum" in str(err) and tampered in str(err)
    assert not ran_after_setup(nb), "cells after the set-up cell ran"
    assert not (tmp_path / "alone" / tampered).exists(), "the unverified file was saved"


def test_no_server_gives_the_network_message(tmp_path):
    nb, err = run_alone(setup_notebook(bn.sha256_of_files()), tmp_path / "alone", free_url())
    assert err is not None and "could not download utils.py" in str(err) and "internet connection" in str(err)
    assert not ran_after_setup(nb)


@pytest.mark.parametrize("name", facts.NOTEBOOKS)
def test_solution_runs_alone_with_other_sizes(name, tmp_path):
    """The stored solution, copied alone into an empty folder, against the repository served on 127.0.0.1, with
    another batch and hidden size, and notebook 04's training shortened: it downloads and verifies the files, every
    check passes, and the sizes took effect (no size is hard-coded). One run of each notebook checks all three."""
    nb = nbformat.read(bn.paths(name)["solution"], as_version=4)
    sizes = next(i for i, c in enumerate(nb.cells) if "sizes" in c.metadata.get("tags", []))
    nb.cells.insert(sizes + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v}" for k, v in OTHER_SIZES.items())))
    if any("train_steps" in c.metadata.get("tags", []) for c in nb.cells):
        bn.shorten_training(nb)
    with serve(bn.ROOT) as url:
        nb, err = run_alone(nb, tmp_path / "alone", url)
    assert err is None, err
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert f"downloaded from {url} and verified" in said(setup), said(setup)
    for f in bn.VERIFIED_FILES:
        assert (tmp_path / "alone" / f).read_bytes() == (bn.ROOT / f).read_bytes()

    text = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for c in nb.cells
                     for o in c.get("outputs", []))
    boards = re.findall(r"^(\d+)/(\d+) correct", text, re.M)
    assert boards and all(r == t for r, t in boards), boards
    assert "approximate: False" not in text
    s = {**facts.sizes(name), **OTHER_SIZES}
    vocab, h = utils.vocab_size, s["n_hidden"]
    count = vocab * s["n_embd"] + s["n_embd"] * s["block_size"] * h + h + h * vocab + vocab + 2 * h
    assert f"({s['batch_size']}, {s['block_size']})" in text or f"{count} parameters" in text, (
        "the other sizes did not take effect")
