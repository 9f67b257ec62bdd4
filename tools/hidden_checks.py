"""Teacher-only re-checks: the hidden tests behind every graded check cell, judged where no learner code ever ran.

A re-check has three parts, and only the middle one runs in the learner's box (tools/box.py):
  1. `inputs(...)`, in the teacher's process: FRESH inputs for each learner function a check cell exercises (another
     seed, a new random batch, new parameters from the teacher's lecture.py, in float64), saved as plain tensors,
     and the reference gradients, computed here with autograd and never written into the box.
  2. COLLECTOR, in the learner's kernel, after each check cell: loads that cell's inputs (torch.load,
     weights_only=True), runs the learner's own functions through the course harness (utils.call: every forward
     tensor of the fresh run readable by its lecture name; under inference mode, where autograd is unavailable)
     and saves only what they returned (tensors, or the harness's message when a step raised) as plain data.
  3. `judge(...)`, in the teacher's process: loads those tensors (weights_only=True) and compares them with the
     references using the teacher's copy of the checker (utils.cmp, loaded from the teacher's file).
So monkeypatching anything in the kernel (torch, builtins, utils, this module: it is not even in the box) changes
only what the learner's own functions return; the verdict is computed where none of that happened.

Each backward step of notebook 01 is judged alone: it receives autograd's upstream gradients of the fresh run, so a
mistake earlier in the chain costs only the step that made it; a step with one upstream gradient is also tried on a
random one (BatchNorm makes the true db1 zero, which would let db1 = 0 pass). Notebooks 02-04: the fused backward
functions, the torch.autograd.Functions (their backward called directly, so what it returns is judged, shapes
included) and the whole backward() of 04, the same way.

`scan(...)` reads the learner's cells (never runs them): a step that uses autograd (`.backward()`,
`torch.autograd`, `torch.func`, `.grad`, `requires_grad`, grad modes), itself or through a helper it calls, earns
nothing, and code that patches libraries, imports the grader or solutions, opens files or runs processes is
reported.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import inspect
import io
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# the teacher's files, beside this one in an exported course (grader/), or in the repository
FILES = {"utils.py": [HERE / "utils.py", HERE.parent / "utils.py"],
         "lecture.py": [HERE / "lecture.py", HERE.parent / "course" / "lecture.py"]}

# Notebook 01's answers: the 14 atomic backward steps of course/lecture.py (tests check the list is complete).
LECTURE_STEPS = (
    "backward_logprobs", "backward_probs", "backward_counts_sum_inv", "backward_counts", "backward_logits",
    "backward_layer2", "backward_tanh", "backward_bn_affine", "backward_bn_var", "backward_bn_mean",
    "backward_layer1", "backward_view", "backward_embedding_loop", "backward_embedding",
)
# Steps outside lecture.py: (arguments, returned gradients), by forward-pass names.
STEP_SIGNATURES = {
    "batchnorm_stats_backward": ("dhpreact bngain bnvar_inv bnraw", "dbnvar dbnmeani"),
    "batchnorm_backward": ("dhpreact bngain bnvar_inv bnraw", "dhprebn"),
}
sys.path.append(str(HERE.parent / "course"))  # course/facts.py in the repository; its copy beside this file when exported
from facts import PARAMETERS  # noqa: E402
CACHE = ("embcat", "bnraw", "bnvar_inv", "h", "logits")  # what notebook 04's train_forward returns beside the loss


# ---------------------------------------------------------------------------------------------- the teacher's files

def load(path: str | Path) -> ModuleType:
    """A fresh module from the file at `path` (never sys.modules' copy)."""
    path = Path(path)
    name = f"_teacher_{path.stem}_{os.urandom(6).hex()}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def teacher_file(name: str) -> Path:
    for p in FILES[name]:
        if p.is_file():
            return p
    raise FileNotFoundError(f"the teacher's {name} is not beside {HERE}")


_TEACHER: SimpleNamespace | None = None


def teacher() -> SimpleNamespace:
    """The teacher's utils and lecture modules (loaded once per process, from the teacher's files)."""
    global _TEACHER
    if _TEACHER is None:
        T = SimpleNamespace(utils=load(teacher_file("utils.py")), lecture=load(teacher_file("lecture.py")))
        T.torch = T.lecture.torch
        _TEACHER = T
    return _TEACHER


# ---------------------------------------------------------------------------------------------- fresh inputs

def fresh_forward(T: SimpleNamespace, seed: int, sizes: dict[str, int]) -> SimpleNamespace:
    """The lecture's model with new parameters and a new random batch, in float64, after loss.backward().
    Every tensor of the forward pass keeps its .grad: those are the references."""
    torch = T.torch
    g = torch.Generator().manual_seed(seed)
    vocab_size = T.utils.vocab_size
    params = T.lecture.init_params(vocab_size, sizes["n_embd"], sizes["n_hidden"], sizes["block_size"], g,
                                   dtype=torch.float64, requires_grad=True)
    n = sizes["batch_size"]
    Xb = torch.randint(0, vocab_size, (n, sizes["block_size"]), generator=g)
    Yb = torch.randint(0, vocab_size, (n,), generator=g)
    fw = T.lecture.forward(*params, Xb, Yb)
    for t in vars(fw).values():
        if isinstance(t, torch.Tensor) and t.grad_fn is not None:
            t.retain_grad()
    fw.loss.backward(retain_graph=True)  # the graph stays: a re-check may backpropagate from another tensor
    return fw


def plain(T: SimpleNamespace, v: Any) -> Any:
    """v as plain data for the box: tensors detached and cloned (no .grad, no graph), lists of them likewise."""
    if isinstance(v, T.torch.Tensor):
        return v.detach().clone()
    if isinstance(v, (list, tuple)):
        return [plain(T, x) for x in v]
    return v


def forward_tensors(T: SimpleNamespace, fw: SimpleNamespace) -> dict:
    """The fresh run's forward tensors and sizes, by name: what a step may read as the lecture's globals."""
    return {k: plain(T, v) for k, v in vars(fw).items() if isinstance(v, (T.torch.Tensor, int))}


def _call_trial(T, fw, function, args, outputs, refs, where="", n=None):
    """A trial that calls function(*args) and compares each output with refs[i] (a (tensor, grad) pair or None)."""
    return dict(kind="call", function=function, args=[plain(T, a) for a in args], names=forward_tensors(T, fw),
                outputs=list(outputs)), dict(refs=refs, where=where, n=n)


def _step_trials(T, ctx, name: str, wanted: list[str]):
    """One backward step, judged alone (notebook 01's steps, 03's batchnorm_backward).

    First trial: the fresh model's forward tensors and autograd's upstream gradient(s) in; each returned gradient
    compared with autograd's. Second trial, for a step with one upstream gradient: a random upstream instead, the
    reference from autograd backward from that one tensor."""
    torch = T.torch
    if name in STEP_SIGNATURES:
        args, outputs = (s.split() for s in STEP_SIGNATURES[name])
    else:
        args = list(inspect.signature(getattr(T.lecture, name)).parameters)
        outputs = T.lecture.OUTPUTS[name].split()
    fwn = fresh_forward(T, ctx.seed, ctx.sizes)
    fw = vars(fwn)
    upstream = [a for a in args if a not in fw and a.startswith("d") and a[1:] in fw]
    values = [fw[a] if a in fw else fw[a[1:]].grad for a in args]
    refs = [(fw[o[1:]], fw[o[1:]].grad) for o in outputs]
    trials = [_call_trial(T, fwn, name, values, outputs, refs)]
    if len(upstream) == 1:
        node = fw[upstream[0][1:]]
        g = torch.Generator().manual_seed(ctx.seed + 1)
        random_upstream = torch.randn(node.shape, generator=g, dtype=node.dtype)
        targets = [fw[o[1:]] for o in outputs]
        grads = torch.autograd.grad(node, targets, random_upstream, retain_graph=True)
        values = [random_upstream if a in upstream else v for a, v in zip(args, values)]
        trials.append(_call_trial(T, fwn, name, values, outputs, list(zip(targets, grads)),
                                  where=", on a random upstream gradient"))
    return trials


def _cross_entropy_backward_trials(T, ctx, name, wanted):
    """Notebook 02: the fused dlogits, on the fresh model's logits and on 7 random rows of another scale."""
    torch, F = T.torch, T.torch.nn.functional
    fw = fresh_forward(T, ctx.seed, ctx.sizes)
    g = torch.Generator().manual_seed(ctx.seed + 2)
    vocab = fw.logits.shape[1]
    trials = []
    for where, logits, Yb in [("", fw.logits.detach(), fw.Yb),
                              (" (on 7 random rows)", 3 * torch.randn(7, vocab, generator=g, dtype=torch.float64),
                               torch.randint(0, vocab, (7,), generator=g))]:
        x = logits.clone().requires_grad_(True)
        F.cross_entropy(x, Yb).backward()
        trial, ref = _call_trial(T, fw, name, [logits, Yb], ["dlogits"], [(x, x.grad)], where, n=len(Yb))
        if where:  # rows of their own: a formula reading probs (or n) must read these rows', not the batch's
            counts = (logits - logits.max(1, keepdim=True).values).exp()
            probs = counts / counts.sum(1, keepdim=True)
            trial["names"] = dict(logits=logits, Yb=Yb, n=len(Yb), counts=counts, probs=probs, logprobs=probs.log())
        trials.append((trial, ref))
    return trials


def _function_trial(T, fw, name, inputs, dout, labels, forward_ref, refs, where="", n=None):
    """A trial of a torch.autograd.Function: forward(ctx, *inputs), then backward(ctx, dout), called directly."""
    return (dict(kind="function", function=name, args=[plain(T, a) for a in inputs], dout=plain(T, dout),
                 names=forward_tensors(T, fw), outputs=list(labels)),
            dict(refs=refs, where=where, n=n, forward=plain(T, forward_ref)))


def _CrossEntropy_trials(T, ctx, name, wanted):
    """Notebook 02: the Function's loss and what its backward returns for dloss = 0.7, on the fresh batch and on 4
    random rows (dloss = 0.5)."""
    torch, F = T.torch, T.torch.nn.functional
    fw = fresh_forward(T, ctx.seed, ctx.sizes)
    g = torch.Generator().manual_seed(ctx.seed + 3)
    vocab = fw.logits.shape[1]
    trials = []
    for where, logits, Yb, dloss in [(", with 0.7 flowing into the loss", fw.logits.detach(), fw.Yb, 0.7),
                                     (" (on 4 random rows, 0.5 flowing in)",
                                      torch.randn(4, vocab, generator=g, dtype=torch.float64),
                                      torch.randint(0, vocab, (4,), generator=g), 0.5)]:
        x = logits.clone().requires_grad_(True)
        loss = F.cross_entropy(x, Yb)
        (dloss * loss).backward()
        trials.append(_function_trial(T, fw, name, [logits, Yb], torch.tensor(dloss, dtype=torch.float64),
                                      ["dlogits", None], loss, [(x, x.grad), None], where, n=len(Yb)))
    return trials


def _batchnorm(x, gain, bias):
    """The lecture's BatchNorm (training mode, Bessel's n - 1), the reference for notebook 03."""
    return gain * (x - x.mean(0, keepdim=True)) * (x.var(0, keepdim=True, correction=1) + 1e-5) ** -0.5 + bias


def _layernorm(x, gain, bias):
    import torch.nn.functional as F
    return F.layer_norm(x, (x.shape[1],), gain, bias, eps=1e-5)


def _norm_trials(T, ctx, name, reference, gain_shape):
    """Notebook 03's Functions (BatchNorm, LayerNorm): the fresh hprebn with a random upstream, then 8 x 5."""
    torch = T.torch
    fw = fresh_forward(T, ctx.seed, ctx.sizes)
    g = torch.Generator().manual_seed(ctx.seed + 4)
    D = fw.hprebn.shape[1]
    trials = []
    for where, x in [("", fw.hprebn.detach()), (" (on 8 x 5 inputs)", torch.randn(8, 5, generator=g,
                                                                                  dtype=torch.float64))]:
        D = x.shape[1]
        shape = gain_shape(D)
        gain = 1 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        bias = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        dout = torch.randn(x.shape, generator=g, dtype=torch.float64)
        refs = [t.clone().requires_grad_(True) for t in (x, gain, bias)]
        out = reference(*refs)
        out.backward(dout)
        trials.append(_function_trial(T, fw, name, [x, gain, bias], dout, [f"{name}.x", f"{name}.gain", f"{name}.bias"],
                                      out, [(r, r.grad) for r in refs], where, n=x.shape[0]))
    return trials


def _BatchNorm_trials(T, ctx, name, wanted):
    return _norm_trials(T, ctx, name, _batchnorm, lambda D: (1, D))


def _LayerNorm_trials(T, ctx, name, wanted):
    return _norm_trials(T, ctx, name, _layernorm, lambda D: (D,))


def _layernorm_backward_trials(T, ctx, name, wanted):
    """Notebook 03: dx, dgain, dbias of LayerNorm over each row, against autograd through F.layer_norm."""
    torch = T.torch
    fw = fresh_forward(T, ctx.seed, ctx.sizes)
    n, D = fw.hprebn.shape
    g = torch.Generator().manual_seed(ctx.seed + 5)
    x = fw.hprebn.detach().clone()
    gain = 1 + 0.1 * torch.randn(D, generator=g, dtype=torch.float64)
    bias = 0.1 * torch.randn(D, generator=g, dtype=torch.float64)
    dout = torch.randn(n, D, generator=g, dtype=torch.float64)
    refs = [t.clone().requires_grad_(True) for t in (x, gain, bias)]
    _layernorm(*refs).backward(dout)
    labels = ["LayerNorm.x", "LayerNorm.gain", "LayerNorm.bias"]
    return [_call_trial(T, fw, name, [dout, x, gain], labels, [(r, r.grad) for r in refs])]


def _backward_trials(T, ctx, name, wanted):
    """Notebook 04: the whole backward(Xb, Yb, parameters, cache) on a fresh model and batch, every gradient."""
    fw = fresh_forward(T, ctx.seed, ctx.sizes)
    f = vars(fw)
    trial, ref = _call_trial(T, fw, name, [f["Xb"], f["Yb"], [f[p] for p in PARAMETERS], [f[c] for c in CACHE]],
                             [f"d{p}" for p in PARAMETERS], [(f[p], f[p].grad) for p in PARAMETERS])
    trial["names"]["bnmean"] = trial["names"]["bnmeani"]  # notebook 04's train_forward calls the mean bnmean
    return [(trial, ref)]


def _batchnorm_layer_trials(T, ctx, name, wanted):
    """Notebook 03: batchnorm_layer against torch.nn.BatchNorm1d, a fresh batch in training mode (output and both
    running statistics), then evaluation mode on running statistics of its own (momentum 0.3)."""
    torch = T.torch
    fw = fresh_forward(T, ctx.seed, ctx.sizes)
    g = torch.Generator().manual_seed(ctx.seed + 6)
    x = fw.hprebn.detach().clone()
    D = x.shape[1]
    gain = 1 + 0.1 * torch.randn(D, generator=g, dtype=torch.float64)
    bias = 0.1 * torch.randn(D, generator=g, dtype=torch.float64)
    trials = []
    for training, mean, var in [(True, torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)),
                                (False, torch.randn(D, generator=g, dtype=torch.float64),
                                 0.5 + torch.rand(D, generator=g, dtype=torch.float64))]:
        bn = torch.nn.BatchNorm1d(D, eps=1e-5, momentum=0.3).double().train(training)
        with torch.no_grad():
            bn.weight.copy_(gain), bn.bias.copy_(bias), bn.running_mean.copy_(mean), bn.running_var.copy_(var)
            out = bn(x)
        expected = [out, bn.running_mean.clone(), bn.running_var.clone()]  # what the layer must return, as values
        where = " (training mode)" if training else " (evaluation mode)"
        trials.append(_call_trial(T, fw, name, [x, gain, bias, mean, var, training, 0.3, 1e-5],
                                  ["out", "running_mean", "running_var"],
                                  [(e, e) for e in expected], where, n=x.shape[0]))
    return trials


