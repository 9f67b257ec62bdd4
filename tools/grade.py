"""Grade a class's filled-in notebooks with nbgrader, locally: one command, a CSV of grades, feedback per learner.

    python tools/grade.py SUBMISSIONS               # make grade SUBMISSIONS=path
    python tools/grade.py --export-source DIR       # an nbgrader course folder for JupyterHub (README)

SUBMISSIONS holds one folder per learner, each with any of the four exercise notebooks under its own name
(SUBMISSIONS/alice/01_atomic_backprop.ipynb). The grading source is generated, never kept by hand: the
course's notebook from tools/build_notebooks.py with the solutions in, and each check cell followed by a hidden
re-check (tools/hidden_checks.py) that calls the learner's functions on fresh inputs and fails with the
checker's diagnosis. nbgrader restores every locked cell and the teacher's files (utils.py, lecture.py,
names.txt, hidden_checks.py) before running a submission, so editing a check cell or utils.py earns nothing.

Writes SUBMISSIONS/grades.csv (learner, notebook, score, max_score, status, failed_checks, details) and
SUBMISSIONS/feedback/<learner>/<notebook>.html. nbgrader's course folder and gradebooks stay in
SUBMISSIONS/.nbgrader/ (rebuilt on each run). Each cell has a time limit (--cell-timeout) and each notebook one
too (--timeout): an endless loop costs that notebook its points, and the rest of the class is still graded.
Notebook 04's training is shortened to --train-steps steps for grading.
"""
from __future__ import annotations

import argparse
import ast
import copy
import csv
import hashlib
import html
import json
import os
import queue
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_notebooks as bn  # noqa: E402
import hidden_checks  # noqa: E402

ROOT = bn.ROOT
COURSE_ID = "backprop-ninja"
TEACHER_FILES = {"hidden_checks.py": ROOT / "tools" / "hidden_checks.py", "utils.py": ROOT / "utils.py",
                 "lecture.py": ROOT / "course" / "lecture.py", "names.txt": ROOT / "names.txt"}
assert set(TEACHER_FILES) == set(hidden_checks.TEACHER_FILES)
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")  # nbgrader reads a student id as a file glob
DEFAULTS = dict(seed=1_000_003, train_steps=2_000, cell_timeout=60, timeout=900)
# nbgrader runs `alembic` (installed beside it) and jupyter's kernel by name: this interpreter's bin/ comes first
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


# ---------------------------------------------------------------------------------------------- the grading source

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}


def checked_names(name: str, source: str) -> dict[str, list[str]]:
    """The learner's functions a check cell exercises (the names in it that have a hidden re-check), each with the
    gradients the cell checks: `utils.cmp("b1", ...)` checks db1."""
    used = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    grads = ["d" + g for g in re.findall(r"utils\.cmp\(\s*[\"']([^\"']+)[\"']", source)]
    return {f: grads for f in sorted(used & hidden_checks.registered(name))}


def hidden_block(name: str, names: dict[str, list[str]], seed: int, size: dict[str, int]) -> str:
    digests = {f: sha256(p) for f, p in TEACHER_FILES.items() if f != "hidden_checks.py" and f != "names.txt"}
    return "\n".join([
        bn.BEGIN_HIDDEN,
        "# The teacher's re-check (tools/hidden_checks.py): your functions again, on a fresh batch in float64,",
        "# judged by a fresh copy of the checker. It fails (and this check earns no points) on a wrong answer.",
        "import hashlib as _hashlib, importlib.util as _importlib_util, pathlib as _pathlib",
        f'assert _hashlib.sha256(_pathlib.Path("hidden_checks.py").read_bytes()).hexdigest() == '
        f'"{sha256(TEACHER_FILES["hidden_checks.py"])}", "the teacher\'s hidden_checks.py was changed while the notebook ran"',
        '_spec = _importlib_util.spec_from_file_location("_hidden_checks", "hidden_checks.py")',
        "_hidden = _importlib_util.module_from_spec(_spec)",
        "_spec.loader.exec_module(_hidden)",
        f'_hidden.recheck({name!r}, {names!r}, globals(), seed={seed}, sizes={size!r}, sha256={digests!r})',
        bn.END_HIDDEN,
    ])


