"""Draw the course's four figures into figures/ (matplotlib only, byte-identical on every run).

    .venv/bin/python tools/make_figures.py [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "course"))
import facts  # noqa: E402

# The figures draw notebook 01's model at its default sizes (its `sizes` cell, read by course/facts.py).
SIZES = facts.sizes("01_atomic_backprop")
N, BLOCK, EMBD, HIDDEN = (SIZES[k] for k in ("batch_size", "block_size", "n_embd", "n_hidden"))
VOCAB = 27  # utils.vocab_size: 26 letters and '.' (not imported: it would bring torch)
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


def node(ax, x, y, name, shape="", kind="act", w=140, h=44, size=10.5):
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
    if hasattr(patch, "center"):  # a Circle
        return patch.center
    return (patch.get_x() + patch.get_width() / 2, patch.get_y() + patch.get_height() / 2)


def label(ax, x, y, text, size=10, color=MUTED, ha="center", on_line=False, **kw):
    """Text centred at (x, y); on_line=True puts it on a white patch so it can sit on top of an arrow."""
    if on_line:
        kw["bbox"] = dict(boxstyle="square,pad=0.15", fc="white", ec="none")
    ax.text(x, y, text, ha=ha, va="center", fontsize=size, color=color, zorder=5, **kw)


def save(fig, path: Path) -> None:
    # No Software/date metadata and a fixed size and dpi: the bytes depend only on the drawing.
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, facecolor="white")
    plt.close(fig)


# ----------------------------------------------------------------------------- 1. forward graph

# (name, shape, kind, column, row); columns 0-2 are the left half, 3-5 the right half:
# parameters | main chain | side branch of a fan-out.
FORWARD_NODES = [
    ("Xb", f"({N}, {BLOCK})", "data", 1, 0), ("C", f"({VOCAB}, {EMBD})", "param", 0, 1),
    ("emb", f"({N}, {BLOCK}, {EMBD})", "act", 1, 1), ("embcat", f"({N}, {BLOCK * EMBD})", "act", 1, 2),
    ("W1", f"({BLOCK * EMBD}, {HIDDEN})", "param", 0, 2.5), ("b1", f"({HIDDEN},)", "param", 0, 3.5),
    ("hprebn", f"({N}, {HIDDEN})", "act", 1, 3), ("bnmeani", f"(1, {HIDDEN})", "act", 2, 4),
    ("bndiff", f"({N}, {HIDDEN})", "act", 1, 5), ("bndiff2", f"({N}, {HIDDEN})", "act", 2, 6),
    ("bnvar", f"(1, {HIDDEN})", "act", 2, 7), ("bnvar_inv", f"(1, {HIDDEN})", "act", 2, 8),
    ("bnraw", f"({N}, {HIDDEN})", "act", 1, 9), ("bngain", f"(1, {HIDDEN})", "param", 0, 9.5),
    ("bnbias", f"(1, {HIDDEN})", "param", 0, 10.5), ("hpreact", f"({N}, {HIDDEN})", "act", 1, 10),
    ("h", f"({N}, {HIDDEN})", "act", 4, 0), ("W2", f"({HIDDEN}, {VOCAB})", "param", 3, 1),
    ("b2", f"({VOCAB},)", "param", 3, 2),
    ("logits", f"({N}, {VOCAB})", "act", 4, 1), ("logit_maxes", f"({N}, 1)", "act", 5, 2),
    ("norm_logits", f"({N}, {VOCAB})", "act", 4, 3), ("counts", f"({N}, {VOCAB})", "act", 4, 4),
    ("counts_sum", f"({N}, 1)", "act", 5, 5), ("counts_sum_inv", f"({N}, 1)", "act", 5, 6),
    ("probs", f"({N}, {VOCAB})", "act", 4, 7), ("logprobs", f"({N}, {VOCAB})", "act", 4, 8),
    ("Yb", f"({N},)", "data", 3, 9), ("loss", "()", "act", 4, 9),
]
FORWARD_EDGES = """Xb>emb C>emb emb>embcat embcat>hprebn W1>hprebn b1>hprebn hprebn>bnmeani hprebn>bndiff
    bnmeani>bndiff bndiff>bndiff2 bndiff>bnraw bndiff2>bnvar bnvar>bnvar_inv bnvar_inv>bnraw bnraw>hpreact
    bngain>hpreact bnbias>hpreact h>logits W2>logits b2>logits logits>logit_maxes logits>norm_logits
    logit_maxes>norm_logits norm_logits>counts counts>counts_sum counts>probs counts_sum>counts_sum_inv
    counts_sum_inv>probs probs>logprobs logprobs>loss Yb>loss""".split()
COL_X = [82, 228, 384, 546, 692, 848]
ROW0, PITCH = 92, 60


def forward_graph(path: Path) -> None:
    fig, ax = canvas(1000, 860, f"The chunked forward pass: every tensor and its shape (batch n = {N})")
    boxes = {}
    for name, shape, kind, col, row in FORWARD_NODES:
        w = 86 if kind != "act" else 138
        boxes[name] = node(ax, COL_X[col], ROW0 + PITCH * row, name, shape, kind, w=w)
    for edge in FORWARD_EDGES:
        a, b = edge.split(">")
        arrow(ax, boxes[a], boxes[b])
    # hpreact -> h crosses from the bottom of the left half to the top of the right half
    y_from, y_to, lane = ROW0 + PITCH * 10, ROW0, 472
    ax.plot([COL_X[1] + 69, lane, lane], [y_from, y_from, y_to], color=FWD, lw=1.6, zorder=2)
    label(ax, lane - 8, (y_from + y_to) / 2, "tanh", ha="right", style="italic", color=FWD)
    arrow(ax, (lane, y_to), boxes["h"])
    # gradients run against every arrow: loss -> ... -> h, then hpreact -> ... -> emb
    for x, bottom, text in ((962, ROW0 + PITCH * 9, "backward, part 1: from loss back to h"),
                            (18, ROW0 + PITCH * 10.5, "backward, part 2: from hpreact back to C")):
        arrow(ax, (x, bottom), (x, ROW0), color=GRAD, lw=5, head=22)
        label(ax, x, (ROW0 + bottom) / 2, text, size=11, color=GRAD, rotation=90, on_line=True,
              fontweight="bold")
    label(ax, 500, 800, "black arrows: forward pass        thick red arrows: backward pass, "
          "gradients flow against the black arrows", size=11, color=INK)
    _legend(ax, 500, 832)
    save(fig, path)


def _legend(ax, x, y):
    for dx, kind, text in ((-250, "act", "activation"), (-60, "param", "parameter"), (130, "data", "data (no grad)")):
        node(ax, x + dx, y, "", kind=kind, w=26, h=18)
        label(ax, x + dx + 20, y, text, size=11, color=INK, ha="left")


# ----------------------------------------------------------------------------- 2. fan-out

def fanout_counts(path: Path) -> None:
    fig, ax = canvas(1000, 520, "A tensor used twice gets two gradients, and they add up")
    counts = node(ax, 190, 230, "counts", f"({N}, {VOCAB})")
    probs = node(ax, 840, 230, "probs", f"({N}, {VOCAB})")
    csum = node(ax, 420, 370, "counts_sum", f"({N}, 1)")
    csum_inv = node(ax, 650, 370, "counts_sum_inv", f"({N}, 1)")
    for a, b, op, xy in ((counts, probs, "probs = counts * counts_sum_inv", (515, 216)),
                         (counts, csum, ".sum(1, keepdim=True)", (312, 290)),
                         (csum, csum_inv, "**-1", (535, 358)),
                         (csum_inv, probs, "", None)):
        arrow(ax, a, b)
        if op:
            label(ax, *xy, op, family=MONO, color=FWD, ha="left" if xy[0] == 312 else "center")
    plus = plt.Circle((62, 230), 17, fc="white", ec=GRAD, lw=2.2, zorder=3)
    ax.add_patch(plus)
    label(ax, 62, 229, "+", size=20, color=GRAD, fontweight="bold")
    arrow(ax, probs, plus, color=GRAD, dashed=True, lw=2, rad=0.32)
    arrow(ax, csum, plus, color=GRAD, dashed=True, lw=2, rad=-0.45)
    arrow(ax, plus, counts, color=GRAD, lw=2.2)
    label(ax, 460, 84, "dcounts via probs", size=12, color=GRAD, fontweight="bold")
    label(ax, 150, 420, "dcounts via counts_sum", size=12, color=GRAD, fontweight="bold", ha="left")
    label(ax, 500, 470, "dcounts = dcounts(via probs) + dcounts(via counts_sum)", size=13, color=INK,
          family=MONO, fontweight="bold")
    label(ax, 500, 500, "black: forward pass     red dashed: gradients flowing back     "
          "in code: write one term, then  dcounts += the other", size=11, color=INK)
    save(fig, path)


# ----------------------------------------------------------------------------- 3. broadcasting

CELL, ROWS, COLS = 18, 6, 8  # a 6 x 8 sketch stands for N x VOCAB
BLUES = ["#dbeafe", "#bfdbfe", "#93c5fd", "#60a5fa", "#3b82f6", "#1d4ed8"]
REDS = ["#fee2e2", "#fecaca", "#fca5a5", "#f87171", "#ef4444"]
GREYS = ["#f3f4f6", "#e5e7eb", "#d1d5db", "#9ca3af"]


def grid(ax, x0, y0, cols, colour, name="", shape="", alpha=lambda r, c: 1.0):
    """A ROWS x cols grid of cells with top-left corner (x0, y0); colour(r, c) fills each cell."""
    for r in range(ROWS):
        for c in range(cols):
            ax.add_patch(Rectangle((x0 + c * CELL, y0 + r * CELL), CELL, CELL, fc=colour(r, c),
                                   alpha=alpha(r, c), ec="white", lw=1.2, zorder=3))
    mid = x0 + cols * CELL / 2
    if name:
        label(ax, mid, y0 - 14, name, size=11, color=INK, family=MONO, fontweight="bold")
    if shape:
        label(ax, mid, y0 + ROWS * CELL + 14, shape, size=10)


def dims(ax, x0, y0, cols, color=MUTED, side=-1):
    """Mark a sketched grid's real size: VOCAB columns along the top, N rows down one side (-1 left, 1 right)."""
    w, h = cols * CELL, ROWS * CELL
    xs = x0 - 8 if side < 0 else x0 + w + 8
    for a, b, (tx, ty), text in (((x0, y0 - 8), (x0 + w, y0 - 8), (x0 + w / 2, y0 - 20), str(VOCAB)),
                                 ((xs, y0), (xs, y0 + h), (xs + 14 * side, y0 + h / 2), str(N))):
        ax.annotate("", a, b, arrowprops=dict(arrowstyle="<->", color=color, lw=1.2))
        label(ax, tx, ty, text, size=10, color=color)


