"""How fast a hand-written backward pass can go: the training steps notebook 04's last section compares, the proof
that each computes autograd's gradients, and the code that times them and counts their work.

`tools/bench.py` (`make bench`) imports this module; notebook 04's appendix shows the same definitions, each put
into the notebook by a line `# include: speed.<name>` in course/04_full_training.py. So every definition here
stands alone: it uses only torch, F, time, statistics and the lecture's own definitions (init_params, forward and
the backward steps of course/lecture.py), by the names the notebook gives them.

Every step does the same job: sample a batch, forward, backward, SGD update, and return the loss as a tensor
(calling .item() every step would add a wait of its own). A step is made by new_step(name, ...) from STEPS.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from lecture import (backward_bn_affine, backward_bn_mean, backward_bn_var, backward_counts, backward_counts_sum_inv,
                     backward_embedding, backward_embedding_loop, backward_layer1, backward_layer2, backward_logits,
                     backward_logprobs, backward_probs, backward_tanh, forward, init_params)

# ---------------------------------------------------------------------------------------------- the training steps


def train_forward(Xb, Yb, params, names=None):
    """The forward pass of the lecture's training loop (exercise 4): torch's mean and var, F.cross_entropy.
    Returns the loss and what the backward pass needs: (embcat, bnraw, bnvar_inv, h, logits). A dict `names`
    receives every tensor of the pass by its name (hpreact, bnvar, ...), for a backward that reads them."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    emb = C[Xb]                                         # (n, block_size, n_embd)
    embcat = emb.view(emb.shape[0], -1)                 # (n, n_embd * block_size)
    hprebn = embcat @ W1 + b1                           # (n, n_hidden)
    bnmean = hprebn.mean(0, keepdim=True)               # (1, n_hidden)
    bnvar = hprebn.var(0, keepdim=True, unbiased=True)  # (1, n_hidden)
    bnvar_inv = (bnvar + 1e-5) ** -0.5                  # (1, n_hidden)
    bnraw = (hprebn - bnmean) * bnvar_inv               # (n, n_hidden)
    hpreact = bngain * bnraw + bnbias                   # (n, n_hidden)
    h = torch.tanh(hpreact)                             # (n, n_hidden)
    logits = h @ W2 + b2                                # (n, vocab_size)
    loss = F.cross_entropy(logits, Yb)
    if names is not None:
        names.update(locals())
    return loss, (embcat, bnraw, bnvar_inv, h, logits)


def autograd_step_lecture(params, Xtr, Ytr, g, lr, batch_size):
    """The lecture's step: the training loop's forward pass, F.cross_entropy, loss.backward()."""
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
    Xb, Yb = Xtr[ix], Ytr[ix]
    loss, _ = train_forward(Xb, Yb, params)
    for p in params:
        p.grad = None
    loss.backward()
    for p in params:
        p.data += -lr * p.grad
    return loss


