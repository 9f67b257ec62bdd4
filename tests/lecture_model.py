"""The lecture's exercise-1 model on one batch, autograd's gradients and a correct manual backward.

Tests make learners' mistakes on these real tensors, so every diagnosis is proven where it matters. The model and
the backward steps are course/lecture.py's, the very code the notebooks show.
"""
from __future__ import annotations

from pathlib import Path

import torch

import facts
import lecture
import utils

ROOT = Path(__file__).resolve().parent.parent
PARAMS = facts.PARAMETERS
SIZES = facts.sizes("01_atomic_backprop")  # the lecture's exercise-1 model, at notebook 01's default sizes


def build(batch_size: int = SIZES["batch_size"], n_embd: int = SIZES["n_embd"], n_hidden: int = SIZES["n_hidden"],
          block_size: int = SIZES["block_size"]) -> dict:
    """Forward + loss.backward() with retain_grad; returns every tensor (name -> tensor) and `d` (manual)."""
    (Xtr, Ytr), _, _ = utils.split_dataset(utils.load_words(ROOT / "names.txt"), block_size)
    g = torch.Generator().manual_seed(2147483647)
    params = dict(zip(PARAMS, lecture.init_params(utils.vocab_size, n_embd, n_hidden, block_size, g,
                                                  requires_grad=True)))
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
    Xb, Yb = Xtr[ix], Ytr[ix]
    fw = lecture.forward(**params, Xb=Xb, Yb=Yb)
    t = {k: v for k, v in vars(fw).items() if torch.is_tensor(v) and v.is_floating_point() and k != "loss"}
    for name, v in t.items():
        if name not in params:
            v.retain_grad()
    fw.loss.backward()

    # a correct manual backward (lecture.py's steps), plus the partial results the mistakes are made from
    with torch.no_grad():
        f = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in vars(fw).items()}
        d = {}
        d["logprobs"] = lecture.backward_logprobs(f["logprobs"], Yb)
        d["probs"] = lecture.backward_probs(d["logprobs"], f["probs"])
        d["counts_sum_inv"] = lecture.backward_counts_sum_inv(d["probs"], f["counts"])
        d["counts_sum"], d["counts"] = lecture.backward_counts(d["counts_sum_inv"], d["probs"], f["counts"],
                                                               f["counts_sum"], f["counts_sum_inv"])
        d["counts_via_probs"] = f["counts_sum_inv"] * d["probs"]  # the path through probs alone
        d["norm_logits"], d["logit_maxes"], d["logits"] = lecture.backward_logits(
            d["counts"], f["counts"], f["norm_logits"], f["logits"])
        d["logits_no_max"] = d["norm_logits"].clone()  # the branch through logit_maxes forgotten
        d["h"], d["W2"], d["b2"] = lecture.backward_layer2(d["logits"], f["h"], f["W2"])
        d["hpreact"] = lecture.backward_tanh(d["h"], f["h"])
        d["bngain"], d["bnbias"], d["bnraw"] = lecture.backward_bn_affine(d["hpreact"], f["bngain"], f["bnraw"])
        d["bnvar_inv"], d["bnvar"], d["bndiff2"], d["bndiff"] = lecture.backward_bn_var(
            d["bnraw"], f["bndiff"], f["bndiff2"], f["bnvar"], f["bnvar_inv"])
        d["bnmeani"], d["hprebn"] = lecture.backward_bn_mean(d["bndiff"], f["hprebn"])
        d["embcat"], d["W1"], d["b1"] = lecture.backward_layer1(d["hprebn"], f["embcat"], f["W1"])
        d["emb"] = lecture.backward_view(d["embcat"], f["emb"])
        d["C"] = lecture.backward_embedding(d["emb"], Xb, f["C"])
    return dict(t=t, d=d, n=batch_size, Xb=Xb, Yb=Yb, loss=fw.loss)
