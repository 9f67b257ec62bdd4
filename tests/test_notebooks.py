"""The notebooks: generated from course/, no answer leaked, checks all correct, sizes free, opened unmodified.

nbval (in the same test command) re-runs all 8 notebooks and compares their outputs with the stored ones;
these tests pin down what those stored outputs must say, and what the generator must have put in. They read the
stored notebooks and run none (tests/test_setup_cell.py runs each solution alone, with other sizes).
"""
import ast
import base64
import hashlib
import json
import re

import nbformat
import pytest

import build_notebooks as bn
import facts
import utils

NAMES = facts.NOTEBOOKS
CHECKS = {"01_atomic_backprop": 26}  # the lecture's 26 gradients; other notebooks: at least one check
# A displayed equation that states a derivative. In the exercise versions each sits in a closed fold, except these
# two in 01: the refresher's chain rule and the finite-difference definition.
DERIVATIVE = re.compile(r"\\partial|\\boxed|dx_i|dX =")
OPEN_ALLOWED = {"01_atomic_backprop": 2}


def read(path):
    return nbformat.read(path, as_version=4)


def text_outputs(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
            if o.get("output_type") == "error":
                out.append(f"ERROR {o.get('ename')}: {o.get('evalue')}")
    return "\n".join(out)


def all_notebooks() -> list:
    """The 8 notebooks: solutions and learner versions."""
    return [path for name in NAMES for path in bn.paths(name).values()]


def sizes_cell(nb) -> int:
    """Index of the one cell that sets every size."""
    return next(i for i, c in enumerate(nb.cells) if "sizes" in c.metadata.get("tags", []))


def size_literals(nb) -> set[str]:
    """The sizes the sizes cell assigns (32, 64; 200 in 04), plus vocab_size 27 and n - 1 = 31.

    Sizes of 10 and under (n_embd, block_size) are left out: 10 and 3 are too common in other roles (1e-10).
    """
    return {str(v) for v in bn.sizes(nb).values() if v > 10} | {"27", "31"}


def displayed_equations(markdown: str) -> list[str]:
    return re.findall(r"\$\$(.+?)\$\$", markdown, re.S)


def open_part(markdown: str) -> str:
    """The markdown a reader sees without opening any <details> fold."""
    return re.sub(r"<details>.*?</details>", "", markdown, flags=re.S)


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    name = request.param
    return name, read(bn.paths(name)["solution"]), read(bn.paths(name)["learner"])


def test_every_source_has_its_two_notebooks_and_every_notebook_a_source():
    assert NAMES and all(re.fullmatch(r"\d\d_\w+", n) for n in NAMES), NAMES
    missing = [str(p.relative_to(bn.ROOT)) for p in all_notebooks() if not p.exists()]
    assert not missing, f"run: python tools/build_notebooks.py  (missing: {missing})"
    stored = {p for d in (bn.LEARNER, bn.SOLUTIONS) for p in d.glob("*.ipynb")}
    orphans = sorted(str(p.relative_to(bn.ROOT)) for p in stored - set(all_notebooks()))
    assert not orphans, f"notebooks without a source in course/: {orphans}"


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebooks_are_what_the_source_generates(name):
    assert bn.out_of_sync(name) == [], f"run: python tools/build_notebooks.py {name[:2]}"


def test_one_marker_parser_round_trips():
    cell = ("def f(x):\n    # BEGIN SOLUTION\n    y = 2 * x\n    #@ y = ...  # TODO: (n,)\n    # END SOLUTION\n"
            "    return y\n### BEGIN HIDDEN TESTS\nassert f(1) == 2\n### END HIDDEN TESTS")
    assert bn.render(cell, "learner") == "def f(x):\n    y = ...  # TODO: (n,)\n    return y"
    assert bn.render(cell, "solved") == "def f(x):\n    y = 2 * x\n    return y"
    assert "assert f(1) == 2" not in bn.render(cell, "solution") and "y = 2 * x" in bn.render(cell, "solution")
    assert bn.render(cell, "grading").count("HIDDEN TESTS") == 2
    for broken in ("# BEGIN SOLUTION\nx = 1", "# END SOLUTION", "#@ x = ...", "# BEGIN SOLUTION\n### BEGIN HIDDEN TESTS"):
        with pytest.raises(ValueError):
            bn.regions(broken)


def test_setup_cell_template_is_valid_python():
    ast.parse((bn.ROOT / "tools" / "setup_cell.py").read_text())
    ast.parse(bn.setup_cell_source())


def test_no_solution_leaks_into_the_learner_version(pair):
    name, sol, learner = pair
    learner_code = "\n".join(c.source for c in learner.cells)
    assert bn.BEGIN not in learner_code and bn.END not in learner_code and bn.BEGIN_HIDDEN not in learner_code
    assert not re.search(r"^\s*#@ ", learner_code, re.M)
    regions = [r for c in sol.cells if c.cell_type == "code" for r in bn.solution_regions(c.source)]
    assert regions, "a solution notebook without a single exercise region"
    learner_lines = {l.strip() for l in learner_code.splitlines()}
    for region in regions:
        answer = [l.strip() for l in region.splitlines() if l.strip() and not l.strip().startswith("#")]
        leaked = [l for l in answer if l in learner_lines and len(l) > 20]
        assert not leaked, f"{name}: answer lines visible in the learner version: {leaked}"
    for c in sol.cells:
        if "solution" in c.metadata.get("tags", []):
            assert c.source not in learner_code


def test_derivations_are_folded_in_the_exercise_version(pair):
    """Every derivative-stating equation of an exercise version is in a closed fold; none was deleted."""
    name, sol, learner = pair
    sol_eqs = [e for c in sol.cells if c.cell_type == "markdown" for e in displayed_equations(c.source)
               if DERIVATIVE.search(e)]
    learner_md = [c.source for c in learner.cells if c.cell_type == "markdown"]
    learner_eqs = [e for md in learner_md for e in displayed_equations(md) if DERIVATIVE.search(e)]
    still_open = [e for md in learner_md for e in displayed_equations(open_part(md)) if DERIVATIVE.search(e)]
    assert sorted(learner_eqs) == sorted(sol_eqs), f"{name}: a derivation is missing from the exercise version"
    assert len(still_open) == OPEN_ALLOWED.get(name, 0), f"{name}: open derivations: {still_open}"
    sol_open = [e for c in sol.cells if c.cell_type == "markdown" for e in displayed_equations(open_part(c.source))
                if DERIVATIVE.search(e)]
    assert sorted(sol_open) == sorted(sol_eqs), f"{name}: the solution must keep every derivation open"


def test_solution_checks_all_correct(pair):
    name, sol, _ = pair
    text = text_outputs(sol)
    assert "ERROR" not in text and "not implemented yet" not in text
    boards = re.findall(r"^(\d+)/(\d+) correct", text, re.M)
    assert boards, f"{name}: no scoreboard in the stored outputs"
    for right, total in boards:
        assert right == total and int(total) > 0, f"{name}: scoreboard {right}/{total}"
    if name in CHECKS:
        assert int(boards[-1][1]) == CHECKS[name]
    assert "approximate: False" not in text


def test_learner_version_runs_unfilled(pair):
    name, _, learner = pair
    text = text_outputs(learner)
    assert "ERROR" not in text, f"{name}: the unfilled learner version raised"
    assert "not implemented yet" in text
    boards = re.findall(r"^(\d+)/(\d+) correct", text, re.M)
    assert boards and all(right == "0" for right, _ in boards), boards


def test_04_reaches_the_lecture_loss():
    """The val loss the solution's run printed: inside the lecture's band (2.1099-2.1162), with some slack above."""
    text = text_outputs(read(bn.paths("04_full_training")["solution"]))
    val = [float(v) for v in re.findall(r"val(?:idation)? loss[ :=]*(\d\.\d+)", text, re.I)]
    assert val, "no val loss printed"
    assert 2.0 < val[-1] <= 2.12, val


def test_checksums_are_current():
    """utils.py or names.txt changed without checksums.sha256, its versions/ copy and the set-up cells updated?"""
    actual = {f: hashlib.sha256((bn.ROOT / f).read_bytes()).hexdigest() for f in bn.VERIFIED_FILES}
    assert bn.read_checksums() == actual, "run tools/build_notebooks.py to update checksums.sha256 and the set-up cells"
    assert utils.NAMES_SHA256 == actual["names.txt"]
    for f, digest in actual.items():  # what the set-up cell downloads, at the address it derives from the digest
        copy = bn.version_path(f, digest)
        assert copy.is_file() and copy.read_bytes() == (bn.ROOT / f).read_bytes(), (
            f"{copy.relative_to(bn.ROOT)} missing or different: run tools/build_notebooks.py and commit versions/")
    setup = bn.setup_cell_source()
    for path in all_notebooks():
        first_code = next(c for c in read(path).cells if c.cell_type == "code")
        assert first_code.source == setup, f"{path.name}: stale set-up cell; run tools/build_notebooks.py"
        assert json.dumps(actual["utils.py"]) in first_code.source


def test_every_published_version_is_intact():
    """versions/<digest>/<file> is what saved notebooks download: each file's sha256 still starts with its folder's
    name. (Never edit or delete one: a notebook saved when it was current needs it.)"""
    published = sorted((bn.ROOT / "versions").glob("*/*"))
    assert published, "no versions/: run tools/build_notebooks.py"
    for path in published:
        assert path.name in bn.VERIFIED_FILES, f"{path.relative_to(bn.ROOT)}: not a file the set-up cell downloads"
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] == path.parent.name, (
            f"{path.relative_to(bn.ROOT)} was changed after it was published")


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_opens_unmodified_with_setup_folded(path):
    """JupyterLab rewrites a `Python 3` kernelspec at once (a save prompt on an untouched notebook); the set-up
    cell is folded in JupyterLab (source_hidden) and in Colab (form view, with a one-line #@title)."""
    nb = read(path)
    assert nb.metadata.kernelspec == {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert "setup" in setup.metadata.tags
    assert setup.metadata.jupyter == {"source_hidden": True} and setup.metadata.cellView == "form"
    assert setup.source.startswith("#@title ") and "\n" not in setup.source.splitlines()[0]
    assert "found in the course repository" in text_outputs(nb), "the set-up cell's output no longer says what it did"


@pytest.mark.parametrize("name", NAMES)
def test_exercise_links_to_its_solution_both_ways(name):
    top = read(bn.paths(name)["learner"]).cells[0].source
    assert f"](solutions/{name}.ipynb)" in top, "no relative link to the local solution"
    assert f"](https://colab.research.google.com/github/{bn.REPO}/blob/{bn.BRANCH}/notebooks/solutions/{name}.ipynb)" in top
    assert (bn.LEARNER / "solutions" / f"{name}.ipynb").exists()
    back = read(bn.paths(name)["solution"]).cells[0].source
    assert f"](../{name}.ipynb)" in back


def test_figures_are_embedded_and_current():
    """Every figure a notebook shows travels inside it (Colab has no figures/), identical to figures/."""
    shown = set()
    for path in all_notebooks():
        for c in read(path).cells:
            for name in re.findall(r"\(attachment:([\w.-]+\.png)\)", c.source if c.cell_type == "markdown" else ""):
                data = c.get("attachments", {}).get(name, {}).get("image/png")
                assert data, f"{path.name}: {name} is not embedded; run tools/build_notebooks.py"
                assert base64.b64decode(data) == (bn.ROOT / "figures" / name).read_bytes(), (
                    f"{path.name}: embedded {name} is stale; run tools/build_notebooks.py")
                shown.add(name)
    assert shown == {p.name for p in (bn.ROOT / "figures").glob("*.png")}, shown


def test_no_size_is_hard_coded(pair):
    """After the `sizes` cell no code cell writes a size as a number: n, n_hidden, vocab_size, n - 1 instead."""
    name, sol, _ = pair
    literals = size_literals(sol)
    assert name != "04_full_training" or "200" in literals, literals
    pattern = re.compile(r"(?<![\w.])(?:" + "|".join(sorted(literals)) + r")(?![\w.])")
    for c in sol.cells[sizes_cell(sol) + 1:]:
        if c.cell_type == "code" and "setup" not in c.metadata.get("tags", []):
            found = pattern.findall(re.sub(r"#.*", "", c.source))  # comments may name the lecture's numbers
            assert not found, f"{name}: literal size {found} in:\n{c.source[:300]}"