def autograd_step_tuned(params, Xtr, Ytr, g, lr, batch_size):
    """Autograd with the fastest manual step's forward pass, operation for operation, and a one-call update."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    n = batch_size
    ix = torch.randint(0, Xtr.shape[0], (n,), generator=g)
    Xb, Yb = Xtr[ix], Ytr[ix]
    hprebn = torch.addmm(b1, C[Xb].view(n, -1), W1)  # b1 + embcat @ W1 in one operation
    # the whole batchnorm normalisation in one call; PyTorch divides the variance by n, the lecture by n-1,
    # and this eps and the factor bessel make it exactly the lecture's layer (see the text)
    bessel = ((n - 1) / n) ** 0.5
    xhat = F.batch_norm(hprebn, None, None, training=True, eps=1e-5 * (n - 1) / n)
    h = torch.addcmul(bnbias, bngain, xhat, value=bessel).tanh_()  # bngain * bnraw + bnbias, tanh in place
    logits = torch.addmm(b2, h, W2)
    loss = F.cross_entropy(logits, Yb)
    grads = torch.autograd.grad(loss, params)  # no .grad bookkeeping
    with torch.no_grad():
        torch._foreach_add_(params, grads, alpha=-lr)  # all seven updates in one call
    return loss


def cross_entropy_backward_fused(logits, Yb):
    """Exercise 2: dlogits = (softmax - one_hot) / n, in three operations."""
    n = logits.shape[0]
    dlogits = F.softmax(logits, 1)   # (n, vocab_size)
    dlogits[range(n), Yb] -= 1       # minus 1 at each row's label
    dlogits /= n
    return dlogits


def batchnorm_backward_fused(dhpreact, bngain, bnvar_inv, bnraw):
    """Exercise 3: dhprebn, (n, n_hidden), the whole layer in one expression."""
    n = dhpreact.shape[0]
    return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))


def manual_step_lecture(params, Xtr, Ytr, g, lr, batch_size):
    """Exercise 4 as in the lecture: the same forward pass, then the backward pieces we derived pasted in
    (the fused cross-entropy and batchnorm, a Python double loop for dC), gradients kept, update in a loop."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
    Xb, Yb = Xtr[ix], Ytr[ix]
    loss, (embcat, bnraw, bnvar_inv, h, logits) = train_forward(Xb, Yb, params)
    dlogits = cross_entropy_backward_fused(logits, Yb)                      # (n, vocab_size)
    dh, dW2, db2 = backward_layer2(dlogits, h, W2)
    dhpreact = backward_tanh(dh, h)                                         # (n, n_hidden)
    dbngain, dbnbias, _ = backward_bn_affine(dhpreact, bngain, bnraw)       # (1, n_hidden) each
    dhprebn = batchnorm_backward_fused(dhpreact, bngain, bnvar_inv, bnraw)  # (n, n_hidden)
    dembcat, dW1, db1 = backward_layer1(dhprebn, embcat, W1)
    dC = backward_embedding_loop(dembcat.view(*Xb.shape, -1), Xb, C)        # (vocab_size, n_embd)
    for p, grad in zip(params, [dC, dW1, db1, dW2, db2, dbngain, dbnbias]):
        p.data += -lr * grad
    return loss


