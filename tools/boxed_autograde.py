"""nbgrader preprocessors of the course, named in its nbgrader_config.py (tools/grade.py writes it):

  * BoxedExecute replaces nbgrader's Execute in `Autograde.autograde_preprocessors`. The teacher's process (this
    one) makes the fresh inputs and references of every hidden re-check (tools/hidden_checks.py), runs the
    submission in a box of its own (tools/box.py) with a collector cell after each check cell, and judges the
    tensors that come back with the teacher's checker. Each check cell then carries the teacher's verdict as its
    last output (an error when it fails, so nbgrader scores it 0): nothing the notebook printed or raised decides
    a score. What the box saw (a cell past its time limit, the memory or process limit, a write outside the box,
    a network attempt, autograd in a step, suspicious lines) goes into a report cell at the top of the feedback
    and, for tools/grade.py's grades.csv, into report_dir/<student>/<notebook>.json.
  * RenderExercise replaces nbgrader's ClearSolutions in `GenerateAssignment.preprocessors`: every cell of the
    released notebook is the cell of the same id in the course's exercise notebook (placeholders, hints, folded
    derivations), so `nbgrader generate_assignment` releases exactly notebooks/<name>.ipynb.

Both run in the teacher's nbgrader process on JupyterHub as locally; this module, the box and the teacher's files
(lecture.py, utils.py) sit in the course's grader/ folder, outside source/, so nbgrader never releases them.
"""
from __future__ import annotations

import ast
import copy
import io
import json
import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Integer, Unicode

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent / "course")]
import box  # noqa: E402
import facts  # noqa: E402  (course/facts.py, or its copy in grader/)
import hidden_checks  # noqa: E402

HERE = Path(__file__).resolve().parent
NAMES_TXT = [HERE / "names.txt", HERE.parent / "names.txt"]
EXERCISES = [HERE / "exercises", HERE.parent / "notebooks"]
KEEP_DATA = ("text/plain", "image/png")  # what a learner's output may show in the feedback: no HTML, no scripts
TEXT_CAP = 20_000


def _first(paths: list[Path]) -> Path:
    return next((p for p in paths if p.exists()), paths[0])


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}


def checked(notebook: str, source: str) -> dict[str, list[str]]:
    """The learner functions a check cell exercises: every registered name in it, as a name (`BatchNorm.apply`) or
    a string (`utils.check_step("backward_tanh", ...)`), each with the gradients the cell's strings name
    (`"dembcat dW1 db1"`, `utils.cmp("b1", ...)`: db1); [] means all of that function's outputs."""
    tree = ast.parse(source)
    words = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            words.add(n.id)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            words.update(n.value.split())
    strings = {w for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) for w in n.value.split()}
    found = {}
    for f in sorted(words & hidden_checks.registered(notebook)):
        named = sorted({w for w in strings if w.startswith("d")} | {"d" + w for w in strings})
        found[f] = named
    return found


def checks_of(notebook: str, nb) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """{check grade_id: {function: gradients}} for the graded cells, and the grade_ids with no re-check."""
    found, unguarded = {}, []
    for c in nb.cells:
        m = meta(c)
        if m.get("grade"):
            names = checked(notebook, c.source)
            (found.__setitem__(m["grade_id"], names) if names else unguarded.append(m["grade_id"]))
    return found, unguarded


def _safe(outputs: list) -> list:
    """A learner's outputs as the feedback may show them: text and images only, capped."""
    safe = []
    for o in outputs if isinstance(outputs, list) else []:
        try:
            kind = o.get("output_type")
            if kind == "stream":
                safe.append(nbformat.v4.new_output("stream", name="stderr" if o.get("name") == "stderr" else "stdout",
                                                   text=str(o.get("text", ""))[:TEXT_CAP]))
            elif kind == "error":
                safe.append(nbformat.v4.new_output("error", ename=str(o.get("ename", ""))[:200],
                                                   evalue=str(o.get("evalue", ""))[:TEXT_CAP],
                                                   traceback=[str(t)[:TEXT_CAP] for t in o.get("traceback", [])][:50]))
            elif kind in ("display_data", "execute_result"):
                data = {k: str(v)[:TEXT_CAP * 10] for k, v in (o.get("data") or {}).items() if k in KEEP_DATA}
                if data:
                    safe.append(nbformat.v4.new_output("display_data", data=data))
        except Exception:
            continue
    return safe


