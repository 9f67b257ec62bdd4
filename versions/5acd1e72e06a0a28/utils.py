"""Shared helpers for the backprop-ninja notebooks.

Five things live here, nothing else:
  * the data: `load_words`, the vocabulary (`stoi`, `itos`, `vocab_size`), `build_dataset`, `split_dataset`;
  * the gradient checker `cmp(name, dt, t)`, its scoreboard (`scoreboard`, `reset_scoreboard`) and its
    in-place guard `watch(forward_tensors)`, which also guards every gradient `cmp` has checked;
  * the harness that runs your steps: `check_step` (one step, judged alone), `run_chain` (all of them),
    `check_function` (a torch.autograd.Function's own backward). Every forward tensor can be read by its name
    inside a step, as in the lecture; a step that raises gets a diagnosis; nothing cascades;
  * finite differences: `numerical_grad` and `rel_error` to check gradients without autograd, and
    `gradcheck` to check a torch.autograd.Function's backward in plain words;
  * `judge`, which says whether a prediction was right.

Correct means *approximately* equal (`torch.allclose`, rtol=1e-5, atol=1e-8: RTOL and ATOL below), or both zero
up to rounding (every element below the dtype's epsilon, as autograd leaves db1, which BatchNorm makes truly zero).
Whether a correct gradient is also bit-exact depends on the platform: the same line can be `exact: True` on a
laptop and `exact: False` on Colab, because the CPU (or GPU) may sum the same numbers in a different order. So
`exact` is shown as a curiosity and never decides a verdict.
"""
from __future__ import annotations

import difflib
import hashlib
import inspect
import linecache
import math
import os
import random
import re
import string
import sys
import sysconfig
import textwrap
import traceback
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
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

RTOL, ATOL = 1e-5, 1e-8  # torch.allclose's defaults: what "approximate: True" means
WIDTH = 100  # messages wrap at word boundaries near this many characters, so they read without scrolling
INDENT = " " * 18  # a diagnosis starts under the check line's "| exact" column


def _say(text: str, first: str = "", rest: str | None = None) -> None:
    """Print `text` wrapped at WIDTH, its first line starting with `first`, the others indented to match."""
    rest = " " * len(first) if rest is None else rest
    print(textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest,
                        break_long_words=False, break_on_hyphens=False))


@dataclass
class Check:
    """The verdict of one `cmp` call. Truthy exactly when the gradient is correct."""

    name: str
    correct: bool
    exact: bool
    maxdiff: float | None
    diagnosis: str | None = None
    rule: str | None = None  # the name of the rule that made the diagnosis

    def __bool__(self) -> bool:
        return self.correct

    def _ipython_display_(self) -> None:
        pass  # cmp already printed its line: show nothing more when a cell ends with cmp(...)


_checks: dict[str, Check] = {}  # name -> latest verdict, so re-running a cell does not count twice


def cmp(name: str, dt: Any, t: Any, n: int | None = None) -> Check:
    """Compare a hand-written gradient `dt` with autograd's `t.grad`, print the verdict, return a Check.

    The first line reads `name | exact: ... | approximate: ... | maxdiff: ...`; when the gradient is not
    right, the lines under it say what is probably wrong. `n` (optional) is the batch size, used to name
    a factor of n, 1/n or n-1. cmp never raises: anything a learner hands it gets a verdict.
    """
    name = str(name)
    try:
        changed = _changed_in_place()
        for w in changed:
            if w not in _warned:  # say it once; the verdicts below keep mentioning it
                _warned.add(w)
                _say(IN_PLACE_WARNING.format(w=w), "warning: ")
        _warn_aliased({name: dt})
        check = _verdict(Case(name, dt, t, n, tuple(changed)))
    except Exception as e:  # a checker that crashes teaches nothing; report it as a verdict instead
        check = Check(name, False, False, None, f"could not compare ({type(e).__name__}: {e})")
    _checks[name] = check
    if isinstance(dt, torch.Tensor) and _version(dt) is not None:
        _checked_grads[name] = (dt, _version(dt))  # the aliasing guard watches it from now on
    md = "-" if check.maxdiff is None else f"{check.maxdiff:.1e}"
    print(f"{name:15s} | exact: {str(check.exact):5s} | approximate: {str(check.correct):5s} | maxdiff: {md}")
    if check.diagnosis:
        _say(check.diagnosis, INDENT + "-> ", INDENT + "   ")
    if not check.correct and os.environ.get("NBGRADER_VALIDATING"):  # `nbgrader validate` fails a cell on stderr
        print(f"{name}: not right yet", file=sys.stderr)
    return check


def passed(*names: str) -> bool:
    """True when the latest check of every one of `names` said correct (a later cell waits for them)."""
    return all(name in _checks and _checks[name].correct for name in names)


def reset_scoreboard() -> None:
    """Forget every check so far."""
    _checks.clear()
    _checked_grads.clear()
    _warned_grads.clear()


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


# ---------------------------------------------------------------------------- the in-place guard
# A forward tensor edited in place (h.detach().mul_(2), or += on a view of it) silently changes every later
# check. PyTorch counts each in-place change of a tensor in `._version`, a counter shared with its views and
# its .detach() results, so comparing the counter with its value at the forward pass catches all of them.

_watched: dict[str, tuple[torch.Tensor, int]] = {}  # name -> (tensor, its ._version at watch time)
_warned: set[str] = set()  # changed tensors already warned about since the last watch

IN_PLACE_WARNING = (
    "{w} was changed in place since the forward pass (e.g. {w}.detach().mul_() or += on a view of it); "
    "this check and every later one compare against the changed values. Re-run the forward-pass cell "
    "(and the backward cell) to recover, and use .clone() before editing a forward tensor."
)


def watch(tensors: Mapping[str, Any] | Any) -> None:
    """Remember the forward pass's tensors; from now on every `cmp` warns when one was changed in place.

    `tensors` is a dict name -> tensor, or an object with attributes such as the SimpleNamespace a forward
    function returns; values that are not tensors are skipped. Each call replaces what was watched before.
    """
    items = tensors.items() if isinstance(tensors, Mapping) else vars(tensors).items()
    _watched.clear()
    _warned.clear()
    for name, x in items:
        version = _version(x) if isinstance(x, torch.Tensor) else None
        if version is not None:
            _watched[str(name)] = (x, version)