def manual_step(params, Xtr, Ytr, g, lr, batch_size):
    """Hand-written forward and backward, fused where the math allows; no autograd anywhere."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    n = batch_size
    ix = torch.randint(0, Xtr.shape[0], (n,), generator=g)
    Xb, Yb = Xtr[ix], Ytr[ix]
    # forward
    embcat = C[Xb].view(n, -1)                                   # (n, block_size*n_embd)
    hprebn = torch.addmm(b1, embcat, W1)                         # (n, n_hidden)  b1 + embcat @ W1
    bndiff = hprebn - hprebn.sum(0, keepdim=True) / n            # (n, n_hidden)  sums, not .mean()/.var()
    bnvar_inv = torch.rsqrt(bndiff.square().sum(0, keepdim=True) / (n - 1) + 1e-5)  # (1, n_hidden)
    bnraw = bndiff * bnvar_inv                                   # (n, n_hidden)
    h = torch.addcmul(bnbias, bngain, bnraw).tanh_()             # (n, n_hidden)  bnbias + bngain*bnraw
    logits = torch.addmm(b2, h, W2)                              # (n, vocab_size)
    logprobs = F.log_softmax(logits, 1)                          # (n, vocab_size) computed once...
    loss = F.nll_loss(logprobs, Yb)                              # ...for the loss...
    # backward
    dlogits = logprobs.exp_() / n                                # ...and for the gradient: softmax/n
    dlogits.scatter_add_(1, Yb.view(n, 1), torch.full((n, 1), -1.0 / n, dtype=C.dtype))  # minus 1/n at the labels
    dh = dlogits @ W2.T                                          # (n, n_hidden)
    dW2 = h.T @ dlogits                                          # (n_hidden, vocab_size)
    db2 = dlogits.sum(0)                                         # (vocab_size,)
    dhpreact = dh - dh * h * h                                   # (n, n_hidden)  tanh' = 1 - h^2
    dbnbias = dhpreact.sum(0, keepdim=True)                      # (1, n_hidden)
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)            # (1, n_hidden)
    # the two sums the batchnorm backward needs are exactly dbnbias and dbngain: reuse them
    dhprebn = bngain * bnvar_inv * (dhpreact - dbnbias / n - bnraw * dbngain / (n - 1))  # (n, n_hidden)
    dembcat = dhprebn @ W1.T                                     # (n, block_size*n_embd)
    dW1 = embcat.T @ dhprebn                                     # (block_size*n_embd, n_hidden)
    db1 = dhprebn.sum(0)                                         # (n_hidden,)
    dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), dembcat.view(-1, C.shape[1]))  # (vocab_size, n_embd)
    torch._foreach_add_(params, [dC, dW1, db1, dW2, db2, dbngain, dbnbias], alpha=-lr)
    return loss


def make_fastest_step(params, Xtr, Ytr, batch_size):
    """Allocate every buffer and view once; return step(g, lr) -> loss, which updates params in place."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    n, N, block_size = batch_size, Xtr.shape[0], Xtr.shape[1]
    (vocab_size, n_embd), n_hidden, dtype = C.shape, W1.shape[1], C.dtype
    ix, Xb, Yb = torch.empty(n, dtype=torch.long), torch.empty((n, block_size), dtype=torch.long), torch.empty(n, dtype=torch.long)
    emb = torch.empty((n * block_size, n_embd), dtype=dtype)
    hprebn, h = torch.empty((n, n_hidden), dtype=dtype), torch.empty((n, n_hidden), dtype=dtype)
    # dh and xhat * dh stacked in one buffer, so that one reduction gives both batchnorm sums
    dh_stack, sums = torch.empty((2, n, n_hidden), dtype=dtype), torch.empty((2, n_hidden), dtype=dtype)
    dh, xhat_dh, dbnbias, dgain = dh_stack[0], dh_stack[1], sums[0], sums[1]
    logits = torch.empty((n, vocab_size), dtype=dtype)
    dembcat = torch.empty((n, block_size * n_embd), dtype=dtype)
    # views and transposes made once: each would be one more dispatched operation per step
    Xflat, Ycol, embcat, demb = Xb.view(-1), Yb.view(n, 1), emb.view(n, -1), dembcat.view(-1, n_embd)
    embcatT, hT, W1T, W2T = embcat.T, h.T, W1.T, W2.T
    ones_row, b2row = torch.ones((1, n), dtype=dtype), b2.view(1, -1)
    minus_ones = torch.full((n, 1), -1.0, dtype=dtype)
    bessel = ((n - 1) / n) ** 0.5  # native_batch_norm divides by n; the lecture by n-1
    eps = 1e-5 * (n - 1) / n

    def step(g, lr):
        ix.random_(0, N, generator=g)                            # what torch.randint does inside
        torch.index_select(Xtr, 0, ix, out=Xb)
        torch.index_select(Ytr, 0, ix, out=Yb)
        torch.index_select(C, 0, Xflat, out=emb)
        torch.addmm(b1, embcat, W1, out=hprebn)
        xhat, _, invstd = torch.native_batch_norm(hprebn, None, None, None, None, True, 0.0, eps)
        torch.addcmul(bnbias, bngain, xhat, value=bessel, out=h).tanh_()
        torch.addmm(b2, h, W2, out=logits)
        logprobs = torch.log_softmax(logits, 1)
        loss = F.nll_loss(logprobs, Yb)
        dlogits = logprobs.exp_().scatter_add_(1, Ycol, minus_ones)  # n * dlogits
        s = -lr / n  # folded into the matmuls' alpha: from here on every gradient is already -lr * gradient
        torch.addmm(dh, dlogits, W2T, beta=0, alpha=s, out=dh)   # before W2 changes
        W2.addmm_(hT, dlogits, alpha=s)
        b2row.addmm_(ones_row, dlogits, alpha=s)
        dh.addcmul_(dh, h.mul_(h), value=-1)                     # dhpreact, in place; h is done
        torch.mul(xhat, dh, out=xhat_dh)
        torch.sum(dh_stack, 1, out=sums)                         # dbnbias and dgain in one reduction
        dhprebn = dh.addcmul_(xhat, dgain, value=-1 / n).sub_(dbnbias, alpha=1 / n).mul_(bngain * invstd)
        torch.addmm(dembcat, dhprebn, W1T, beta=0, alpha=bessel, out=dembcat)  # before W1 changes
        W1.addmm_(embcatT, dhprebn, alpha=bessel)
        # b1: its exact gradient is zero (the batch mean cancels it), so there is nothing to add
        C.index_add_(0, Xflat, demb)
        bngain.add_(dgain, alpha=bessel)                         # after bngain is used
        bnbias.add_(dbnbias)
        return loss

    return step


# ---------------------------------------------------------------------------------------------- one table of steps

