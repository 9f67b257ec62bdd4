"""The course's facts, each written once: the generator, the grader, the figures and the tests read them here.

    NOTEBOOKS     the notebooks, in order: one per source course/NN_name.py (a new source is a new notebook)
    PARAMETERS    the model's parameters, in the order lecture.init_params returns them; a notebook cell shows
                  this line with `# include: facts.PARAMETERS`
    sizes(name)   a notebook's default sizes (batch_size, n_embd, n_hidden, block_size): what its `sizes` cell
                  sets. That cell is where a learner sees and changes them, so it is their one place, read here.

Nothing but the standard library at import (jupytext only inside the functions that read a source), so the
grader can copy this file beside a submission and import PARAMETERS from it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

COURSE = Path(__file__).resolve().parent
NOTEBOOKS = tuple(sorted(p.stem for p in COURSE.glob("[0-9][0-9]_*.py")))
PARAMETERS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")

CELLS_INCLUDE = re.compile(r"# include cells: ([\w.-]+\.py)")  # a run of cells shared by several notebooks


def source_cells(name: str) -> list:
    """The cells of course/<name>.py (jupytext percent format), with every `# include cells: X.py` cell
    replaced by the cells of course/X.py."""
    import jupytext

    def read(file: str) -> list:
        return jupytext.read(COURSE / file, fmt="py:percent").cells

    cells = []
    for c in read(f"{name}.py"):
        m = CELLS_INCLUDE.fullmatch(c.source.strip()) if c.cell_type == "code" else None
        cells += read(m[1]) if m else [c]
    return cells


def sizes_in(cells) -> dict[str, int]:
    """The integer sizes the `sizes`-tagged cell among `cells` assigns (batch_size, n_embd, ...)."""
    found = {}
    for c in cells:
        if "sizes" in c.metadata.get("tags", []):
            for node in ast.parse(c.source).body:
                if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, int)):
                    found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def sizes(name: str) -> dict[str, int]:
    """A notebook's default sizes, read from its source's `sizes` cell."""
    if name not in NOTEBOOKS:
        raise ValueError(f"no notebook {name!r}: the course's notebooks are {', '.join(NOTEBOOKS)}")
    found = sizes_in(source_cells(name))
    if not found:
        raise ValueError(f"course/{name}.py has no cell tagged `sizes` that sets an integer size")
    return found