def _version(x: torch.Tensor) -> int | None:
    try:
        return x._version
    except RuntimeError:  # tensors made under torch.inference_mode() keep no version counter
        return None


def _changed_in_place() -> list[str]:
    return [name for name, (x, version) in _watched.items() if _version(x) != version]


# The same counter guards your own gradients: `dhprebn = dbndiff; dhprebn += ...` gives one tensor two names, so
# the += silently changes dbndiff after its check said it was right. cmp remembers every tensor it judged.

_checked_grads: dict[str, tuple[torch.Tensor, int]] = {}  # check name -> (the gradient judged, its ._version then)
_warned_grads: set[str] = set()

ALIAS_WARNING = (
    "d{k}, which its check judged above, was changed in place since{how}: that check no longer holds, and every "
    "step fed d{k} now gets the changed values. Copy before changing it: {fix}, then re-run d{k}'s cell and this one."
)


def _warn_aliased(values: Mapping[str, Any]) -> None:
    """Name every gradient checked earlier that was changed in place since its check, once; and the one of
    `values` (check name -> gradient about to be checked) that is the same tensor, if any."""
    for k, (x, version) in _checked_grads.items():
        if k in values or k in _warned_grads or _version(x) == version:
            continue
        _warned_grads.add(k)
        name = next((v for v, dt in values.items()
                     if isinstance(dt, torch.Tensor) and dt.numel() > 0 and _same_memory(dt, x)), None)
        same = name is not None
        how = (f" (d{name} is the same tensor as d{k}: `d{name} = d{k}` gives one tensor two names, so changing "
               f"d{name} with += or [...] = changed d{k} too)" if same else " (+=, -=, [...] = or a _ method on it)")
        fix = f"d{name} = d{k}.clone()" if same else f"d{k}.clone()"
        _say(ALIAS_WARNING.format(k=k, how=how, fix=fix), "warning: ")


# ---------------------------------------------------------------------------- the rules
# Each rule looks at one Case and returns a diagnosis, or None when the mistake is not its kind. FORM_RULES
# judge what was handed in (its type, device, dtype, shape); if none fires and the values are close, the
# gradient is right. Otherwise VALUE_RULES say how the numbers are wrong, in order; the last always answers.
# Adding a diagnosis: one function, one entry in a list, one test in tests/test_utils.py.


@dataclass
class Case:
    """What every rule looks at: the learner's answer `dt` (anything), the forward tensor `t`, the batch size."""

    name: str
    dt: Any
    t: Any
    n: int | None = None
    changed: tuple[str, ...] = ()  # watched tensors changed in place since the forward pass

    @cached_property
    def g(self) -> torch.Tensor | None:
        """autograd's gradient, the reference."""
        return self.t.grad if isinstance(self.t, torch.Tensor) else None

    @cached_property
    def off(self) -> torch.Tensor:
        """True where dt and g disagree (value rules only: same shape and dtype, both finite)."""
        return ~torch.isclose(self.dt, self.g, RTOL, ATOL)

    @property
    def want(self) -> str:
        return _fmt_shape(self.g.shape)

    @property
    def shape_head(self) -> str:
        return f"shape {_fmt_shape(self.dt.shape)} but the gradient has shape {self.want}"


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


# Lecture examples of a mistake, keyed by (rule, tensor name, dim): appended only where they fit.
EXAMPLES: dict[tuple[str, str, int | None], str] = {
    ("missing_broadcast_term", "counts", 1):
        "dcounts_sum in dcounts: a tensor used twice gets the sum of both gradients",
    ("missing_broadcast_term", "hprebn", 0):
        "1/n * dbnmeani in dhprebn: hprebn reaches bndiff directly and through its mean bnmeani, "
        "so it gets the sum of both gradients",
    ("one_per_row", "logits", None):
        "the max subtracted in cross-entropy (logit_maxes) or the picked entry [range(n), Yb]",
    ("wrong_shape", "C", None):
        "emb = C[Xb] copies rows of C, so each row of demb must be added back into the row of C it came from",
}


def _example(rule: str, name: str, dim: int | None = None) -> str | None:
    """The lecture's example of this mistake on this tensor, if EXAMPLES has one."""
    word = (name.split() or [""])[0]  # "logits chunked" -> "logits"
    names = (word, word[1:]) if word.startswith("d") else (word,)  # "dcounts" finds "counts"
    return next((EXAMPLES[rule, w, dim] for w in names if (rule, w, dim) in EXAMPLES), None)


def step_failed(c: Case) -> str | None:
    return c.dt.message if isinstance(c.dt, StepFailed) else None


def not_implemented(c: Case) -> str | None:
    if c.dt is None or c.dt is Ellipsis:
        return f"not implemented yet: replace the `...` with your expression for {c.name}"
    return None


def reference_not_a_tensor(c: Case) -> str | None:
    if isinstance(c.t, torch.Tensor):
        return None
    return f"the reference is a {type(c.t).__name__}, not a tensor: pass the forward-pass tensor itself"


def no_reference_grad(c: Case) -> str | None:
    if c.g is not None:
        return None
    return ("the reference has no .grad: run the forward-pass cell and the loss.backward() cell first "
            "(intermediate tensors need .retain_grad() before backward)")


def is_autograd_grad(c: Case) -> str | None:
    if not (c.dt is c.g or (isinstance(c.dt, torch.Tensor) and c.dt.numel() > 0 and _same_memory(c.dt, c.g))):
        return None
    return "this is autograd's own t.grad: compute the gradient yourself from the forward-pass tensors"


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:  # a view of t.grad is t.grad too
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.shape == b.shape
    except Exception:  # sparse and other storage-less tensors
        return False