# notebook -> {the learner's function or class, by name -> its trials}
RECHECKS: dict[str, dict[str, Callable]] = {
    "01_atomic_backprop": {name: _step_trials for name in LECTURE_STEPS},
    "02_fused_cross_entropy": {"cross_entropy_backward": _cross_entropy_backward_trials,
                               "CrossEntropy": _CrossEntropy_trials},
    "03_fused_batchnorm": {"batchnorm_layer": _batchnorm_layer_trials,
                           "batchnorm_stats_backward": _step_trials, "batchnorm_backward": _step_trials,
                           "BatchNorm": _BatchNorm_trials, "layernorm_backward": _layernorm_backward_trials,
                           "LayerNorm": _LayerNorm_trials},
    "04_full_training": {"backward": _backward_trials},
}


def registered(notebook: str) -> set[str]:
    """The names (functions, classes) whose check cells have a hidden re-check in this notebook."""
    return set(RECHECKS.get(notebook, {}))


def make_inputs(notebook: str, checks: dict[str, dict[str, list[str]]], seed: int, sizes: dict[str, int]):
    """For each check cell (grade_id -> {function: gradients it checks, [] for all}): the box's inputs (plain data)
    and the teacher's references. Returns ({grade_id: [box trial]}, {grade_id: [teacher trial]})."""
    T = teacher()
    ctx = SimpleNamespace(seed=seed, sizes=sizes)
    box, refs = {}, {}
    for gid, functions in checks.items():
        box[gid], refs[gid] = [], []
        for function, wanted in functions.items():
            for trial, ref in RECHECKS[notebook][function](T, ctx, function, wanted):
                box[gid].append(trial)
                refs[gid].append(dict(ref, function=function, outputs=trial["outputs"], wanted=list(wanted),
                                      kind=trial["kind"]))
    return box, refs