def broadcast_sum(path: Path) -> None:
    fig, ax = canvas(1000, 565, "Broadcasting copies in the forward pass, so the backward pass sums")
    row_blue = lambda r, c: BLUES[r]  # noqa: E731  (one value per row, copied along the row)
    # forward: counts_sum_inv (N, 1) is replicated to (N, VOCAB), then multiplies counts elementwise
    y = 110
    label(ax, 20, 75, "forward", size=13, color=FWD, ha="left", fontweight="bold")
    grid(ax, 90, y, 1, row_blue, "counts_sum_inv", f"({N}, 1)")
    arrow(ax, (118, y + 54), (222, y + 54))
    label(ax, 170, y + 36, "replicate", size=10, color=FWD)
    label(ax, 170, y + 72, "along dim 1", size=10, color=FWD)
    grid(ax, 260, y, COLS, row_blue, shape=f"({N}, {VOCAB}): {VOCAB} identical copies",
         alpha=lambda r, c: 1.0 if c == 0 else 0.55)
    dims(ax, 260, y, COLS)
    label(ax, 450, y + 54, "*", size=22, color=INK)
    grid(ax, 490, y, COLS, lambda r, c: GREYS[(3 * r + 5 * c) % 4], "counts", f"({N}, {VOCAB})")
    label(ax, 680, y + 54, "=", size=22, color=INK)
    grid(ax, 720, y, COLS, lambda r, c: BLUES[(r + c) % 3 + 1], "probs", f"({N}, {VOCAB})")
    label(ax, 500, y + 152, f"probs = counts * counts_sum_inv     # ({N}, {VOCAB}) * ({N}, 1) -> ({N}, {VOCAB})",
          size=11, color=FWD, family=MONO)
    # backward: the gradient reaching the VOCAB copies flows back to the one column, so it is summed
    y = 350
    ax.plot([15, 985], [y - 60, y - 60], color="#e5e7eb", lw=1.5)
    label(ax, 20, y - 35, "backward", size=13, color=GRAD, ha="left", fontweight="bold")
    grid(ax, 90, y, 1, lambda r, c: REDS[(2 * r) % 3 + 2], "dcounts_sum_inv", f"({N}, 1)")
    grid(ax, 260, y, COLS, lambda r, c: REDS[(3 * r + 2 * c) % 5], shape=f"gradient reaching each copy ({N}, {VOCAB})")
    dims(ax, 260, y, COLS, side=1)
    for r in range(ROWS):
        arrow(ax, (255, y + (r + 0.5) * CELL), (112, y + (r + 0.5) * CELL), color=GRAD, lw=1.4, head=9)
    label(ax, 183, y + ROWS * CELL + 36, ".sum(1, keepdim=True)", size=10, color=GRAD, family=MONO)
    label(ax, 500, y + 32, f"each row's {VOCAB} copies were {VOCAB} uses of one number,", size=12, color=INK, ha="left")
    label(ax, 500, y + 56, f"so the {VOCAB} gradients in a row add up into it:", size=12, color=INK, ha="left")
    label(ax, 500, y + 80, f"sum along dim 1, keepdim=True keeps ({N}, 1)", size=12, color=GRAD, ha="left")
    label(ax, 500, 535, "rule: a dimension that was broadcast in the forward pass is summed in the backward pass",
          size=12, color=INK, fontweight="bold")
    save(fig, path)


