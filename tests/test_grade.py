"""Grading a class with nbgrader (tools/grade.py, tools/hidden_checks.py).

The fast tests run the hidden re-checks in this process on the lecture's own answers and on typical mistakes.
The class test builds seven learners' copies of notebook 01 from the course's own notebooks, grades them with
tools/grade.py exactly as `make grade` does, and reads grades.csv and the feedback.
"""
import csv
import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

import build_notebooks as bn
import grade
import hidden_checks

ROOT = bn.ROOT
NAME = "01_atomic_backprop"
SIZES = dict(batch_size=32, n_embd=10, n_hidden=64, block_size=3)


# ---------------------------------------------------------------------------------------------- the re-checks alone

@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A grading folder holding the teacher's files, as nbgrader lays it out."""
    folder = tmp_path_factory.mktemp("teacher")
    for f, path in grade.TEACHER_FILES.items():
        shutil.copyfile(path, folder / f)
    return folder


def solved_namespace(**replace) -> dict:
    """A kernel namespace with the lecture's answers to notebook 01 (one of them replaced by `replace`)."""
    ns = {"torch": torch, "F": F, **SIZES}
    for name in hidden_checks.LECTURE_STEPS:
        source = replace.get(name) or bn.render(bn.definition("lecture", name), "solved")
        exec(source, ns)
    return ns


def recheck(teacher, ns, name, wanted=()):
    hidden_checks.recheck(NAME, {name: list(wanted)}, ns, seed=grade.DEFAULTS["seed"], sizes=SIZES, folder=teacher)


def test_every_step_of_lecture_py_has_a_recheck():
    steps = [n for n in re.findall(r"^def (backward_\w+)", (ROOT / "course" / "lecture.py").read_text(), re.M)]
    assert sorted(steps) == sorted(hidden_checks.LECTURE_STEPS)


def test_the_lectures_answers_pass_every_recheck(teacher, capsys):
    ns = solved_namespace()
    for name in hidden_checks.LECTURE_STEPS:
        recheck(teacher, ns, name)
    assert capsys.readouterr().out.count("correct") == len(hidden_checks.LECTURE_STEPS)


def mistake(name: str, old: str, new: str) -> dict:
    source = bn.render(bn.definition("lecture", name), "solved")
    assert old in source
    return {name: source.replace(old, new)}


@pytest.mark.parametrize("name, old, new, expected", [
    ("backward_bn_mean", "-dbndiff.sum(0, keepdim=True)", "-dbndiff.sum(0)", "keepdim=True"),
    ("backward_layer1", "db1 = dhprebn.sum(0)", "db1 = torch.zeros_like(dhprebn[0])", "on a random upstream"),
    ("backward_tanh", "(1.0 - h**2) * dh", "fw_notebook.hpreact.grad", "this is autograd's own fw_notebook.hpreact.grad"),
    ("backward_tanh", "(1.0 - h**2) * dh", "fw_notebook.hpreact.grad.float().clone()",
     "a copy of) what is autograd's own fw_notebook.hpreact.grad"),
    ("backward_probs", "dlogprobs / probs", "1 / 0", "raised ZeroDivisionError"),
    ("backward_counts", "return dcounts_sum, dcounts", "return dcounts", "returned a Tensor, expected 2"),
    ("backward_logprobs", "return dlogprobs", "return ...", "not implemented yet"),
])
def test_a_wrong_answer_fails_with_the_checkers_diagnosis(teacher, name, old, new, expected):
    ns = solved_namespace(**mistake(name, old, new))
    if "fw_notebook" in new:  # the notebook's own forward pass, after loss.backward()
        ns["fw_notebook"] = hidden_checks.fresh_forward(hidden_checks.teacher(teacher), 7, SIZES)
    with pytest.raises(hidden_checks.RecheckFailed, match=re.escape(expected)):
        recheck(teacher, ns, name)


def solution_namespace(name: str, **replace) -> dict:
    """A kernel namespace holding a notebook's answer cells as the solution fills them in (`replace`: some
    answers, by grade_id, as (old, new) text replacements)."""
    nb = bn.grading_source(name)
    ns = {"torch": torch, "F": F, **bn.sizes(nb)}
    ns.update(n=ns["batch_size"], vocab_size=27)
    for c in nb.cells:
        meta = grade.nbgrader_meta(c)
        if meta.get("solution"):
            source = bn.render(c.source, "solved")
            if meta["grade_id"] in replace:
                old, new = replace[meta["grade_id"]]
                assert old in source
                source = source.replace(old, new)
            exec(source, ns)
    return ns


def recheck_cells(teacher, name: str, ns: dict) -> list[str]:
    """Every hidden re-check of a notebook's check cells, run on `ns`: the failures' messages."""
    failures = []
    nb = bn.grading_source(name)
    for c in nb.cells:
        if grade.nbgrader_meta(c).get("grade"):
            try:
                hidden_checks.recheck(name, grade.checked_names(name, c.source), ns, seed=grade.DEFAULTS["seed"],
                                      sizes=bn.sizes(nb), folder=teacher)
            except hidden_checks.RecheckFailed as e:
                failures.append(str(e))
    return failures


