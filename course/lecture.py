"""The lecture's model, written once: its initialisation and its forward pass cut into atoms.

The notebooks show these definitions in their own cells: a line `# include: lecture.forward` in a source under
course/ is replaced by the definition below when tools/build_notebooks.py generates the notebook, so every
notebook still runs alone (in Colab too). Tests, the benchmark and the grader import them from here.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch


def init_params(vocab_size: int, n_embd: int, n_hidden: int, block_size: int, g: torch.Generator,
                dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """The lecture's parameters [C, W1, b1, W2, b2, bngain, bnbias], drawn from the seeded generator `g`.

    No parameter starts at exactly 0 or 1 (the usual zero biases, unit gain): a gradient that is wrong only where
    it is multiplied by 0 or 1 would hide behind such values. bngain and bnbias are drawn from a generator of
    their own, seeded like g: the lecture draws them from PyTorch's global random state, so they do not move `g`
    and the batches drawn from `g` afterwards are the lecture's batches.
    """
    fan_in = n_embd * block_size
    C = torch.randn((vocab_size, n_embd), generator=g, dtype=dtype)
    W1 = torch.randn((fan_in, n_hidden), generator=g, dtype=dtype) * (5 / 3) / fan_in**0.5  # Kaiming, for tanh
    b1 = torch.randn(n_hidden, generator=g, dtype=dtype) * 0.1  # useless before BatchNorm: kept to check its gradient
    W2 = torch.randn((n_hidden, vocab_size), generator=g, dtype=dtype) * 0.1
    b2 = torch.randn(vocab_size, generator=g, dtype=dtype) * 0.1
    g_bn = torch.Generator().manual_seed(g.initial_seed())
    bngain = torch.randn((1, n_hidden), generator=g_bn, dtype=dtype) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g_bn, dtype=dtype) * 0.1
    return [C, W1, b1, W2, b2, bngain, bnbias]


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