# A warning printed to stderr makes nbgrader give a check cell 0 points: silence them in graded cells.
QUIET = "\n".join([bn.BEGIN_HIDDEN, 'import warnings as _warnings; _warnings.simplefilter("ignore")', bn.END_HIDDEN])


def grading_notebook(name: str, seed: int = DEFAULTS["seed"], train_steps: int = DEFAULTS["train_steps"]):
    """The teacher's notebook for nbgrader: the learner version's cells, solutions in, hidden re-checks added.

    Raises ValueError naming the check cells that have no hidden re-check: grading them would give their
    points to any answer (the visible checks print verdicts, they never fail).
    """
    nb = bn.grading_source(name)
    size, unguarded = bn.sizes(nb), []
    for c in nb.cells:
        meta = nbgrader_meta(c)
        if meta.get("grade"):
            names = checked_names(name, c.source)
            if not names:
                unguarded.append(meta["grade_id"])
                continue
            c.source = "\n".join([QUIET, c.source, hidden_block(name, names, seed, size)])
        if "train_steps" in tags(c):
            c.source, count = re.subn(r"^max_steps\s*=\s*[\d_]+", f"max_steps = {train_steps:_}", c.source, flags=re.M)
            if count != 1:
                raise ValueError(f"{name}: the train_steps cell must set max_steps once, found {count}")
    if unguarded:
        raise ValueError(f"{name}: no hidden re-check in tools/hidden_checks.py for the check cells "
                         f"{', '.join(unguarded)}; grading them would give their points to any answer")
    return nb


def graded_ids(nb) -> dict[str, dict]:
    """grade_id -> nbgrader metadata, for every code cell that has some."""
    return {m["grade_id"]: m for c in nb.cells if (m := nbgrader_meta(c)).get("grade_id")}