STEPS = {  # name -> (step function or factory, is it a factory?, does it need autograd?)
    "autograd, lecture": (autograd_step_lecture, False, True),
    "autograd, tuned": (autograd_step_tuned, False, True),
    "manual, lecture ex. 4": (manual_step_lecture, False, False),
    "manual, readable": (manual_step, False, False),
    "manual, fastest": (make_fastest_step, True, False),
}


def new_step(name, sizes, Xtr, Ytr, g, dtype=torch.float32):
    """Fresh parameters drawn from g and the named step bound to them: returns (step(g, lr) -> loss, params)."""
    vocab_size, n_embd, n_hidden, block_size, batch_size = sizes
    fn, is_factory, needs_autograd = STEPS[name]
    params = init_params(vocab_size, n_embd, n_hidden, block_size, g, dtype, requires_grad=needs_autograd)
    if is_factory:
        return fn(params, Xtr, Ytr, batch_size), params
    return (lambda g, lr: fn(params, Xtr, Ytr, g, lr, batch_size)), params


# ---------------------------------------------------------------------------------------------- the gradient proof

def step_gradients(name, sizes, Xtr, Ytr, seed, dtype, lr=1e3):
    """The gradient one step applied, read back from the update: grad = (before - after) / lr.

    A large lr makes the change dwarf the parameter itself, so the subtraction loses nothing
    that matters in float32. The seed fixes both the initial parameters and the batch."""
    g = torch.Generator().manual_seed(seed)
    step, params = new_step(name, sizes, Xtr, Ytr, g, dtype)
    before = [p.detach().clone() for p in params]
    step(g, lr)
    return [(b - p.detach()) / lr for b, p in zip(before, params)]


def autograd_gradients(sizes, Xtr, Ytr, seed, dtype):
    """loss.backward()'s gradients on the same parameters and batch (the lecture's step with lr = 0)."""
    g = torch.Generator().manual_seed(seed)
    step, params = new_step("autograd, lecture", sizes, Xtr, Ytr, g, dtype)
    step(g, 0.0)
    return [p.grad for p in params]


def check_gradients(sizes, Xtr, Ytr, seed=2147483647, names=tuple(STEPS)[1:], dtypes=(torch.float32, torch.float64)):
    """For each named step (by default every one but the reference, the lecture's autograd step) and dtype:
    (all parameters allclose to loss.backward()'s, max |diff|). float32's tolerance (atol 1e-7) is the rounding
    of sums over a batch of a few dozen; for large batches check in float64 only."""
    tolerance = {torch.float32: dict(rtol=1e-5, atol=1e-7), torch.float64: dict(rtol=0.0, atol=1e-12)}
    results = {}
    for dtype in dtypes:
        tol = tolerance[dtype]
        reference = autograd_gradients(sizes, Xtr, Ytr, seed, dtype)
        for name in names:
            grads = step_gradients(name, sizes, Xtr, Ytr, seed, dtype)
            ok = all(torch.allclose(a, b, **tol) for a, b in zip(grads, reference))
            maxdiff = max((a - b).abs().max().item() for a, b in zip(grads, reference))
            results[(name, str(dtype).replace("torch.", ""))] = (ok, maxdiff)
    return results


# ---------------------------------------------------------------------------------------------- timing

def clock():
    """(wall, CPU time of this thread) in seconds. With one thread the step runs entirely on this thread,
    so its CPU time is the step's cost even when other programs share the machine."""
    return time.perf_counter(), time.thread_time()


def time_calls(calls, rounds, iters, warmup=1):
    """calls: {name: (before_round(r), fn())}. Every call in turn inside each round (so a busy moment hits
    them all), the order reversed every other round. Returns {name: (median wall, median CPU) in µs per call}."""
    samples = {name: [] for name in calls}
    for r in range(warmup + rounds):
        order = list(calls.items()) if r % 2 == 0 else list(calls.items())[::-1]
        for name, (before_round, fn) in order:
            before_round(r)
            (w0, c0) = clock()
            for _ in range(iters):
                fn()
            (w1, c1) = clock()
            if r >= warmup:
                samples[name].append(((w1 - w0) / iters * 1e6, (c1 - c0) / iters * 1e6))
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
            for name, s in samples.items()}


