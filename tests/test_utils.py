"""utils.py: the data set, the split, every diagnosis of cmp made as a mistake on the lecture's model (one test per
rule, at least), the in-place guard `watch`, the plain-words `gradcheck` and `rel_error`."""
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import utils
from lecture_model import ROOT, build

LINE = re.compile(r"^(\S+(?: \S+)*)\s+\| exact: (True |False) \| approximate: (True |False) \| maxdiff: (\S+)$")


@pytest.fixture(scope="module")
def m():
    return build()


def run(capsys, name, dt, t, n=None, rule=None):
    """cmp's verdict and what it printed, wrapped lines joined; `rule` names the rule that must answer."""
    res = utils.cmp(name, dt, t, n)
    lines = capsys.readouterr().out.splitlines()
    check = [i for i, s in enumerate(lines) if LINE.match(s)]
    assert len(check) == 1, lines
    diagnosis = lines[check[0] + 1:]
    assert bool(diagnosis) == (res.diagnosis is not None), lines
    for i, s in enumerate(diagnosis):  # wrapped near WIDTH, every line indented under the check line
        assert s.startswith(utils.INDENT + ("-> " if i == 0 else "   ")) and len(s) <= utils.WIDTH, lines
    assert res.rule == rule, (res.rule, lines)
    return res, " ".join(" ".join(lines).split())


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


