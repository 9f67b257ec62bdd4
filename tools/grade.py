"""Grade a class's filled-in notebooks with nbgrader, locally: one command, a CSV of grades, feedback per learner.

    python tools/grade.py SUBMISSIONS               # make grade SUBMISSIONS=path
    python tools/grade.py --export-source DIR       # a complete nbgrader course for JupyterHub (make export-course)

SUBMISSIONS holds one folder per learner, each with any of the four exercise notebooks under its own name
(SUBMISSIONS/alice/01_atomic_backprop.ipynb). The grading source is generated, never kept by hand: the course's
notebook from tools/build_notebooks.py with the solutions in. nbgrader restores every locked cell (set-up, forward
pass, checks) and the teacher's files before grading, and its Execute step is replaced by BoxedExecute
(tools/boxed_autograde.py): each submission runs in a box of its own (tools/box.py: no network, no view of the
repository, the class or other learners, a user of its own, memory and process limits, time limits), and the hidden
re-checks (tools/hidden_checks.py) are judged in this process from the tensors the learner's functions returned.

Writes SUBMISSIONS/grades.csv (learner, notebook, score, max_score, status, failed_checks, details) and
SUBMISSIONS/feedback/<learner>/<notebook>.html. nbgrader's course folder and gradebooks stay in
SUBMISSIONS/.nbgrader/ (rebuilt on each run). Notebook 04's training is shortened to --train-steps steps.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import csv
import html
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import box  # noqa: E402
import boxed_autograde  # noqa: E402
import build_notebooks as bn  # noqa: E402
import facts  # noqa: E402

ROOT = bn.ROOT
COURSE_ID = "backprop-ninja"
# beside every released notebook (what a learner may see), and in grader/, outside source/ (what nbgrader's
# process uses, never released)
LEARNER_FILES = {"utils.py": ROOT / "utils.py", "names.txt": ROOT / "names.txt"}
GRADER_FILES = {**LEARNER_FILES, "lecture.py": ROOT / "course" / "lecture.py", "facts.py": ROOT / "course" / "facts.py",
                **{f: ROOT / "tools" / f for f in ("hidden_checks.py", "box.py", "boxed_autograde.py")}}
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")  # nbgrader reads a student id as a file glob
DEFAULTS = dict(seed=1_000_003, train_steps=bn.SHORT_RUN, cell_timeout=60, timeout=900, memory_mb=box.LIMITS["memory_mb"],
                processes=box.LIMITS["processes"])
# nbgrader runs `alembic` (installed beside it) and jupyter's kernel by name: this interpreter's bin/ comes first
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


# ---------------------------------------------------------------------------------------------- the grading source

def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}


def grading_notebook(name: str, train_steps: int = DEFAULTS["train_steps"]):
    """The teacher's notebook for nbgrader: the exercise version's cells (same ids), solutions in. Its check cells
    are the exercise's, unchanged: the hidden re-checks are added by BoxedExecute when grading, so nbgrader's
    checksums of an untouched check cell always match.

    Raises ValueError naming the check cells that have no hidden re-check: grading them would give their
    points to any answer (the visible checks print verdicts, they never fail).
    """
    nb = bn.grading_source(name)
    _, unguarded = boxed_autograde.checks_of(name, nb)
    if any("train_steps" in tags(c) for c in nb.cells):
        bn.shorten_training(nb, train_steps)
    if unguarded:
        raise ValueError(f"{name}: no hidden re-check in tools/hidden_checks.py for the check cells "
                         f"{', '.join(unguarded)}; grading them would give their points to any answer")
    return nb


def graded_ids(nb) -> dict[str, dict]:
    """grade_id -> nbgrader metadata, for every code cell that has some."""
    return {m["grade_id"]: m for c in nb.cells if (m := nbgrader_meta(c)).get("grade_id")}


def settings(cell_timeout: int, timeout: int, seed: int, memory_mb: int, processes: int) -> dict:
    """nbgrader's settings for this course: {section: {name: value}}, as nbgrader_config.py and the local grader
    both use them."""
    return {
        "CourseDirectory": {"course_id": COURSE_ID},
        "Execute": {"timeout": cell_timeout},
        "Autograde": {"autograde_preprocessors": [
            "boxed_autograde.BoxedExecute", "nbgrader.preprocessors.IgnorePattern",
            "nbconvert.preprocessors.ClearMetadataPreprocessor", "nbgrader.preprocessors.LimitOutput",
            "nbgrader.preprocessors.SaveAutoGrades", "nbgrader.preprocessors.AssignLatePenalties",
            "nbgrader.preprocessors.CheckCellMetadata"]},
        "GenerateAssignment": {"preprocessors": [
            "nbgrader.preprocessors.IncludeHeaderFooter", "nbgrader.preprocessors.LockCells",
            "boxed_autograde.RenderExercise", "nbgrader.preprocessors.ClearOutput",
            "nbgrader.preprocessors.CheckCellMetadata", "nbgrader.preprocessors.ComputeChecksums",
            "nbgrader.preprocessors.SaveCells", "nbgrader.preprocessors.ClearHiddenTests",
            "nbgrader.preprocessors.ComputeChecksums", "nbgrader.preprocessors.CheckCellMetadata"]},
        "BoxedExecute": {"cell_timeout": cell_timeout, "timeout": timeout, "seed": seed,
                         "limits": {"memory_mb": memory_mb, "processes": processes}},
    }


def config_file(options: dict) -> str:
    lines = ["# nbgrader's settings for grading backprop-ninja (written by tools/grade.py; README, For teachers)",
             "import os, sys",
             "sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), \"grader\"))  # never released",
             "c = get_config()  # noqa: F821"]
    for section, values in options.items():
        lines += [f"c.{section}.{k} = {v!r}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def write_course(root: Path, names: list[str], train_steps: int, options: dict) -> dict[str, str]:
    """A complete nbgrader course folder: nbgrader_config.py, grader/ (the teacher's files and this course's
    preprocessors: never released) and source/<name>/ (the grading notebook, utils.py, names.txt).

    Returns {name: why} for the notebooks that cannot be graded (no hidden re-checks yet)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(config_file(options))
    grader = root / "grader"
    (grader / "exercises").mkdir(parents=True, exist_ok=True)
    for f, p in GRADER_FILES.items():
        shutil.copyfile(p, grader / f)
    skipped = {}
    for name in names:
        try:
            nb = grading_notebook(name, train_steps)
        except ValueError as e:
            skipped[name] = str(e)
            continue
        folder = root / "source" / name
        folder.mkdir(parents=True, exist_ok=True)
        bn.write(nb, folder / f"{name}.ipynb")
        shutil.copyfile(bn.paths(name)["learner"], grader / "exercises" / f"{name}.ipynb")
        for f, p in LEARNER_FILES.items():
            shutil.copyfile(p, folder / f)
    return skipped