def not_a_tensor(c: Case) -> str | None:
    dt = c.dt
    if isinstance(dt, torch.Tensor):
        return None
    kind = f"a {type(dt).__name__}"
    if type(dt).__module__ == "numpy":
        kind = "a NumPy array" if type(dt).__name__ == "ndarray" else f"a NumPy {type(dt).__name__}"
        hint = f"keep it in torch (no .numpy()); it should be a tensor of shape {c.want}"
    elif isinstance(dt, (int, float, complex, bool)):
        hint = f"expected a tensor of shape {c.want}, e.g. torch.full_like(t, value) or an expression of tensors"
    elif isinstance(dt, (list, tuple)):
        hint = f"build it with tensor operations; it should have shape {c.want}"
    else:
        hint = f"expected a torch.Tensor of shape {c.want}"
    return f"got {kind}, not a tensor: {hint}"


def not_dense(c: Case) -> str | None:
    if c.dt.layout == torch.strided and c.g.layout == torch.strided:
        return None
    return f"got a {c.dt.layout} tensor: use an ordinary dense tensor (.to_dense())"


def wrong_device(c: Case) -> str | None:
    if c.dt.device == c.g.device:
        return None
    return f"on device {c.dt.device} but the gradient lives on {c.g.device}: move it with .to({str(c.g.device)!r})"


def wrong_dtype(c: Case) -> str | None:
    if c.dt.dtype == c.g.dtype:
        return None
    return (f"dtype {c.dt.dtype} but the gradient is {c.g.dtype}: compute it from the forward tensors, "
            f"or .to({c.g.dtype})")


def kept_dim_missing(c: Case) -> str | None:
    """(64,) for (1, 64): broadcasting would hide it in a comparison, so it is named before anything else."""
    dt, g = c.dt, c.g
    if dt.shape == g.shape or [d for d in dt.shape if d != 1] != [d for d in g.shape if d != 1]:
        return None
    fix = "sum with keepdim=True" if dt.dim() < g.dim() else "sum without keepdim=True"
    return (f"{c.shape_head}: they differ only by a size-1 dimension. Broadcasting would hide this in a comparison, "
            f"but the gradient must have exactly the tensor's shape: {fix}, or .view{c.want}")


def transposed(c: Case) -> str | None:
    dt, g = c.dt, c.g
    if dt.dim() != 2 or g.dim() != 2 or dt.shape == g.shape or tuple(dt.shape) != tuple(g.shape)[::-1]:
        return None
    if torch.allclose(dt.detach().T, g, RTOL, ATOL):
        return f"{c.shape_head}: transposed (its transpose is exactly right)"
    return f"{c.shape_head}: transposed; check the order of the operands of the matmul (and which one gets .T)"


def broadcast_not_summed(c: Case) -> str | None:
    """dt has the forward output's shape: t was replicated along some dims, its gradient sums the replicas."""
    dt, g = c.dt, c.g
    lead = dt.dim() - g.dim()  # dims broadcasting added in front
    if dt.shape == g.shape or lead < 0 or any(gs not in (1, ds) for gs, ds in zip(g.shape, dt.shape[lead:])):
        return None
    kept = [i for i, (gs, ds) in enumerate(zip(g.shape, dt.shape[lead:])) if gs == 1 and ds != 1]
    parts = [f"sum over dim {', '.join(map(str, range(lead)))}"] if lead else []
    parts += [f"sum over dim {', '.join(map(str, kept))} with keepdim=True"] if kept else []
    msg = (f"{c.shape_head}: this tensor was broadcast (replicated) in the forward pass, so its gradient is the "
           f"sum of the replicas: {' and '.join(parts)}")
    summed = dt.detach().sum(dim=tuple(range(lead)) + tuple(lead + i for i in kept), keepdim=True).reshape(g.shape)
    return msg + (" (summed that way, yours would be right)" if torch.allclose(summed, g, RTOL, ATOL) else "")


def reshaped(c: Case) -> str | None:
    dt, g = c.dt, c.g
    if dt.shape == g.shape or dt.numel() != g.numel():
        return None
    if torch.allclose(dt.detach().reshape(g.shape), g, RTOL, ATOL):
        return (f"{c.shape_head}, with the same number of entries: the numbers are right but in the wrong shape; "
                f"use .view{c.want}")
    return f"{c.shape_head}, with the same number of entries; reshape with .view{c.want} if the order is right"


def wrong_shape(c: Case) -> str | None:
    if c.dt.shape == c.g.shape:
        return None
    example = _example("wrong_shape", c.name)
    return c.shape_head + (f": {example}" if example else "")


def complex_gradient(c: Case) -> str | None:
    """Past wrong_dtype, dt has g's dtype, and autograd's .grad is never an integer: only complex is left."""
    if not c.g.is_complex():
        return None
    return f"the gradient is {c.g.dtype}: this checker compares real floating-point gradients only"


FORM_RULES: list[Callable[[Case], str | None]] = [
    step_failed, not_implemented, reference_not_a_tensor, no_reference_grad, is_autograd_grad, not_a_tensor, not_dense,
    wrong_device, wrong_dtype, kept_dim_missing, transposed, broadcast_not_summed, reshaped, wrong_shape,
    complex_gradient,
]

# value rules: dt and g are now real floating tensors of the same shape, dtype and device, and dt is wrong

FACTOR_RTOL, FACTOR_ATOL = 1e-4, 1e-7  # how close dt must be to c * g to call it a constant factor
FACTOR_NAME_RTOL = 1e-4  # how close c must be to n, 1/n, n-1, ... to name it
FEW_FRACTION = 0.1  # "a few entries off" means at most this fraction of them (at least one)
TERM_ATOL, TERM_RTOL = 1e-6, 1e-4  # "the same along a dim": deviation allowed, absolute + relative to max |g|


def non_finite(c: Case) -> str | None:
    nan, inf = int(torch.isnan(c.dt).sum()), int(torch.isinf(c.dt).sum())
    if nan + inf == 0:
        return None
    return (f"contains {nan} NaN and {inf} inf of {c.dt.numel()} entries: look for a division by zero, "
            "log of 0, or a power of a negative number")


def reference_not_finite(c: Case) -> str | None:
    if torch.isfinite(c.g).all():
        return None
    return "autograd's own gradient is not finite here; the forward pass overflowed"


def all_zeros(c: Case) -> str | None:
    if c.dt.any():
        return None
    return "all zeros: nothing was written into it yet (did you forget to assign or accumulate with +=?)"


def sign_flipped(c: Case) -> str | None:
    if not torch.allclose(-c.dt, c.g, RTOL, ATOL):
        return None
    return "sign flipped: yours is exactly minus the gradient"