# ---------------------------------------------------------------------------------------------- in the box

# Runs in the learner's kernel, in a cell after each check cell: `_backprop_ninja_collect("<grade_id>")`. It needs
# only torch and the course's utils; what it saves is plain data, judged outside.
COLLECTOR = r'''
def _backprop_ninja_collect(check, root="/box", _ns=globals()):
    import torch, utils

    class Ctx:  # what a Function's forward and backward may use of autograd's ctx
        saved_tensors, needs_input_grad = (), ()
        def save_for_backward(self, *tensors): self.saved_tensors = tensors
        def mark_non_differentiable(self, *args): pass
        def mark_dirty(self, *args): pass
        def set_materialize_grads(self, value): pass

    def copy(v):
        return v.clone() if isinstance(v, torch.Tensor) else [copy(x) for x in v] if isinstance(v, list) else v

    def data(v):
        if type(v) is torch.Tensor or isinstance(v, torch.nn.Parameter):
            return torch.Tensor(v.detach().clone().contiguous()) if v.layout == torch.strided else {"type": "sparse tensor"}
        if isinstance(v, utils.StepFailed):
            return {"failed": str(v.message)}
        if v is ...:
            return {"ellipsis": True}
        return {"type": type(v).__name__}

    answers = []
    for t in torch.load(f"{root}/inputs/{check}.pt", weights_only=True):
        fn = _ns.get(t["function"])
        if not callable(fn):
            answers.append({"missing": True})
            continue
        with torch.inference_mode():  # autograd is not available to the learner's functions here
            names = utils.forward_names({k: copy(v) for k, v in t["names"].items()})
            args = [copy(a) for a in t["args"]]
            if t["kind"] == "call":
                answers.append({"values": [data(v) for v in utils.call(fn, args, t["outputs"], names)]})
                continue
            try:
                F, ctx = utils.in_scope(fn, names), Ctx()
                ctx.needs_input_grad = tuple(isinstance(a, torch.Tensor) and a.is_floating_point() for a in args)
                if "setup_context" in vars(fn):
                    out = F.forward(*args)
                    F.setup_context(ctx, tuple(args), out)
                else:
                    out = F.forward(ctx, *args)
                grads = F.backward(ctx, copy(t["dout"]))
                grads = list(grads) if isinstance(grads, (tuple, list)) else [grads]
                answers.append({"forward": data(out), "values": [data(g) for g in grads]})
            except Exception as e:
                answers.append({"failed": utils.explain(e, fn, names)})
    torch.save(answers, f"{root}/out/answers/{check}.pt")
'''


