"""Draw the course's four figures into figures/ (matplotlib only, byte-identical on every run).

    .venv/bin/python tools/make_figures.py [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DPI = 100  # 1 inch = 100 px, so a 10-inch figure is 1000 px: notebook width, text at its nominal size

# One palette for every figure: activations blue, parameters amber, data grey, gradients red.
STYLE = {
    "act": dict(fc="#dbeafe", ec="#1d4ed8", round=True),
    "param": dict(fc="#fef3c7", ec="#b45309", round=False),
    "data": dict(fc="#f3f4f6", ec="#6b7280", round=False),
}
FWD = "#374151"
GRAD = "#dc2626"
INK = "#111827"
MUTED = "#6b7280"
MONO = "DejaVu Sans Mono"


# ----------------------------------------------------------------------------- shared helpers

def canvas(width: int, height: int, title: str):
    """A figure of width x height pixels whose data coordinates are pixels, y pointing down."""
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.text(width / 2, 28, title, ha="center", va="center", fontsize=16, fontweight="bold", color=INK)
    return fig, ax


def node(ax, x, y, name, shape="", kind="act", w=140, h=44, size=11):
    """A labelled box centred at (x, y): tensor name (monospace) over its shape. Returns the patch."""
    st = STYLE[kind]
    style = "round,pad=0,rounding_size=9" if st["round"] else "square,pad=0"
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style, fc=st["fc"], ec=st["ec"],
                           lw=2 if kind == "act" else 1.6, zorder=3)
    ax.add_patch(patch)
    dy = 9 if shape else 0
    ax.text(x, y - dy, name, ha="center", va="center", fontsize=size, family=MONO,
            fontweight="bold", color=INK, zorder=4)
    if shape:
        ax.text(x, y + 10, shape, ha="center", va="center", fontsize=10, color=MUTED, zorder=4)
    return patch


def arrow(ax, a, b, color=FWD, lw=1.6, dashed=False, rad=0.0, head=12):
    """Arrow from a to b; each end is a box patch (the arrow stops at its edge) or an (x, y) point."""
    kw = {}
    posA, posB = a, b
    if not isinstance(a, tuple):
        kw["patchA"], posA = a, _centre(a)
    if not isinstance(b, tuple):
        kw["patchB"], posB = b, _centre(b)
    ax.add_patch(FancyArrowPatch(posA, posB, arrowstyle="-|>,head_length=0.55,head_width=0.3",
                                 mutation_scale=head, color=color, lw=lw, shrinkA=3, shrinkB=3,
                                 linestyle=(0, (4, 3)) if dashed else "-", zorder=2,
                                 connectionstyle=f"arc3,rad={rad}", **kw))


def _centre(patch):
    return (patch.get_x() + patch.get_width() / 2, patch.get_y() + patch.get_height() / 2)


def label(ax, x, y, text, size=10, color=MUTED, ha="center", **kw):
    ax.text(x, y, text, ha=ha, va="center", fontsize=size, color=color, zorder=5, **kw)


def save(fig, path: Path) -> None:
    # No Software/date metadata and a fixed size and dpi: the bytes depend only on the drawing.
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, facecolor="white")
    plt.close(fig)


# ----------------------------------------------------------------------------- 1. forward graph

# (name, shape, kind, column, row); columns 0-2 are the left half, 3-5 the right half:
# parameters | main chain | side branch of a fan-out.
FORWARD_NODES = [
    ("Xb", "(32, 3)", "data", 1, 0), ("C", "(27, 10)", "param", 0, 1),
    ("emb", "(32, 3, 10)", "act", 1, 1), ("embcat", "(32, 30)", "act", 1, 2),
    ("W1", "(30, 64)", "param", 0, 2.5), ("b1", "(64,)", "param", 0, 3.5),
    ("hprebn", "(32, 64)", "act", 1, 3), ("bnmeani", "(1, 64)", "act", 2, 4),
    ("bndiff", "(32, 64)", "act", 1, 5), ("bndiff2", "(32, 64)", "act", 2, 6),
    ("bnvar", "(1, 64)", "act", 2, 7), ("bnvar_inv", "(1, 64)", "act", 2, 8),
    ("bnraw", "(32, 64)", "act", 1, 9), ("bngain", "(1, 64)", "param", 0, 9.5),
    ("bnbias", "(1, 64)", "param", 0, 10.5), ("hpreact", "(32, 64)", "act", 1, 10),
    ("h", "(32, 64)", "act", 4, 0), ("W2", "(64, 27)", "param", 3, 1), ("b2", "(27,)", "param", 3, 2),
    ("logits", "(32, 27)", "act", 4, 1), ("logit_maxes", "(32, 1)", "act", 5, 2),
    ("norm_logits", "(32, 27)", "act", 4, 3), ("counts", "(32, 27)", "act", 4, 4),
    ("counts_sum", "(32, 1)", "act", 5, 5), ("counts_sum_inv", "(32, 1)", "act", 5, 6),
    ("probs", "(32, 27)", "act", 4, 7), ("logprobs", "(32, 27)", "act", 4, 8),
    ("Yb", "(32,)", "data", 3, 9), ("loss", "()", "act", 4, 9),
]
FORWARD_EDGES = """Xb>emb C>emb emb>embcat embcat>hprebn W1>hprebn b1>hprebn hprebn>bnmeani hprebn>bndiff
    bnmeani>bndiff bndiff>bndiff2 bndiff>bnraw bndiff2>bnvar bnvar>bnvar_inv bnvar_inv>bnraw bnraw>hpreact
    bngain>hpreact bnbias>hpreact h>logits W2>logits b2>logits logits>logit_maxes logits>norm_logits
    logit_maxes>norm_logits norm_logits>counts counts>counts_sum counts>probs counts_sum>counts_sum_inv
    counts_sum_inv>probs probs>logprobs logprobs>loss Yb>loss""".split()
COL_X = [62, 222, 392, 562, 722, 902]
ROW0, PITCH = 92, 60


def forward_graph(path: Path) -> None:
    fig, ax = canvas(1000, 860, "Notebook 01: the forward pass, one tensor at a time")
    boxes = {}
    for name, shape, kind, col, row in FORWARD_NODES:
        w = 100 if kind != "act" else 148
        boxes[name] = node(ax, COL_X[col], ROW0 + PITCH * row, name, shape, kind, w=w)
    for edge in FORWARD_EDGES:
        a, b = edge.split(">")
        arrow(ax, boxes[a], boxes[b])
    # hpreact -> h crosses from the bottom of the left half to the top of the right half
    y_from, y_to, lane = ROW0 + PITCH * 10, ROW0, 478
    ax.plot([COL_X[1] + 74, lane, lane, lane], [y_from, y_from, y_to, y_to], color=FWD, lw=1.6, zorder=2)
    label(ax, lane - 8, (y_from + y_to) / 2, "tanh", ha="right", style="italic", color=FWD)
    arrow(ax, (lane, y_to), boxes["h"])
    # gradients run against every arrow: loss -> ... -> h, then hpreact -> ... -> emb
    for x, top, bottom in ((COL_X[1] - 92, ROW0, ROW0 + PITCH * 10), (COL_X[4] + 92, ROW0, ROW0 + PITCH * 9)):
        arrow(ax, (x, bottom), (x, top), color=GRAD, lw=5, head=22)
    label(ax, 500, 800, "black arrows: forward pass     red arrows: the backward pass, gradients flow "
          "from loss back to every tensor", size=11, color=INK)
    _legend(ax, 500, 832)
    save(fig, path)


def _legend(ax, x, y):
    for dx, kind, text in ((-250, "act", "activation"), (-60, "param", "parameter"), (130, "data", "data (no grad)")):
        node(ax, x + dx, y, "", kind=kind, w=26, h=18)
        label(ax, x + dx + 20, y, text, size=11, color=INK, ha="left")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "figures", help="output folder (default: figures/)")
    args = ap.parse_args()
    matplotlib.rcdefaults()  # ignore any user matplotlibrc so every machine draws the same thing
    args.out.mkdir(parents=True, exist_ok=True)
    forward_graph(args.out / "forward_graph.png")


if __name__ == "__main__":
    main()