def constant_factor(c: Case) -> str | None:
    dt, g = c.dt.double(), c.g.double()
    gg = float((g * g).sum())
    k = float((dt * g).sum()) / gg if gg > 0 else 0.0  # least-squares fit of dt = k * g
    if k == 0 or not torch.allclose(dt, k * g, FACTOR_RTOL, FACTOR_ATOL):
        return None
    named = _factor_name(k, {c.n} if c.n else set(c.t.shape))
    return f"off by a constant factor: yours is {k:.4g} times the gradient" + (f", which is {named}" if named else "")


def _factor_name(k: float, ns: set[int]) -> str | None:
    """Name a factor such as n, 1/n, n-1 or n/(n-1), for n among the candidate batch sizes `ns`."""
    for m in sorted(m for m in ns if m > 2):
        for v, label in ((m, f"n = {m}: a 1/n missing?"), (1 / m, f"1/n = 1/{m}: a 1/n too many?"),
                         (m - 1, f"n-1 = {m - 1}: a 1/(n-1) missing?"),
                         (1 / (m - 1), f"1/(n-1) = 1/{m - 1}: a 1/(n-1) too many?"),
                         (m / (m - 1), f"n/(n-1) = {m}/{m - 1}: Bessel's correction"),
                         ((m - 1) / m, f"(n-1)/n = {m - 1}/{m}: Bessel's correction")):
            if abs(k - v) <= FACTOR_NAME_RTOL * abs(v):
                return label
    return None


def few_entries_off(c: Case) -> str | None:
    nbad, total = int(c.off.sum()), c.dt.numel()
    if c.dt.dim() == 0 or nbad > max(1, int(FEW_FRACTION * total)):
        return None
    where = ", ".join(str(tuple(w)) for w in c.off.nonzero().tolist()[:5])
    return f"right everywhere except {nbad} of {total} entries, e.g. at {where}"


def one_per_row(c: Case) -> str | None:
    few = few_entries_off(c)
    if few is None or c.dt.dim() != 2 or c.dt.shape[0] < 2 or not bool((c.off.sum(1) == 1).all()):
        return None
    example = _example("one_per_row", c.name)
    return f"{few}. Exactly one per row: a branch that touches one entry per row is missing" + (
        f", such as {example}" if example else "")


def missing_broadcast_term(c: Case) -> str | None:
    """g - dt is constant along a dim: a gradient that arrived through a broadcast along that dim is missing."""
    diff = (c.g - c.dt).double()
    tol = TERM_ATOL + TERM_RTOL * float(c.g.abs().max())
    for d in range(diff.dim()):
        if diff.shape[d] > 1 and bool(((diff - diff.mean(d, keepdim=True)).abs() <= tol).all()):
            ex = _example("missing_broadcast_term", c.name, d)
            return (f"wrong by a term that is the same along dim {d}: a contribution that reached this tensor "
                    f"through a broadcast along dim {d} is missing" + (f" (for example {ex})" if ex else ""))
    return None


def relative_error(c: Case) -> str:
    """The fallback: how many entries are off and how far."""
    return (f"{int(c.off.sum())} of {c.dt.numel()} entries are off; relative error {rel_error(c.dt, c.g, norm=True):.1e}. "
            "Re-derive the local derivative, then check the chain rule")


VALUE_RULES: list[Callable[[Case], str | None]] = [
    non_finite, reference_not_finite, all_zeros, sign_flipped, constant_factor, one_per_row, few_entries_off,
    missing_broadcast_term, relative_error,
]
RULES = FORM_RULES + VALUE_RULES


def _first(rules: list[Callable[[Case], str | None]], c: Case) -> tuple[str | None, str | None]:
    """(rule name, diagnosis) of the first rule that recognises the mistake, or (None, None)."""
    for rule in rules:
        msg = rule(c)
        if msg is not None:
            return rule.__name__, msg
    return None, None


def _zero_up_to_rounding(x: torch.Tensor) -> bool:
    """Every element below the dtype's epsilon: rounding noise around a gradient that is truly zero.

    Gradients here come from a loss of order 1, so a float32 gradient whose largest element is below float32's
    epsilon (1.2e-7) is what a sum that cancels exactly leaves behind, like db1, which BatchNorm makes zero.
    Two such noises need not agree to ATOL (1e-8): they are judged equal, and anything larger still must.
    """
    return x.is_floating_point() and (x.numel() == 0 or float(x.abs().max()) < torch.finfo(x.dtype).eps)


def _verdict(c: Case) -> Check:
    rule, msg = _first(FORM_RULES, c)
    if msg is not None:
        return Check(c.name, False, False, None, msg, rule)
    c.dt, c.g = c.dt.detach(), c.g.detach()  # values only from here on: no graph to build
    finite = bool(torch.isfinite(c.dt).all() and torch.isfinite(c.g).all())
    maxdiff = (float((c.dt - c.g).abs().max()) if c.dt.numel() else 0.0) if finite else None
    if finite and torch.allclose(c.dt, c.g, RTOL, ATOL):
        return Check(c.name, True, bool(torch.equal(c.dt, c.g)), maxdiff)
    if finite and _zero_up_to_rounding(c.g) and _zero_up_to_rounding(c.dt):
        dtype, eps = str(c.g.dtype).removeprefix("torch."), torch.finfo(c.g.dtype).eps
        return Check(c.name, True, False, maxdiff, f"autograd's {c.name} is zero up to rounding (every element below "
                     f"{dtype}'s epsilon, {eps:.1e}), and so is yours", "zero_up_to_rounding")
    rule, msg = _first(VALUE_RULES, c)  # relative_error, the last, always answers
    if c.changed:  # the learner's formula may be right: it was fed changed forward values
        who = f"{', '.join(c.changed)} {'was' if len(c.changed) == 1 else 'were'}"
        msg = (f"{who} changed in place since the forward pass, so this verdict may come from that change, not "
               f"from your formula: re-run the forward-pass and backward cells, then check again. As it stands: {msg}")
    return Check(c.name, False, False, maxdiff, msg, rule)


