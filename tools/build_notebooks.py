"""Generate the course's 8 notebooks from the hand-edited sources in course/, then run them.

    python tools/build_notebooks.py            # every notebook (make notebooks)
    python tools/build_notebooks.py 01 03      # only these (make notebook NB=03)
    python tools/build_notebooks.py --check    # are the stored notebooks what the sources generate? (no run)

The sources are jupytext percent-format files, course/NN_name.py (`# %%` code cells, `# %% [markdown]` prose).
From each the build makes notebooks/solutions/NN_name.ipynb and notebooks/NN_name.ipynb, executes both top to
bottom with nbclient and stores their real outputs. What it adds on the way:
  * a link cell on top (Colab badge, the other version), and the set-up cell (tag `setup`) from
    tools/setup_cell.py with the checksums of utils.py and names.txt (written to checksums.sha256). A copy of
    each is kept under versions/<first 16 hex digits of its sha256>/, where the set-up cell downloads it from:
    a notebook saved today still gets its own utils.py after utils.py changes (never edit or delete them);
  * `# include: lecture.forward` lines in code cells become that definition from course/lecture.py (or any
    module in course/), so code shared by several notebooks, tests and tools is written once;
    `# include solved: lecture.backward_probs` gives it with its solution markers removed (the answer shown),
    and a code cell `# include cells: model_setup.py` becomes all the cells of that percent-format file;
  * figures: `![caption](attachment:NAME.png)` in a markdown cell embeds figures/NAME.png, and a markdown line
    `<!-- include: course/bench_as_run.txt -->` shows that file (written by a program, e.g. make bench) as a block;
  * nbgrader cell metadata (answer, graded check, locked) in both versions, the same grade_id in each.

Markers, in code cells (one parser, `regions`, reads them all):
    # BEGIN SOLUTION          the answer: kept in the solution, replaced in the exercise version by the
    #@ dW2 = ...  # TODO      region's `#@ ` lines, or by `name = ...  # TODO` for each name it assigns
    # END SOLUTION
    ### BEGIN HIDDEN TESTS    teacher-only tests: in the grading source only (tools/grade.py)
    ### END HIDDEN TESTS
Cell tags: `solution` (dropped from the exercise version), `derivation` (markdown folded in a closed
<details> block in the exercise version, open in the solution), `check` (a graded test cell), `setup`, `sizes`.
"""
from __future__ import annotations

import ast
import base64
import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))
import facts  # noqa: E402  (course/facts.py: the notebook list, the parameter names, the sizes)

SOURCES = ROOT / "course"
SOLUTIONS = ROOT / "notebooks" / "solutions"
LEARNER = ROOT / "notebooks"
CHECKSUMS = "checksums.sha256"
VERIFIED_FILES = ("utils.py", "names.txt")

# The one repository setting: badges and the set-up cell's download URL are built from it.
REPO = "backprop-ninja/backprop-ninja"
BRANCH = "main"
BASE_URL = f"https://raw.githubusercontent.com/{REPO}/{BRANCH}"
COURSE_URL = f"https://github.com/{REPO}"
SHORT_RUN = 500  # training steps of a quick run (the tests' nbval run, grading); make notebooks runs them all

BEGIN, END, PLACEHOLDER = "# BEGIN SOLUTION", "# END SOLUTION", "#@ "
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
INCLUDE = re.compile(r"^# include( solved)?: (.+)$")
MD_INCLUDE = re.compile(r"^<!-- include: ([\w./-]+) -->$", re.M)  # a text file, shown as a code block
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
FOLD = ("<details><summary><b>Derivation</b>: open it after you have tried it on paper</summary>\n\n",
        "\n\n</details>")


def names() -> list[str]:
    return list(facts.NOTEBOOKS)


# ---------------------------------------------------------------------------------------------- generated cells

def sha256_of_files(root: Path = ROOT) -> dict[str, str]:
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in VERIFIED_FILES}


