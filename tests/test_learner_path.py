"""The learner's path through every notebook: predict before the reveal, hints only after a check, one model
everywhere, and capstones whose gradcheck speaks plainly when a backward is wrong (issue 10).

Notebook 01's any-order and in-place situations are made in tests/test_learner_path_01.py.
"""
import re

import nbformat
import pytest

import build_notebooks as bn
import facts

NAMES = facts.NOTEBOOKS


def read(name: str, which: str):
    return nbformat.read(bn.paths(name)[which], as_version=4)


def outputs(cell) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", []))


def kind(cell) -> str:
    meta = cell.metadata.get("nbgrader", {})
    return "check" if meta.get("grade") else "answer" if meta.get("solution") else "other"


@pytest.mark.parametrize("name", NAMES)
def test_at_least_two_predictions_each_revealed(name):
    """A prediction is written into a variable in a cell to fill; a later cell says whether it was right."""
    learner = read(name, "learner")
    predictions = [m for c in learner.cells if c.cell_type == "code" and kind(c) == "answer"
                   for m in re.findall(r"^(predicted_\w+) = \.\.\.", c.source, re.M)]
    assert len(predictions) >= 2, predictions
    for p in predictions:
        reveal = [c for c in learner.cells if c.cell_type == "code" and kind(c) != "answer" and p in c.source]
        assert reveal, f"{name}: nothing reveals {p}"
        said = "".join(outputs(c) for c in reveal)  # unset: it says so (or that there is nothing to judge yet)
        assert "no prediction yet" in said or "Nothing to reveal yet" in said, f"{name}: {p} unset, yet: {said!r}"


@pytest.mark.parametrize("name", NAMES)
def test_hints_come_after_the_check(name):
    """Between a cell to fill and its check there is no hint: hints follow the check."""
    cells = read(name, "learner").cells
    for i, c in enumerate(cells):
        if c.cell_type == "code" and kind(c) == "answer":
            nxt = next((j for j in range(i + 1, len(cells)) if kind(cells[j]) in ("check", "answer")), len(cells))
            between = [x.source for x in cells[i + 1: nxt] if x.cell_type == "markdown"]
            assert not any("<summary>Hint" in s for s in between), f"{name}: a hint before the check of cell {i}"


def test_one_model_for_all_notebooks():
    """The same initialisation and batch everywhere: 01, 02 and 03 print the same loss at init."""
    losses = {name: re.findall(r"loss at init: (\d\.\d+)", "".join(outputs(c) for c in read(name, "solution").cells))
              for name in NAMES[:3]}
    assert all(losses.values()), losses
    assert len({v[0] for v in losses.values()}) == 1, losses
    assert 3.2 < float(losses[NAMES[0]][0]) < 3.4, losses


@pytest.mark.parametrize("name", NAMES[1:3])
def test_capstone_gradchecks_pass_in_the_solution(name):
    text = "".join(outputs(c) for c in read(name, "solution").cells)
    assert "gradcheck passed" in text and "gradcheck failed" not in text


def test_a_wrong_function_backward_fails_gradcheck_in_plain_words():
    """Notebook 03's BatchNorm Function with dgain forgetting xhat: gradcheck names input 1, no traceback."""
    nb = read("03_fused_batchnorm", "solution")
    cell = next(c for c in nb.cells if "class BatchNorm(torch.autograd.Function)" in c.source)
    right = "dgain = (dout * xhat).sum(0, keepdim=True)"
    assert right in cell.source
    cell.source = cell.source.replace(right, "dgain = dout.sum(0, keepdim=True)")
    bn.execute(nb, bn.SOLUTIONS)
    text = "".join(outputs(c) for c in nb.cells)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors and "Traceback" not in text
    assert "gradcheck failed: the gradient with respect to input 1 (of 3) is wrong: largest difference" in text