# ----------------------------------------------------------------------------------------------
# running your steps
# A step (a backward function you write) is called with its arguments, and with every tensor of the forward pass
# readable by its name, as in the lecture's code where they are all globals: `1 - torch.tanh(hpreact)**2` works
# inside a step that was handed only `h`. Those names are bound, for each call, to the tensors of the run being
# judged (another batch, float64, other sizes), never to the notebook's. A step that raises, or is not defined,
# gives a StepFailed for each of its outputs, which cmp prints as a diagnosis; nothing else fails with it.


class StepFailed:
    """What a step that could not run gives back for each of its outputs; cmp prints `message` as the verdict."""

    def __init__(self, message: str):
        self.message = message

    def __repr__(self) -> str:
        return f"StepFailed({self.message!r})"


SIZES = {"n": ("Xb", 0), "block_size": ("Xb", 1), "vocab_size": ("C", 0), "n_embd": ("C", 1), "n_hidden": ("W1", 1)}


def forward_names(fw: Any) -> dict[str, Any]:
    """The names a step may read: everything in the forward pass `fw` (an object with attributes, or a dict), plus
    the sizes of SIZES read from its tensors (n from Xb, n_hidden from W1, ...) where fw does not hold them."""
    names = dict(fw) if isinstance(fw, Mapping) else dict(vars(fw)) if fw is not None else {}
    for size, (t, dim) in SIZES.items():
        if size not in names and isinstance(names.get(t), torch.Tensor) and names[t].dim() > dim:
            names[size] = names[t].shape[dim]
    return names


def in_scope(fn: Any, names: Mapping[str, Any]) -> Any:
    """`fn` reading `names` before its own globals, and so do the notebook's functions it calls (a Function's
    backward calling your fused formula). Decorators such as @torch.no_grad() are unwrapped (steps run under
    no_grad anyway); a torch.autograd.Function class gets its forward and backward rebound."""
    if isinstance(fn, type):
        members = {k: staticmethod(in_scope(fn.__dict__[k].__func__, names))
                   for k in ("forward", "backward", "setup_context") if isinstance(fn.__dict__.get(k), staticmethod)}
        return type(fn.__name__, (fn,), members) if members else fn
    inner = inspect.unwrap(fn) if isinstance(fn, types.FunctionType) else fn
    if not isinstance(inner, types.FunctionType) or not names:
        return fn
    home = inner.__globals__
    scope, done = {**home, **names}, {}

    def rebind(f: types.FunctionType) -> types.FunctionType:
        if f not in done:
            new = types.FunctionType(f.__code__, scope, f.__name__, f.__defaults__, f.__closure__)
            new.__kwdefaults__, new.__qualname__ = f.__kwdefaults__, f.__qualname__
            done[f] = new
            for name in _global_names(f.__code__) - set(names):  # the notebook's functions that f calls
                g = scope.get(name)
                g = inspect.unwrap(g) if isinstance(g, types.FunctionType) else g
                if isinstance(g, types.FunctionType) and g.__globals__ is home:
                    scope[name] = rebind(g)
        return done[f]

    return rebind(inner)


def _global_names(code: types.CodeType) -> set[str]:
    """The names a code object (and the comprehensions and functions inside it) may read as globals."""
    found = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            found |= _global_names(c)
    return found


_LIBRARY = tuple(filter(None, {sysconfig.get_paths().get(k) for k in ("stdlib", "purelib", "platlib")}))


def explain(e: BaseException, fn: Any, names: Mapping[str, Any] = ()) -> str:
    """A step's exception in plain words: what it raised, on which of your lines, and what to do."""
    label = getattr(fn, "__name__", "your step")
    ours = [f for f in traceback.extract_tb(e.__traceback__)
            if f.filename != __file__ and not f.filename.startswith(_LIBRARY)]
    where = f" at `{ours[-1].line.strip()}`" if ours and ours[-1].line else ""
    text = (str(e).splitlines() or [""])[0]
    msg = f"{label} raised {type(e).__name__}{where}: {text}"
    missing = getattr(e, "name", None) if isinstance(e, NameError) else None
    if missing:
        code = getattr(inspect.unwrap(fn), "__code__", None) if callable(fn) else None
        known = sorted(set(names) | set(_parameters(fn)) | set(code.co_varnames if code else ()))
        close = difflib.get_close_matches(missing, known, n=1)
        return (msg + f". `{missing}` is neither a tensor of the forward pass nor an argument of {label}: compute it "
                "inside the step first, or take it as an argument" + (f" (did you mean `{close[0]}`?)" if close else ""))
    if ours and ".grad" in (ours[-1].line or ""):
        return msg + (". A step sees the forward tensors' values only: `.grad` is autograd's answer, which is not "
                      "there to copy. Compute the gradient from the forward tensors and the upstream gradient")
    if not ours:  # raised before any line of yours ran: the call itself
        return msg + f". Keep the arguments of the def line the notebook gave ({', '.join(_parameters(fn))})"
    return msg + ". Fix that line, run the step's cell again, then this check"


