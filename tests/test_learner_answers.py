"""Answers no one tuned the course to, typed into the exercise notebooks (tests/learner_answers.py): the lecture's own
code cut into steps, other ways people write them, and cells broken the ways cells break. Every right answer must be
judged right, every broken cell must cost its own check only, and no cell may raise an error the answer did not cause.
"""
import re

import pytest
from nbclient import NotebookClient

import build_notebooks as bn
from learner_answers import BROKEN, FUNCTIONS, FUSED, LECTURE, TRAINING, VARIANTS

LINE = re.compile(r"^(\S+)\s+\| exact: \w+\s*\| approximate: (\w+)", re.M)


def answer_cell(nb, step: str) -> int:
    """The cell a learner fills for `step`: the one that defines it (nbgrader's answer cell)."""
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (
        c.metadata.get("nbgrader", {}).get("grade_id") == f"answer_{step}" or f"def {step}(" in c.source))


def checks_after(nb, i: int) -> int:
    return next(j for j in range(i + 1, len(nb.cells)) if "check" in nb.cells[j].metadata.get("tags", []))


def text(cell) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", []))


def errors(nb) -> dict[int, str]:
    return {i: f"{o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
            if o.get("output_type") == "error"}


def typed(name: str, answers: dict[str, str]):
    """The exercise notebook with `answers` typed into their cells, executed top to bottom like a learner's run
    (a cell that raises does not stop the run). Returns the notebook and the answer cells' indices by step."""
    nb = bn.versions(name)["learner"]
    cells = {step: answer_cell(nb, step) for step in answers}
    for step, source in answers.items():
        nb.cells[cells[step]].source = source.strip("\n")
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(bn.LEARNER)}}).execute()
    return nb, cells


def verdicts(nb, cell: int) -> dict[str, bool]:
    return {m[1]: m[2] == "True" for m in LINE.finditer(text(nb.cells[checks_after(nb, cell)]))}


@pytest.fixture(scope="module", params=["lecture", "variants"])
def right(request):
    return typed("01_atomic_backprop", LECTURE if request.param == "lecture" else VARIANTS)


@pytest.fixture(scope="module")
def broken():
    answers = dict(LECTURE)
    answers.update({step: source for step, source in BROKEN.values()})
    return typed("01_atomic_backprop", answers)


def test_right_answers_in_the_lectures_style_are_judged_right_everywhere(right):
    nb, cells = right
    assert errors(nb) == {}
    for step, i in cells.items():
        v = verdicts(nb, i)
        assert v and all(v.values()), (step, text(nb.cells[checks_after(nb, i)]))
    out = "".join(text(c) for c in nb.cells)
    assert "your chain agrees with autograd's gradients at every one of its 13 steps" in out
    assert "whole backward agrees with finite differences: True" in out
    assert re.search(r"^26/26 correct", out, re.M)
    assert "not implemented yet" not in out and "raised" not in out and "is fed autograd's" not in out


def test_a_broken_cell_costs_its_own_check_only(broken):
    nb, cells = broken
    broken_steps = {step for step, _ in BROKEN.values()}
    # errors only in the cells that were broken on purpose: the syntax error and the interrupted loop
    assert sorted(errors(nb)) == sorted([cells["backward_probs"], cells["backward_tanh"]]), errors(nb)
    assert "SyntaxError" in errors(nb)[cells["backward_probs"]]
    for step, i in cells.items():
        if step not in broken_steps:
            v = verdicts(nb, i)
            assert v and all(v.values()), (step, text(nb.cells[checks_after(nb, i)]))


@pytest.mark.parametrize("case", ["syntax error", "interrupted", "deleted"])
def test_a_step_that_was_never_defined_says_so(broken, case):
    nb, cells = broken
    step = BROKEN[case][0]
    out = text(nb.cells[checks_after(nb, cells[step])])
    assert f"{step} is not defined: its cell has not run, or stopped with an error" in " ".join(out.split())
    assert not any(verdicts(nb, cells[step]).values())
    assert "not implemented yet" not in out


def test_a_step_that_raises_names_the_error_and_the_line(broken):
    nb, cells = broken
    out = " ".join(text(nb.cells[checks_after(nb, cells["backward_logits"])]).split())
    # the two outputs computed before the line that raised are judged on their own merits
    assert verdicts(nb, cells["backward_logits"]) == {"norm_logits": True, "logit_maxes": True, "logits": False}
    assert ("backward_logits raised NameError at `dlogits += F.one_hot(logits.max(1).indices, "
            "num_classes=logits.shape[1]) * dlogit_max`") in out, out
    assert "`dlogit_max` is neither a tensor of the forward pass nor an argument of backward_logits" in out
    assert "did you mean `dlogit_maxes`?" in out and "not implemented yet" not in out


