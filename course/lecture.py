"""The lecture's model, written once: its initialisation, its forward pass cut into atoms, the backward step
through each atom (the answers of notebook 01, between its solution markers) and the names each step returns.
The math only, like CS231n's layers.py: the code that runs and checks a learner's steps lives in utils.py.

The notebooks show these definitions in their own cells: a line `# include: lecture.forward` in a source under
course/ is replaced by the definition below when tools/build_notebooks.py generates the notebook, so every
notebook still runs alone (in Colab too). Tests, the benchmark and the grader import them from here.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F


def init_params(vocab_size: int, n_embd: int, n_hidden: int, block_size: int, g: torch.Generator,
                dtype: torch.dtype = torch.float32, requires_grad: bool = False) -> list[torch.Tensor]:
    """The lecture's parameters [C, W1, b1, W2, b2, bngain, bnbias], drawn from the seeded generator `g`.

    No parameter starts at exactly 0 or 1 (the usual zero biases, unit gain): a gradient that is wrong only where
    it is multiplied by 0 or 1 would hide behind such values. bngain and bnbias are drawn from a generator of
    their own, seeded like g: the lecture draws them from PyTorch's global random state, so they do not move `g`
    and the batches drawn from `g` afterwards are the lecture's batches.
    """
    fan_in = n_embd * block_size
    C = torch.randn((vocab_size, n_embd), generator=g, dtype=dtype)
    W1 = torch.randn((fan_in, n_hidden), generator=g, dtype=dtype) * (5 / 3) / fan_in**0.5  # Kaiming, for tanh
    b1 = torch.randn(n_hidden, generator=g, dtype=dtype) * 0.1  # kept, as in the lecture: 4.11 asks what its gradient is
    W2 = torch.randn((n_hidden, vocab_size), generator=g, dtype=dtype) * 0.1
    b2 = torch.randn(vocab_size, generator=g, dtype=dtype) * 0.1
    g_bn = torch.Generator().manual_seed(g.initial_seed())
    bngain = torch.randn((1, n_hidden), generator=g_bn, dtype=dtype) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g_bn, dtype=dtype) * 0.1
    parameters = [C, W1, b1, W2, b2, bngain, bnbias]
    for p in parameters:
        p.requires_grad = requires_grad  # True: autograd records what is computed from them, for the reference
    return parameters


def forward(C, W1, b1, W2, b2, bngain, bnbias, Xb, Yb):
    """The lecture's forward pass, one operation per line. Returns every name in it, inputs included."""
    n = Xb.shape[0]
    # embedding
    emb = C[Xb]                                       # (n, block_size, n_embd)
    embcat = emb.view(emb.shape[0], -1)               # (n, block_size * n_embd): the contexts side by side
    # linear layer 1
    hprebn = embcat @ W1 + b1                         # (n, n_hidden)
    # BatchNorm
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)     # (1, n_hidden): batch mean
    bndiff = hprebn - bnmeani                         # (n, n_hidden)
    bndiff2 = bndiff**2                               # (n, n_hidden)
    bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)  # (1, n_hidden): variance, Bessel's correction (n - 1)
    bnvar_inv = (bnvar + 1e-5) ** -0.5                # (1, n_hidden)
    bnraw = bndiff * bnvar_inv                        # (n, n_hidden): zero mean, unit variance
    hpreact = bngain * bnraw + bnbias                 # (n, n_hidden)
    # non-linearity
    h = torch.tanh(hpreact)                           # (n, n_hidden)
    # linear layer 2
    logits = h @ W2 + b2                              # (n, vocab_size)
    # cross-entropy, the same as F.cross_entropy(logits, Yb)
    logit_maxes = logits.max(1, keepdim=True).values  # (n, 1)
    norm_logits = logits - logit_maxes                # (n, vocab_size): subtract the max so exp cannot overflow
    counts = norm_logits.exp()                        # (n, vocab_size)
    counts_sum = counts.sum(1, keepdim=True)          # (n, 1)
    counts_sum_inv = counts_sum**-1                   # (n, 1)
    probs = counts * counts_sum_inv                   # (n, vocab_size): each row sums to 1
    logprobs = probs.log()                            # (n, vocab_size)
    loss = -logprobs[range(n), Yb].mean()             # (): the mean negative log-likelihood of the right answers
    return SimpleNamespace(**locals())


# ---------------------------------------------------------------------------------------------- backward, atom by atom
# Each step takes the upstream gradient(s) and the forward tensors it needs, by their forward-pass names.