def step_calls(sizes, Xtr, Ytr, names=tuple(STEPS), lr=0.1, seed=2147483647):
    """The named steps as time_calls wants them: each round reseeds every step's generator alike, so all
    steps see the same batches."""
    calls = {}
    for name in names:
        g = torch.Generator().manual_seed(seed)
        step, _ = new_step(name, sizes, Xtr, Ytr, g)
        calls[name] = (lambda r, g=g: g.manual_seed(seed + r), lambda step=step, g=g: step(g, lr))
    return calls


def time_steps(sizes, Xtr, Ytr, names=tuple(STEPS), rounds=12, iters=500, lr=0.1, seed=2147483647):
    """Median µs per training step (wall, CPU) of each named step, on the same batches."""
    return time_calls(step_calls(sizes, Xtr, Ytr, names, lr, seed), rounds, iters)


def make_matmul_step(sizes, seed=2147483647):
    """The six matrix products of one training step and nothing else, into buffers made once: the arithmetic
    every step, manual or autograd, has to do. Returns a function of no arguments."""
    vocab_size, n_embd, n_hidden, block_size, n = sizes
    g = torch.Generator().manual_seed(seed)
    W1, W2 = torch.randn((n_embd * block_size, n_hidden), generator=g), torch.randn((n_hidden, vocab_size), generator=g)
    embcat, dlogits = torch.randn((n, n_embd * block_size), generator=g), torch.randn((n, vocab_size), generator=g)
    h, dh, dembcat = torch.empty((n, n_hidden)), torch.empty((n, n_hidden)), torch.empty((n, n_embd * block_size))
    logits, dW1, dW2 = torch.empty((n, vocab_size)), torch.empty_like(W1), torch.empty_like(W2)
    W1T, W2T, hT, embcatT = W1.T, W2.T, h.T, embcat.T  # views made once, as in make_fastest_step

    def matmuls():
        torch.mm(embcat, W1, out=h)            # forward: layer 1
        torch.mm(h, W2, out=logits)            # forward: layer 2
        torch.mm(dlogits, W2T, out=dh)         # backward: layer 2's input...
        torch.mm(hT, dlogits, out=dW2)         # ...and weights
        torch.mm(dh, W1T, out=dembcat)         # backward: layer 1's input...
        torch.mm(embcatT, dh, out=dW1)         # ...and weights

    return matmuls


# ---------------------------------------------------------------------------------------------- counting the work