def _label(nb, index: int) -> str:
    gid = meta(nb.cells[index]).get("grade_id") if 0 <= index < len(nb.cells) else None
    return gid or f"cell {index + 1}"


def grade_in_box(nb, notebook: str, *, seed: int, cell_timeout: int, timeout: int, slot: int = 0,
                 limits: dict | None = None) -> dict:
    """Run the submission `nb` (sanitized by nbgrader: the teacher's locked cells) in a box, judge its re-checks
    outside, and write the verdicts into nb's check cells. Returns the report."""
    import torch

    checks, unguarded = checks_of(notebook, nb)
    size = facts.sizes_in(nb.cells)
    inputs, refs = hidden_checks.make_inputs(notebook, checks, seed, size)
    run_nb = copy.deepcopy(nb)
    run_nb.cells, where = [], {}
    for i, c in enumerate(nb.cells):
        c2 = copy.deepcopy(c)
        if c2.cell_type == "code":
            c2.outputs, c2.execution_count = [], None
        where[i] = len(run_nb.cells)
        run_nb.cells.append(c2)
        gid = meta(c).get("grade_id")
        if gid in checks:
            run_nb.cells.append(nbformat.v4.new_code_cell(hidden_checks.collector_cell(gid)))
    files = {"notebook.ipynb": nbformat.writes(run_nb).encode(), "utils.py": hidden_checks.teacher_file("utils.py"),
             "names.txt": _first(NAMES_TXT)}
    for gid, trials in inputs.items():
        buf = io.BytesIO()
        torch.save(trials, buf)
        files[f"inputs/{gid}.pt"] = buf.getvalue()
    result = box.run(files, cell_timeout=cell_timeout, timeout=timeout, slot=slot, limits=limits)

    report = {"status": "graded", "events": [], "attempts": [], "autograd": {}, "suspicious": [], "unguarded": unguarded}
    try:
        executed = nbformat.reads(result["files"]["executed.ipynb"].decode("utf-8"), as_version=4)
    except Exception:
        executed = None
    if result["status"] == "time limit":
        report["status"] = f"time limit: the notebook ran past its limit of {timeout} s and was stopped, scored 0"
    elif executed is None:
        report["status"] = "not graded: the notebook's run ended without a result (it stopped its own run?)"
    try:
        events = json.loads(result["files"].get("events.json", b"[]"))
    except ValueError:
        events = []
    for e in events if isinstance(events, list) else []:
        if isinstance(e, dict) and isinstance(e.get("cell"), int):
            original = next((i for i, j in where.items() if j == e["cell"]), -1)
            seconds = f" ({cell_timeout} s)" if e.get("event") == "time limit" else ""
            report["events"].append(f"{str(e.get('event'))[:80]}{seconds} in {_label(nb, original)}")
    if result.get("memory_limit_hit"):
        report["events"].append("memory limit reached (a process was stopped or an allocation refused)")
    for a in result["audit"]:
        text = f"{str(a.get('kind'))[:20]} {str(a.get('what'))[:200]}"
        if text not in report["attempts"]:
            report["attempts"].append(text)

    learner_cells = [(_label(nb, i), c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"
                     and (meta(c).get("solution") or not meta(c).get("grade_id"))]
    tainted, report["suspicious"] = hidden_checks.scan(learner_cells, hidden_checks.registered(notebook))
    report["autograd"] = tainted

    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        j = where[i]
        outputs = _safe(executed.cells[j].outputs) if executed is not None and j < len(executed.cells) else []
        gid = meta(c).get("grade_id")
        if not meta(c).get("grade"):
            c.outputs = outputs
            continue
        c.outputs = [o for o in outputs if o.output_type == "stream" and o.name == "stdout"
                     or o.output_type == "display_data"]  # the verdict below decides, nothing the cell raised
        if gid in unguarded:
            failures = ["this check has no hidden re-check (tools/hidden_checks.py): it earns no points"]
        elif not report["status"].startswith("graded"):
            failures = [report["status"]]
        else:
            collector = executed.cells[j + 1] if executed is not None and j + 1 < len(executed.cells) else None
            why = " ".join(f"{o.get('ename')}: {o.get('evalue')}"[:300] for o in (collector.outputs if collector else [])
                           if o.get("output_type") == "error")
            try:
                answers = torch.load(io.BytesIO(result["files"][f"answers/{gid}.pt"]), weights_only=True)
            except Exception:
                answers = None
            failures = hidden_checks.judge(refs[gid], answers, size, tainted, why or "its cells did not get that far")
        names = list(checks.get(gid, {}))
        text = hidden_checks.message(names, failures, sum(len(hidden_checks.judged(r)) for r in refs.get(gid, [])
                                                          if not r.get("where")))
        if failures:
            c.outputs.append(nbformat.v4.new_output("error", ename="RecheckFailed", evalue=text.splitlines()[0],
                                                    traceback=[f"RecheckFailed: {text}"]))
        else:
            c.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text + "\n"))
    lines = [f"**{report['status']}**"] + [f"- {k}: {x}" for k in ("events", "attempts", "suspicious")
                                            for x in report[k]]
    lines += [f"- autograd: {f} ({why}): earns nothing" for f, why in tainted.items()]
    if len(lines) > 1 or report["status"] != "graded":
        nb.cells.insert(0, nbformat.v4.new_markdown_cell("### Grading report\n\n" + "\n".join(lines)))
    return report


