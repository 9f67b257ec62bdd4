"""The notebooks: learner versions in sync with the solutions, no answer leaked, checks all correct, sizes free.

nbval (in the same test command) re-runs all 8 notebooks and compares their outputs with the stored ones;
these tests pin down what those stored outputs must say.
"""
import base64
import hashlib
import json
import re

import nbformat
import pytest

import build_notebooks as bn
import utils

NAMES = ["01_atomic_backprop", "02_fused_cross_entropy", "03_fused_batchnorm", "04_full_training"]
CHECKS = {"01_atomic_backprop": 26}  # the lecture's 26 gradients; other notebooks: at least one check


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


def sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def all_notebooks() -> list:
    """The 8 notebooks: solutions and learner versions."""
    return [*bn.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"), *bn.LEARNER.glob("[0-9][0-9]_*.ipynb")]


def sizes_cell(nb) -> int:
    """Index of the one cell that sets every size."""
    return next(i for i, c in enumerate(nb.cells) if "sizes" in c.metadata.get("tags", []))


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    name = request.param + ".ipynb"
    return name, read(bn.SOLUTIONS / name), read(bn.LEARNER / name)


def test_all_eight_notebooks_exist():
    assert sorted(p.stem for p in bn.SOLUTIONS.glob("[0-9][0-9]_*.ipynb")) == NAMES
    assert sorted(p.stem for p in bn.LEARNER.glob("[0-9][0-9]_*.ipynb")) == NAMES


def test_learner_version_is_generated_from_the_solution(pair):
    name, sol, learner = pair
    fresh = bn.prepare_solution(read(bn.SOLUTIONS / name), name)
    assert sources(fresh) == sources(sol), "generated cells of the solution are stale: run tools/build_notebooks.py"
    assert sources(bn.make_learner(fresh, name)) == sources(learner), (
        f"notebooks/{name} is not what the solution generates: run tools/build_notebooks.py {name[:2]}")


def test_no_solution_leaks_into_the_learner_version(pair):
    name, sol, learner = pair
    learner_code = "\n".join(c.source for c in learner.cells)
    assert bn.BEGIN not in learner_code and bn.END not in learner_code
    assert not re.search(r"^\s*#@", learner_code, re.M)
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


def test_solution_checks_all_correct(pair):
    name, sol, _ = pair
    text = text_outputs(sol)
    assert "ERROR" not in text and "not implemented yet" not in text
    boards = re.findall(r"^(\d+)/(\d+) correct", text, re.M)
    assert boards, f"{name}: no scoreboard in the stored outputs"
    for right, total in boards:
        assert right == total and int(total) > 0, f"{name}: scoreboard {right}/{total}"
    if name[:-6] in CHECKS:
        assert int(boards[-1][1]) == CHECKS[name[:-6]]
    assert "approximate: False" not in text


def test_learner_version_runs_unfilled(pair):
    name, _, learner = pair
    text = text_outputs(learner)
    assert "ERROR" not in text, f"{name}: the unfilled learner version raised"
    assert "not implemented yet" in text
    boards = re.findall(r"^(\d+)/(\d+) correct", text, re.M)
    assert boards and all(right == "0" for right, _ in boards), boards


def test_04_reaches_the_lecture_loss():
    text = text_outputs(read(bn.SOLUTIONS / "04_full_training.ipynb"))
    val = [float(v) for v in re.findall(r"val(?:idation)? loss[^\d\n]*(\d\.\d+)", text, re.I)]
    assert val and val[-1] <= 2.12, val


def test_checksums_are_current():
    """utils.py or names.txt changed without checksums.sha256 (and the set-up cells) being updated?"""
    actual = {f: hashlib.sha256((bn.ROOT / f).read_bytes()).hexdigest() for f in bn.VERIFIED_FILES}
    assert bn.read_checksums() == actual, "run tools/build_notebooks.py to update checksums.sha256 and the set-up cells"
    assert utils.NAMES_SHA256 == actual["names.txt"]
    setup = bn.setup_cell_source()
    for path in all_notebooks():
        nb = read(path)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code.source == setup, f"{path.name}: stale set-up cell; run tools/build_notebooks.py"
        assert json.dumps(actual["utils.py"]) in first_code.source


@pytest.mark.parametrize("name", NAMES[:3])
def test_solutions_pass_with_other_sizes(name, tmp_path):
    """No hard-coded size: with another batch size and hidden size every check still passes."""
    nb = read(bn.SOLUTIONS / f"{name}.ipynb")
    nb.cells.insert(sizes_cell(nb) + 1, nbformat.v4.new_code_cell("batch_size = 17\nn_hidden = 40"))
    bn.execute(nb, bn.SOLUTIONS)
    text = text_outputs(nb)
    boards = re.findall(r"^(\d+)/(\d+) correct", text, re.M)
    assert boards and all(r == t for r, t in boards), boards
    assert "(17, 3)" in text, "the other batch size did not take effect"


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
    for c in sol.cells[sizes_cell(sol) + 1:]:
        if c.cell_type == "code":
            code = re.sub(r"#.*", "", c.source)  # comments may name the lecture's numbers
            found = re.findall(r"(?<![\w.])(?:32|64|27|31)(?![\w.])", code)
            assert not found, f"{name}: literal size {found} in:\n{c.source[:300]}"