def count_work(sizes, Xtr, Ytr, names=tuple(STEPS), seed=2147483647):
    """What one step of each named step asks of the kernels, autograd's backward included: {name: {"ops",
    "flops", "elements", "allocated"}}.

    ops: every call that reaches a kernel, views included. flops: 2*m*k*n for each (m, k) by (k, n) matrix
    product (mm, addmm, addmm_). elements: the size of every other operation's output, views aside: about one
    floating-point operation each for the elementwise work and the reductions. allocated: bytes of the new
    tensors the operations return (in-place operations and out= write into memory that already exists)."""
    from torch.utils._python_dispatch import TorchDispatchMode  # sees every operation on its way to a kernel
    aten = torch.ops.aten
    matmuls = {aten.mm: 0, aten.addmm: 1, aten.addmm_: 1}  # operation -> position of its first matrix

    class Counter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.work = dict(ops=0, flops=0, elements=0, allocated=0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            outs = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
            self.work["ops"] += 1
            if func.overloadpacket in matmuls:
                a, b = args[matmuls[func.overloadpacket]:][:2]
                self.work["flops"] += 2 * a.shape[0] * a.shape[1] * b.shape[1]
            elif not func.is_view:
                self.work["elements"] += sum(t.numel() for t in outs)
            if not func.is_view and not func._schema.is_mutable:
                self.work["allocated"] += sum(t.numel() * t.element_size() for t in outs)
            return out

    counts = {}
    for name in names:
        g = torch.Generator().manual_seed(seed)
        step, _ = new_step(name, sizes, Xtr, Ytr, g)
        with Counter() as counter:
            step(g, 0.1)
        counts[name] = counter.work
    return counts


def count_ops(sizes, Xtr, Ytr, names=tuple(STEPS), seed=2147483647):
    """Kernel-level operations in one step (autograd's backward included), per step name."""
    return {name: work["ops"] for name, work in count_work(sizes, Xtr, Ytr, names, seed).items()}


def format_table(results, baseline, ops=None):
    """Rows of 'name | µs wall | µs CPU | CPU time / baseline's [| operations]'."""
    lines = [f"{'':24s} {'wall µs':>9s} {'CPU µs':>9s} {'/ ' + baseline:>20s}" + ("  operations" if ops else "")]
    for name, (wall, cpu) in results.items():
        lines.append(f"{name:24s} {wall:9.1f} {cpu:9.1f} {cpu / results[baseline][1]:20.2f}"
                     + (f"  {ops[name]:10d}" if ops else ""))
    return "\n".join(lines)


def race(fns, rounds=25, iters=100):
    """Time each fn() (no arguments) on one thread in interleaved rounds, print the table (time / the first's)
    and return {name: (median wall µs, median CPU µs)}. Tiny tensors gain nothing from more threads, and one
    thread keeps the timings steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timed = time_calls({name: (lambda r: None, fn) for name, fn in fns.items()}, rounds, iters)
    finally:
        torch.set_num_threads(threads)
    print(format_table(timed, next(iter(fns))))
    return timed


# ---------------------------------------------------------------------------------------------- the pieces

def cross_entropy_backward_chunked(fw):
    """Exercise 1: notebook 01's steps back through logprobs, probs, counts_sum_inv, counts_sum, counts,
    norm_logits and logit_maxes. fw: the lecture's forward pass (lecture.forward). Returns dlogits."""
    dlogprobs = backward_logprobs(fw.logprobs, fw.Yb)
    dprobs = backward_probs(dlogprobs, fw.probs)
    dcounts_sum_inv = backward_counts_sum_inv(dprobs, fw.counts)
    _, dcounts = backward_counts(dcounts_sum_inv, dprobs, fw.counts, fw.counts_sum, fw.counts_sum_inv)
    _, _, dlogits = backward_logits(dcounts, fw.counts, fw.norm_logits, fw.logits)
    return dlogits


def batchnorm_backward_chunked(dhpreact, fw):
    """Exercise 1: notebook 01's steps back through bnraw, bnvar_inv, bnvar, bndiff2, bndiff and bnmeani
    (the affine step's dbngain and dbnbias come along). Returns dhprebn."""
    _, _, dbnraw = backward_bn_affine(dhpreact, fw.bngain, fw.bnraw)
    _, _, _, dbndiff = backward_bn_var(dbnraw, fw.bndiff, fw.bndiff2, fw.bnvar, fw.bnvar_inv)
    _, dhprebn = backward_bn_mean(dbndiff, fw.hprebn)
    return dhprebn


BACKWARD_PIECES = {  # piece -> (the tensor whose gradient it computes, {variant: function of lecture_forward's t})
    "cross-entropy backward": ("logits", {
        "chunked": cross_entropy_backward_chunked,
        "fused": lambda t: cross_entropy_backward_fused(t.logits, t.Yb)}),
    "batchnorm backward": ("hprebn", {
        "chunked": lambda t: batchnorm_backward_chunked(t.dhpreact, t),
        "fused": lambda t: batchnorm_backward_fused(t.dhpreact, t.bngain, t.bnvar_inv, t.bnraw)}),
    "embedding gradient": ("C", {
        "python loop": lambda t: backward_embedding_loop(t.demb, t.Xb, t.C),
        "index_add_": lambda t: backward_embedding(t.demb, t.Xb, t.C)}),
}


def lecture_forward(sizes, Xtr, Ytr, seed=2147483647):
    """The lecture's chunked forward pass on one batch, run through autograd: every tensor by name (detached),
    the gradients the pieces start from (t.dhpreact, t.demb) and autograd's to compare with (t.grad)."""
    vocab_size, n_embd, n_hidden, block_size, n = sizes
    g = torch.Generator().manual_seed(seed)
    params = init_params(vocab_size, n_embd, n_hidden, block_size, g, requires_grad=True)
    ix = torch.randint(0, Xtr.shape[0], (n,), generator=g)
    t = forward(*params, Xtr[ix], Ytr[ix])
    for x in (t.emb, t.hprebn, t.hpreact, t.logits):
        x.retain_grad()
    t.loss.backward()
    t.dhpreact, t.demb = t.hpreact.grad, t.emb.grad
    t.grad = {name: getattr(t, name).grad for name in ("logits", "hprebn", "C")}
    vars(t).update({name: x.detach() for name, x in vars(t).items() if isinstance(x, torch.Tensor)})
    return t
