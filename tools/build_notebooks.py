"""Build the course's notebooks from the solutions, the single source.

    python tools/build_notebooks.py            # every notebook
    python tools/build_notebooks.py 01 03      # only these

For each notebooks/solutions/NN_*.ipynb it
  1. writes checksums.sha256 (utils.py, names.txt) and fills the set-up cell (first code cell, tag `setup`)
     from tools/setup_cell.py and the badge cell (first cell, tag `badge`) from REPO;
  2. generates the learner version notebooks/NN_*.ipynb (see `to_learner`);
  3. executes both top to bottom with nbclient so their stored outputs are what a real run prints.

Solution markers, in code cells:
    # BEGIN SOLUTION          lines between the markers are the answer: removed from the learner version
    ...
    #@ dW2 = ...  # TODO      lines starting with `#@` inside a region become the learner's placeholder;
    # END SOLUTION            a region without them gets `name = ...  # TODO` for each name it assigns.
Cells tagged `solution` (hint answers, discussion of the answer) are dropped from the learner version.
Figures: a markdown cell with `![caption](attachment:NAME.png)` gets figures/NAME.png embedded.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
LEARNER = ROOT / "notebooks"
CHECKSUMS = ROOT / "checksums.sha256"
VERIFIED_FILES = ("utils.py", "names.txt")

# The one repository setting: badges and the set-up cell's download URL are built from it.
REPO = "backprop-ninja/backprop-ninja"
BRANCH = "main"
BASE_URL = f"https://raw.githubusercontent.com/{REPO}/{BRANCH}"

BEGIN, END, PLACEHOLDER = "# BEGIN SOLUTION", "# END SOLUTION", "#@"


# ---------------------------------------------------------------------------------------------- sources

def sha256_of_files() -> dict[str, str]:
    return {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest() for f in VERIFIED_FILES}


def read_checksums() -> dict[str, str]:
    pairs = (line.split() for line in CHECKSUMS.read_text().splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def write_checksums() -> None:
    CHECKSUMS.write_text("".join(f"{d}  {f}\n" for f, d in sha256_of_files().items()))


def setup_cell_source() -> str:
    sha = "{" + ", ".join(f'"{f}": "{d}"' for f, d in read_checksums().items()) + "}"
    text = (ROOT / "tools" / "setup_cell.py").read_text()
    return text.format(base_url=BASE_URL, sha256=sha).rstrip("\n")


def colab_url(path: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{path}"


def badge(path: str, label: str = "Open In Colab") -> str:
    return f"[![{label}](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(path)})"


def badge_cell_source(name: str, solution: bool) -> str:
    learner, sol = f"notebooks/{name}", f"notebooks/solutions/{name}"
    if solution:
        return (f"{badge(sol)} &nbsp; **Solution version.** "
                f"The exercise version, to fill in yourself: [{name}]({colab_url(learner)}).")
    return (f"{badge(learner)} &nbsp; **Exercise version:** fill in every cell marked `TODO`; "
            f"each check below it tells you at once whether your gradient is right. "
            f"Stuck? Open the hints, then the [solution]({colab_url(sol)}).")


# ---------------------------------------------------------------------------------------------- learner version

def _placeholder(region: list[str], indent: str) -> list[str]:
    explicit = [l.strip()[len(PLACEHOLDER):].removeprefix(" ") for l in region if l.strip().startswith(PLACEHOLDER)]
    if explicit:
        return [indent + l for l in explicit]
    code = textwrap.dedent("\n".join(l for l in region if not l.strip().startswith(PLACEHOLDER)))
    names: list[str] = []
    for node in ast.parse(code).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for t in targets:
            if isinstance(t, ast.Name) and t.id not in names:
                names.append(t.id)
    if not names:
        raise ValueError(f"solution region assigns no name; give it a `{PLACEHOLDER}` placeholder:\n{code}")
    return [f"{indent}{n} = ...  # TODO" for n in names]


def to_learner(source: str) -> str:
    """Replace every solution region of a code cell by its placeholder."""
    out: list[str] = []
    region: list[str] | None = None
    indent = ""
    for line in source.splitlines():
        s = line.strip()
        if s == BEGIN:
            if region is not None:
                raise ValueError("nested # BEGIN SOLUTION")
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif s == END:
            if region is None:
                raise ValueError("# END SOLUTION without # BEGIN SOLUTION")
            out += _placeholder(region, indent)
            region = None
        elif region is not None:
            region.append(line)
        elif s.startswith(PLACEHOLDER):
            raise ValueError(f"`{PLACEHOLDER}` line outside a solution region: {line!r}")
        else:
            out.append(line)
    if region is not None:
        raise ValueError("# BEGIN SOLUTION without # END SOLUTION")
    return "\n".join(out)


def solution_regions(source: str) -> list[str]:
    """The answer lines of every region in a cell (placeholders excluded), for the leak test."""
    regions, region = [], None
    for line in source.splitlines():
        s = line.strip()
        if s == BEGIN:
            region = []
        elif s == END:
            regions.append("\n".join(region))
            region = None
        elif region is not None and not s.startswith(PLACEHOLDER):
            region.append(line)
    return regions


def embed_figures(cell) -> None:
    """Attach figures/NAME.png to a markdown cell that shows `![...](attachment:NAME.png)`.

    Attachments travel inside the notebook, so the figure shows in Colab too, where figures/ is absent.
    """
    names = re.findall(r"\(attachment:([\w.-]+\.png)\)", cell.source)
    found = {n: ROOT / "figures" / n for n in names if (ROOT / "figures" / n).is_file()}
    if found:
        cell["attachments"] = {n: {"image/png": base64.b64encode(p.read_bytes()).decode()} for n, p in found.items()}


def _first_code_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


def prepare_solution(nb, name: str):
    """Fill the generated cells (badge, set-up) of a solution notebook, in place."""
    first = nb.cells[0]
    if "badge" not in first.metadata.get("tags", []):
        first = nbformat.v4.new_markdown_cell(metadata={"tags": ["badge"]})
        nb.cells.insert(0, first)
    first.source = badge_cell_source(name, solution=True)
    for c in nb.cells:
        if c.cell_type == "markdown":
            embed_figures(c)
    setup = _first_code_cell(nb)
    setup.source = setup_cell_source()
    setup.metadata["tags"] = sorted(set(setup.metadata.get("tags", [])) | {"setup"})
    return nb


def make_learner(sol, name: str):
    nb = nbformat.from_dict(json.loads(json.dumps(sol)))  # deep copy
    nb.cells = [c for c in nb.cells if "solution" not in c.metadata.get("tags", [])]
    for c in nb.cells:
        if c.cell_type == "code":
            c.source = to_learner(c.source)
            c.outputs, c.execution_count = [], None
    nb.cells[0].source = badge_cell_source(name, solution=False)
    return nb


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


def build(selected: list[str]) -> None:
    write_checksums()
    paths = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    paths = [p for p in paths if not selected or any(p.name.startswith(s) for s in selected)]
    for sol_path in paths:
        name = sol_path.name
        sol = prepare_solution(nbformat.read(sol_path, as_version=4), name)
        learner = make_learner(sol, name)
        for nb, path in ((sol, sol_path), (learner, LEARNER / name)):
            print(f"running {path.relative_to(ROOT)}", flush=True)
            for c in nb.cells:
                if c.cell_type == "code":
                    c.outputs, c.execution_count = [], None
            execute(nb, path.parent)
            write(nb, path)
    update_readme_badges()


def update_readme_badges() -> None:
    readme = ROOT / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    start, end = "<!-- badges:start -->", "<!-- badges:end -->"
    if start not in text:
        return
    rows = ["| notebook | exercise | solution |", "|---|---|---|"]
    for p in sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        rows.append(f"| `{p.stem}` | {badge(f'notebooks/{p.name}')} | {badge(f'notebooks/solutions/{p.name}')} |")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + start + "\n" + "\n".join(rows) + "\n" + end + tail)


if __name__ == "__main__":
    build(sys.argv[1:])
