"""utils.py: the data set, the split, and every diagnosis of cmp, made as mistakes on the lecture's model."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import utils
from lecture_model import ROOT, build

LINE = re.compile(r"^(\S+)\s+\| exact: (True |False) \| approximate: (True |False) \| maxdiff: (\S+)$")


@pytest.fixture(scope="module")
def m():
    return build()


def run(capsys, name, dt, t, n=None):
    """cmp's verdict and the text it printed."""
    res = utils.cmp(name, dt, t, n)
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert LINE.match(first), first
    return res, out


# ---------------------------------------------------------------------------------------------- data

def test_words_vocabulary_and_split():
    words = utils.load_words(ROOT / "names.txt")
    assert len(words) == 32033 and words[0] == "emma"
    assert utils.vocab_size == 27 and utils.stoi["."] == 0 and utils.itos[26] == "z"
    assert set("".join(words)) == set(utils.itos[1:])
    (Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = utils.split_dataset(words, block_size=3)
    assert [tuple(X.shape) for X in (Xtr, Xdev, Xte)] == [(182625, 3), (22655, 3), (22866, 3)]
    assert Ytr.shape == (182625,) and Xtr.dtype == torch.long
    assert words[0] == "emma"  # the caller's list is left alone


def test_split_is_the_lectures(tmp_path):
    import random

    words = utils.load_words(ROOT / "names.txt")
    random.seed(42)
    shuffled = list(words)
    random.shuffle(shuffled)
    X, Y = utils.build_dataset(shuffled[: int(0.8 * len(words))], 3)
    (Xtr, Ytr), _, _ = utils.split_dataset(words)
    assert torch.equal(X, Xtr) and torch.equal(Y, Ytr)


def test_build_dataset_contexts():
    X, Y = utils.build_dataset(["ab"], block_size=3)
    assert X.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2]] and Y.tolist() == [1, 2, 0]


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), (b"", "is empty"), (b"  \n", "is empty"),
     (b"emma\nolivia\n", "corrupted"), (None, "cloning the course repository")],
)
def test_bad_names_file_gives_a_clear_error(tmp_path, content, message):
    path = tmp_path / "names.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(utils.DataFileError, match=message):
        utils.load_words(path)


def test_truncated_names_file_is_caught(tmp_path):
    path = tmp_path / "names.txt"
    path.write_bytes((ROOT / "names.txt").read_bytes()[:-10])
    with pytest.raises(utils.DataFileError, match="sha256"):
        utils.load_words(path)


# ---------------------------------------------------------------------------------------------- cmp: right

def test_correct_gradients_pass_on_the_real_model(m, capsys):
    for name in ["logprobs", "probs", "counts", "logits", "h", "W2", "b2", "hpreact", "bngain", "bnvar",
                 "bndiff", "hprebn", "W1", "b1", "emb", "C"]:
        res, out = run(capsys, name, m["d"][name], m["t"][name])
        assert res and res.correct and "->" not in out, out


def test_format_and_scoreboard(m, capsys):
    utils.reset_scoreboard()
    utils.cmp("logits", m["d"]["logits"], m["t"]["logits"])
    utils.cmp("h", ..., m["t"]["h"])
    utils.cmp("logits", m["d"]["logits"], m["t"]["logits"])  # re-running a cell does not count twice
    capsys.readouterr()
    score = utils.scoreboard()
    out = capsys.readouterr().out
    assert (score.correct, score.total) == (1, 2)
    assert re.match(r"1/2 correct, [01] bit-exact\nnot yet: h\n$", out), out


# ---------------------------------------------------------------------------------------------- cmp: diagnoses

def test_not_filled_in(m, capsys):
    for dt in (..., None):
        res, out = run(capsys, "dlogprobs", dt, m["t"]["logprobs"])
        assert not res and "not implemented yet" in out


@pytest.mark.parametrize("kind, make, message", [
    ("float", lambda d: -1.0 / 32, "got a float, not a tensor"),
    ("list", lambda d: d.tolist(), "got a list, not a tensor"),
    ("numpy", lambda d: d.numpy(), "keep it in torch"),
])
def test_not_a_tensor(m, capsys, kind, make, message):
    res, out = run(capsys, "logprobs", make(m["d"]["logprobs"]), m["t"]["logprobs"])
    assert not res and message in out and "(32, 27)" in out


def test_reference_without_grad(m, capsys):
    fresh = m["t"]["logprobs"].detach().clone().requires_grad_()  # as if the backward cell never ran
    res, out = run(capsys, "logprobs", m["d"]["logprobs"], fresh)
    assert not res and "has no .grad" in out and "loss.backward()" in out


