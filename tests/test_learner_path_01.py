"""Exercise 01 as a learner works it: steps filled in any order, a forward tensor edited in place, a `db1` of the
wrong shape. One run of the real exercise notebook, changed the way a learner would change it, covers all three.

What is filled in, from the solution (course/lecture.py):
  * backward_bn_mean (4.10) and backward_embedding (4.13) only: both must be judged right on their own, fed
    autograd's upstream gradients, while every step left as `...` is judged not right;
  * backward_layer2 (4.6), with `fw.h.detach().mul_(2.0)` run just before its check: that check must name `h`;
    the forward-pass and backward cells are then run again, as the warning says, and the warning stops;
  * backward_view (4.12) raising an error: one printed line, and the check says not right;
  * backward_layer1 (4.11) returning `dhprebn.sum(0, keepdim=True)` for db1, shape (1, n_hidden): the checks must
    diagnose it, and nothing may raise, down to the scoreboard;
  * after section 5 has run on that half-filled chain, every other step from the solution, and section 5 again:
    now the chain must be named as departing first at backward_layer1, because of db1's shape.
"""
import re

import nbformat
import pytest

import build_notebooks as bn
import lecture

NAME = "01_atomic_backprop"
WRONG_DB1 = ("db1 = dhprebn.sum(0)", "db1 = dhprebn.sum(0, keepdim=True)")


def solved(step: str) -> str:
    """The solution's definition of one step, with no markers: what a learner who got it right has typed."""
    return bn.render(bn.definition("lecture", step), "solved")


def answer(nb, step: str) -> int:
    """The cell the learner fills for one step: nbgrader's answer cell `answer_<step>`, which defines the step."""
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (
        c.metadata.get("nbgrader", {}).get("grade_id") == f"answer_{step}" or c.source.startswith(f"def {step}(")))


def check_after(nb, i: int) -> int:
    """The first check cell after cell i."""
    return next(j for j in range(i + 1, len(nb.cells)) if "check" in nb.cells[j].metadata.get("tags", []))


def code_cell_with(nb, text: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source)