def test_a_gradient_that_is_truly_zero_is_judged_up_to_rounding(m, capsys):
    # BatchNorm makes db1 zero; autograd's db1 and the learner's are rounding noise that need not agree to ATOL.
    # At batch 17, hidden 40, 5 steps into training, a right db1 differed from autograd's by 1.4e-8 (ATOL 1e-8).
    g = m["t"]["b1"].grad
    assert 0 < float(g.abs().max()) < torch.finfo(g.dtype).eps
    noise = torch.full_like(g, 1.5e-8) * torch.tensor([1.0, -1.0]).repeat(g.numel() // 2)
    for dt in [m["d"]["b1"] + noise, noise]:  # the lecture's formula, and a db1 written as (almost) zero
        assert not torch.allclose(dt, g, utils.RTOL, utils.ATOL)  # the plain comparison would say wrong
        res, out = run(capsys, "b1", dt, m["t"]["b1"], rule="zero_up_to_rounding")
        assert res and "zero up to rounding" in out and "float32's epsilon, 1.2e-07" in out, out


def test_only_noise_below_epsilon_counts_as_zero(m, capsys):
    b = torch.zeros(64, requires_grad=True)
    b.grad = m["t"]["b1"].grad + 1.3e-7 * torch.linspace(-1, 1, 64)  # small, but above float32's epsilon
    res, out = run(capsys, "b1", 2 * b.grad, b, rule="constant_factor")
    assert not res and "2 times the gradient" in out
    assert not utils.cmp("b1", m["d"]["b1"], b)  # noise where the truth is not zero
    capsys.readouterr()
    b64 = torch.zeros(64, dtype=torch.float64, requires_grad=True)
    b64.grad = 1e-7 * torch.linspace(-1, 1, 64, dtype=torch.float64)  # below float32's epsilon, far above float64's
    res, out = run(capsys, "b1", torch.zeros_like(b64), b64, rule="all_zeros")
    assert not res


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
        res, out = run(capsys, "dlogprobs", dt, m["t"]["logprobs"], rule="not_implemented")
        assert not res and "not implemented yet" in out


@pytest.mark.parametrize("kind, make, message", [
    ("float", lambda d: -1.0 / 32, "got a float, not a tensor"),
    ("list", lambda d: d.tolist(), "got a list, not a tensor"),
    ("numpy", lambda d: d.numpy(), "keep it in torch"),
])
def test_not_a_tensor(m, capsys, kind, make, message):
    res, out = run(capsys, "logprobs", make(m["d"]["logprobs"]), m["t"]["logprobs"], rule="not_a_tensor")
    assert not res and message in out and "(32, 27)" in out


def test_reference_without_grad(m, capsys):
    fresh = m["t"]["logprobs"].detach().clone().requires_grad_()  # as if the backward cell never ran
    res, out = run(capsys, "logprobs", m["d"]["logprobs"], fresh, rule="no_reference_grad")
    assert not res and "has no .grad" in out and "loss.backward()" in out


def test_broadcast_needs_a_sum(m, capsys):
    t, d = m["t"], m["d"]
    unsummed = t["counts"] * d["probs"]  # (32, 27) for counts_sum_inv (32, 1)
    res, out = run(capsys, "counts_sum_inv", unsummed, t["counts_sum_inv"], rule="broadcast_not_summed")
    assert not res and "sum over dim 1 with keepdim=True" in out and "yours would be right" in out


def test_kept_dimension_dropped(m, capsys):
    t, d = m["t"], m["d"]
    dbngain = (t["bnraw"] * d["hpreact"]).sum(0)  # (64,) for (1, 64)
    assert (dbngain - t["bngain"].grad).abs().max() < 1e-6  # broadcasting hides it: the lecture's cmp passes it
    res, out = run(capsys, "bngain", dbngain, t["bngain"], rule="kept_dim_missing")
    assert not res and "(64,)" in out and "(1, 64)" in out and "sum with keepdim=True" in out


def test_kept_dimension_added(m, capsys):
    """The other way round, a db1 of shape (1, 64) for b1 (64,), as a real learner shipped it."""
    t, d = m["t"], m["d"]
    db1 = d["hprebn"].sum(0, keepdim=True)
    res, out = run(capsys, "b1", db1, t["b1"], rule="kept_dim_missing")
    assert not res and "sum without keepdim=True" in out and ".view(64,)" in out


def test_transposed(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "W2", d["logits"].T @ t["h"], t["W2"], rule="transposed")
    assert not res and "transposed" in out and "its transpose is exactly right" in out


def test_right_numbers_wrong_shape(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "emb", d["embcat"], t["emb"], rule="reshaped")  # (32, 30) for (32, 3, 10)
    assert not res and "numbers are right but in the wrong shape" in out and ".view(32, 3, 10)" in out


def test_sign_flipped(m, capsys):
    res, out = run(capsys, "logits", -m["d"]["logits"], m["t"]["logits"], rule="sign_flipped")
    assert not res and "sign flipped" in out


def test_factor_n(m, capsys):
    t = m["t"]
    dlogprobs = torch.zeros_like(t["logprobs"])
    dlogprobs[range(m["n"]), m["Yb"]] = -1.0  # forgot the 1/n of the mean
    res, out = run(capsys, "logprobs", dlogprobs, t["logprobs"], n=m["n"], rule="constant_factor")
    assert not res and "constant factor" in out and "n = 32: a 1/n missing?" in out


def test_factor_bessel(m, capsys):
    t, d = m["t"], m["d"]
    dbndiff2 = 1 / m["n"] * torch.ones_like(t["bndiff2"]) * d["bnvar"]  # 1/n where the forward used 1/(n-1)
    res, out = run(capsys, "bndiff2", dbndiff2, t["bndiff2"], rule="constant_factor")  # n from the shape (32, 64)
    assert not res and "(n-1)/n = 31/32: Bessel's correction" in out


def test_factor_other(m, capsys):
    res, out = run(capsys, "h", 2.5 * m["d"]["h"], m["t"]["h"], rule="constant_factor")
    assert not res and "2.5 times the gradient" in out


def test_all_zeros(m, capsys):
    res, out = run(capsys, "logits", torch.zeros_like(m["t"]["logits"]), m["t"]["logits"], rule="all_zeros")
    assert not res and "all zeros" in out


def test_nan_and_inf(m, capsys):
    t, d = m["t"], m["d"]
    dcounts_sum = d["counts_sum_inv"] / (t["counts_sum"] - t["counts_sum"])  # a division by zero
    res, out = run(capsys, "counts_sum", dcounts_sum, t["counts_sum"], rule="non_finite")
    assert not res and "inf" in out and "division by zero" in out


def test_wrong_dtype_and_device(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "logits", d["logits"].double(), t["logits"], rule="wrong_dtype")
    assert not res and "dtype torch.float64" in out and "torch.float32" in out
    res, out = run(capsys, "logits", d["logits"].to("meta"), t["logits"], rule="wrong_device")
    assert not res and "on device meta" in out and ".to('cpu')" in out


def test_one_wrong_entry_per_row(m, capsys):
    t = m["t"]
    dlogits = F.softmax(t["logits"], 1) / m["n"]  # forgot the -1 at the right character
    res, out = run(capsys, "logits", dlogits, t["logits"], rule="one_per_row")
    assert not res and "except 32 of 864 entries" in out and "Exactly one per row" in out


def test_a_few_wrong_entries(m, capsys):
    dW1 = m["d"]["W1"].clone()
    dW1[3, 5] += 0.5
    res, out = run(capsys, "W1", dW1, m["t"]["W1"], rule="few_entries_off")
    assert not res and "except 1 of 1920 entries, e.g. at (3, 5)" in out


def test_missing_broadcast_contribution(m, capsys):
    t, d = m["t"], m["d"]
    # forgot dcounts_sum
    res, out = run(capsys, "counts", d["counts_via_probs"], t["counts"], rule="missing_broadcast_term")
    assert not res and "same along dim 1" in out and "for example dcounts_sum in dcounts" in out
    assert len(res.diagnosis) > utils.WIDTH  # so run() saw it wrapped


def test_autograds_own_grad(m, capsys):
    t = m["t"]["logits"]
    for dt in (t.grad, t.grad.view(t.shape)):
        res, out = run(capsys, "logits", dt, t, rule="is_autograd_grad")
        assert not res and "autograd's own t.grad" in out


def test_exactness_never_decides(m, capsys):
    t, d = m["t"], m["d"]
    nudged = d["h"] * (1 + 1e-7)  # not bit-exact, still right
    res, out = run(capsys, "h", nudged, t["h"])
    assert res and "exact: False" in out and "approximate: True" in out


def test_reference_not_a_tensor(m, capsys):
    res, out = run(capsys, "logits", m["d"]["logits"], m["t"]["logits"].detach().numpy(), rule="reference_not_a_tensor")
    assert not res and "the reference is a ndarray, not a tensor" in out


def test_sparse_answer(m, capsys):
    res, out = run(capsys, "logits", m["d"]["logits"].to_sparse(), m["t"]["logits"], rule="not_dense")
    assert not res and "sparse_coo" in out and ".to_dense()" in out


def test_wrong_shape_with_the_lectures_example(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "C", d["emb"], t["C"], rule="wrong_shape")  # demb handed in as dC: no scatter-add
    assert not res and "shape (32, 3, 10) but the gradient has shape (27, 10): emb = C[Xb] copies rows" in out
    res, out = run(capsys, "W1", d["hprebn"], t["W1"], rule="wrong_shape")  # (32, 64) for (30, 64): no example
    assert not res and out.endswith("shape (32, 64) but the gradient has shape (30, 64)")


def test_complex_gradient():  # the lecture has no complex tensor: a small one of its own
    z = torch.randn(3, dtype=torch.complex64, requires_grad=True)
    (z.abs() ** 2).sum().backward()
    res = utils.cmp("z", 2 * z.detach(), z)
    assert not res and res.rule == "complex_gradient" and "real floating-point gradients only" in res.diagnosis


def test_reference_not_finite(m, capsys):
    t, d = m["t"], m["d"]
    ref = t["logits"].detach().clone().requires_grad_()  # as if the forward pass had overflowed
    ref.grad = t["logits"].grad.clone()
    ref.grad[0, 0] = float("inf")
    res, out = run(capsys, "logits", d["logits"], ref, rule="reference_not_finite")
    assert not res and "autograd's own gradient is not finite" in out


def test_relative_error_is_the_last_word(m, capsys):
    t, d = m["t"], m["d"]
    dhpreact = (1 - t["h"]) * d["h"]  # tanh's local derivative is 1 - h**2
    res, out = run(capsys, "hpreact", dhpreact, t["hpreact"], rule="relative_error")
    err = utils.rel_error(dhpreact, t["hpreact"].grad, norm=True)
    assert not res and f"entries are off; relative error {err:.1e}" in out and "Re-derive the local derivative" in out


# ---------------------------------------------------------------------------------------------- cmp: examples fit

def test_missing_term_example_only_where_it_fits(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "dcounts", d["counts_via_probs"], t["counts"], rule="missing_broadcast_term")
    assert "dcounts_sum in dcounts" in out  # the learner's own name for it works too
    term = torch.linspace(-1, 1, 27)  # the same in every row: along dim 0
    res, out = run(capsys, "counts", d["counts"] + term, t["counts"], rule="missing_broadcast_term")
    assert "same along dim 0" in out and "for example" not in out  # counts, but the other dim
    res, out = run(capsys, "h", d["h"] + torch.linspace(-1, 1, 64), t["h"], rule="missing_broadcast_term")
    assert "same along dim 0" in out and "for example" not in out  # another tensor
    res, out = run(capsys, "hprebn", d["bndiff"], t["hprebn"], rule="missing_broadcast_term")  # forgot dbnmeani
    assert "same along dim 0" in out and "dbnmeani in dhprebn" in out and "dcounts_sum" not in out


def test_one_per_row_example_only_for_logits(m, capsys):
    t, d = m["t"], m["d"]
    res, out = run(capsys, "logits chunked", F.softmax(t["logits"], 1) / m["n"], t["logits"], rule="one_per_row")
    assert "such as the max subtracted in cross-entropy (logit_maxes)" in out
    dh = d["h"].clone()
    dh[range(m["n"]), m["Yb"]] += 1.0
    res, out = run(capsys, "h", dh, t["h"], rule="one_per_row")
    assert "Exactly one per row" in out and "logit_maxes" not in out and "such as" not in out


def test_examples_name_real_rules():
    assert {rule for rule, _, _ in utils.EXAMPLES} <= {r.__name__ for r in utils.RULES}


def test_every_rule_has_a_test():
    source = Path(__file__).read_text()
    assert [r.__name__ for r in utils.RULES if f'rule="{r.__name__}"' not in source and
            f'rule == "{r.__name__}"' not in source] == []


# ---------------------------------------------------------------------------------------------- cmp: in-place guard

@pytest.fixture
def fresh():
    """A model of its own, since these tests change forward tensors in place; stops watching afterwards."""
    yield build()
    utils.watch({})


def test_in_place_change_is_named_not_blamed_on_the_formula(fresh, capsys):
    t, d = fresh["t"], fresh["d"]
    utils.watch(SimpleNamespace(**t))  # what a forward function returns
    h, dlogits = t["h"], d["logits"]
    res, out = run(capsys, "W2", h.T @ dlogits, t["W2"])
    assert res and "warning" not in out
    h.detach().mul_(2.0)  # the mistake: edits h itself
    res, out = run(capsys, "W2", h.T @ dlogits, t["W2"], rule="constant_factor")
    assert not res and out.startswith("warning: h was changed in place since the forward pass (e.g. h.detach().mul_()")
    assert "Re-run the forward-pass cell (and the backward cell) to recover, and use .clone()" in out
    assert res.diagnosis.startswith("h was changed in place since the forward pass, so this verdict may come from that")
    assert "not from your formula" in res.diagnosis and "yours is 2 times the gradient" in res.diagnosis
    res, out = run(capsys, "W2", h.T @ dlogits, t["W2"], rule="constant_factor")
    assert "warning" not in out and "not from your formula" in out  # warned once, still not blamed
    utils.watch(t)  # a new forward pass (here: the changed values accepted as they are)
    res, out = run(capsys, "W2", h.T @ dlogits, t["W2"], rule="constant_factor")
    assert "warning" not in out and res.diagnosis.startswith("off by a constant factor")


def test_in_place_add_on_a_view_is_seen(fresh, capsys):
    t, d = fresh["t"], fresh["d"]
    utils.watch(t)
    t["logits"] * 2  # a new tensor: not a change of logits
    fw_h = t["h"].detach()
    fw_h[0] += 1  # += on a view of h, through .detach()
    res, out = run(capsys, "h", d["h"], t["h"])  # h's gradient is untouched: right, but warned
    assert res and out.startswith("warning: h was changed in place") and "logits was" not in out
    dhpreact = (1 - t["h"] ** 2) * d["h"]  # computed from the changed h: row 0 is off
    res, out = run(capsys, "hpreact", dhpreact, t["hpreact"], rule="few_entries_off")
    assert "warning" not in out and res.diagnosis.startswith("h was changed in place")


def test_watch_skips_what_is_not_a_tensor(capsys):
    with torch.inference_mode():
        frozen = torch.ones(3)  # no version counter
    utils.watch({"n": 32, "frozen": frozen, "x": torch.zeros(2)})
    assert list(utils._watched) == ["x"]
    utils.watch({})


# ---------------------------------------------------------------------------------------------- gradcheck

class Mul(torch.autograd.Function):
    """x * y with a hand-written backward."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad * y, grad * x


class CrossEntropy(torch.autograd.Function):
    """The fused cross-entropy of notebook 02: (softmax - one-hot) / n."""

    @staticmethod
    def forward(ctx, logits, Yb):
        probs = F.softmax(logits, 1)
        ctx.save_for_backward(probs, Yb)
        return -probs[range(len(Yb)), Yb].log().mean()

    @staticmethod
    def backward(ctx, grad):
        probs, Yb = ctx.saved_tensors
        dlogits = probs.clone()
        dlogits[range(len(Yb)), Yb] -= 1
        return grad * dlogits / len(Yb), None


def with_backward(function, backward):
    """`function` with its backward replaced, the way a learner's mistake would."""
    return type(function.__name__, (function,), {"backward": staticmethod(backward)}).apply


def inputs():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True),
            torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True))


