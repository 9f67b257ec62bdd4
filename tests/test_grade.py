"""Grading a class (tools/grade.py, tools/boxed_autograde.py, tools/hidden_checks.py, tools/box.py).

Fast tests: the re-checks' whole data path in this process (fresh inputs -> the collector the box runs -> plain
tensors -> the teacher's judge) on lecture-style answers and typical mistakes; what `scan` flags; the grading
source. The box itself: one notebook that tries everything a box must stop. The class: learners built from the
course's own notebook 01 (untouched, the lecture's code, three slips in one notebook, and an adversary that starts
from an untouched notebook), graded once with tools/grade.py for all the tests that read it.
"""
import csv
import html
import json
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

import box
import boxed_autograde as ba
import build_notebooks as bn
import grade
import hidden_checks
import learner_answers as la
import utils

ROOT = bn.ROOT
NAME = "01_atomic_backprop"
SEED = grade.DEFAULTS["seed"]
needs_box = pytest.mark.skipif(box.available() is not None, reason=f"no box here: {box.available()}")


# ---------------------------------------------------------------------------------------------- the re-checks' data path

def run_rechecks(notebook: str, answers: dict[str, str], tmp: Path, sizes=None, only: str = "") -> dict[str, list[str]]:
    """Every check cell's failures, with `answers` ({name: source}) defined in a namespace the way a kernel has
    them, the collector run on it in this process and its tensors judged, as BoxedExecute does across the box."""
    source = bn.grading_source(notebook)
    checks, _ = ba.checks_of(notebook, source)
    checks = {gid: c for gid, c in checks.items() if only in gid}
    sizes = sizes or bn.sizes(source)
    inputs, refs = hidden_checks.make_inputs(notebook, checks, SEED, sizes)
    (tmp / "inputs").mkdir(exist_ok=True)
    (tmp / "out" / "answers").mkdir(parents=True, exist_ok=True)
    ns = {"torch": torch, "F": F, "utils": utils, **sizes}
    for src in answers.values():
        exec(src, ns)
    exec(hidden_checks.COLLECTOR, ns)
    failures = {}
    for gid, trials in inputs.items():
        torch.save(trials, tmp / "inputs" / f"{gid}.pt")
        ns["_backprop_ninja_collect"](gid, str(tmp))
        got = torch.load(tmp / "out" / "answers" / f"{gid}.pt", weights_only=True)
        failures[gid] = hidden_checks.judge(refs[gid], got, sizes)
    return failures


def test_every_step_of_lecture_py_has_a_recheck():
    steps = re.findall(r"^def (backward_\w+)", (ROOT / "course" / "lecture.py").read_text(), re.M)
    assert sorted(steps) == sorted(hidden_checks.LECTURE_STEPS)


def test_lecture_style_answers_pass_every_recheck_on_fresh_inputs(tmp_path):
    """Issue 15 item 1: steps that read forward tensors by name (hpreact inside backward_tanh) are right in the
    re-check too, where those names are the FRESH run's tensors; and so are the variants."""
    for answers in (la.LECTURE, {**la.LECTURE, **la.VARIANTS}):
        failures = run_rechecks(NAME, answers, tmp_path)
        assert len(failures) == 15 and not any(failures.values()), failures


def test_other_sizes_bind_the_fresh_runs_names(tmp_path):
    failures = run_rechecks(NAME, la.LECTURE, tmp_path, sizes=dict(batch_size=17, n_embd=5, n_hidden=23, block_size=4))
    assert not any(failures.values()), failures


@pytest.mark.parametrize("step, old, new, expected", [
    ("backward_bn_mean", "(-dbndiff).sum(0, keepdim=True)", "(-dbndiff).sum(0)", "keepdim=True"),
    ("backward_layer1", "db1 = dhprebn.sum(0)", "db1 = torch.zeros_like(b1)", "on a random upstream"),
    ("backward_probs", "(1.0 / probs) * dlogprobs", "1 / 0", "raised ZeroDivisionError"),
    ("backward_counts", "return dcounts_sum, dcounts", "return dcounts", "should return 2 values"),
    ("backward_logprobs", "return dlogprobs", "return ...", "not implemented yet"),
    ("backward_logits", "* dlogit_maxes", "* dlogit_max", "neither a tensor of the forward pass"),
])
def test_a_wrong_answer_fails_its_own_check_with_the_checkers_diagnosis(tmp_path, step, old, new, expected):
    assert old in la.LECTURE[step]
    failures = run_rechecks(NAME, {**la.LECTURE, step: la.LECTURE[step].replace(old, new)}, tmp_path, only=step)
    failed = {gid: f for gid, f in failures.items() if f}
    assert failed, failures
    assert any(expected in line for f in failed.values() for line in f), failed