def collector_cell(grade_id: str) -> str:
    return COLLECTOR + f"\nimport os as _os; _os.makedirs('/box/out/answers', exist_ok=True); del _os\n" \
                       f"_backprop_ninja_collect({grade_id!r})\ndel _backprop_ninja_collect\n"


# ---------------------------------------------------------------------------------------------- the verdict

def _decode(T, v: Any) -> Any:
    """An answer from the box, as the checker reads it."""
    if isinstance(v, T.torch.Tensor):
        return v
    if isinstance(v, dict) and "failed" in v:
        return T.utils.StepFailed(str(v["failed"]))
    if isinstance(v, dict) and v.get("ellipsis"):
        return ...
    return None if not isinstance(v, dict) or v.get("type") in (None, "NoneType") else _Other(v["type"])


class _Other:
    def __init__(self, name: str):
        self.__class__ = type(str(name)[:40], (), {})


def _verdict(T, label: str, dt: Any, pair: tuple, n: int) -> str | None:
    """None when dt is the gradient pair[1] of tensor pair[0], else the checker's diagnosis."""
    t, grad = pair
    ref = t.detach().clone().requires_grad_(True)
    ref.grad = grad.detach()
    if isinstance(dt, T.torch.Tensor) and dt.is_floating_point() and dt.dtype != ref.dtype and dt.shape == ref.shape:
        dt = dt.to(ref.dtype)  # a float32 constant inside the function is not a wrong gradient: compare values
    with contextlib.redirect_stdout(io.StringIO()):  # the verdict goes into the message, not a second line
        T.utils.reset_scoreboard()
        check = T.utils.cmp(label, dt, ref, n=n)
    return None if check else (check.diagnosis or "not the gradient")