def _parameters(fn: Any) -> list[str]:
    """The names of fn's arguments, or [] where Python cannot tell."""
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def call(fn: Any, args: list, outputs: list[str], names: Mapping[str, Any] = ()) -> tuple:
    """fn(*args) under no_grad with `names` in scope, as one value per name in `outputs`. Never raises an
    Exception: a step that raises or returns the wrong number of values gives a StepFailed for each output."""
    label = getattr(fn, "__name__", "your step")
    # detached: a step sees values only, so `hpreact.grad` (autograd's answer) is not there to be copied
    names, args = {k: _detached(v) for k, v in dict(names).items()}, [_detached(a) for a in args]
    floats = [x.dtype for x in (*args, *names.values()) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    default = torch.get_default_dtype()
    try:  # new tensors (torch.zeros((n, vocab_size))) get the run's dtype: float64 in a float64 re-run
        torch.set_default_dtype(floats[0] if floats and floats[0] in (torch.float32, torch.float64) else default)
        with torch.no_grad():
            result = in_scope(fn, names)(*args)
    except Exception as e:  # KeyboardInterrupt (a time limit) still stops the cell
        done = _assigned_before(e, fn)  # outputs the step had computed before the line that raised
        failed = iter(_failed(StepFailed(explain(e, fn, names)), label, len(outputs)))
        return tuple(done[o] if o in done else next(failed) for o in outputs)
    finally:
        torch.set_default_dtype(default)
    if len(outputs) == 1:
        return (result,)
    if isinstance(result, (tuple, list)) and len(result) == len(outputs):
        return tuple(result)
    if result is ...:  # a TODO left in the return line: each output is "not implemented yet"
        return (...,) * len(outputs)
    got = f"{len(result)} values" if isinstance(result, (tuple, list)) else f"a {type(result).__name__}"
    return _failed(StepFailed(f"{label} should return {len(outputs)} values ({', '.join(outputs)}), but returned "
                              f"{got}"), label, len(outputs))


def _failed(first: StepFailed, label: str, count: int, why: str = "did not run to its end") -> tuple:
    """The diagnosis for a step's first output; the others point up to it instead of repeating it."""
    return (first,) + (StepFailed(f"{label} {why}: see above"),) * (count - 1)


def _detached(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
        return type(x)(v.detach() if isinstance(v, torch.Tensor) else v for v in x)
    return x


def _assigned_before(e: BaseException, fn: Any) -> dict[str, Any]:
    """The tensors a step had finished when it raised, by name, so each is judged on its own merits: those it
    had assigned, less any that the line that raised or a later line of the step still touches."""
    code = getattr(inspect.unwrap(fn), "__code__", None) if callable(fn) else None
    tb, found = e.__traceback__, {}
    while tb is not None:
        if tb.tb_frame.f_code is code:
            rest = []  # the step's lines from the one that raised on, its return line left out
            for line in linecache.getlines(code.co_filename)[tb.tb_lineno - 1:]:
                if rest and line.strip() and not line[0].isspace():
                    break  # the step's body has ended
                if not line.strip().startswith("return"):
                    rest.append(line)
            text = "".join(rest) if rest else None
            found = {k: v for k, v in tb.tb_frame.f_locals.items() if isinstance(v, torch.Tensor)
                     and text is not None and not re.search(rf"\b{re.escape(k)}\b", text)}
        tb = tb.tb_next
    return found


def why_unfit(grad: Any, t: Any, name: str = "its tensor") -> str | None:
    """Why `grad` cannot be the gradient of tensor t (called `name`), in a few words; None when it has t's shape
    and is floating point."""
    if isinstance(grad, StepFailed):
        return "is missing: its step did not run"
    if grad is ...:
        return "is still `...`"
    if not isinstance(grad, torch.Tensor):
        return f"is {'None' if grad is None else 'a ' + type(grad).__name__}, not a tensor"
    if tuple(grad.shape) != tuple(t.shape):
        return f"has shape {tuple(grad.shape)}, but {name} has shape {tuple(t.shape)}"
    if not grad.is_floating_point():
        return f"is a {grad.dtype} tensor, not floating point"
    return None


def _not_defined(step: str) -> StepFailed:
    return StepFailed(f"{step} is not defined: its cell has not run, or stopped with an error before defining it. "
                      f"Fix that cell and run it, then this check; the other checks go on without it")


def _caller_namespace() -> dict:
    """The globals of the notebook (or module) that called into this module."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


def _feed(fn: Any, values: Mapping[str, Any], fw: Mapping[str, Any], label: str) -> list | StepFailed:
    """fn's arguments by name: forward tensors from fw; an upstream gradient dX from `values` where it is right,
    else autograd's (a copy of fw's X.grad), and one printed line says which were replaced."""
    args, fed = [], {}
    for p in _parameters(fn):
        t = fw.get(p[1:]) if p.startswith("d") else None
        if isinstance(t, torch.Tensor) and t.grad is not None:  # an upstream gradient, with autograd's reference
            a, ref = values.get(p, StepFailed("")), t.grad
            try:
                right = why_unfit(a, ref) is None and a.dtype == ref.dtype and torch.allclose(a.detach(), ref)
            except Exception:
                right = False
            if not right:
                why = ("still `...`" if a is ... else "missing" if isinstance(a, StepFailed) or p not in values
                       else "not right yet")
                fed.setdefault(why, []).append(p)
                a = ref.clone()  # a copy: your step may write into it
            args.append(a)
        elif p in fw:
            args.append(fw[p])
        else:
            return StepFailed(f"{label} takes an argument `{p}` that is neither a tensor of the forward pass nor the "
                              f"gradient of one: keep the def line the notebook gave")
    if fed:
        why = " and ".join(f"{' and '.join(ps)} ({'yours is' if len(ps) == 1 else 'yours are'} {reason})"
                           for reason, ps in fed.items())
        print(f"{label} is fed autograd's {why}, so this check judges this step alone")
    return args


def check_step(step: str, fw: Any, outputs: str, ns: Mapping[str, Any] | None = None) -> Any:
    """Judge one of your steps alone, and return what it returned (one value, or a tuple of them).

    `step` is the step's name, looked up in the notebook (`ns`, by default the caller's globals), so a cell that
    failed to define it costs this check only. Its arguments are found by name: forward tensors from fw, and
    upstream gradients (dprobs, ...) from the notebook where yours are right, else autograd's. Each output in
    `outputs` ("dh dW2 db2") is then compared by cmp with autograd's gradient of its forward tensor. Never raises.
    """
    ns = _caller_namespace() if ns is None else ns
    names, fwn = outputs.split(), forward_names(fw)
    fn = ns.get(step)
    args = _feed(fn, ns, fwn, step) if callable(fn) else _not_defined(step)
    result = (_failed(args, step, len(names), "is not defined" if not callable(fn) else "could not be called")
              if isinstance(args, StepFailed) else call(fn, args, names, fwn))
    _warn_aliased({name[1:]: value for name, value in zip(names, result)})  # before any of them is judged
    for name, value in zip(names, result):
        cmp(name[1:], value, fwn.get(name[1:]), n=fwn.get("n"))
    return result[0] if len(result) == 1 else result


def step(fn: Any, *args: Any, names: Any = None, outputs: int | str = 1) -> Any:
    """Run a step on arguments of your choosing (`fn` or its name), with the forward pass `names` in scope.
    `outputs`: how many values it returns, or their names ("dh dW2 db2"). Returns its value(s); a step that
    raises or is not defined gives StepFailed instead. Never raises."""
    if isinstance(fn, str):
        fn = _caller_namespace().get(fn) or fn
    labels = outputs.split() if isinstance(outputs, str) else [f"output {i}" for i in range(outputs)]
    result = (call(fn, list(args), labels, forward_names(names)) if callable(fn) else
              _failed(_not_defined(fn), fn, len(labels), "is not defined"))
    return result[0] if len(labels) == 1 else result


def run_chain(steps: list[str], outputs: Mapping[str, str], fw: Any, reference: Mapping[str, torch.Tensor],
              ns: Mapping[str, Any] | None = None) -> dict:
    """Chain your steps (by name, from the loss down to C) on the forward pass fw, with no autograd, and say where
    the chain first departs from `reference` (gradient name -> autograd's gradient in the same dtype).

    Each step receives, by the names of its arguments, the forward tensors and the gradients your steps computed:
    right or wrong, a wrong one is passed on. Only a gradient that is missing (a step not defined, raising, or
    still `...`) is replaced by the reference, and one line says so, so the steps below are still run. Returns
    every tensor and gradient by name. Never raises.
    """
    ns = _caller_namespace() if ns is None else ns
    values, departed, filled = forward_names(fw), None, []
    for step_name in steps:
        fn, names = ns.get(step_name), outputs[step_name].split()
        args = []
        for p in _parameters(fn) if callable(fn) else []:
            if why_unfit(values.get(p), values.get(p[1:], values.get(p))) and isinstance(reference.get(p), torch.Tensor):
                values[p] = reference[p].clone()
                filled.append(p)
            args.append(values.get(p))
        # in scope: this run's forward tensors and the gradients so far, never the notebook's
        result = (call(fn, args, names, values) if callable(fn) else
                  _failed(_not_defined(step_name), step_name, len(names), "is not defined"))
        values.update(zip(names, result))
        for name, grad in zip(names, result):
            t, ref = values.get(name[1:]), reference.get(name)
            if departed is not None or not isinstance(t, torch.Tensor):
                continue  # already departed, or not the gradient of a forward tensor
            why = why_unfit(grad, t, name[1:])
            if why is None and grad.dtype != t.dtype:
                why = f"is {grad.dtype} in a {t.dtype} run: make new tensors with the dtype of your inputs (zeros_like)"
            if why is None and isinstance(ref, torch.Tensor) and ref.shape == grad.shape:
                if max(grad.abs().max().item(), ref.abs().max().item()) > 1e-6:  # both zero up to rounding: agree
                    err = rel_error(grad, ref, norm=True)
                    why = f"differs from autograd's (relative error {err:.0e})" if not err < 1e-4 else None
            if why is not None:
                departed = f"{step_name}: {name} {why}"
    if filled:
        print(f"autograd's {', '.join(filled)} stood in where yours were missing, so the steps below them still ran")
    print(f"your chain departs first at {departed}" if departed else
          f"your chain agrees with autograd's gradients at every one of its {len(steps)} steps")
    return values


def check_function(function: type | str, inputs: tuple, dout: torch.Tensor, labels: list[str | None],
                   names: Any = None, n: int | None = None) -> list[Check]:
    """Judge what a torch.autograd.Function's own backward returns, one gradient per input.

    The Function runs on copies of `inputs` (tensors whose .grad holds autograd's reference), and `dout` is
    backpropagated through it. What backward returned is compared with each input's .grad before autograd touches
    it: autograd quietly sums a gradient of a broadcast shape, (n, D) for a (1, D) input, down for you, so a
    loss.backward() or gradcheck would pass such a backward, but a hand-written one must return each input's
    shape. `labels[i]` names input i's check (None: not checked); `names`: the forward pass to have in scope.
    """
    if isinstance(function, str):  # by name, so a class whose cell failed costs this check only
        name, function = function, _caller_namespace().get(function)
        if not isinstance(function, type):
            return [cmp(label, _not_defined(name), x, n=n) for x, label in zip(inputs, labels) if label]
    returned: list = []
    scoped = in_scope(function, forward_names(names))

    class Recorded(scoped):
        @staticmethod
        def backward(ctx, *grads):
            out = scoped.backward(ctx, *grads)
            returned.append(out)
            return out

    label = getattr(function, "__name__", "your Function")
    copies = [x.detach().clone().requires_grad_(x.requires_grad) if isinstance(x, torch.Tensor) else x
              for x in inputs]
    failed = None
    try:
        out = Recorded.apply(*copies)
        if isinstance(out, torch.Tensor):
            out.backward(dout)
        else:  # `...` still in forward: not implemented yet; anything else is said as it is
            failed = ... if out is ... else StepFailed(f"{label}.forward returned a {type(out).__name__}, not a tensor")
    except Exception as e:  # judged below: what backward returned, if it got that far, or the error
        failed = None if returned else StepFailed(explain(e, function, forward_names(names)))
    got = returned[0] if returned else None
    got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    checks = []
    for i, (x, name) in enumerate(zip(inputs, labels)):
        if name is None:
            continue
        value = failed if failed is not None else (got[i] if i < len(got) else StepFailed(
            f"{label}.backward returned {len(got)} gradient(s): it must return one per input of forward, "
            f"{len(inputs)} here (None for an input that needs none)"))
        checks.append(cmp(name, value, x, n=n))
    return checks


# ----------------------------------------------------------------------------------------------
# finite differences, to check without autograd


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


def rel_error(a: float | torch.Tensor, b: float | torch.Tensor, norm: bool = False) -> float:
    """The largest entrywise relative error, max over entries of |a - b| / (|a| + |b|), in float64; with
    norm=True, the relative error of the whole tensors, ||a - b|| / (||a|| + ||b||), which entries that are
    rounding noise in both cannot dominate.

    Each denominator is at least 1e-12, so entries that are 0 in both count as 0. About 1e-7 or less is
    right in float64, above 1e-2 is wrong. 0.0 for empty tensors.
    """
    a, b = (torch.as_tensor(x).detach().to(torch.float64) for x in (a, b))
    if norm:
        return float((a - b).norm() / (a.norm() + b.norm()).clamp_min(1e-12))
    err = (a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-12)
    return float(err.max()) if err.numel() else 0.0


GRADCHECK = dict(eps=1e-6, atol=1e-5, rtol=1e-3)  # central differences in float64: 1e-6 steps are accurate to ~1e-9


def gradcheck(fn: Callable[..., Any] | str, inputs: Any, name: str = "your backward", names: Any = None) -> bool:
    """Check `fn`'s backward (e.g. a torch.autograd.Function's apply) against finite differences; say so plainly.

    `inputs`: a tuple of float64 tensors with requires_grad=True (and any others fn takes); `names`: what a step
    inside may read by name in this run (e.g. {"n": 8}), as in check_step. torch.autograd.gradcheck
    gives the verdict; a failure is explained from the two Jacobians (which input, which entry, how far). Prints
    one line and returns True when it passes; never lets a traceback out.
    """
    if isinstance(fn, str):  # a Function (or function) by name: one whose cell failed is said so, not raised
        found = _caller_namespace().get(fn)
        if found is None:
            _say(f"gradcheck could not check {name}: {_not_defined(fn).message}")
            return False
        fn = found
    if names is not None:
        fn = in_scope(fn, forward_names(names))
    fn = fn.apply if isinstance(fn, type) else fn
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    for i, x in enumerate(inputs):
        if isinstance(x, torch.Tensor) and x.requires_grad and x.dtype != torch.float64:
            _say(f"input {i} is {x.dtype}, not torch.float64: finite differences are too coarse in lower "
                 "precision to judge a gradient; pass x.double() (the verdict below may be wrong)", "warning: ")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Input #")  # torch's float64 warning; ours above is plainer
            ok = torch.autograd.gradcheck(fn, inputs, raise_exception=False, **GRADCHECK)
        msg = (f"gradcheck passed: {name} agrees with finite differences (float64)" if ok else
               _jacobian_failure(fn, inputs, name))
    except Exception as e:
        ok, first = False, next((s for s in str(e).splitlines() if s.strip()), "").strip().rstrip(".")
        if "ellipsis" in first.lower():  # a `...` still in forward or backward
            _say(f"gradcheck waits for {name}: not implemented yet (a `...` is still in place)")
            return False
        msg = (f"gradcheck could not check {name}: {type(e).__name__}: {first}. Check that forward and backward run "
               "on these inputs, and that backward returns one gradient per input of forward (None where none is "
               "needed), each with its input's shape")
    _say(msg)
    return ok


def _jacobian_failure(fn: Callable[..., Any], inputs: tuple, name: str) -> str:
    """Which input's gradient is off, and where most: your backward's Jacobian against central differences."""
    diff = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]

    def outputs(*xs):  # fn of the differentiable inputs only, its outputs as one flat float64 vector
        full = list(inputs)
        for i, x in zip(diff, xs):
            full[i] = x
        out = fn(*full)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return torch.cat([o.reshape(-1).to(torch.float64) for o in out if isinstance(o, torch.Tensor)])

    xs = tuple(inputs[i].detach() for i in diff)
    analytical = torch.autograd.functional.jacobian(outputs, xs)  # per input: (output entries, *input shape)
    worst = None
    for j, (x, ana) in enumerate(zip(xs, analytical)):
        ana = ana.reshape(ana.shape[0], -1)
        num = torch.empty_like(ana)
        for k in range(x.numel()):  # central differences, one input entry at a time
            xp, xm = x.clone(), x.clone()
            xp.view(-1)[k] += GRADCHECK["eps"]
            xm.view(-1)[k] -= GRADCHECK["eps"]
            with torch.no_grad():
                num[:, k] = (outputs(*xs[:j], xp, *xs[j + 1:]) - outputs(*xs[:j], xm, *xs[j + 1:])) / (2 * GRADCHECK["eps"])
        gap = (num - ana).abs().nan_to_num(math.inf)
        if gap.numel() and (worst is None or gap.max() > worst[0]):
            out_entry, entry = divmod(int(gap.argmax()), gap.shape[1])
            worst = (float(gap.max()), diff[j], entry, out_entry, float(ana[out_entry, entry]),
                     float(num[out_entry, entry]), ana.shape[0])
    if worst is None:
        return f"gradcheck failed: {name} disagrees with finite differences"
    gap, i, entry, out_entry, yours, numerical, n_out = worst
    where = f"entry {entry}" + (f", output entry {out_entry}" if n_out > 1 else "")
    return (f"gradcheck failed: the gradient with respect to input {i} (of {len(inputs)}) is wrong: largest "
            f"difference {gap:.2g} between your backward and finite differences (at {where}: yours {yours:.4g}, "
            f"finite differences {numerical:.4g})")


# ----------------------------------------------------------------------------------------------
# predictions


def judge(prediction: Any, truth: bool | float | str, tolerance: float = 0.0) -> str:
    """What a reveal cell says about a prediction: not made yet (still `...`), not of the right kind, or right or
    wrong. The truth's type sets the kind: a bool (yes/no), a number (right within `tolerance`) or a word."""
    if prediction is ...:
        return "no prediction yet: fill in the prediction cell above and run it, then run this cell again"
    if isinstance(truth, str):
        right = str(prediction).strip().strip("\"'").lower() == truth.lower()
    elif isinstance(truth, bool) != isinstance(prediction, bool):
        return f"your prediction {prediction!r} is not {'True or False' if isinstance(truth, bool) else 'a number'}"
    else:
        try:
            right = abs(float(prediction) - float(truth)) <= tolerance
        except (TypeError, ValueError):
            return f"your prediction {prediction!r} is not a number"
    return f"your prediction {prediction!r}: {'right' if right else 'wrong'}"


def reveal(name: str, truth: bool | float | str, tolerance: float = 0.0, ns: Mapping[str, Any] | None = None) -> str:
    """`judge` for the prediction stored under `name` in the notebook (the caller's globals by default): a
    prediction cell that failed to run says so instead of raising a NameError here."""
    ns = _caller_namespace() if ns is None else ns
    if name not in ns:
        return f"no prediction yet: {name} is not defined; run its cell (fix it first if it stopped with an error)"
    return judge(ns[name], truth, tolerance)
