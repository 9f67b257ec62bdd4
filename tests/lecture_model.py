"""The lecture's exercise-1 model, one batch, autograd's gradients and a correct manual backward.

Tests make learners' mistakes on these real tensors, so every diagnosis is proven where it matters.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

import utils

ROOT = Path(__file__).resolve().parent.parent


def build(batch_size: int = 32, n_embd: int = 10, n_hidden: int = 64, block_size: int = 3) -> dict:
    """Forward + loss.backward() with retain_grad; returns every tensor (name -> tensor) and `grads` (manual)."""
    (Xtr, Ytr), _, _ = utils.split_dataset(utils.load_words(ROOT / "names.txt"), block_size)
    vocab_size, n = utils.vocab_size, batch_size
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, n_embd), generator=g)
    W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5 / 3) / ((n_embd * block_size) ** 0.5)
    b1 = torch.randn(n_hidden, generator=g) * 0.1
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
    b2 = torch.randn(vocab_size, generator=g) * 0.1
    bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
    params = dict(C=C, W1=W1, b1=b1, W2=W2, b2=b2, bngain=bngain, bnbias=bnbias)
    for p in params.values():
        p.requires_grad = True
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
    Xb, Yb = Xtr[ix], Ytr[ix]

    t = dict(params)
    t["emb"] = emb = C[Xb]
    t["embcat"] = embcat = emb.view(emb.shape[0], -1)
    t["hprebn"] = hprebn = embcat @ W1 + b1
    t["bnmeani"] = bnmeani = 1 / n * hprebn.sum(0, keepdim=True)
    t["bndiff"] = bndiff = hprebn - bnmeani
    t["bndiff2"] = bndiff2 = bndiff**2
    t["bnvar"] = bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)
    t["bnvar_inv"] = bnvar_inv = (bnvar + 1e-5) ** -0.5
    t["bnraw"] = bnraw = bndiff * bnvar_inv
    t["hpreact"] = hpreact = bngain * bnraw + bnbias
    t["h"] = h = torch.tanh(hpreact)
    t["logits"] = logits = h @ W2 + b2
    t["logit_maxes"] = logit_maxes = logits.max(1, keepdim=True).values
    t["norm_logits"] = norm_logits = logits - logit_maxes
    t["counts"] = counts = norm_logits.exp()
    t["counts_sum"] = counts_sum = counts.sum(1, keepdim=True)
    t["counts_sum_inv"] = counts_sum_inv = counts_sum**-1
    t["probs"] = probs = counts * counts_sum_inv
    t["logprobs"] = logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    for name, v in t.items():
        if name not in params:
            v.retain_grad()
    loss.backward()

    # a correct manual backward, plus the partial results the mistakes are made from
    with torch.no_grad():
        d = {}
        d["logprobs"] = torch.zeros_like(logprobs)
        d["logprobs"][range(n), Yb] = -1.0 / n
        d["probs"] = d["logprobs"] / probs
        d["counts_sum_inv"] = (counts * d["probs"]).sum(1, keepdim=True)
        d["counts_sum"] = -counts_sum**-2 * d["counts_sum_inv"]
        d["counts_via_probs"] = counts_sum_inv * d["probs"]
        d["counts"] = d["counts_via_probs"] + d["counts_sum"]  # broadcast along dim 1
        d["norm_logits"] = counts * d["counts"]
        d["logit_maxes"] = -d["norm_logits"].sum(1, keepdim=True)
        d["logits_no_max"] = d["norm_logits"].clone()
        d["logits"] = d["norm_logits"] + F.one_hot(logits.max(1).indices, vocab_size) * d["logit_maxes"]
        d["h"] = d["logits"] @ W2.T
        d["W2"] = h.T @ d["logits"]
        d["b2"] = d["logits"].sum(0)
        d["hpreact"] = (1 - h**2) * d["h"]
        d["bngain"] = (bnraw * d["hpreact"]).sum(0, keepdim=True)
        d["bnbias"] = d["hpreact"].sum(0, keepdim=True)
        d["bnraw"] = bngain * d["hpreact"]
        d["bnvar_inv"] = (bndiff * d["bnraw"]).sum(0, keepdim=True)
        d["bnvar"] = -0.5 * (bnvar + 1e-5) ** -1.5 * d["bnvar_inv"]
        d["bndiff2"] = 1 / (n - 1) * torch.ones_like(bndiff2) * d["bnvar"]
        d["bndiff"] = bnvar_inv * d["bnraw"] + 2 * bndiff * d["bndiff2"]
        d["bnmeani"] = -d["bndiff"].sum(0, keepdim=True)
        d["hprebn"] = d["bndiff"] + 1 / n * d["bnmeani"]
        d["embcat"] = d["hprebn"] @ W1.T
        d["W1"] = embcat.T @ d["hprebn"]
        d["b1"] = d["hprebn"].sum(0)
        d["emb"] = d["embcat"].view(emb.shape)
        d["C"] = torch.zeros_like(C).index_add_(0, Xb.view(-1), d["emb"].view(-1, n_embd))
    return dict(t=t, d=d, n=n, Xb=Xb, Yb=Yb, loss=loss)