def judge(refs: list[dict], answers: Any, sizes: dict[str, int], tainted: dict[str, str] | None = None,
          why_missing: str = "") -> list[str]:
    """The failures of one check cell (empty: it passes), from the box's answers (a list, one per trial)."""
    T = teacher()
    tainted = tainted or {}
    failures = []
    if not isinstance(answers, list) or len(answers) != len(refs):
        return [f"no answers came back from the notebook's run{': ' + why_missing if why_missing else ''}"]
    for ref, answer in zip(refs, answers):
        name = ref["function"]
        if name in tainted:
            failures.append(f"{name} is answered with autograd ({tainted[name]}): it earns nothing")
            continue
        if not isinstance(answer, dict) or answer.get("missing"):
            failures.append(f"{name} is not defined: its cell was deleted, renamed, did not run, or stopped with "
                            "an error before defining it")
            continue
        if "failed" in answer:
            failures.append(f"{name}: {answer['failed']}")
            continue
        values = answer.get("values") if isinstance(answer.get("values"), list) else []
        n = ref.get("n") or sizes["batch_size"]
        if ref["kind"] == "function":
            if len(values) != len(ref["outputs"]):
                failures.append(f"{name}.backward returned {len(values)} gradient(s): it must return one per input "
                                f"of forward, {len(ref['outputs'])} here (None for an input that needs none)")
                continue
            out, expected = _decode(T, answer.get("forward")), ref["forward"]
            if not (isinstance(out, T.torch.Tensor) and out.shape == expected.shape and out.is_floating_point()
                    and T.torch.allclose(out.double(), expected.double())):
                failures.append(f"{name}.forward{ref['where']} does not return the lecture's value "
                                f"({'`...`' if out is ... else type(out).__name__ if not isinstance(out, T.torch.Tensor) else 'shape ' + str(tuple(out.shape))})")
                continue
        wanted = judged(ref)
        for out, dt, pair in zip(ref["outputs"], values, ref["refs"]):
            if out is None or pair is None or out not in wanted:
                continue
            label = out[1:] if ref["kind"] == "call" and out.startswith("d") else out
            if (d := _verdict(T, label, _decode(T, dt), pair, n)) is not None:
                failures.append(f"{name} -> {out}{ref['where']}: {d}")
    return failures


