"""Shared helpers for the backprop-ninja notebooks.

Three things live here, nothing else:
  * the data: `load_words`, the vocabulary (`stoi`, `itos`, `vocab_size`), `build_dataset`, `split_dataset`;
  * the gradient checker `cmp(name, dt, t)` and its scoreboard (`scoreboard`, `reset_scoreboard`);
  * a finite-difference helper (`numerical_grad`, `rel_error`) to check gradients without autograd.

Correct means *approximately* equal (`torch.allclose`, rtol=1e-5, atol=1e-8). Whether a correct gradient is
also bit-exact depends on the platform: the same line can be `exact: True` on a laptop and `exact: False`
on Colab, because the CPU (or GPU) may sum the same numbers in a different order. So `exact` is shown as a
curiosity and never decides a verdict.
"""
from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
NAMES_COUNT = 32033
HOW_TO_GET_NAMES = (
    "Get it by cloning the course repository (names.txt sits at its root), or by running the "
    "notebook's first cell, which downloads and verifies it."
)

# ----------------------------------------------------------------------------------------------
# data

itos: list[str] = ["."] + list(string.ascii_lowercase)  # '.' (index 0) marks both start and end
stoi: dict[str, int] = {s: i for i, s in enumerate(itos)}
vocab_size: int = len(itos)  # 27


class DataFileError(RuntimeError):
    """names.txt is missing, empty or not the file the course expects."""