def test_a_missing_step_fails_its_check_only(tmp_path):
    answers = dict(la.LECTURE)
    del answers["backward_tanh"]
    failures = {gid: f for gid, f in run_rechecks(NAME, answers, tmp_path).items() if f}
    assert list(failures) == ["check_backward_tanh"] and "not defined" in failures["check_backward_tanh"][0]


def test_a_float32_constant_inside_a_step_is_not_a_mistake(tmp_path):
    step = la.LECTURE["backward_logprobs"].replace("torch.zeros_like(logprobs)",
                                                   "torch.zeros(logprobs.shape, dtype=torch.float32)")
    assert not run_rechecks(NAME, {**la.LECTURE, "backward_logprobs": step}, tmp_path, only="logprobs")["check_backward_logprobs"]


def test_autograd_is_unavailable_inside_the_recheck(tmp_path):
    step = ("def backward_tanh(dh, h):\n    x = hpreact.clone().requires_grad_()\n"
            "    return torch.autograd.grad(torch.tanh(x), x, dh)[0]\n")
    failures = run_rechecks(NAME, {**la.LECTURE, "backward_tanh": step}, tmp_path, only="tanh")["check_backward_tanh"]
    assert failures and "raised RuntimeError" in failures[0]


def test_an_n_by_D_dgain_from_a_functions_backward_fails(tmp_path):
    """Issue 15 item 5: what backward itself returns is judged; autograd would have summed it for us."""
    answers = {"batchnorm_backward": la.FUSED["batchnorm_backward"], "BatchNorm": la.FUNCTIONS["BatchNorm (n, D) dgain"]}
    failures = run_rechecks("03_fused_batchnorm", answers, tmp_path, only="BatchNorm")
    bn_fail = [line for gid, f in failures.items() for line in f if "BatchNorm ->" in line]
    assert any("BatchNorm.gain" in line and "(32, 64)" in line.replace(" ", "") or "shape" in line
               for line in bn_fail), failures


def test_scan_flags_autograd_in_a_step_and_through_a_helper():
    cells = [("answer_a", "def helper(x):\n    return torch.autograd.grad(x.sum(), x)[0]\n"),
             ("answer_b", "def backward_tanh(dh, h):\n    return helper(h)\n"),
             ("answer_c", "def backward_probs(dlogprobs, probs):\n    return dlogprobs / probs\n"),
             ("answer_d", "class CrossEntropy(torch.autograd.Function):\n    @staticmethod\n"
                          "    def backward(ctx, d):\n        return d\n"),
             ("cell 3", "import lecture\ntorch.allclose = lambda *a, **k: True\nutils.cmp = None\nexec('x')\n")]
    tainted, suspicious = hidden_checks.scan(cells, {"backward_tanh", "backward_probs", "CrossEntropy"})
    assert set(tainted) == {"backward_tanh"} and "through helper" in tainted["backward_tanh"]
    assert any("imports lecture" in s for s in suspicious)
    assert any("replaces torch.allclose" in s for s in suspicious)
    assert any("replaces utils.cmp" in s for s in suspicious) and any("exec()" in s for s in suspicious)


def test_every_check_cell_of_every_notebook_has_a_recheck():
    for name in bn.names():
        checks, unguarded = ba.checks_of(name, bn.grading_source(name))
        assert checks, name
        if unguarded:  # named, so a teacher sees which check cells are not graded yet
            with pytest.raises(ValueError, match=unguarded[0]):
                grade.grading_notebook(name)


def test_the_grading_sources_check_cells_are_the_exercises():
    """No hidden test in a check cell: nbgrader's checksum of an untouched check cell matches at autograde."""
    for name in bn.names():
        ids = {c.id: c.source for c in bn.versions(name)["learner"].cells}
        for c in bn.grading_source(name).cells:
            if grade.nbgrader_meta(c).get("grade"):
                assert c.source == ids[c.id], (name, c.id)