def gradcheck(capsys, fn, args, **kw):
    ok = utils.gradcheck(fn, args, **kw)
    out = capsys.readouterr().out
    assert "Traceback" not in out and all(len(s) <= utils.WIDTH for s in out.splitlines()), out
    return ok, " ".join(out.split())


def test_gradcheck_passes_a_right_backward(capsys):
    ok, out = gradcheck(capsys, Mul.apply, inputs(), name="Mul")
    assert ok and out == "gradcheck passed: Mul agrees with finite differences (float64)"
    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    ok, out = gradcheck(capsys, CrossEntropy.apply, (logits, torch.randint(0, 6, (4,))))
    assert ok and out.startswith("gradcheck passed: your backward")


def test_gradcheck_says_which_input_and_how_far(capsys):
    x, y = inputs()
    double_y = with_backward(Mul, lambda ctx, g: (g * ctx.saved_tensors[1], 2 * g * ctx.saved_tensors[0]))
    ok, out = gradcheck(capsys, double_y, (x, y))
    biggest = int(x.abs().flatten().argmax())  # dy is off by g * x: most where |x| is largest
    assert not ok and out.startswith(
        "gradcheck failed: the gradient with respect to input 1 (of 2) is wrong: largest difference "
        f"{float(x.detach().abs().max()):.2g} between your backward and finite differences")
    assert f"(at entry {biggest}, output entry {biggest}: yours" in out
    swapped = with_backward(Mul, lambda ctx, g: (g * ctx.saved_tensors[0], g * ctx.saved_tensors[1]))
    ok, out = gradcheck(capsys, swapped, (x, y))
    assert not ok and "with respect to input 0 (of 2) is wrong" in out
    no_mean = with_backward(CrossEntropy, lambda ctx, g: (CrossEntropy.backward(ctx, g)[0] * 4, None))
    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    ok, out = gradcheck(capsys, no_mean, (logits, torch.randint(0, 6, (4,))))
    assert not ok and "with respect to input 0 (of 2) is wrong" in out and "output entry" not in out