def load_words(path: str | Path = "names.txt") -> list[str]:
    """Read the 32,033 names, one per line, after checking the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path} not found (looked in {path.resolve().parent}). {HOW_TO_GET_NAMES}")
    data = path.read_bytes()
    if not data.strip():
        raise DataFileError(f"{path} is empty. {HOW_TO_GET_NAMES}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != NAMES_SHA256:
        raise DataFileError(
            f"{path} is corrupted or not the course's names.txt: its sha256 is {digest[:12]}..., "
            f"expected {NAMES_SHA256[:12]}.... Delete it and fetch it again. {HOW_TO_GET_NAMES}"
        )
    return data.decode("utf-8").splitlines()


def build_dataset(words: list[str], block_size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (context, next character) pair: X (N, block_size) int64, Y (N,) int64."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size  # start padded with '.'
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X, dtype=torch.long), torch.tensor(Y, dtype=torch.long)


def split_dataset(words: list[str], block_size: int = 3, seed: int = 42):
    """The lecture's split: shuffle with random.seed(42), then 80% train / 10% dev / 10% test.

    Returns ((Xtr, Ytr), (Xdev, Ydev), (Xte, Yte)). The caller's list is not modified.
    """
    words = list(words)
    random.Random(seed).shuffle(words)  # same permutation as random.seed(42); random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return (
        build_dataset(words[:n1], block_size),
        build_dataset(words[n1:n2], block_size),
        build_dataset(words[n2:], block_size),
    )


# ----------------------------------------------------------------------------------------------
# the gradient checker


@dataclass
class Check:
    """The verdict of one `cmp` call. Truthy exactly when the gradient is correct."""

    name: str
    correct: bool
    exact: bool
    maxdiff: float | None
    diagnosis: str | None = None

    def __bool__(self) -> bool:
        return self.correct

    def _ipython_display_(self) -> None:
        pass  # cmp already printed its line: show nothing more when a cell ends with cmp(...)


_checks: dict[str, Check] = {}  # name -> latest verdict, so re-running a cell does not count twice


def cmp(name: str, dt: Any, t: Any, n: int | None = None) -> Check:
    """Compare a hand-written gradient `dt` with autograd's `t.grad`, print one line, return a Check.

    The line reads `name | exact: ... | approximate: ... | maxdiff: ...`; when the gradient is not
    right a second line says what is probably wrong. `n` (optional) is the batch size, used to name
    a factor of n, 1/n or n-1. cmp never raises: anything a learner hands it gets a verdict.
    """
    name = str(name)
    try:
        check = _check(name, dt, t, n)
    except Exception as e:  # a checker that crashes teaches nothing; report it as a verdict instead
        check = Check(name, False, False, None, f"could not compare ({type(e).__name__}: {e})")
    _checks[name] = check
    md = "-" if check.maxdiff is None else f"{check.maxdiff:.1e}"
    print(f"{name:15s} | exact: {str(check.exact):5s} | approximate: {str(check.correct):5s} | maxdiff: {md}")
    if check.diagnosis:
        print(f"{'':15s}   -> {check.diagnosis}")
    return check


def reset_scoreboard() -> None:
    """Forget every check so far."""
    _checks.clear()


@dataclass
class Score:
    correct: int
    total: int
    exact: int

    def _ipython_display_(self) -> None:
        pass  # scoreboard() already printed it


def scoreboard() -> Score:
    """Print and return the tally of every check so far, e.g. `26/26 correct, 24 bit-exact`."""
    score = Score(sum(c.correct for c in _checks.values()), len(_checks), sum(c.exact for c in _checks.values()))
    print(f"{score.correct}/{score.total} correct, {score.exact} bit-exact")
    missing = [c.name for c in _checks.values() if not c.correct]
    if missing:
        print(f"not yet: {', '.join(missing)}")
    return score


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def _check(name: str, dt: Any, t: Any, n: int | None) -> Check:
    def wrong(msg: str, maxdiff: float | None = None) -> Check:
        return Check(name, False, False, maxdiff, msg)

    if dt is None or dt is Ellipsis:
        return wrong(f"not implemented yet: replace the `...` with your expression for {name}")
    if not isinstance(t, torch.Tensor):
        return wrong(f"the reference is a {type(t).__name__}, not a tensor: pass the forward-pass tensor itself")
    g = t.grad
    if g is None:
        return wrong(
            "the reference has no .grad: run the forward-pass cell and the loss.backward() cell first "
            "(intermediate tensors need .retain_grad() before backward)"
        )
    if dt is g or (isinstance(dt, torch.Tensor) and dt.numel() > 0 and _same_memory(dt, g)):
        return wrong("this is autograd's own t.grad: compute the gradient yourself from the forward-pass tensors")
    if not isinstance(dt, torch.Tensor):
        kind = f"a {type(dt).__name__}"
        if type(dt).__module__ == "numpy":
            kind = "a NumPy array" if type(dt).__name__ == "ndarray" else f"a NumPy {type(dt).__name__}"
            hint = f"keep it in torch (no .numpy()); it should be a tensor of shape {_fmt_shape(g.shape)}"
        elif isinstance(dt, (int, float, complex, bool)):
            hint = f"expected a tensor of shape {_fmt_shape(g.shape)}, e.g. torch.full_like(t, value) or an expression of tensors"
        elif isinstance(dt, (list, tuple)):
            hint = f"build it with tensor operations; it should have shape {_fmt_shape(g.shape)}"
        else:
            hint = f"expected a torch.Tensor of shape {_fmt_shape(g.shape)}"
        return wrong(f"got {kind}, not a tensor: {hint}")
    if dt.layout != torch.strided or g.layout != torch.strided:
        return wrong(f"got a {dt.layout} tensor: use an ordinary dense tensor (.to_dense())")
    if dt.device != g.device:
        return wrong(f"on device {dt.device} but the gradient lives on {g.device}: move it with .to({str(g.device)!r})")
    if dt.dtype != g.dtype:
        return wrong(f"dtype {dt.dtype} but the gradient is {g.dtype}: compute it from the forward tensors, or .to({g.dtype})")
    if dt.shape != g.shape:
        return wrong(_diagnose_shape(dt, g))
    if dt.is_complex() or not dt.is_floating_point():
        return wrong(f"got a {dt.dtype} tensor: gradients are floating point")

    dtd, gd = dt.detach(), g.detach()
    bad = ~torch.isfinite(dtd)
    if bad.any():
        nan, inf = int(torch.isnan(dtd).sum()), int(torch.isinf(dtd).sum())
        return wrong(
            f"contains {nan} NaN and {inf} inf of {dtd.numel()} entries: look for a division by zero, "
            "log of 0, or a power of a negative number"
        )
    if not torch.isfinite(gd).all():
        return wrong("autograd's own gradient is not finite here; the forward pass overflowed")
    maxdiff = (dtd - gd).abs().max().item() if dtd.numel() else 0.0
    exact = bool(torch.equal(dtd, gd))
    if torch.allclose(dtd, gd):
        return Check(name, True, exact, maxdiff, None)
    return wrong(_diagnose_values(dtd, gd, t, n), maxdiff)


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.shape == b.shape
    except Exception:
        return False


def _diagnose_shape(dt: torch.Tensor, g: torch.Tensor) -> str:
    got, want = _fmt_shape(dt.shape), _fmt_shape(g.shape)
    head = f"shape {got} but the gradient has shape {want}"
    can_compare = dt.is_floating_point() and dt.dtype == g.dtype and dt.device == g.device
    # the same entries with a kept dimension dropped or added: (64,) for (1, 64)
    if dt.numel() == g.numel() and [d for d in dt.shape if d != 1] == [d for d in g.shape if d != 1]:
        return (
            f"{head}: they differ only by a size-1 dimension. Broadcasting would hide this in a comparison, "
            f"but the gradient must have exactly the tensor's shape: sum with keepdim=True, or .view{want}"
        )
    if dt.dim() == 2 and g.dim() == 2 and tuple(dt.shape) == tuple(g.shape)[::-1]:
        right = can_compare and torch.allclose(dt.detach().T, g)
        return f"{head}: transposed" + (
            " (its transpose is exactly right)" if right else "; check the order of the operands of the matmul (and which one gets .T)"
        )
    # broadcast in the forward pass: dt has the full shape, the tensor was replicated along some dims
    if dt.dim() >= g.dim():
        lead = dt.dim() - g.dim()
        tail = dt.shape[lead:]
        if all(gs == ds or gs == 1 for gs, ds in zip(g.shape, tail)):
            dims = [lead + i for i, (gs, ds) in enumerate(zip(g.shape, tail)) if gs == 1 and ds != 1]
            lead_dims = list(range(lead))
            parts = []
            if lead_dims:
                parts.append(f"sum over dim {', '.join(map(str, lead_dims))}")
            if dims:
                parts.append(f"sum over dim {', '.join(str(d - lead) for d in dims)} with keepdim=True")
            msg = (
                f"{head}: this tensor was broadcast (replicated) in the forward pass, so its gradient is the "
                f"sum of the replicas: {' and '.join(parts)}"
            )
            if can_compare:
                s = dt.detach().sum(dim=tuple(lead_dims + dims), keepdim=True) if (lead_dims or dims) else dt.detach()
                s = s.reshape(g.shape)
                if torch.allclose(s, g):
                    msg += " (summed that way, yours would be right)"
            return msg
    if dt.numel() == g.numel():
        right = can_compare and torch.allclose(dt.detach().reshape(g.shape), g)
        return f"{head}, with the same number of entries" + (
            f": the numbers are right but in the wrong shape; use .view{want}" if right else f"; reshape with .view{want} if the order is right"
        )
    return head


def _factor_name(c: float, ns: set[int]) -> str | None:
    """Name a factor such as n, 1/n, n-1 or n/(n-1), for n among the candidate batch sizes `ns`."""
    for k in sorted(k for k in ns if k > 2):
        for v, label in ((k, f"n = {k}: a 1/n missing?"), (1 / k, f"1/n = 1/{k}: a 1/n too many?"),
                         (k - 1, f"n-1 = {k - 1}: a 1/(n-1) missing?"),
                         (1 / (k - 1), f"1/(n-1) = 1/{k - 1}: a 1/(n-1) too many?"),
                         (k / (k - 1), f"n/(n-1) = {k}/{k - 1}: Bessel's correction"),
                         ((k - 1) / k, f"(n-1)/n = {k - 1}/{k}: Bessel's correction")):
            if abs(c - v) <= 1e-4 * abs(v):
                return label
    return None


def _diagnose_values(dt: torch.Tensor, g: torch.Tensor, t: torch.Tensor, n: int | None) -> str:
    off = ~torch.isclose(dt, g)
    nbad, total = int(off.sum()), dt.numel()
    if not dt.any():
        return "all zeros: nothing was written into it yet (did you forget to assign or accumulate with +=?)"
    if torch.allclose(-dt, g):
        return "sign flipped: yours is exactly minus the gradient"
    gg = float((g.double() * g.double()).sum())
    if gg > 0:
        c = float((dt.double() * g.double()).sum()) / gg
        if c != 0 and torch.allclose(dt, (c * g.double()).to(g.dtype), rtol=1e-4, atol=1e-7):
            named = _factor_name(c, {n} if n else set(t.shape))
            label = f", which is {named}" if named else ""
            return f"off by a constant factor: yours is {c:.4g} times the gradient{label}"
    if nbad <= max(1, total // 10) and dt.dim() >= 1:
        where = off.nonzero().tolist()[:5]
        msg = f"right everywhere except {nbad} of {total} entries, e.g. at {', '.join(str(tuple(w)) for w in where)}"
        if dt.dim() == 2 and dt.shape[0] > 1 and bool((off.sum(1) == 1).all()):
            msg += (
                ". Exactly one per row: a branch that touches one entry per row is missing, such as the "
                "max subtracted in cross-entropy (logit_maxes) or the picked entry [range(n), Yb]"
            )
        return msg
    diff = (g - dt).double()
    for d in range(dt.dim()):
        if dt.shape[d] > 1:
            rest = diff - diff.mean(d, keepdim=True)
            if torch.allclose(rest, torch.zeros_like(rest), atol=1e-6 + 1e-4 * float(g.abs().max())):
                return (
                    f"wrong by a term that is the same along dim {d}: a contribution that reached this tensor "
                    f"through a broadcast along dim {d} is missing (for example dcounts_sum in dcounts: "
                    "a tensor used twice gets the sum of both gradients)"
                )
    rel = float((dt - g).abs().max() / (dt.abs().max() + g.abs().max()).clamp_min(1e-12))
    return f"{nbad} of {total} entries are off; relative error {rel:.1e}. Re-derive the local derivative, then check the chain rule"


# ----------------------------------------------------------------------------------------------
# numerical gradients, to check without autograd


def numerical_grad(f: Callable[[], Any], x: torch.Tensor, index: tuple[int, ...], h: float = 1e-6) -> float:
    """Central difference (f(x+h) - f(x-h)) / 2h at one entry of x, which f reads. x is restored."""
    with torch.no_grad():
        old = x[index].item()
        x[index] = old + h
        fp = float(f())
        x[index] = old - h
        fm = float(f())
        x[index] = old
    return (fp - fm) / (2 * h)


def rel_error(a: float | torch.Tensor, b: float | torch.Tensor) -> float:
    """max |a - b| / max(|a| + |b|): about 1e-7 or less is right in float64, above 1e-2 is wrong."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-12)).max())
