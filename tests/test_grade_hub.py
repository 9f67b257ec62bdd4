"""The JupyterHub path end to end: `tools/grade.py --export-source` writes a course that nbgrader's own CLI uses as
it is, with a local exchange. In a file of its own so that `make test`'s second worker runs it beside the class
graded in tests/test_grade.py.
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat

import build_notebooks as bn
import grade
from test_grade import NAME, ROOT, learner_copy, needs_box


# ---------------------------------------------------------------------------------------------- JupyterHub, end to end

@needs_box
def test_nbgrader_round_trip_with_a_local_exchange(tmp_path):
    """--export-source writes a course nbgrader's own commands use as they are: generate, release, fetch, validate
    (the untouched notebook: not a success), submit (the course's own answers), collect, autograde, feedback, export.
    generate_assignment and autograde add the assignment and the learner to the gradebook themselves (their --create
    default), as a teacher who skips `nbgrader db` gets. Several learners, untouched and adversarial notebooks are
    graded in tests/test_grade.py, by the same BoxedExecute."""
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    subprocess.run([sys.executable, str(ROOT / "tools" / "grade.py"), "--export-source", str(course),
                    "--cell-timeout", "30"], check=True, capture_output=True, timeout=300)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f"c.Exchange.root = {str(exchange)!r}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])

    def ng(*args, cwd=course):
        p = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, (args, p.stdout[-2000:], p.stderr[-3000:])
        return p.stdout + p.stderr

    ng("generate_assignment", NAME, "--force")
    released = course / "release" / NAME
    assert sorted(p.name for p in released.iterdir()) == sorted(["names.txt", f"{NAME}.ipynb", "utils.py"])
    exercise = nbformat.read(bn.paths(NAME)["learner"], as_version=4)
    release_nb = nbformat.read(released / f"{NAME}.ipynb", as_version=4)
    assert [c.source for c in release_nb.cells] == [c.source for c in exercise.cells]
    ng("release_assignment", NAME, "--force")
    home = tmp_path / "alice"
    home.mkdir()
    ng("fetch_assignment", NAME, "--course", grade.COURSE_ID, f"--Exchange.root={exchange}", cwd=home)
    mine_path = home / NAME / f"{NAME}.ipynb"
    said = ng("validate", str(mine_path), cwd=home)  # a learner's validate on the untouched notebook
    assert "Success" not in said and "failed" in said.lower(), said[-2000:]
    mine = nbformat.read(mine_path, as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in learner_copy().cells if grade.nbgrader_meta(c)}
    for c in mine.cells:
        if grade.nbgrader_meta(c).get("solution"):
            c.source = answers[c.metadata["nbgrader"]["grade_id"]]
    nbformat.write(mine, mine_path)
    ng("submit", NAME, "--course", grade.COURSE_ID, f"--Exchange.root={exchange}", "--student=alice", cwd=home)
    ng("collect", NAME)
    log = ng("autograde", NAME, "--force")
    assert "checksum" not in log.lower(), log[-3000:]
    ng("generate_feedback", NAME, "--force")
    ng("export", "--to", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv") as f:
        scores = {r["student_id"]: float(r["raw_score"] or r["score"]) for r in csv.DictReader(f)}
    full = sum(m["points"] for m in grade.graded_ids(grade.grading_notebook(NAME)).values() if m.get("grade"))
    assert scores == {"alice": full}
    assert (course / "feedback" / "alice" / NAME / f"{NAME}.html").exists()