@pytest.mark.parametrize("backward, message", [
    (lambda ctx, g: (g.sum(0), g), "RuntimeError: Function MulBackward returned an invalid gradient at index 0"),
    (lambda ctx, g: undefined_name, "NameError: name 'undefined_name' is not defined"),  # noqa: F821
    (lambda ctx, g: ..., "incorrect number of gradients"),
    (lambda ctx, g: (g,), "incorrect number of gradients (expected 2, got 1)"),
])
def test_gradcheck_reports_a_broken_backward_in_one_line(capsys, backward, message):
    ok, out = gradcheck(capsys, with_backward(Mul, backward), inputs())
    assert not ok and out.startswith("gradcheck could not check your backward: ") and message in out
    assert "Check that forward and backward run" in out


def test_gradcheck_warns_about_float32(capsys):
    x, y = (a.detach().float().requires_grad_() for a in inputs())
    ok, out = gradcheck(capsys, Mul.apply, (x, y))
    assert out.startswith("warning: input 0 is torch.float32, not torch.float64") and "pass x.double()" in out


# ---------------------------------------------------------------------------------------------- rel_error

def test_rel_error_is_the_largest_entrywise_relative_error():
    a, b = torch.tensor([1.0, 100.0]), torch.tensor([1.1, 100.0])
    assert utils.rel_error(a, b) == pytest.approx(0.1 / 2.1, rel=1e-6)  # not 0.1 / 201.1
    assert utils.rel_error(torch.zeros(3), torch.zeros(3)) == 0.0  # 0 in both counts as agreeing
    assert utils.rel_error(torch.zeros(0), torch.zeros(0)) == 0.0
    assert utils.rel_error(2.0, 2.0) == 0.0