@pytest.mark.parametrize("name", bn.names())
def test_every_notebooks_solution_passes_its_hidden_rechecks(teacher, name):
    grade.grading_notebook(name)  # raises if a check cell has no re-check
    assert recheck_cells(teacher, name, solution_namespace(name)) == []


@pytest.mark.parametrize("name, gid, old, new, expected", [
    ("02_fused_cross_entropy", "answer_CrossEntropy", "cross_entropy_backward(logits, Yb) * dloss",
     "cross_entropy_backward(logits, Yb)", "CrossEntropy -> dlogits, with 0.7 flowing into the loss"),
    ("02_fused_cross_entropy", "answer_cross_entropy_backward", "dlogits /= n", "dlogits /= 32", "on 7 random rows"),
    ("03_fused_batchnorm", "answer_batchnorm_backward", "n / (n - 1)", "1", "batchnorm_backward -> dhprebn"),
    ("03_fused_batchnorm", "answer_layernorm_backward", "dgain = (dout * xhat).sum(0)",
     "dgain = (dout * xhat).sum(0, keepdim=True)", "layernorm_backward -> dgain"),
    ("04_full_training", "answer_backward", "dbnbias = dhpreact.sum(0, keepdim=True)", "dbnbias = dhpreact.sum(0)",
     "backward -> dbnbias"),
])
def test_wrong_answers_in_notebooks_02_to_04_fail(teacher, name, gid, old, new, expected):
    failures = recheck_cells(teacher, name, solution_namespace(name, **{gid: (old, new)}))
    assert failures and expected in failures[0], failures  # (and in every check that uses that answer)


def test_notebook_04_trains_briefly_when_graded():
    cells = [c.source for c in grade.grading_notebook("04_full_training", train_steps=2_000).cells
             if "train_steps" in grade.tags(c)]
    assert len(cells) == 1 and re.match(r"max_steps = 2_000\b", cells[0])


def test_a_float32_constant_inside_a_step_is_not_a_mistake(teacher):
    ns = solved_namespace(**mistake("backward_logprobs", "torch.zeros_like(logprobs)",
                                    "torch.zeros(logprobs.shape, dtype=torch.float32)"))
    recheck(teacher, ns, "backward_logprobs")


def test_redefining_the_checker_changes_nothing(teacher):
    import utils
    ns = solved_namespace(**mistake("backward_probs", "dlogprobs / probs", "dlogprobs * probs"))
    saved = utils.cmp
    utils.cmp = lambda *a, **k: True
    try:
        with pytest.raises(hidden_checks.RecheckFailed):
            recheck(teacher, ns, "backward_probs")
    finally:
        utils.cmp = saved


def test_a_changed_teacher_file_is_refused(tmp_path):
    (tmp_path / "utils.py").write_text("def cmp(*a, **k):\n    return True\n")
    with pytest.raises(hidden_checks.RecheckFailed, match="was changed"):
        hidden_checks.load(tmp_path / "utils.py", grade.sha256(ROOT / "utils.py"))


# ---------------------------------------------------------------------------------------------- the grading source

def test_grading_source_has_a_hidden_recheck_in_every_check_cell():
    nb = grade.grading_notebook(NAME)
    checks = [c for c in nb.cells if grade.nbgrader_meta(c).get("grade")]
    assert checks and all(c.source.count(bn.BEGIN_HIDDEN) == 2 and "recheck" in c.source for c in checks)
    assert sum(grade.nbgrader_meta(c)["points"] for c in checks) >= 26


def test_learner_notebook_carries_the_grading_sources_metadata():
    """nbgrader matches cells by grade_id: answer, check and locked cells must agree with the grading source."""
    def ids(nb):
        return {m["grade_id"]: (m["grade"], m["solution"], m["locked"], m.get("points"))
                for c in nb.cells if (m := grade.nbgrader_meta(c))}
    for name in bn.names():
        source = bn.grading_source(name)
        source.cells = [c for c in source.cells if "solution" not in grade.tags(c)]
        assert ids(nbformat.read(bn.paths(name)["learner"], as_version=4)) == ids(source), name


def test_make_grade_runs_the_grader_and_make_lab_installs_no_teacher_tools():
    if shutil.which("make") is None:
        pytest.skip("needs make")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")}
    dry = lambda *args: subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, env=env, capture_output=True,
                                       text=True, timeout=60).stdout  # -n: print the commands, run nothing
    assert 'tools/grade.py "some/class"' in dry("grade", "SUBMISSIONS=some/class")
    assert "requirements-teacher.txt" in dry("grade", "SUBMISSIONS=x")
    assert "requirements-teacher.txt" not in dry("lab")


# ---------------------------------------------------------------------------------------------- a class, graded