def judged(ref: dict) -> list[str]:
    """The outputs of a trial its check cell judges: those the cell names, else all of them."""
    return [o for o in ref["outputs"] if o in ref["wanted"]] or [o for o in ref["outputs"] if o]


def message(names: list[str], failures: list[str], checked: int) -> str:
    if failures:
        head = "1 problem" if len(failures) == 1 else f"{len(failures)} problems"
        return "\n".join([f"the teacher's re-check on a fresh batch (float64) found {head}:"] + failures)
    return (f"teacher's re-check on a fresh batch (float64): {', '.join(names)} correct "
            f"({checked} gradient{'s' if checked != 1 else ''})")


# ---------------------------------------------------------------------------------------------- reading the cells

AUTOGRAD_ATTRS = {"backward", "autograd", "grad", "requires_grad_", "retain_grad", "enable_grad", "set_grad_enabled",
                  "inference_mode", "func", "vjp", "jvp", "jacobian", "hessian", "jacrev", "jacfwd", "vmap",
                  "grad_fn", "_C"}
AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch", "torch._C", "torch._functorch")
SUSPECT_MODULES = {"lecture", "hidden_checks", "grade", "box", "boxed_autograde", "importlib", "ctypes", "subprocess",
                   "socket", "os", "sys", "builtins", "shutil", "pathlib", "multiprocessing", "threading", "signal",
                   "urllib", "requests", "http", "pickle", "gc", "inspect"}