# ---------------------------------------------------------------------------------------------- submissions

@dataclass
class Job:
    learner: str
    name: str  # the notebook
    path: Path
    student: str  # nbgrader's id for the learner (the folder name when it is a safe one)
    notebook: object = None  # the submission, repaired, ready for nbgrader
    result: dict = field(default_factory=dict)


def prepare(job: Job, source) -> dict | None:
    """Read and check a submission against the grading source; put back deleted check cells.

    Returns a result row (not graded, with its reason) when the submission cannot be graded.
    """
    try:
        nb = nbformat.read(job.path, as_version=4)
    except Exception as e:
        return {"status": "not graded: unreadable notebook", "details": f"{type(e).__name__}: {e}"}
    expected = graded_ids(source)
    present = [gid for gid in graded_ids(nb) if gid in expected]
    if not present:
        return {"status": "not graded: cell metadata lost",
                "details": "no cell carries the course's nbgrader metadata (saved by an editor that drops cell "
                           "metadata, or rebuilt from copied cells?): grade it by hand, or ask for the original file"}
    for c in nb.cells:  # nbgrader trusts some metadata (grade, points): put the source's back on every known cell
        gid = nbgrader_meta(c).get("grade_id")
        if gid in expected:
            c.metadata["nbgrader"] = copy.deepcopy(expected[gid])
        elif "nbgrader" in c.metadata:  # an id nbgrader does not know would stop it: make it a plain cell
            del c.metadata["nbgrader"]
    restored, order = [], list(expected)
    for i, gid in enumerate(order):  # a deleted check cell comes back after the cell it followed
        if gid in present or not expected[gid].get("grade"):
            continue
        cell = copy.deepcopy(next(c for c in source.cells if nbgrader_meta(c).get("grade_id") == gid))
        cell.outputs, cell.execution_count = [], None
        before = [g for g in order[:i] if g in present]
        ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
        nb.cells.insert(ids.index(before[-1]) + 1 if before else len(nb.cells), cell)
        present.append(gid)
        restored.append(gid)
    notes = []
    if restored:
        notes.append(f"deleted check cells restored and run: {', '.join(restored)}")
    for kind, label in (("solution", "answer cells missing or without metadata (their functions are still "
                                     "looked up by name)"), ("locked", "locked cells deleted")):
        gone = [gid for gid, m in expected.items() if gid not in present and m.get(kind) and not m.get("grade")]
        if gone:
            notes.append(f"{label}: {', '.join(gone)}")
    job.notebook = nb
    job.result = {"status": "graded" + (" (deleted check cells restored)" if restored else ""),
                  "details": "; ".join(notes)}
    return None