def backward_logprobs(logprobs, Yb):
    """loss = -logprobs[range(n), Yb].mean()  ->  dlogprobs, (n, vocab_size)"""
    n = logprobs.shape[0]
    # BEGIN SOLUTION
    dlogprobs = torch.zeros_like(logprobs)   # (n, vocab_size): entries that do not reach the loss get 0
    dlogprobs[range(n), Yb] = -1.0 / n       # each picked entry weighs -1/n in the mean
    # END SOLUTION
    return dlogprobs


def backward_probs(dlogprobs, probs):
    """logprobs = probs.log()  ->  dprobs, (n, vocab_size)"""
    # BEGIN SOLUTION
    dprobs = dlogprobs / probs   # (n, vocab_size): local derivative 1/probs times upstream
    # END SOLUTION
    return dprobs


def backward_counts_sum_inv(dprobs, counts):
    """probs = counts * counts_sum_inv  ->  dcounts_sum_inv, (n, 1)"""
    # BEGIN SOLUTION
    dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)   # (n, 1): sum over the broadcast copies
    # END SOLUTION
    return dcounts_sum_inv


def backward_counts(dcounts_sum_inv, dprobs, counts, counts_sum, counts_sum_inv):
    """counts_sum_inv = counts_sum**-1; counts_sum = counts.sum(1, keepdim=True); probs = counts * counts_sum_inv
    ->  dcounts_sum, (n, 1); dcounts, (n, vocab_size)"""
    # BEGIN SOLUTION
    dcounts_sum = -counts_sum**-2 * dcounts_sum_inv   # (n, 1)
    dcounts = counts_sum_inv * dprobs                 # (n, vocab_size): the path through probs
    dcounts += dcounts_sum                            # plus the path through counts_sum, broadcast along each row
    # END SOLUTION
    return dcounts_sum, dcounts


def backward_logits(dcounts, counts, norm_logits, logits):
    """counts = norm_logits.exp(); norm_logits = logits - logit_maxes; logit_maxes = logits.max(1, keepdim=True).values
    ->  dnorm_logits, (n, vocab_size); dlogit_maxes, (n, 1); dlogits, (n, vocab_size)"""
    # BEGIN SOLUTION
    dnorm_logits = counts * dcounts                        # (n, vocab_size): exp's derivative is its output
    dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)      # (n, 1): minus sign, then sum over the broadcast
    one_hot = F.one_hot(logits.max(1).indices, num_classes=logits.shape[1])   # (n, vocab_size): 1 where the max was
    dlogits = dnorm_logits.clone()                         # (n, vocab_size): the direct path (a copy, see below)
    dlogits += one_hot * dlogit_maxes                      # plus the path through the max
    #@ dnorm_logits = ...  # TODO: (n, vocab_size)
    #@ dlogit_maxes = ...  # TODO: (n, 1)
    #@ dlogits = ...  # TODO: (n, vocab_size), both paths into logits
    # END SOLUTION
    return dnorm_logits, dlogit_maxes, dlogits


def backward_layer2(dlogits, h, W2):
    """logits = h @ W2 + b2  ->  dh, (n, n_hidden); dW2, (n_hidden, vocab_size); db2, (vocab_size,)"""
    # BEGIN SOLUTION
    dh = dlogits @ W2.T         # (n, vocab_size) @ (vocab_size, n_hidden) -> (n, n_hidden)
    dW2 = h.T @ dlogits         # (n_hidden, n) @ (n, vocab_size) -> (n_hidden, vocab_size)
    db2 = dlogits.sum(0)        # (vocab_size,): b2 was broadcast down the n rows
    # END SOLUTION
    return dh, dW2, db2


def backward_tanh(dh, h):
    """h = torch.tanh(hpreact)  ->  dhpreact, (n, n_hidden)"""
    # BEGIN SOLUTION
    dhpreact = (1.0 - h**2) * dh   # (n, n_hidden): local derivative from the output h
    # END SOLUTION
    return dhpreact


def backward_bn_affine(dhpreact, bngain, bnraw):
    """hpreact = bngain * bnraw + bnbias  ->  dbngain, (1, n_hidden); dbnbias, (1, n_hidden); dbnraw, (n, n_hidden)"""
    # BEGIN SOLUTION
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)   # (1, n_hidden): bngain was broadcast down the rows
    dbnbias = dhpreact.sum(0, keepdim=True)             # (1, n_hidden): likewise
    dbnraw = bngain * dhpreact                          # (n, n_hidden)
    # END SOLUTION
    return dbngain, dbnbias, dbnraw