def learner_copy(fill: bool = True, name: str = NAME, **replace) -> nbformat.NotebookNode:
    """A notebook as a learner hands it in: the exercise version with its answer cells filled from the solution
    (fill=True) or left as they are; `replace` swaps an answer cell's source: grade_id=f(mine, solved)."""
    nb = bn.versions(name)["learner"]
    solved = {gid: bn.render(c.source, "solved") for c in bn.grading_source(name).cells
              if (gid := grade.nbgrader_meta(c).get("grade_id"))}
    for c in nb.cells:
        gid = grade.nbgrader_meta(c).get("grade_id")
        if gid in replace:
            c.source = replace[gid](c.source, solved[gid])
        elif fill and grade.nbgrader_meta(c).get("solution"):
            c.source = solved[gid]
    return nb


def cell(nb, gid):
    return next(c for c in nb.cells if grade.nbgrader_meta(c).get("grade_id") == gid)


def build_class(folder: Path) -> None:
    def hand_in(learner, nb):
        (folder / learner).mkdir(parents=True)
        nbformat.write(nb, folder / learner / f"{NAME}.ipynb")

    hand_in("ada_full", learner_copy())
    untouched = learner_copy(fill=False)
    for c in untouched.cells:  # printed verdicts edited by hand: nbgrader reruns everything
        if "check" in grade.tags(c):
            c.outputs = [nbformat.v4.new_output("stream", text="logprobs | exact: True | approximate: True\n")]
    hand_in("ben_untouched", untouched)
    hand_in("cy_no_keepdim", learner_copy(answer_backward_bn_mean=lambda mine, solved: solved.replace(
        "-dbndiff.sum(0, keepdim=True)", "-dbndiff.sum(0)")))
    hacked = learner_copy(fill=False, answer_backward_logprobs=lambda mine, solved: mine + (
        "\nutils.cmp = lambda *a, **k: True   # every check passes now?"))
    cell(hacked, "check_probs").source = 'print("probs | exact: True | approximate: True")'  # a check edited
    hand_in("dee_cmp_hacked", hacked)
    hand_in("eve_endless_loop", learner_copy(fill=False, answer_backward_logprobs=lambda mine, solved: mine.replace(
        "    return dlogprobs", "    while True:   # waits for something that never happens\n        pass\n"
        "    return dlogprobs")))
    handed = learner_copy(answer_backward_tanh=lambda mine, solved: re.sub(
        r"dhpreact = .*", "dhpreact = fw.hpreact.grad.clone()   # autograd's answer, copied", solved, count=1))
    handed.cells.remove(cell(handed, "check_probs"))  # a check cell deleted: put back, and run
    hand_in("fay_autograd_grad", handed)
    stripped = learner_copy()
    for c in stripped.cells:
        c.metadata.pop("nbgrader", None)
    hand_in("gus_metadata_lost", stripped)


def test_grade_a_class(tmp_path):
    build_class(tmp_path)
    points = {gid: m["points"] for gid, m in grade.graded_ids(grade.grading_notebook(NAME)).items() if m.get("grade")}
    full = sum(points.values())
    start = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "grade.py"), str(tmp_path), "--cell-timeout", "10"],
                          capture_output=True, text=True, timeout=900)
    print(proc.stdout, proc.stderr, f"graded in {time.time() - start:.0f} s", sep="\n")
    assert proc.returncode == 0
    with open(tmp_path / "grades.csv") as f:
        rows = {r["learner"]: r for r in csv.DictReader(f)}

    def feedback(learner):
        text = (tmp_path / "feedback" / learner / f"{NAME}.html").read_text()
        return html.unescape(re.sub(r"<[^>]+>", "", text))

    assert set(rows) == {"ada_full", "ben_untouched", "cy_no_keepdim", "dee_cmp_hacked", "eve_endless_loop",
                         "fay_autograd_grad", "gus_metadata_lost"}
    assert all(r["notebook"] == NAME and r["max_score"] == f"{full:g}" for r in rows.values())
    score = {k: r["score"] for k, r in rows.items()}
    assert score["ada_full"] == f"{full:g}" and rows["ada_full"]["status"] == "graded"
    assert score["ben_untouched"] == "0"
    assert score["cy_no_keepdim"] == f"{full - points['check_bnmeani']:g}"
    assert rows["cy_no_keepdim"]["failed_checks"] == "check_bnmeani"
    assert score["dee_cmp_hacked"] == "0"
    assert score["eve_endless_loop"] == "0" and rows["eve_endless_loop"]["status"] == "graded"
    assert score["fay_autograd_grad"] == f"{full - points['check_hpreact']:g}"
    assert rows["fay_autograd_grad"]["failed_checks"] == "check_hpreact"
    assert "autograd's own fw.hpreact.grad" in feedback("fay_autograd_grad")
    assert "restored" in rows["fay_autograd_grad"]["status"] and "check_probs" in rows["fay_autograd_grad"]["details"]
    assert score["gus_metadata_lost"] == "" and "metadata lost" in rows["gus_metadata_lost"]["status"]
    assert "gus_metadata_lost/01_atomic_backprop: not graded: cell metadata lost" in proc.stdout

    cy = feedback("cy_no_keepdim")
    failure = cy[cy.index("RecheckFailed"):][:600]
    assert "backward_bn_mean -> dbnmeani" in failure and "keepdim=True" in failure
    assert "CellTimeoutError" in feedback("eve_endless_loop")
    assert "not graded" in feedback("gus_metadata_lost")