def find_submissions(folder: Path, names: list[str]) -> tuple[list[Job], list[str]]:
    jobs, ignored, ids = [], [], set()
    for learner_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if learner_dir.name == "feedback":
            continue
        learner = learner_dir.name
        student = learner if SAFE_ID.match(learner) else f"learner{len(ids):04d}"
        ids.add(student)
        # <learner>/<notebook>.ipynb, or nbgrader's own layout <learner>/<notebook>/<notebook>.ipynb
        for path in sorted([*learner_dir.glob("*.ipynb"), *learner_dir.glob("*/*.ipynb")]):
            if path.stem in names and path.parent.name in (learner, path.stem):
                if any(j.learner == learner and j.name == path.stem for j in jobs):
                    ignored.append(f"{path.relative_to(folder)} (a second copy)")
                    continue
                jobs.append(Job(learner, path.stem, path, student))
            elif ".ipynb_checkpoints" not in path.parts:
                ignored.append(str(path.relative_to(folder)))
    return jobs, ignored


# ---------------------------------------------------------------------------------------------- running nbgrader

_worker: dict = {}


def _why_failed(result: dict, default: str) -> str:
    """The last line of what an NbGraderAPI call that did not succeed said."""
    lines = [l for l in str(result.get("error") or result.get("log") or "").splitlines() if l.strip()]
    return lines[-1] if lines else default


def _start_worker(base: Path, work: Path, options: dict, slots, names: list[str]) -> None:
    """A grading process (concurrent.futures): its own copy of the course (SQLite gradebooks are not shared between
    writers), its own box slot (so its own uid), one NbGraderAPI for all its notebooks (nbgrader's imports take
    seconds), which generates the assignments `names` into its own gradebook first."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    slot = slots.get()
    course = work / f"worker{slot}"
    shutil.copytree(base, course)
    config = Config()
    for section, values in options.items():
        for k, v in values.items():
            setattr(config[section], k, v)
    config.CourseDirectory.root = str(course)
    config.BoxedExecute.slot = slot
    config.BoxedExecute.report_dir = str(course / "reports")
    os.chdir(course)
    log = open(work / f"worker{slot}.log", "a")  # nbgrader's chatter (and its warnings) goes to the log
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    api = NbGraderAPI(config=config)
    failed = {}
    for name in names:
        result = api.generate_assignment(name, force=True, create=True)
        if not result["success"]:
            failed[name] = _why_failed(result, "nbgrader generate_assignment failed")
    _worker.update(api=api, course=course, failed=failed)


def _grade_one(name: str, student: str, notebook: str) -> dict:
    """Autograde one prepared submission in this worker; nbgrader's scores, the box's report, the feedback file."""
    from nbgrader.api import Gradebook, MissingEntry

    api, course = _worker["api"], _worker["course"]
    if name in _worker["failed"]:
        return {"status": "not graded: nbgrader generate_assignment failed", "details": _worker["failed"][name]}
    target = course / "submitted" / student / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    (target / f"{name}.ipynb").write_text(notebook)
    result = api.autograde(name, student, force=True, create=True)
    if result["success"]:
        result = api.generate_feedback(name, student)
    if not result["success"]:
        return {"status": "not graded: nbgrader failed", "details": _why_failed(result, "nbgrader failed")}
    out: dict = {}
    report = course / "reports" / student / f"{name}.json"
    out["report"] = json.loads(report.read_text()) if report.exists() else {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        try:
            sub = gb.find_submission_notebook(name, name, student)
        except MissingEntry:
            return {"status": "not graded: no result in the gradebook"}
        out["failed"] = sorted(g.name for g in sub.grades if g.max_score and (g.score or 0) < g.max_score)
        out.update(score=sub.score, max_score=sub.max_score)
    html_file = course / "feedback" / student / name / f"{name}.html"
    out["feedback"] = html_file.read_text() if html_file.exists() else ""
    return out


def not_graded_html(job: Job) -> str:
    """The feedback page of a notebook nbgrader gave no feedback for: the status and why."""
    r = job.result
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(job.name)}</title></head><body>"
            f"<h1>{html.escape(job.name)}</h1><p><b>{html.escape(r.get('status', ''))}</b></p>"
            f"<p>{html.escape(r.get('details', ''))}</p></body></html>\n")


def describe(report: dict) -> tuple[str | None, list[str]]:
    """The status (when the box changed it) and the details grades.csv shows for one notebook's box report."""
    details = [f"limit: {e}" for e in report.get("events", [])]
    details += [f"refused: {a}" for a in report.get("attempts", [])]
    details += [f"autograd: {f} ({why}): earns nothing" for f, why in report.get("autograd", {}).items()]
    details += [f"suspicious: {s}" for s in report.get("suspicious", [])]
    status = report.get("status")
    return (status if status and status != "graded" else None), details