# ---------------------------------------------------------------------------------------------- the step harness

def test_a_step_that_raises_is_a_verdict_with_its_line(capsys, m):
    def backward_tanh(dh, h):
        # a typo: hpreact_
        dhpreact = (1.0 - torch.tanh(hpreact_) ** 2) * dh
        return dhpreact

    names = utils.forward_names(SimpleNamespace(**m["t"]))
    (value,) = utils.call(backward_tanh, [m["d"]["h"], m["t"]["h"]], ["dhpreact"], names)
    assert isinstance(value, utils.StepFailed)
    res, out = run(capsys, "hpreact", value, m["t"]["hpreact"], rule="step_failed")
    assert ("backward_tanh raised NameError at `dhpreact = (1.0 - torch.tanh(hpreact_) ** 2) * dh`" in out
            and "`hpreact_` is neither a tensor of the forward pass nor an argument of backward_tanh" in out
            and "did you mean `hpreact`?" in out and "not implemented" not in out), out


def test_a_step_reads_the_forward_tensors_of_the_run_it_is_called_in(m):
    def backward_tanh(dh, h):
        return (1.0 - torch.tanh(hpreact) ** 2) * dh  # noqa: F821  read by name, as in the lecture

    fw = SimpleNamespace(**m["t"])
    (d,) = utils.call(backward_tanh, [m["d"]["h"], fw.h], ["dhpreact"], utils.forward_names(fw))
    assert torch.allclose(d, m["d"]["hpreact"])
    other = {"hpreact": torch.zeros(2, 3, dtype=torch.float64)}  # another run: its own hpreact, its dtype
    (d,) = utils.call(backward_tanh, [torch.ones(2, 3, dtype=torch.float64), None], ["dhpreact"], other)
    assert torch.equal(d, torch.ones(2, 3, dtype=torch.float64))
    assert "hpreact" not in backward_tanh.__globals__ or backward_tanh.__globals__["hpreact"] is not other["hpreact"]