class BoxedExecute(NbGraderPreprocessor):
    """nbgrader's Execute, but in a box, with the re-checks judged outside it (see the module's docstring)."""

    cell_timeout = Integer(60, help="seconds per cell").tag(config=True)
    timeout = Integer(900, help="seconds per notebook: past it, the notebook scores 0").tag(config=True)
    seed = Integer(1_000_003, help="seed of the hidden re-checks' fresh inputs").tag(config=True)
    slot = Integer(0, help="box slot (a uid of its own per slot: notebooks graded at once use different slots)").tag(config=True)
    limits = Dict({}, help=f"box limits, defaults {box.LIMITS}").tag(config=True)
    report_dir = Unicode("", help="where to write <student>/<notebook>.json, the report (tools/grade.py reads it)").tag(config=True)

    def preprocess(self, nb, resources):
        name = resources["nbgrader"]["notebook"]
        report = grade_in_box(nb, name, seed=self.seed, cell_timeout=self.cell_timeout, timeout=self.timeout,
                              slot=self.slot, limits=dict(self.limits))
        if self.report_dir:
            out = Path(self.report_dir) / resources["nbgrader"]["student"] / f"{name}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report))
        return nb, resources


class RenderExercise(NbGraderPreprocessor):
    """Each cell becomes the exercise notebook's cell of the same id: what `generate_assignment` releases."""

    exercises = Unicode("", help="folder of the exercise notebooks (default: grader/exercises)").tag(config=True)

    def preprocess(self, nb, resources):
        name = resources["nbgrader"]["notebook"]
        folder = Path(self.exercises) if self.exercises else _first(EXERCISES)
        exercise = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        by_id = {c.get("id"): c for c in exercise.cells}
        for c in nb.cells:
            e = by_id.get(c.get("id"))
            if e is None or e.cell_type != c.cell_type:
                raise ValueError(f"{name}: cell {c.get('id')} is not in the exercise notebook {folder / name}.ipynb")
            c.source = e.source
            if "attachments" in e:
                c.attachments = e.attachments
        return nb, resources