def output(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
        if o.get("output_type") == "error":
            out.append(f"ERROR {o.get('ename')}: {o.get('evalue')}")
    return "".join(out)


def verdicts(text: str) -> dict[str, bool]:
    return {m[1]: m[2] == "True" for m in re.finditer(r"^(\w+)\s+\| exact: \w+\s*\| approximate: (\w+)", text, re.M)}


def new_cell(source: str, mark: str):
    return nbformat.v4.new_code_cell(source, metadata={"test": mark})


@pytest.fixture(scope="module")
def run():
    """The modified exercise notebook, executed once: (the notebook, {mark: the output of the cell so marked})."""
    nb = bn.versions(NAME)["learner"]
    for step in ("backward_bn_mean", "backward_embedding", "backward_layer2"):
        nb.cells[answer(nb, step)].source = solved(step)
    nb.cells[answer(nb, "backward_view")].source = (  # a step that raises: one line, and `...` back
        "def backward_view(dembcat, emb):\n    return dembcat.view(emb.shape[0] + 1, -1)")
    layer1 = solved("backward_layer1")
    assert WRONG_DB1[0] in layer1
    nb.cells[answer(nb, "backward_layer1")].source = layer1.replace(*WRONG_DB1)

    for step in ("backward_bn_mean", "backward_embedding", "backward_layer1", "backward_logits", "backward_view"):
        nb.cells[check_after(nb, answer(nb, step))].metadata["test"] = step
    nb.cells[check_after(nb, check_after(nb, answer(nb, "backward_layer1")))].metadata["test"] = "b1 again"

    # h edited in place just before the layer-2 check; after it, the forward and backward cells run again
    forward_cell = nb.cells[code_cell_with(nb, "fw = forward(")]
    backward_cell = nb.cells[code_cell_with(nb, "fw.loss.backward()")]
    layer2_check = check_after(nb, answer(nb, "backward_layer2"))
    nb.cells[layer2_check].metadata["test"] = "layer2"
    nb.cells[layer2_check + 1: layer2_check + 1] = [new_cell(forward_cell.source, "forward again"),
                                                   new_cell(backward_cell.source, "backward again")]
    nb.cells.insert(layer2_check, new_cell("_ = fw.h.detach().mul_(2.0)   # a learner's in-place edit", "edit h"))
    nb.cells[check_after(nb, answer(nb, "backward_tanh"))].metadata["test"] = "tanh"

    # section 5 on the half-filled chain, then on the whole chain with only db1 wrong
    chain = code_cell_with(nb, "run_chain(your_steps")
    fd = code_cell_with(nb, "whole backward agrees")
    nb.cells[chain].metadata["test"], nb.cells[fd].metadata["test"] = "chain", "fd"
    rest = [s for s in lecture.OUTPUTS
            if s not in ("backward_bn_mean", "backward_embedding", "backward_layer2", "backward_layer1")]
    nb.cells[fd + 1: fd + 1] = [new_cell("\n\n\n".join(solved(s) for s in rest), "fill the rest"),
                                new_cell(nb.cells[code_cell_with(nb, "your_steps = [")].source, "chain list again"),
                                new_cell(nb.cells[chain].source, "chain again"),
                                new_cell(nb.cells[fd].source, "fd again")]
    nb.cells[code_cell_with(nb, "utils.scoreboard()")].metadata["test"] = "scoreboard"

    bn.execute(nb, bn.LEARNER)
    marked = {c.metadata["test"]: output(c) for c in nb.cells if "test" in c.metadata}
    return nb, marked


def test_no_cell_raises(run):
    nb, _ = run
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_a_step_filled_alone_is_judged_right_on_its_own(run):
    _, out = run
    assert verdicts(out["backward_bn_mean"]) == {"bnmeani": True, "hprebn": True}
    assert "backward_bn_mean is fed autograd's dbndiff (yours is still `...`)" in out["backward_bn_mean"]
    assert verdicts(out["backward_embedding"]) == {"C": True}
    # backward_view raises below, so its demb is missing: fed autograd's, and said so
    assert "backward_embedding is fed autograd's demb (yours is missing)" in out["backward_embedding"]
    # a step left as `...` is not right, even when fed autograd's upstream gradient
    assert verdicts(out["backward_logits"]) == {"norm_logits": False, "logit_maxes": False, "logits": False}
    assert "not implemented yet" in out["backward_logits"]
    # a right upstream gradient is the learner's own: backward_layer1 is fed the dhprebn of backward_bn_mean
    assert "is fed" not in out["backward_layer1"]


def test_a_step_that_raises_gets_its_error_and_line_as_the_verdict(run):
    _, out = run
    text = " ".join(out["backward_view"].split())
    assert "-> backward_view raised RuntimeError at `return dembcat.view(emb.shape[0] + 1, -1)`: " in text, text
    assert "Fix that line" in text and "not implemented" not in text
    assert verdicts(out["backward_view"]) == {"emb": False}
    assert "Traceback" not in out["backward_view"]


def test_an_in_place_edit_is_named_by_the_next_check(run):
    _, out = run
    assert "h was changed in place since the forward pass" in out["layer2"], out["layer2"]
    v = verdicts(out["layer2"])
    assert v == {"h": True, "W2": False, "b2": True}   # dW2 = h.T @ dlogits reads the doubled h
    assert "re-run the forward-pass" in out["layer2"].lower()
    assert "changed in place" not in out["tanh"]       # the forward and backward cells were run again


def test_a_db1_of_the_wrong_shape_is_diagnosed_and_breaks_nothing(run):
    _, out = run
    assert verdicts(out["backward_layer1"]) == {"embcat": True, "W1": True, "b1": False}
    assert "(1, 64)" in out["backward_layer1"] and "(64,)" in out["backward_layer1"]
    assert verdicts(out["b1 again"]) == {"b1": False}   # the check of db1 that can fail fails too
    # section 5 on the half-filled chain: the first step is still `...`; autograd's stand in for the missing
    # gradients, so the filled steps below still run, and db1's shape is already named
    assert "your chain departs first at backward_logprobs: dlogprobs is still `...`" in out["chain"]
    assert "stood in where yours were missing" in out["chain"]
    assert "b1      skipped: db1 has shape (1, 64), but b1 has shape (64,)" in out["fd"]
    assert "bngain  skipped: dbngain is still `...`" in out["fd"]
    # on the whole chain, the db1 of the wrong shape is named, and the finite-difference check skips only b1
    assert ("your chain departs first at backward_layer1: db1 has shape (1, 64), but b1 has shape (64,)"
            in out["chain again"]), out["chain again"]
    assert "b1      skipped: db1 has shape (1, 64), but b1 has shape (64,)" in out["fd again"]
    assert len(re.findall(r"relative error \S+  ok", out["fd again"])) == 6, out["fd again"]


def test_the_scoreboard_counts_what_the_learner_got_right(run):
    _, out = run
    right, total = map(int, re.search(r"^(\d+)/(\d+) correct", out["scoreboard"], re.M).groups())
    # bnmeani, hprebn, C, h, b2, embcat, W1: 7 of the 26
    assert (right, total) == (7, 26), out["scoreboard"]