SUSPECT_CALLS = {"open", "exec", "eval", "compile", "__import__", "globals", "setattr", "delattr", "breakpoint"}
LIBRARIES = {"torch", "utils", "F", "nn", "np", "numpy", "math", "builtins", "sys", "os", "random", "Tensor"}


def _autograd_uses(node: ast.AST) -> list[str]:
    """How the code under `node` uses autograd (empty: it does not)."""
    found = []
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr in AUTOGRAD_ATTRS:
            if n.attr == "autograd" and isinstance(getattr(n, "_parent_attr", None), str):
                continue
            found.append(f"`.{n.attr}` at line {n.lineno}")
        elif isinstance(n, ast.keyword) and n.arg == "requires_grad" and not (
                isinstance(n.value, ast.Constant) and n.value.value is False):
            found.append(f"`requires_grad=` at line {n.value.lineno}")
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            if any(m.startswith(AUTOGRAD_MODULES) for m in mods):
                found.append(f"`import {mods[0]}` at line {n.lineno}")
        elif isinstance(n, ast.Name) and n.id in ("autograd", "functorch"):
            found.append(f"`{n.id}` at line {n.lineno}")
    return found


def _mark_function_bases(tree: ast.AST) -> None:
    """`torch.autograd.Function` as a base class is how 02 and 03 ask for a Function: not a use of autograd."""
    for n in ast.walk(tree):
        if isinstance(n, ast.ClassDef):
            for b in n.bases:
                if isinstance(b, ast.Attribute) and b.attr == "Function" and isinstance(b.value, ast.Attribute):
                    b.value._parent_attr = "Function"


def scan(cells: list[tuple[str, str]], functions: set[str]) -> tuple[dict[str, str], list[str]]:
    """Read the learner's cells ((label, source) pairs; never run). Returns ({function: how it uses autograd} for
    the graded functions that do, themselves or through a function they call, and the suspicious lines)."""
    defs: dict[str, tuple[ast.AST, str]] = {}
    suspicious: list[str] = []
    for label, source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        _mark_function_bases(tree)
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[n.name] = (n, label)
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
                bad = [m for m in mods if m.split(".")[0] in SUSPECT_MODULES]
                if bad:
                    suspicious.append(f"{label} line {n.lineno}: imports {', '.join(bad)}")
            elif isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    base = t
                    while isinstance(base, (ast.Attribute, ast.Subscript)):
                        base = base.value
                    if isinstance(t, ast.Attribute) and isinstance(base, ast.Name) and base.id in LIBRARIES:
                        suspicious.append(f"{label} line {n.lineno}: replaces {ast.unparse(t)}")
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in SUSPECT_CALLS:
                suspicious.append(f"{label} line {n.lineno}: calls {n.func.id}()")
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "getattr" and not (
                    len(n.args) > 1 and isinstance(n.args[1], ast.Constant)):
                suspicious.append(f"{label} line {n.lineno}: getattr with a computed name")
    uses = {name: _autograd_uses(node) for name, (node, _) in defs.items()}
    calls = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} for name, (node, _) in defs.items()}
    tainted = {name: f"{defs[name][1]}: {u[0]}" for name, u in uses.items() if u}
    changed = True
    while changed:  # through helpers: a function calling a tainted one is tainted
        changed = False
        for name in defs:
            if name not in tainted:
                via = sorted(calls[name] & set(tainted) - {name})
                if via:
                    tainted[name] = f"through {via[0]}: {tainted[via[0]]}"
                    changed = True
    return {f: why for f, why in tainted.items() if f in functions}, suspicious