def write_course(root: Path, names: list[str], seed: int, train_steps: int, cell_timeout: int) -> dict[str, str]:
    """An nbgrader course folder: source/<name>/ with the grading notebook and the teacher's files.

    Returns {name: why} for the notebooks that cannot be graded (no hidden re-checks yet).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(
        "# nbgrader's settings for grading backprop-ninja (written by tools/grade.py)\n"
        "c = get_config()  # noqa: F821\n"
        f'c.CourseDirectory.course_id = "{COURSE_ID}"\n'
        f"c.Execute.timeout = {cell_timeout}  # seconds per cell: an endless loop fails its cell, not the run\n"
        "c.ClearSolutions.begin_solution_delimeter = \"BEGIN SOLUTION\"\n"
        "c.ClearSolutions.end_solution_delimeter = \"END SOLUTION\"\n")
    skipped = {}
    for name in names:
        try:
            nb = grading_notebook(name, seed, train_steps)
        except ValueError as e:
            skipped[name] = str(e)
            continue
        folder = root / "source" / name
        folder.mkdir(parents=True, exist_ok=True)
        bn.write(nb, folder / f"{name}.ipynb")
        for f, p in TEACHER_FILES.items():
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

def serve(course: str, cell_timeout: int) -> int:
    """A worker process: reads `notebook student` lines, answers each with a JSON line once nbgrader's autograde and
    feedback for it are done. One interpreter grades many notebooks (nbgrader's imports take seconds); the parent
    kills it, kernel included, when a notebook runs past its time limit, and starts a new one."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything nbgrader or a kernel prints goes to the log, not into the replies
    config = Config()
    config.CourseDirectory.root = course
    config.CourseDirectory.course_id = COURSE_ID
    config.Execute.timeout = cell_timeout
    api = NbGraderAPI(config=config)
    for line in sys.stdin:
        name, student = json.loads(line)
        result = api.autograde(name, student, force=True, create=True)
        if result["success"]:
            result = api.generate_feedback(name, student)
        error = "" if result["success"] else (result.get("error") or result.get("log") or "nbgrader failed")
        reply.write(json.dumps({"ok": result["success"], "error": error}) + "\n")
        reply.flush()
    return 0


def kill_tree(proc: subprocess.Popen) -> None:
    """Stop a worker and everything it started (its kernel runs in a session of its own)."""
    try:
        import psutil
        family = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        family = []
    for p in [*family, proc]:
        try:
            p.kill()
        except Exception:
            pass
    proc.wait()


class Worker:
    """One nbgrader course folder (own gradebook: SQLite is not shared between writers) and its worker process."""

    def __init__(self, course: Path, cell_timeout: int, log: Path):
        self.course, self.cell_timeout, self.log, self.proc = course, cell_timeout, log, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.course), str(self.cell_timeout)], cwd=self.course,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "a"), text=True,
            start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None:
            kill_tree(self.proc)
            self.proc = None

    def ask(self, name: str, student: str, timeout: float) -> dict | None:
        """nbgrader's answer for one submission, or None when it ran past `timeout` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps([name, student]) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            return None
        return json.loads(line)

    def grade(self, job: Job, timeout: int) -> None:
        """Autograde one prepared submission; fill job.result."""
        from nbgrader.api import Gradebook, MissingEntry

        target = self.course / "submitted" / job.student / job.name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        nbformat.write(job.notebook, target / f"{job.name}.ipynb")
        answer = self.ask(job.name, job.student, timeout)
        if answer is None:
            job.result.update(score=0, status=f"time limit: stopped after {timeout} s, scored 0", details="; ".join(
                filter(None, [job.result.get("details"), "the notebook ran past its time limit (an endless loop?)"])))
            return
        if not answer["ok"]:
            last = [l for l in answer["error"].strip().splitlines() if l.strip()][-1:]
            job.result.update(status="not graded: nbgrader failed", details=f"{last[0] if last else ''} (log: {self.log})")
            return
        with Gradebook(f"sqlite:///{self.course / 'gradebook.db'}", COURSE_ID) as gb:
            try:
                sub = gb.find_submission_notebook(job.name, job.name, job.student)
            except MissingEntry:
                job.result.update(status="not graded: no result in the gradebook")
                return
            failed = {g.name for g in sub.grades if g.max_score and (g.score or 0) < g.max_score}
            job.result.update(score=sub.score, max_score=sub.max_score)
        job.result["failed_checks"] = " ".join(g for g in graded_ids(job.notebook) if g in failed)
        html_file = self.course / "feedback" / job.student / job.name / f"{job.name}.html"
        if html_file.exists():
            job.result["feedback"] = html_file


def generate_assignments(course: Path, names: list[str]) -> None:
    for name in names:
        proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                               "--create", "--log-level=ERROR"], cwd=course, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"nbgrader generate_assignment {name} failed:\n{proc.stdout}{proc.stderr}")


def not_graded_html(job: Job) -> str:
    """The feedback page of a notebook nbgrader gave no feedback for: the status and why."""
    r = job.result
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(job.name)}</title></head><body>"
            f"<h1>{html.escape(job.name)}</h1><p><b>{html.escape(r.get('status', ''))}</b></p>"
            f"<p>{html.escape(r.get('details', ''))}</p></body></html>\n")


def grade(submissions: Path, jobs_n: int = 2, cell_timeout: int = DEFAULTS["cell_timeout"],
          timeout: int = DEFAULTS["timeout"], train_steps: int = DEFAULTS["train_steps"],
          seed: int = DEFAULTS["seed"], quiet: bool = False) -> list[dict]:
    """Grade every SUBMISSIONS/<learner>/<notebook>.ipynb; write grades.csv and feedback/; return the rows."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    names = bn.names()
    jobs, ignored = find_submissions(submissions, names)
    for f in ignored:
        say(f"skipped {f}: not one of the course notebooks ({', '.join(names)})")
    work = submissions / ".nbgrader"
    shutil.rmtree(work, ignore_errors=True)
    base = work / "course"
    used = sorted({j.name for j in jobs})
    skipped = write_course(base, used, seed, train_steps, cell_timeout)
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
    generate_assignments(base, sorted({j.name for j in todo}))
    workers = [Worker(work / f"worker{i}", cell_timeout, work / f"worker{i}.log")
               for i in range(min(max(1, jobs_n), len(todo)))]
    for w in workers:
        shutil.copytree(base, w.course)
    pending: queue.Queue = queue.Queue()
    for job in todo:
        pending.put(job)
    lock, done, start = threading.Lock(), [0], time.time()

    def work_loop(worker: Worker) -> None:
        while True:
            try:
                job = pending.get_nowait()
            except queue.Empty:
                worker.stop()
                return
            t0 = time.time()
            try:
                worker.grade(job, timeout)
            except Exception as e:  # one notebook's trouble must not stop the class
                worker.stop()
                job.result.update(status="not graded: grader error", details=f"{type(e).__name__}: {e}")
            with lock:
                done[0] += 1
                r = job.result
                score = f"{r['score']:g}/{r['max_score']:g}" if isinstance(r.get("score"), (int, float)) else "-"
                say(f"[{done[0]}/{len(todo)}] {job.learner}/{job.name}: {score}  {r['status']}"
                    f"  ({time.time() - t0:.0f} s)")

    threads = [threading.Thread(target=work_loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:  # workers run in sessions of their own: stop them and their kernels too
        for w in workers:
            w.stop()
        raise
    if todo:
        say(f"graded {len(todo)} notebooks in {time.time() - start:.0f} s with {len(workers)} workers")
    return write_results(submissions, jobs)


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
            shutil.copyfile(r["feedback"], out)
        else:  # not graded, or stopped at the time limit: say why
            out.write_text(not_graded_html(job))
    with open(submissions / "grades.csv", "w", newline="") as f:  # rewritten on every run, like feedback/
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


# ---------------------------------------------------------------------------------------------- export for JupyterHub

def export_source(folder: Path, seed: int, train_steps: int, cell_timeout: int) -> None:
    """An nbgrader course folder to copy onto JupyterHub: source/<notebook>/ for each gradable notebook."""
    skipped = write_course(folder, bn.names(), seed, train_steps, cell_timeout)
    for name, why in skipped.items():
        print(f"left out {name}: {why}")
    print(f"nbgrader course folder written to {folder}: nbgrader_config.py and source/<notebook>/")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:  # a worker process, started by grade()
        return serve(argv[1], int(argv[2]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("submissions", nargs="?", type=Path, help="folder of <learner>/<notebook>.ipynb")
    p.add_argument("--export-source", type=Path, metavar="DIR", help="write an nbgrader course folder and stop")
    p.add_argument("--jobs", type=int, default=2, help="notebooks graded at once (default 2)")
    p.add_argument("--cell-timeout", type=int, default=DEFAULTS["cell_timeout"], help="seconds per cell (60)")
    p.add_argument("--timeout", type=int, default=DEFAULTS["timeout"], help="seconds per notebook (900)")
    p.add_argument("--train-steps", type=int, default=DEFAULTS["train_steps"],
                   help="notebook 04's training steps when graded (2000)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of the hidden re-checks' inputs")
    a = p.parse_args(argv)
    if a.export_source:
        export_source(a.export_source, a.seed, a.train_steps, a.cell_timeout)
        return 0
    if a.submissions is None or not a.submissions.is_dir():
        p.error("give the folder of submissions: python tools/grade.py SUBMISSIONS (make grade SUBMISSIONS=path)")
    rows = grade(a.submissions, a.jobs, a.cell_timeout, a.timeout, a.train_steps, a.seed)
    print(f"wrote {a.submissions / 'grades.csv'} ({len(rows)} rows) and {a.submissions / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
