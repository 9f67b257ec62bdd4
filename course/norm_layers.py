"""BatchNorm with running statistics, judged against torch.nn.BatchNorm1d (notebooks 03 and 04).

A learner writes `batchnorm_layer(x, gain, bias, running_mean, running_var, training, momentum, eps)` returning
(out, running_mean, running_var) (its solution is below, between the markers, shown in notebooks 03 and 04 as the
cell to fill); `compare_with_batchnorm1d` runs it beside PyTorch's layer, one batch at a time,
each step judged alone (fed PyTorch's running statistics of the step before), and says in one line per step
what differs and, for the usual slips (which variance, which way the momentum goes), why. The notebooks show
this code through `# include: norm_layers.compare_with_batchnorm1d`.
"""
from __future__ import annotations

import torch


def batchnorm_layer(x, gain, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    # x (n, D); gain, bias, running_mean, running_var (D,) -> out (n, D), running_mean (D,), running_var (D,)
    # BEGIN SOLUTION
    if training:
        mean, var = x.mean(0), x.var(0, correction=0)  # (D,): normalise a batch with its biased variance
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * x.var(0, correction=1)  # keep the unbiased one
    else:
        mean, var = running_mean, running_var          # (D,): evaluation mode reads the running statistics
    out = gain * (x - mean) / torch.sqrt(var + eps) + bias  # (n, D)
    #@ out = ...  # TODO: (n, D), and in training mode the new running_mean and running_var, each (D,)
    # END SOLUTION
    return out, running_mean, running_var


def compare_with_batchnorm1d(layer, batches, gain, bias, momentum=0.1, eps=1e-5):
    """Your `layer` beside torch.nn.BatchNorm1d: training mode on every batch but the last, evaluation mode on the
    last. Prints one verdict per step; returns True when every output and running statistic matches. `layer` may
    be given by its name in the notebook, so a cell that failed to define it costs this check only."""
    if isinstance(layer, str):
        name, layer = layer, globals().get(layer)
        if layer is None:
            print(f"{name} is not defined: its cell has not run, or stopped with an error before defining it")
            return False
    D = gain.shape[0]
    bn = torch.nn.BatchNorm1d(D, eps=eps, momentum=momentum)  # running_mean starts at 0, running_var at 1
    with torch.no_grad():
        bn.weight.copy_(gain)
        bn.bias.copy_(bias)
    steps = [(True, x) for x in batches[:-1]] + [(False, batches[-1])]
    all_right = True
    for k, (training, x) in enumerate(steps, 1):
        mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()  # judge each step alone: PyTorch's state
        bn.train(training)
        with torch.no_grad():
            want = bn(x)
        label = f"{(f'training mode, batch {k}' if training else 'evaluation mode') + ':':23s}"
        try:
            got = layer(x.clone(), gain.clone(), bias.clone(), mean0.clone(), var0.clone(), training, momentum, eps)
        except Exception as e:  # a mistake inside the layer: one line, and the notebook goes on
            print(f"{label} your layer raised {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
            return False
        if got is ... or (isinstance(got, tuple) and any(v is ... for v in got)):
            print(f"{label} not implemented yet")
            return False
        if not (isinstance(got, tuple) and len(got) == 3 and all(isinstance(v, torch.Tensor) for v in got)):
            print(f"{label} your layer should return three tensors (out, running_mean, running_var)")
            return False
        out, mean, var = (v.detach() for v in got)
        why = _why(training, x, gain, bias, mean0, var0, out, mean, var, want, bn, momentum, eps)
        print(f"{label} " + ("output, running_mean and running_var match BatchNorm1d" if not why else
                             "differs from BatchNorm1d" + "".join(f"\n    -> {w}" for w in why)))
        all_right &= not why
    return all_right


def _close(a, b):
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _why(training, x, gain, bias, mean0, var0, out, mean, var, want, bn, momentum, eps):
    """What differs from BatchNorm1d in one step, with the usual reason where it is recognised."""
    why = []
    normalise = lambda m, v: gain * (x - m) / torch.sqrt(v + eps) + bias
    if not _close(out, want):
        if out.shape != want.shape:
            why.append(f"output has shape {tuple(out.shape)}, not {tuple(want.shape)}")
        elif training and _close(out, normalise(x.mean(0), x.var(0, correction=1))):
            why.append("output normalised with the unbiased variance (1/(n-1)): BatchNorm1d normalises a training "
                       "batch with the biased one (1/n)")
        elif not training and _close(out, normalise(x.mean(0), x.var(0, correction=0))):
            why.append("output normalised with the batch's own statistics: evaluation mode uses the running ones")
        else:
            why.append("output differs")
    if not _close(mean, bn.running_mean):
        why.append("running_mean " + ("changed: evaluation mode leaves the running statistics as they are"
                                      if not training else _momentum_slip(mean, mean0, x.mean(0), momentum)))
    if not _close(var, bn.running_var):
        biased = (1 - momentum) * var0 + momentum * x.var(0, correction=0)
        why.append("running_var " + ("changed: evaluation mode leaves the running statistics as they are"
                                     if not training else
                                     "kept the biased variance (1/n): PyTorch keeps the unbiased one (1/(n-1))"
                                     if _close(var, biased) else
                                     _momentum_slip(var, var0, x.var(0, correction=1), momentum)))
    return why


def _momentum_slip(got, old, batch, momentum):
    if _close(got, momentum * old + (1 - momentum) * batch):
        return ("weighs the old value by momentum: in PyTorch momentum is the weight of the new batch, "
                "(1 - momentum) * running + momentum * batch")
    return "differs"