def read_checksums(root: Path = ROOT) -> dict[str, str]:
    pairs = (line.split() for line in (root / CHECKSUMS).read_text().splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def version_path(f: str, digest: str, root: Path = ROOT) -> Path:
    """Where the version of `f` with this sha256 is kept, and downloaded from (the set-up cell builds the URL)."""
    return root / "versions" / digest[:16] / f


def publish(root: Path = ROOT) -> dict[str, str]:
    """Write checksums.sha256 and keep a copy of each verified file under versions/, by its checksum.

    Versions git does not track yet were never published (pushed), so no saved notebook can need them: all but
    the current ones are removed, lest every local rebuild leave a copy behind.
    """
    digests = sha256_of_files(root)
    (root / CHECKSUMS).write_text("".join(f"{d}  {f}\n" for f, d in digests.items()))
    current = {version_path(f, d, root) for f, d in digests.items()}
    for path in current:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / path.name, path)
    tracked = subprocess.run(["git", "ls-files", "versions"], cwd=root, capture_output=True, text=True)
    if tracked.returncode == 0:
        keep = {root / p for p in tracked.stdout.split()} | current
        for path in (root / "versions").glob("*/*"):
            if path not in keep:
                path.unlink()
                if not any(path.parent.iterdir()):
                    path.parent.rmdir()
    return digests


def setup_cell_source(checksums: dict[str, str] | None = None) -> str:
    """tools/setup_cell.py (valid Python) with the real URLs and the checksums (checksums.sha256's) put in."""
    text = (ROOT / "tools" / "setup_cell.py").read_text().rstrip("\n")
    text = re.sub(r'(BACKPROP_NINJA_BASE_URL", )"[^"]*"', lambda m: f'{m[1]}"{BASE_URL}"', text)
    text = re.sub(r'^COURSE_URL = "[^"]*"$', lambda m: f'COURSE_URL = "{COURSE_URL}"', text, flags=re.M)
    sha = "{" + ", ".join(f'"{f}": "{d}"' for f, d in (checksums or read_checksums()).items()) + "}"
    return re.sub(r"^SHA256 = \{.*\}$", lambda m: f"SHA256 = {sha}", text, flags=re.M)