def backward_bn_var(dbnraw, bndiff, bndiff2, bnvar, bnvar_inv):
    """bnraw = bndiff * bnvar_inv; bnvar_inv = (bnvar + 1e-5)**-0.5; bnvar = 1/(n-1) * bndiff2.sum(0, keepdim=True);
    bndiff2 = bndiff**2  ->  dbnvar_inv, (1, n_hidden); dbnvar, (1, n_hidden); dbndiff2, (n, n_hidden); dbndiff, (n, n_hidden)"""
    n = bndiff.shape[0]
    # BEGIN SOLUTION
    dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)       # (1, n_hidden)
    dbnvar = -0.5 * (bnvar + 1e-5) ** -1.5 * dbnvar_inv       # (1, n_hidden)
    dbndiff2 = 1.0 / (n - 1) * torch.ones_like(bndiff2) * dbnvar   # (n, n_hidden): the sum becomes a broadcast
    dbndiff = bnvar_inv * dbnraw                              # (n, n_hidden): the path through bnraw
    dbndiff += 2 * bndiff * dbndiff2                          # plus the path through bndiff2
    # END SOLUTION
    return dbnvar_inv, dbnvar, dbndiff2, dbndiff


def backward_bn_mean(dbndiff, hprebn):
    """bndiff = hprebn - bnmeani; bnmeani = 1/n * hprebn.sum(0, keepdim=True)
    ->  dbnmeani, (1, n_hidden); dhprebn, (n, n_hidden)"""
    n = hprebn.shape[0]
    # BEGIN SOLUTION
    dbnmeani = -dbndiff.sum(0, keepdim=True)                          # (1, n_hidden)
    dhprebn = dbndiff.clone()                                 # (n, n_hidden): the direct path
    dhprebn += 1.0 / n * torch.ones_like(hprebn) * dbnmeani   # plus the path through the mean
    # END SOLUTION
    return dbnmeani, dhprebn


def backward_layer1(dhprebn, embcat, W1):
    """hprebn = embcat @ W1 + b1  ->  dembcat, (n, n_embd * block_size); dW1, (n_embd * block_size, n_hidden); db1, (n_hidden,)"""
    # BEGIN SOLUTION
    dembcat = dhprebn @ W1.T    # (n, n_hidden) @ (n_hidden, n_embd * block_size)
    dW1 = embcat.T @ dhprebn    # (n_embd * block_size, n) @ (n, n_hidden)
    db1 = dhprebn.sum(0)        # (n_hidden,)
    # END SOLUTION
    return dembcat, dW1, db1


def backward_view(dembcat, emb):
    """embcat = emb.view(emb.shape[0], -1)  ->  demb, (n, block_size, n_embd)"""
    # BEGIN SOLUTION
    demb = dembcat.view(emb.shape)   # (n, block_size, n_embd): the same numbers, back in emb's shape
    # END SOLUTION
    return demb


def backward_embedding_loop(demb, Xb, C):
    """emb = C[Xb]  ->  dC, (vocab_size, n_embd), with plain Python loops"""
    # BEGIN SOLUTION
    #@ dC = ...  # TODO: start from zeros, then add each demb[k, j] into the row it was copied from
    dC = torch.zeros_like(C)                 # (vocab_size, n_embd)
    for k in range(Xb.shape[0]):             # every example
        for j in range(Xb.shape[1]):         # every position of its context
            dC[Xb[k, j]] += demb[k, j]       # (n_embd,): accumulate, a row can be used many times
    # END SOLUTION
    return dC


def backward_embedding(demb, Xb, C):
    """emb = C[Xb]  ->  dC, (vocab_size, n_embd), vectorised"""
    n_embd = C.shape[1]
    # BEGIN SOLUTION
    #@ dC = ...  # TODO: one index_add_ call on a tensor of zeros
    dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), demb.view(-1, n_embd))   # (vocab_size, n_embd)
    # END SOLUTION
    return dC


# ---------------------------------------------------------------------------------------------- what each step returns
# The checks (utils.check_step, utils.run_chain) read the names of a step's outputs here, its inputs from its def line.

OUTPUTS = {  # what each step returns, by name, from the loss down to C
    "backward_logprobs": "dlogprobs",
    "backward_probs": "dprobs",
    "backward_counts_sum_inv": "dcounts_sum_inv",
    "backward_counts": "dcounts_sum dcounts",
    "backward_logits": "dnorm_logits dlogit_maxes dlogits",
    "backward_layer2": "dh dW2 db2",
    "backward_tanh": "dhpreact",
    "backward_bn_affine": "dbngain dbnbias dbnraw",
    "backward_bn_var": "dbnvar_inv dbnvar dbndiff2 dbndiff",
    "backward_bn_mean": "dbnmeani dhprebn",
    "backward_layer1": "dembcat dW1 db1",
    "backward_view": "demb",
    "backward_embedding_loop": "dC",
    "backward_embedding": "dC",
}