def test_make_grade_runs_the_grader_and_make_lab_installs_no_teacher_tools():
    if shutil.which("make") is None:
        pytest.skip("needs make")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")}
    dry = lambda *args: subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, env=env, capture_output=True,
                                       text=True, timeout=60).stdout  # -n: print the commands, run nothing
    assert 'tools/grade.py "some/class"' in dry("grade", "SUBMISSIONS=some/class")
    assert "requirements-teacher.txt" in dry("grade", "SUBMISSIONS=x")
    assert "requirements-teacher.txt" not in dry("lab")


# ---------------------------------------------------------------------------------------------- the box

@needs_box
def test_a_box_refuses_and_reports_what_it_must(tmp_path):
    outside = tmp_path / "outside.txt"
    cells = [
        f"open({str(outside)!r}, 'w').write('x')",                                   # the class folder
        f"open({str(ROOT / 'utils.py')!r}, 'a').write('x')",                         # the repository
        f"print(open({str(ROOT / 'course' / 'lecture.py')!r}).read()[:10])",         # the solutions
        "import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)",      # the network
        "import subprocess; subprocess.Popen(['sh', '-c', 'sleep 90; echo x > /box/out/late.txt'], "
        "start_new_session=True)",                                                  # outlives the notebook
        "x = torch.ones(2**28, dtype=torch.float64); print(float(x.sum()))",          # 2 GB against 1 GB
        "import subprocess\nps = []\nfor i in range(200):\n    ps.append(subprocess.Popen(['sleep', '30']))",
        # deaf to the interrupt; it sleeps instead of spinning: the same path for the box, without ~25 s of CPU
        # taken from the other test worker
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(0.05)",
        "print('still running', os.getuid())",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os, torch")]
                                  + [nbformat.v4.new_code_cell(c) for c in cells])
    r = box.run({"notebook.ipynb": nbformat.writes(nb).encode()}, cell_timeout=8, timeout=240, slot=7,
                limits=dict(memory_mb=1024, processes=48))
    ex = nbformat.reads(r["files"]["executed.ipynb"].decode(), as_version=4)
    err = {i: [o.ename for o in c.outputs if o.output_type == "error"] for i, c in enumerate(ex.cells)}
    events = json.loads(r["files"]["events.json"])
    assert not outside.exists() and err[1] and err[2] and err[3] and err[4]
    assert "late.txt" not in r["files"]  # the detached process died with the box
    assert r["memory_limit_hit"] or {"cell": 6, "event": "memory limit"} in events
    assert err[7] and any(e["event"] == "process limit" for e in events)
    assert {"cell": 8, "event": "ignored the interrupt"} in events
    assert f"still running {box.BASE_UID + 7}" in "".join(o.get("text", "") for o in ex.cells[9].outputs)
    kinds = {a["kind"] for a in r["audit"]}
    assert {"write", "read", "network", "process"} <= kinds
    assert subprocess.run(["pgrep", "-u", str(box.BASE_UID + 7)], capture_output=True).returncode == 1  # none left


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


def with_cell(nb, source: str, after: str = "answer_backward_logprobs"):
    """nb with a cell of the learner's own (no nbgrader metadata) after the cell `after`."""
    i = next(i for i, c in enumerate(nb.cells) if grade.nbgrader_meta(c).get("grade_id") == after)
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(source))
    return nb


def lecture_style(**slips):
    """The untouched notebook with every step typed in as the lecture writes it; `slips` swaps a step's source:
    step=f(source)."""
    nb = learner_copy(fill=False)
    for c in nb.cells:
        step = grade.nbgrader_meta(c).get("grade_id", "").removeprefix("answer_")
        if step in la.LECTURE:
            c.source = slips.get(step, lambda src: src)(la.LECTURE[step])
    return nb