def test_broadcast_needs_a_sum(m, capsys):
    t, d = m["t"], m["d"]
    unsummed = t["counts"] * d["probs"]  # (32, 27) for counts_sum_inv (32, 1)
    res, out = run(capsys, "counts_sum_inv", unsummed, t["counts_sum_inv"])
    assert not res and "sum over dim 1 with keepdim=True" in out and "yours would be right" in out


def test_kept_dimension_dropped(m, capsys):
    t, d = m["t"], m["d"]
    dbngain = (t["bnraw"] * d["hpreact"]).sum(0)  # (64,) for (1, 64)
    assert (dbngain - t["bngain"].grad).abs().max() < 1e-6  # broadcasting hides it: the lecture's cmp passes it
    res, out = run(capsys, "bngain", dbngain, t["bngain"])
    assert not res and "(64,)" in out and "(1, 64)" in out and "keepdim=True" in out


def test_transposed(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "W2", d["logits"].T @ t["h"], t["W2"])
    assert not res and "transposed" in out and "its transpose is exactly right" in out


def test_right_numbers_wrong_shape(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "emb", d["embcat"], t["emb"])  # (32, 30) for (32, 3, 10)
    assert not res and "numbers are right but in the wrong shape" in out and ".view(32, 3, 10)" in out


def test_sign_flipped(m, capsys):
    res, out = run(capsys, "logits", -m["d"]["logits"], m["t"]["logits"])
    assert not res and "sign flipped" in out


def test_factor_n(m, capsys):
    t = m["t"]
    dlogprobs = torch.zeros_like(t["logprobs"])
    dlogprobs[range(m["n"]), m["Yb"]] = -1.0  # forgot the 1/n of the mean
    res, out = run(capsys, "logprobs", dlogprobs, t["logprobs"], n=m["n"])
    assert not res and "constant factor" in out and "n = 32: a 1/n missing?" in out


def test_factor_bessel(m, capsys):
    t, d = m["t"], m["d"]
    dbndiff2 = 1 / m["n"] * torch.ones_like(t["bndiff2"]) * d["bnvar"]  # 1/n where the forward used 1/(n-1)
    res, out = run(capsys, "bndiff2", dbndiff2, t["bndiff2"])  # n inferred from the shape (32, 64)
    assert not res and "(n-1)/n = 31/32: Bessel's correction" in out


def test_factor_other(m, capsys):
    res, out = run(capsys, "h", 2.5 * m["d"]["h"], m["t"]["h"])
    assert not res and "2.5 times the gradient" in out


def test_all_zeros(m, capsys):
    res, out = run(capsys, "logits", torch.zeros_like(m["t"]["logits"]), m["t"]["logits"])
    assert not res and "all zeros" in out


def test_nan_and_inf(m, capsys):
    t, d = m["t"], m["d"]
    dcounts_sum = d["counts_sum_inv"] / (t["counts_sum"] - t["counts_sum"])  # a division by zero
    res, out = run(capsys, "counts_sum", dcounts_sum, t["counts_sum"])
    assert not res and "inf" in out and "division by zero" in out


def test_wrong_dtype_and_device(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "logits", d["logits"].double(), t["logits"])
    assert not res and "dtype torch.float64" in out and "torch.float32" in out
    res, out = run(capsys, "logits", d["logits"].to("meta"), t["logits"])
    assert not res and "on device meta" in out and ".to('cpu')" in out


def test_one_wrong_entry_per_row(m, capsys):
    t = m["t"]
    dlogits = F.softmax(t["logits"], 1) / m["n"]  # forgot the -1 at the right character
    res, out = run(capsys, "logits", dlogits, t["logits"])
    assert not res and "except 32 of 864 entries" in out and "Exactly one per row" in out


def test_a_few_wrong_entries(m, capsys):
    dW1 = m["d"]["W1"].clone()
    dW1[3, 5] += 0.5
    res, out = run(capsys, "W1", dW1, m["t"]["W1"])
    assert not res and "except 1 of 1920 entries, e.g. at (3, 5)" in out


def test_missing_broadcast_contribution(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "counts", d["counts_via_probs"], t["counts"])  # forgot dcounts_sum
    assert not res and "same along dim 1" in out and "dcounts_sum" in out


def test_autograds_own_grad(m, capsys):
    t = m["t"]["logits"]
    for dt in (t.grad, t.grad.view(t.shape)):
        res, out = run(capsys, "logits", dt, t)
        assert not res and "autograd's own t.grad" in out


def test_exactness_never_decides(m, capsys):
    t, d = m["t"], m["d"]
    nudged = d["h"] * (1 + 1e-7)  # not bit-exact, still right
    res, out = run(capsys, "h", nudged, t["h"])
    assert res and "exact: False" in out and "approximate: True" in out