def colab_url(path: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{path}"


def badge(path: str, label: str = "Open In Colab") -> str:
    return f"[![{label}](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(path)})"


def link_cell_source(name: str, solution: bool) -> str:
    file = f"{name}.ipynb"
    learner, sol = f"notebooks/{file}", f"notebooks/solutions/{file}"
    if solution:
        return (f"{badge(sol)} &nbsp; **Solution version.** The exercise version, to fill in yourself: "
                f"[{file}](../{file}) beside this folder, or [in Colab]({colab_url(learner)}).")
    return (f"{badge(learner)} &nbsp; **Exercise version:** fill in every cell marked `TODO`; "
            f"each check below it tells you at once whether your gradient is right. "
            f"Stuck? Open the hints, then the solution: [solutions/{file}](solutions/{file}) "
            f"(working locally) or [in Colab]({colab_url(sol)}).")


def embed_figures(cell) -> None:
    """Attach figures/NAME.png to a markdown cell that shows `![...](attachment:NAME.png)`.

    Attachments travel inside the notebook, so the figure shows in Colab too, where figures/ is absent.
    """
    found = {n: ROOT / "figures" / n for n in re.findall(r"\(attachment:([\w.-]+\.png)\)", cell.source)}
    if found:
        cell["attachments"] = {n: {"image/png": base64.b64encode(p.read_bytes()).decode()} for n, p in found.items()}


# ---------------------------------------------------------------------------------------------- includes

def definition(module: str, name: str) -> str:
    """The source of one top-level definition (function, class or assignment) in course/<module>.py."""
    path = SOURCES / f"{module}.py"
    text = path.read_text()
    for node in ast.parse(text).body:
        defined = [node.name] if hasattr(node, "name") else [
            t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
        if name in defined:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            return "\n".join(text.splitlines()[first - 1: node.end_lineno])
    raise ValueError(f"# include: {module}.{name}: no top-level {name} in {path.relative_to(ROOT)}")


def expand_includes(source: str) -> str:
    out = []
    for line in source.splitlines():
        m = INCLUDE.match(line.strip())
        if m:
            refs = [r.strip().split(".") for r in m[2].split(",")]
            text = "\n\n\n".join(definition(mod, name) for mod, name in refs)
            out.append(render(text, "solved") if m[1] else text)
        else:
            out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- markers

def regions(source: str) -> list[tuple[str, list[str]]]:
    """Split a code cell into ("code" | "solution" | "hidden", lines) segments; markers are not in the lines."""
    out: list[tuple[str, list[str]]] = []
    kind = "code"
    opening = {BEGIN: "solution", BEGIN_HIDDEN: "hidden"}
    closing = {END: "solution", END_HIDDEN: "hidden"}
    for line in source.splitlines():
        s = line.strip()
        if s in opening:
            if kind != "code":
                raise ValueError(f"{s} inside a {kind} region")
            kind = opening[s]
            out.append((kind, [line[: len(line) - len(line.lstrip())]]))  # first line: the indent
        elif s in closing:
            if kind != closing[s]:
                raise ValueError(f"{s} without its BEGIN")
            kind = "code"
        else:
            if kind == "code" and s.startswith(PLACEHOLDER):
                raise ValueError(f"`{PLACEHOLDER}` line outside a solution region: {line!r}")
            if kind == "code" and (not out or out[-1][0] != "code"):
                out.append(("code", []))
            out[-1][1].append(line)
    if kind != "code":
        raise ValueError(f"a {kind} region without its END")
    return out


def _placeholder(region: list[str], indent: str) -> list[str]:
    explicit = [l.strip()[len(PLACEHOLDER):] for l in region if l.strip().startswith(PLACEHOLDER)]
    if explicit:
        return [indent + l for l in explicit]
    code = textwrap.dedent("\n".join(region))
    assigned: list[str] = []
    for node in ast.parse(code).body:
        for t in node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]:
            if isinstance(t, ast.Name) and t.id not in assigned:
                assigned.append(t.id)
    if not assigned:
        raise ValueError(f"solution region assigns no name; give it a `{PLACEHOLDER}` placeholder:\n{code}")
    return [f"{indent}{n} = ...  # TODO" for n in assigned]


def render(source: str, version: str) -> str:
    """A code cell as the `solution`, `learner` or `grading` version shows it, or `solved` (no markers at all)."""
    out: list[str] = []
    for kind, lines in regions(source):
        if kind == "code":
            out += lines
        elif kind == "solution" and version == "learner":
            out += _placeholder(lines[1:], lines[0])
        elif kind == "solution" and version == "solved":
            out += [l for l in lines[1:] if not l.strip().startswith(PLACEHOLDER)]
        elif kind == "solution":
            out += [lines[0] + BEGIN, *(l for l in lines[1:]), lines[0] + END]
        elif kind == "hidden" and version == "grading":
            out += [lines[0] + BEGIN_HIDDEN, *lines[1:], lines[0] + END_HIDDEN]
    return "\n".join(out)


def solution_regions(source: str) -> list[str]:
    """The answer lines of every solution region of a cell (placeholders excluded), for the leak test."""
    return ["\n".join(l for l in lines[1:] if not l.strip().startswith(PLACEHOLDER))
            for kind, lines in regions(source) if kind == "solution"]


def sizes(nb) -> dict[str, int]:
    """The integer sizes a notebook's `sizes` cell sets (batch_size, n_embd, ...)."""
    return facts.sizes_in(nb.cells)


def shorten_training(nb, steps: int = SHORT_RUN):
    """Shorten the run in the notebook's `train_steps` cell (it has one, or this is an error): 04's training to
    `max_steps = steps`, 03's batch-size experiment to `experiment_steps = steps // 100` at each batch size."""
    cells = [c for c in nb.cells if "train_steps" in c.metadata.get("tags", [])]
    short = {"max_steps": steps, "experiment_steps": max(1, steps // 100)}
    counts = [re.subn(r"^(max_steps|experiment_steps)\s*=\s*[\d_]+", lambda m: f"{m[1]} = {short[m[1]]:_}",
                      c.source, flags=re.M) for c in cells]
    if [n for _, n in counts] != [1]:
        raise ValueError("a notebook to shorten needs one cell tagged train_steps that sets max_steps once")
    cells[0].source = counts[0][0]  # in place: nbval's items hold this very cell
    return nb


def has_solution(source: str) -> bool:
    return any(kind == "solution" for kind, _ in regions(source))


# ---------------------------------------------------------------------------------------------- nbgrader

def _slug(source: str) -> str:
    """A readable id from what a cell defines or checks: its first def/class, cmp name or assigned name."""
    m = (re.search(r"^\s*(?:def|class) (\w+)", source, re.M) or re.search(r"utils\.\w+\(\s*\"([^\"]+)\"", source)
         or re.search(r"^(\w+)\s*=", source, re.M))
    return re.sub(r"\W+", "_", m[1]) if m else "cell"


def checked_count(source: str) -> int:
    """How many gradients a check cell judges: its utils.cmp and utils.gradcheck calls, each output named in a
    utils.check_step call ("dh dW2 db2": 3) and each labelled input of a utils.check_function call."""
    count = len(re.findall(r"utils\.(?:cmp|gradcheck)\(", source))
    count += sum(len(names.split()) for names in re.findall(r'utils\.check_step\("\w+", \w+, "([\w ]+)"', source))
    for labels in re.findall(r"utils\.check_function\([^\[]*\[([^\]]*)\]", source):
        count += len(re.findall(r'"[^"]*"', labels))
    return count


def add_nbgrader_metadata(nb) -> None:
    """Answer cells (a solution region), graded checks (tag `check`) and locked code cells, for nbgrader.

    A check's points are the number of gradients it checks (checked_count), unless the
    source states them in the cell's header (`points=7`, for a check that calls cmp in a loop).
    grade_ids come from the source, so the exercise version and the grading source agree on them.
    """
    seen: dict[str, int] = {}
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        tags = c.metadata.get("tags", [])
        points = c.metadata.pop("points", None)  # a source may state them: `# %% tags=["check"] points=7`
        if "check" in tags:
            counted = max(1, checked_count(c.source))
            kind, meta = "check", dict(grade=True, solution=False, locked=True, points=int(points or counted))
        elif has_solution(c.source):
            kind, meta = "answer", dict(grade=False, solution=True, locked=False)
        else:
            kind, meta = "locked", dict(grade=False, solution=False, locked=True)
        grade_id = f"{kind}_{_slug(c.source)}"
        seen[grade_id] = seen.get(grade_id, 0) + 1
        if seen[grade_id] > 1:
            grade_id += f"_{seen[grade_id]}"
        c.metadata["nbgrader"] = dict(schema_version=3, grade_id=grade_id, **meta)


# ---------------------------------------------------------------------------------------------- versions

def read_source(name: str):
    """The source as a notebook: includes expanded, generated cells filled, figures embedded."""
    nb = nbformat.v4.new_notebook(cells=facts.source_cells(name))
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for c in nb.cells:
        if c.cell_type == "code":
            c.source = expand_includes(c.source)
            if "setup" in c.metadata.get("tags", []):
                c.source = setup_cell_source()
                c.metadata.update({"jupyter": {"source_hidden": True}, "cellView": "form"})
        elif c.cell_type == "markdown":
            c.source = MD_INCLUDE.sub(lambda m: "```\n" + (ROOT / m[1]).read_text().rstrip("\n") + "\n```", c.source)
            embed_figures(c)
    return nb


def version(src, name: str, which: str):
    """The `solution`, `learner` or `grading` notebook made from a source read by read_source."""
    nb = copy.deepcopy(src)
    if which != "solution":  # from the source's markers, before they are rendered away: the same ids in each
        add_nbgrader_metadata(nb)
    if which != "solution":  # the grading source has the learner version's cells
        TagRemovePreprocessor(remove_cell_tags={"solution"}).preprocess(nb, {})
    for c in nb.cells:
        if c.cell_type == "code":
            c.source = render(c.source, which)
        elif which == "learner" and "derivation" in c.metadata.get("tags", []):
            c.source = FOLD[0] + c.source + FOLD[1]
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(link_cell_source(name, which != "learner"),
                                                     metadata={"tags": ["badge"]}))
    for i, c in enumerate(nb.cells):  # stable ids: a rebuild changes no id
        c["id"] = f"c{i:03d}"
    ClearOutputPreprocessor().preprocess(nb, {})
    return nb


def versions(name: str) -> dict:
    src = read_source(name)
    return {which: version(src, name, which) for which in ("solution", "learner")}


def grading_source(name: str):
    """The teacher's notebook for nbgrader: solutions and hidden tests in, nbgrader metadata on every code cell."""
    return version(read_source(name), name, "grading")


def paths(name: str) -> dict[str, Path]:
    return {"solution": SOLUTIONS / f"{name}.ipynb", "learner": LEARNER / f"{name}.ipynb"}


# ---------------------------------------------------------------------------------------------- running

def execute(nb, cwd: Path, timeout: int = 1800, extra_env: dict[str, str] | None = None):
    """Run a notebook top to bottom in `cwd` with this interpreter's kernel; returns the executed notebook."""
    from nbclient import NotebookClient

    os.environ.pop("MPLBACKEND", None)  # with it set, ipykernel does not use the inline backend: plots vanish
    env = dict(os.environ, **(extra_env or {}))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb


def write(nb, path: Path) -> None:
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")


def comparable(nb) -> list:
    """What the sources decide about a notebook: each cell's type, source, metadata and attachments."""
    return [(c.cell_type, c.source, {k: v for k, v in c.metadata.items() if k != "execution"},
             c.get("attachments")) for c in nb.cells]


def out_of_sync(name: str) -> list[str]:
    """The stored notebooks of `name` that differ from what its source generates now."""
    fresh = versions(name)
    return [str(path.relative_to(ROOT)) for which, path in paths(name).items()
            if not path.exists() or comparable(nbformat.read(path, as_version=4)) != comparable(fresh[which])]


def build(selected: list[str]) -> None:
    unknown = [s for s in selected if not any(name.startswith(s) for name in names())]
    if unknown:
        sys.exit(f"no notebook {', '.join(unknown)}: the notebooks are {', '.join(names())} (give a name or its "
                 "first digits, e.g. 03)")
    publish()
    for name in names():
        if selected and not any(name.startswith(s) for s in selected):
            continue
        for which, nb in versions(name).items():
            path = paths(name)[which]
            print(f"running {path.relative_to(ROOT)}", flush=True)
            execute(nb, path.parent)
            write(nb, path)
    update_readme_badges()


def update_readme_badges() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- badges:start -->", "<!-- badges:end -->"
    if start not in text:
        return
    rows = ["| notebook | exercise | solution |", "|---|---|---|"]
    for name in names():
        rows.append(f"| `{name}` | {badge(f'notebooks/{name}.ipynb')} | {badge(f'notebooks/solutions/{name}.ipynb')} |")
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + "\n".join(rows) + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--check"]:
        stale = [p for name in names() for p in out_of_sync(name)]
        print("\n".join(f"out of sync with course/: {p}" for p in stale) or "all notebooks in sync with course/")
        sys.exit(1 if stale else 0)
    build(args)