def grade(submissions: Path, jobs_n: int = 2, cell_timeout: int = DEFAULTS["cell_timeout"],
          timeout: int = DEFAULTS["timeout"], train_steps: int = DEFAULTS["train_steps"],
          seed: int = DEFAULTS["seed"], memory_mb: int = DEFAULTS["memory_mb"],
          processes: int = DEFAULTS["processes"], quiet: bool = False) -> list[dict]:
    """Grade every SUBMISSIONS/<learner>/<notebook>.ipynb; write grades.csv and feedback/; return the rows."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if (why := box.available()) is not None:
        raise SystemExit(f"cannot grade: each submission runs in a box of its own, and {why}")
    names = bn.names()
    jobs, ignored = find_submissions(submissions, names)
    for f in ignored:
        say(f"skipped {f}: not one of the course notebooks ({', '.join(names)})")
    work = submissions / ".nbgrader"
    shutil.rmtree(work, ignore_errors=True)
    base = work / "course"
    used = sorted({j.name for j in jobs})
    options = settings(cell_timeout, timeout, seed, memory_mb, processes)
    skipped = write_course(base, used, train_steps, options)
    sources = {n: nbformat.read(base / "source" / n / f"{n}.ipynb", as_version=4) for n in used if n not in skipped}
    todo = []
    for job in jobs:
        if job.name in skipped:
            job.result = {"status": "not graded: this notebook has no hidden re-checks yet", "details": skipped[job.name]}
        elif (problem := prepare(job, sources[job.name])) is not None:
            job.result = problem
        else:
            todo.append(job)
        job.result["max_score"] = sum(m.get("points", 0) for m in graded_ids(sources[job.name]).values()
                                      if m.get("grade")) if job.name in sources else ""
        if job not in todo:
            say(f"{job.learner}/{job.name}: {job.result['status']}")
    if not jobs:
        say(f"no submissions found: expected {submissions}/<learner>/<notebook>.ipynb")
    workers = min(max(1, jobs_n), len(todo)) or 1
    slots = multiprocessing.Manager().Queue() if todo else None
    for i in range(workers):
        slots and slots.put(i)
    start, done = time.time(), 0
    initargs = (base, work, options, slots, sorted({j.name for j in todo}))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_start_worker, initargs=initargs) as pool:
        futures = {pool.submit(_grade_one, j.name, j.student, nbformat.writes(j.notebook)): j for j in todo}
        for future in concurrent.futures.as_completed(futures):
            job = futures[future]
            try:
                answer = future.result()
            except Exception as e:  # one notebook's trouble must not stop the class
                answer = {"status": "not graded: grader error", "details": f"{type(e).__name__}: {e}"}
            record(job, answer, sources[job.name])
            done += 1
            r = job.result
            score = f"{r['score']:g}/{r['max_score']:g}" if isinstance(r.get("score"), (int, float)) else "-"
            say(f"[{done}/{len(todo)}] {job.learner}/{job.name}: {score}  {r['status']}")
    if todo:
        say(f"graded {len(todo)} notebooks in {time.time() - start:.0f} s with {workers} workers")
    return write_results(submissions, jobs)


def record(job: Job, answer: dict, source) -> None:
    """Fill job.result from a worker's answer."""
    if "score" not in answer:
        job.result.update(status=answer.get("status", "not graded"),
                          details="; ".join(filter(None, [job.result.get("details"), answer.get("details")])))
        return
    status, details = describe(answer.get("report", {}))
    if status and status.startswith("time limit"):
        answer["score"] = 0
    job.result.update(score=answer["score"], max_score=answer["max_score"], feedback=answer.get("feedback", ""))
    if status:
        job.result["status"] = status
    job.result["failed_checks"] = " ".join(g for g in graded_ids(source) if g in answer.get("failed", []))
    job.result["details"] = "; ".join(filter(None, [job.result.get("details"), *details]))