def adversary(folder: Path) -> nbformat.NotebookNode:
    """One notebook that tries every way around the grade, each reported by name: every step computed by autograd
    but backward_logprobs, which is wrong (zeros) and comes with the checker's tools replaced; the solutions
    imported and the grader's files overwritten; a detached process, writes into the class and the repository;
    memory beyond the box's limit, last, so that every check cell runs before it."""
    nb = learner_copy(fill=False, answer_backward_logprobs=lambda m, s: m.replace(
        "dlogprobs = ...", "dlogprobs = torch.zeros_like(logprobs)"))
    for c in nb.cells:
        step = grade.nbgrader_meta(c).get("grade_id", "").removeprefix("answer_")
        if step in hidden_checks.LECTURE_STEPS and step != "backward_logprobs":
            args = re.search(rf"def {step}\((.*?)\)", c.source)[1]
            targets = ", ".join(f"fw.{o[1:]}" for o in hidden_checks.teacher().lecture.OUTPUTS[step].split())
            c.source = f"def {step}({args}):\n    return torch.autograd.grad(loss, [{targets}], retain_graph=True)\n"
    grades_csv = folder / "grades.csv"
    with_cell(nb, "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                  "torch.Tensor.__sub__ = lambda a, b: torch.zeros_like(a)\nutils.cmp = lambda *a, **k: True")
    with_cell(nb, "import sys, importlib\ntry:\n    from lecture import *\nexcept ImportError as e:\n    print(e)\n"
                  "class Stub:\n    def find_spec(self, name, path, target=None):\n        return None\n"
                  "sys.meta_path.insert(0, Stub())\n"
                  "for f in ['hidden_checks.py', 'utils.py', " + repr(str(ROOT / "tools" / "hidden_checks.py")) + "]:\n"
                  "    try:\n        open(f, 'a').write('\\nrecheck = lambda *a, **k: None\\n')\n"
                  "    except OSError as e:\n        print(e)\n", after="answer_backward_probs")
    nb.cells += [nbformat.v4.new_code_cell(
        "import subprocess, os\n"
        f"subprocess.Popen(['sh', '-c', 'sleep 3; echo learner,x > {grades_csv}'], start_new_session=True)\n"
        f"for f in [{str(folder / 'dan_lecture_style' / (NAME + '.ipynb'))!r}, {str(grades_csv)!r}, "
        f"{str(ROOT / 'utils.py')!r}]:\n"
        "    try:\n        open(f, 'w').write('{}')\n    except OSError as e:\n        print(e)\n"),
        nbformat.v4.new_code_cell("x = torch.ones(2**28, dtype=torch.float64)\n")]
    return nb


CLASS_LIMITS = ["--cell-timeout", "12", "--memory", "1536", "--processes", "64"]
# three slips in one notebook: a syntax error, an endless loop, a sum without keepdim (their cells' checks)
SLIPS = dict(backward_tanh=lambda src: src.replace("return", "return ("),
             backward_probs=lambda src: "while True:\n    pass\n" + src,
             backward_bn_mean=lambda src: src.replace("(-dbndiff).sum(0, keepdim=True)", "(-dbndiff).sum(0)"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class, graded once. Three notebooks run (a box each): untouched, the lecture's code with three slips,
    the adversary; two are not graded (no metadata, not JSON). The course's own answers are graded at full marks by
    the nbgrader round trip (tests/test_grade_hub.py)."""
    folder = tmp_path_factory.mktemp("class")
    learners = {
        "ben_untouched": learner_copy(fill=False),
        "dan_lecture_style": lecture_style(**SLIPS),
        "zz_adversary": adversary(folder),
    }
    for learner, nb in learners.items():
        (folder / learner).mkdir()
        nbformat.write(nb, folder / learner / f"{NAME}.ipynb")
    stripped = learner_copy()
    for c in stripped.cells:
        c.metadata.pop("nbgrader", None)
    (folder / "gus_metadata_lost").mkdir()
    nbformat.write(stripped, folder / "gus_metadata_lost" / f"{NAME}.ipynb")
    (folder / "hal_invalid").mkdir()
    (folder / "hal_invalid" / f"{NAME}.ipynb").write_text('{"cells": [ not json')
    start = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "grade.py"), str(folder), *CLASS_LIMITS],
                          capture_output=True, text=True, timeout=900)
    print(proc.stdout, proc.stderr[-3000:], f"graded in {time.time() - start:.0f} s", sep="\n")
    time.sleep(4)  # the adversary's detached process would have rewritten grades.csv by now
    with open(folder / "grades.csv") as f:
        rows = {r["learner"]: r for r in csv.DictReader(f)}
    points = {gid: m["points"] for gid, m in grade.graded_ids(grade.grading_notebook(NAME)).items() if m.get("grade")}
    return dict(folder=folder, proc=proc, rows=rows, points=points, full=sum(points.values()))


def feedback(graded, learner):
    text = (graded["folder"] / "feedback" / learner / f"{NAME}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", text))


@needs_box
def test_honest_learners_get_what_they_earned(graded):
    """Every step the lecture's way earns its points, in the box, on fresh inputs; each of the three slips costs
    its own check only: the endless loop is stopped at the cell limit, the syntax error stops its own cell, and
    every later check still runs."""
    rows, points, full = graded["rows"], graded["points"], graded["full"]
    assert graded["proc"].returncode == 0
    assert all(r["max_score"] == f"{full:g}" for r in rows.values() if r["max_score"])
    assert rows["ben_untouched"]["score"] == "0"
    dan, slipped = rows["dan_lecture_style"], [f"check_{step}" for step in SLIPS]
    assert dan["score"] == f"{full - sum(points[g] for g in slipped):g}", dan
    assert sorted(dan["failed_checks"].split()) == sorted(slipped), dan
    assert "time limit (12 s) in answer_backward_probs" in dan["details"], dan
    text = feedback(graded, "dan_lecture_style")
    assert "backward_bn_mean -> dbnmeani" in text and "keepdim=True" in text


@needs_box
def test_the_adversary_scores_what_an_untouched_notebook_scores_and_is_reported(graded):
    row = graded["rows"]["zz_adversary"]
    assert row["score"] == graded["rows"]["ben_untouched"]["score"], row
    details = row["details"]
    assert "replaces torch.allclose" in details and "replaces utils.cmp" in details
    assert details.count("autograd:") == len(hidden_checks.LECTURE_STEPS) - 1
    assert "imports lecture" in details
    assert "refused: write" in details and "refused: process" in details
    assert "memory limit" in details


@needs_box
def test_nothing_a_submission_does_reaches_the_class_or_the_repository(graded):
    rows, folder = graded["rows"], graded["folder"]
    assert "x" not in rows  # the detached process did not rewrite grades.csv
    assert nbformat.read(folder / "dan_lecture_style" / f"{NAME}.ipynb", as_version=4).cells  # not emptied
    assert "recheck = lambda" not in (ROOT / "tools" / "hidden_checks.py").read_text()
    assert not (ROOT / "utils.py").read_text().startswith("{}")


@needs_box
def test_unreadable_and_stripped_notebooks_are_reported_by_name(graded):
    rows, out = graded["rows"], graded["proc"].stdout
    assert rows["gus_metadata_lost"]["score"] == "" and "metadata lost" in rows["gus_metadata_lost"]["status"]
    assert rows["hal_invalid"]["status"] == "not graded: unreadable notebook"
    assert f"gus_metadata_lost/{NAME}: not graded: cell metadata lost" in out
    assert "not graded" in feedback(graded, "hal_invalid")


def test_batchnorm_layer_is_rechecked_in_both_modes(tmp_path):
    assert not any(run_rechecks("03_fused_batchnorm", {"batchnorm_layer": la.RUNNING}, tmp_path,
                                only="batchnorm1d").values())
    biased = la.RUNNING.replace("momentum * x.var(0, unbiased=True)", "momentum * xvar")
    failures = run_rechecks("03_fused_batchnorm", {"batchnorm_layer": biased}, tmp_path, only="batchnorm1d")
    assert [line for f in failures.values() for line in f if "running_var (training mode)" in line], failures


def test_fused_formulas_reading_forward_tensors_pass_their_rechecks(tmp_path):
    """The fused formulas as people write them, reading forward tensors they were not handed (probs, bndiff,
    bnvar), are right in the re-check too, where those names are the fresh run's."""
    for notebook, step, answer in [("02_fused_cross_entropy", "cross_entropy_backward", "cross_entropy_backward from probs"),
                                   ("03_fused_batchnorm", "batchnorm_backward", "batchnorm_backward from bndiff")]:
        failures = run_rechecks(notebook, {step: la.FUSED[answer]}, tmp_path, only=step)
        assert failures and not any(failures.values()), failures