def test_a_gradient_changed_in_place_after_its_check_is_named(capsys, m):
    utils.reset_scoreboard()
    dbndiff = m["d"]["bndiff"].clone()
    utils.cmp("bndiff", dbndiff, m["t"]["bndiff"])
    dhprebn = dbndiff  # one tensor, two names
    dhprebn += 1.0
    capsys.readouterr()
    utils.cmp("hprebn", dhprebn, m["t"]["hprebn"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("warning: dbndiff, which its check judged above, was changed in place since (dhprebn is the same tensor "
            "as dbndiff" in out and "dhprebn = dbndiff.clone()" in out), out
    utils.reset_scoreboard()


def test_a_function_is_judged_on_what_its_backward_returns(capsys):
    # Mul with a (1, D) y: its backward returns grad * x, (n, D), for y; autograd would sum it down
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    (x * w).backward(torch.ones(4, 3, dtype=torch.float64))
    checks = utils.check_function(Mul, (x, w), torch.ones(4, 3, dtype=torch.float64), ["x", "w"])
    out = " ".join(capsys.readouterr().out.split())
    assert [bool(c) for c in checks] == [True, False]
    assert checks[1].rule == "broadcast_not_summed" and "yours would be right" in out
    assert utils.gradcheck(Mul.apply, (x, w))  # while gradcheck, through autograd, passes it