COLUMNS = ["learner", "notebook", "score", "max_score", "status", "failed_checks", "details"]


def write_results(submissions: Path, jobs: list[Job]) -> list[dict]:
    shutil.rmtree(submissions / "feedback", ignore_errors=True)  # this run's feedback only
    rows = []
    for job in sorted(jobs, key=lambda j: (j.learner, j.name)):
        r = job.result
        score = r.get("score", "")
        row = {"learner": job.learner, "notebook": job.name,
               "score": f"{score:g}" if isinstance(score, (int, float)) else "",
               "max_score": f"{r['max_score']:g}" if isinstance(r.get("max_score"), (int, float)) else "",
               "status": r.get("status", ""), "failed_checks": r.get("failed_checks", ""),
               "details": r.get("details", "")}
        rows.append(row)
        out = submissions / "feedback" / job.learner / f"{job.name}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        if r.get("feedback"):
            out.write_text(r["feedback"])
        else:  # not graded, or stopped at the time limit: say why
            out.write_text(not_graded_html(job))
    with open(submissions / "grades.csv", "w", newline="") as f:  # rewritten on every run, like feedback/
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


# ---------------------------------------------------------------------------------------------- export for JupyterHub

def export_source(folder: Path, options: dict, train_steps: int) -> None:
    """A complete nbgrader course folder for JupyterHub (README, For teachers)."""
    skipped = write_course(folder, bn.names(), train_steps, options)
    for name, why in skipped.items():
        print(f"left out {name}: {why}")
    print(f"nbgrader course written to {folder}: nbgrader_config.py, grader/ (never released), source/<notebook>/")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("submissions", nargs="?", type=Path, help="folder of <learner>/<notebook>.ipynb")
    p.add_argument("--export-source", type=Path, metavar="DIR", help="write an nbgrader course folder and stop")
    p.add_argument("--jobs", type=int, default=2, help="notebooks graded at once (default 2)")
    p.add_argument("--cell-timeout", type=int, default=DEFAULTS["cell_timeout"], help="seconds per cell (60)")
    p.add_argument("--timeout", type=int, default=DEFAULTS["timeout"], help="seconds per notebook (900)")
    p.add_argument("--train-steps", type=int, default=DEFAULTS["train_steps"],
                   help=f"notebook 04's training steps when graded ({DEFAULTS['train_steps']})")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of the hidden re-checks' inputs")
    p.add_argument("--memory", type=int, default=DEFAULTS["memory_mb"], metavar="MB",
                   help=f"memory of each notebook's box, MB ({DEFAULTS['memory_mb']})")
    p.add_argument("--processes", type=int, default=DEFAULTS["processes"],
                   help=f"processes and threads of each notebook's box ({DEFAULTS['processes']})")
    a = p.parse_args(argv)
    options = settings(a.cell_timeout, a.timeout, a.seed, a.memory, a.processes)
    if a.export_source:
        export_source(a.export_source, options, a.train_steps)
        return 0
    if a.submissions is None or not a.submissions.is_dir():
        p.error("give the folder of submissions: python tools/grade.py SUBMISSIONS (make grade SUBMISSIONS=path)")
    rows = grade(a.submissions, a.jobs, a.cell_timeout, a.timeout, a.train_steps, a.seed, a.memory, a.processes)
    print(f"wrote {a.submissions / 'grades.csv'} ({len(rows)} rows) and {a.submissions / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