# ----------------------------------------------------------------------------- 4. batchnorm

def batchnorm_graph(path: Path) -> None:
    fig, ax = canvas(1000, 620, "Batchnorm: x reaches x\u0302 three ways, so dL/dx has three terms")
    math = dict(w=110, h=48, size=15)
    x = node(ax, 100, 290, r"$x$", f"(n, {HIDDEN})", **math)
    mu = node(ax, 400, 130, r"$\mu$", f"(1, {HIDDEN})", **math)
    var = node(ax, 400, 290, r"$\sigma^2$", f"(1, {HIDDEN})", **math)
    xhat = node(ax, 680, 290, r"$\hat{x}$", f"(n, {HIDDEN})", **math)
    y = node(ax, 900, 290, r"$y$", f"(n, {HIDDEN})", **math)
    gamma = node(ax, 790, 150, r"$\gamma$", f"(1, {HIDDEN})", "param", **math)
    beta = node(ax, 790, 430, r"$\beta$", f"(1, {HIDDEN})", "param", **math)
    for a, b in ((x, mu), (x, var), (mu, var), (mu, xhat), (var, xhat), (xhat, y), (gamma, y), (beta, y)):
        arrow(ax, a, b)
    arrow(ax, x, xhat, rad=0.3)
    label(ax, 250, 303, "x \u2212 \u03bc", size=10, color=FWD)
    # backward: the three routes by which the gradient comes home to x, and the one that carries nothing
    red = dict(color=GRAD, dashed=True, lw=2)
    arrow(ax, xhat, x, rad=-0.42, **red)
    arrow(ax, mu, x, rad=0.25, **red)
    arrow(ax, var, x, rad=0.3, **red)
    arrow(ax, var, mu, rad=0.6, color=GRAD, dashed=True, lw=1.4)
    for (tx, ty), text in (((390, 432), "\u2460 through x\u0302 directly"), ((150, 150), "\u2461 through \u03bc"),
                           ((275, 257), "\u2462 through \u03c3\u00b2")):
        label(ax, tx, ty, text, size=12, color=GRAD, fontweight="bold", on_line=True)
    label(ax, 447, 210, "0", size=13, color=GRAD, fontweight="bold", on_line=True)
    label(ax, 500, 66, "black: forward pass      red dashed: the routes by which the gradient comes back to x",
          size=11, color=INK)
    formulas = [r"$\mu = \frac{1}{n}\sum_i x_i$", r"$\sigma^2 = \frac{1}{n-1}\sum_i (x_i-\mu)^2$",
                r"$\hat{x} = \frac{x-\mu}{\sqrt{\sigma^2+\epsilon}}$", r"$y = \gamma\,\hat{x} + \beta$"]
    for xf, f in zip((110, 350, 640, 860), formulas):
        label(ax, xf, 520, f, size=14, color=INK)
    label(ax, 500, 570, "$dL/dx$ = \u2460 + \u2461 + \u2462, and the route $\\mu \\to \\sigma^2$ adds nothing: "
          r"$\partial\sigma^2/\partial\mu \propto \sum_i (x_i-\mu) = 0$", size=12, color=INK)
    label(ax, 500, 602, "in the code: x = hprebn, \u03bc = bnmeani, \u03c3\u00b2 = bnvar, x\u0302 = bnraw, "
          "y = hpreact", size=11, color=MUTED, family=MONO)
    save(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "figures", help="output folder (default: figures/)")
    args = ap.parse_args()
    # Same pixels on every machine: ignore any user matplotlibrc, and use only the fonts that ship
    # inside matplotlib (DejaVu), never a system copy that findfont might otherwise prefer.
    matplotlib.rcdefaults()
    bundled = str(Path(matplotlib.get_data_path()))
    font_manager.fontManager.ttflist = [f for f in font_manager.fontManager.ttflist if f.fname.startswith(bundled)]
    args.out.mkdir(parents=True, exist_ok=True)
    forward_graph(args.out / "forward_graph.png")
    fanout_counts(args.out / "fanout_counts.png")
    broadcast_sum(args.out / "broadcast_sum.png")
    batchnorm_graph(args.out / "batchnorm_graph.png")


if __name__ == "__main__":
    main()