def test_an_aliased_gradient_is_named_by_the_next_check(broken):
    nb, cells = broken
    out = " ".join(text(nb.cells[checks_after(nb, cells["backward_bn_mean"])]).split())
    assert verdicts(nb, cells["backward_bn_mean"]) == {"bnmeani": True, "hprebn": True}
    assert "warning: dbndiff, which its check judged above, was changed in place since" in out, out
    assert "dhprebn = dbndiff.clone()" in out


def test_a_real_bug_beside_right_lines_is_diagnosed_alone(broken):
    nb, cells = broken
    out = " ".join(text(nb.cells[checks_after(nb, cells["backward_bn_affine"])]).split())
    assert verdicts(nb, cells["backward_bn_affine"]) == {"bngain": False, "bnbias": True, "bnraw": True}
    assert "they differ only by a size-1 dimension" in out and "sum with keepdim=True" in out


def test_the_chain_names_the_first_missing_step_and_still_runs(broken):
    nb, _ = broken
    out = " ".join("".join(text(c) for c in nb.cells).split())
    assert "your chain departs first at backward_probs: dprobs is missing: its step did not run" in out
    assert "stood in where yours were missing, so the steps below them still ran" in out


def test_a_fused_formula_reading_forward_tensors_and_a_right_function_are_judged_right():
    nb, cells = typed("02_fused_cross_entropy", {"cross_entropy_backward": FUSED["cross_entropy_backward from probs"],
                                                 "CrossEntropy": FUNCTIONS["CrossEntropy"]})
    assert errors(nb) == {}
    for step in cells:
        v = verdicts(nb, cells[step])
        assert v and all(v.values()), text(nb.cells[checks_after(nb, cells[step])])
    assert "gradcheck passed: CrossEntropy in 0.5 * loss" in text(nb.cells[checks_after(nb, cells["CrossEntropy"])])


def test_a_function_whose_backward_returns_an_unsummed_dgain_fails_its_check():
    nb, cells = typed("03_fused_batchnorm", {"batchnorm_backward": FUSED["batchnorm_backward"],
                                             "BatchNorm": FUNCTIONS["BatchNorm (n, D) dgain"]})
    assert errors(nb) == {}
    assert verdicts(nb, cells["batchnorm_backward"]) == {"hprebn": True}
    out = " ".join(text(nb.cells[checks_after(nb, cells["BatchNorm"])]).split())
    assert verdicts(nb, cells["BatchNorm"]) == {"BatchNorm.x": True, "BatchNorm.gain": False, "BatchNorm.bias": True}
    assert ("BatchNorm.gain" in out and "this tensor was broadcast (replicated) in the forward pass" in out
            and "sum over dim 0 with keepdim=True (summed that way, yours would be right)" in out), out
    # while gradcheck, through autograd, passes it: the fused formula reads the global n, bound to 8 there
    assert "gradcheck passed: BatchNorm.backward agrees with finite differences" in out, out


def test_a_whole_backward_reading_forward_tensors_trains():
    nb = bn.versions("04_full_training")["learner"]
    steps = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "max_steps = 200_000" in c.source)
    nb.cells[steps].source = nb.cells[steps].source.replace("max_steps = 200_000", "max_steps = 300")
    nb.cells[answer_cell(nb, "backward")].source = TRAINING.strip("\n")
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(bn.LEARNER)}}).execute()
    assert errors(nb) == {}
    out = "".join(text(c) for c in nb.cells)
    assert "backward() matches autograd on every parameter at every step checked: True" in out, out
    assert "Training skipped" not in out


def test_autograds_own_gradient_cannot_be_copied(broken):
    nb, cells = broken
    out = " ".join(text(nb.cells[checks_after(nb, cells["backward_counts_sum_inv"])]).split())
    assert verdicts(nb, cells["backward_counts_sum_inv"]) == {"counts_sum_inv": False}
    assert "backward_counts_sum_inv raised AttributeError at `dcounts_sum_inv = counts_sum_inv.grad.clone()`" in out
    assert "`.grad` is autograd's answer, which is not there to copy" in out
