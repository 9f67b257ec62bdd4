"""Properties: cmp never raises or crashes inside, never calls a wrong gradient correct, and never calls a
right one wrong, even when it is off by float rounding."""
import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import utils

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.complex64]
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
values = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def tensors(draw, shape=None, dtype=None, elements=values):
    shape = draw(shapes) if shape is None else shape
    dtype = draw(st.sampled_from(DTYPES)) if dtype is None else dtype
    n = math.prod(shape)
    data = draw(st.lists(elements, min_size=n, max_size=n))
    t = torch.tensor(data, dtype=torch.float64).reshape(shape)
    return t.to(dtype) if dtype.is_floating_point or dtype.is_complex else t.nan_to_num().clamp(-1e6, 1e6).to(dtype)


@st.composite
def references(draw):
    """A leaf tensor whose .grad autograd would have filled (or not)."""
    shape = draw(shapes)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    t = torch.zeros(shape, dtype=dtype, requires_grad=True)
    if draw(st.booleans()):
        t.grad = draw(tensors(shape, dtype)).nan_to_num()
    return t


OTHER_DTYPE = {torch.float32: torch.float64, torch.complex64: torch.complex128}


@st.composite
def answers(draw, ref):
    """Anything a learner might hand in, biased towards near misses of the true gradient."""
    g = ref.grad
    options = [st.none(), st.just(...), st.integers(), st.floats(), st.text(max_size=5),
               st.lists(st.floats(), max_size=4), st.builds(np.zeros, shapes), tensors()]
    if g is not None:
        options += [
            st.just(g), st.just(g.clone()), st.just(g.view(g.shape)), st.just(ref.detach()),
            st.builds(lambda s: g * s, st.floats(-3, 3)),
            st.builds(lambda e: g + e, st.floats(-1e-3, 1e-3)),
            st.just(g.reshape(-1)), st.just(g.unsqueeze(0)), st.just(g.T if g.dim() == 2 else g),
            st.just(g.to(OTHER_DTYPE.get(g.dtype, torch.float32))),
            tensors(tuple(g.shape)), tensors(tuple(g.shape), g.dtype),
        ]
    return draw(st.one_of(*options))


def is_truly_right(dt, ref) -> bool:
    g = ref.grad if isinstance(ref, torch.Tensor) else None
    return (isinstance(dt, torch.Tensor) and g is not None and dt is not g and dt.shape == g.shape
            and dt.dtype == g.dtype and dt.device == g.device and bool(torch.allclose(dt, g)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cmp_never_raises_and_never_lies(data):
    ref = data.draw(references())
    dt = data.draw(answers(ref))
    res = utils.cmp("x", dt, ref)  # must not raise
    assert isinstance(res, utils.Check)
    assert bool(res) == res.correct
    assert res.correct or res.rule is not None, res.diagnosis  # no rule crashed ("could not compare")
    if res:
        assert is_truly_right(dt, ref)
    if dt is ref.grad or dt is None or dt is ...:
        assert not res


@st.composite
def backed_references(draw):
    """A tensor whose .grad a real backward filled: a leaf or a retained intermediate, of varied shape and dtype."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64]))
    shape = draw(shapes)
    x = draw(tensors(shape, dtype)).requires_grad_()
    t = x if draw(st.booleans()) else x * 3
    t.retain_grad()
    out = t * draw(tensors(shape, dtype))
    (out.real if dtype.is_complex else out).sum().backward()
    return t


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cmp_survives_any_reference(data):
    t = data.draw(st.one_of(st.none(), st.integers(), tensors(), backed_references()), label="t")
    has_grad = isinstance(t, torch.Tensor) and t.grad is not None
    dt = data.draw(st.one_of(st.none(), st.integers(), st.text(max_size=3), tensors(),
                             *([answers(t)] if has_grad else [])), label="dt")
    res = utils.cmp("x", dt, t)
    assert res.correct or res.rule is not None, res.diagnosis  # no rule crashed
    if res:
        assert is_truly_right(dt, t)  # a reference with no .grad never yields a correct verdict


# ---------------------------------------------------------------------------------------------- right is right

finite = st.floats(-1e6, 1e6, width=32)
REWRITES = {  # mathematically equal to g, rounded differently: what a learner's own expression gives
    "times 3 over 3": lambda g: g * 3 / 3,
    "over 7 times 7": lambda g: g / 7 * 7,
    "a tenth, times 10": lambda g: (g * 0.1) * 10,
    "two halves": lambda g: g * 0.5 + g * 0.5,
    "via float64": lambda g: (g.double() * 3 / 3).to(g.dtype),
    "mean of copies": lambda g: torch.stack([g, g, g]).mean(0),
}


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from([torch.float32, torch.float64]), shapes)
def test_a_right_gradient_is_never_called_wrong(data, dtype, shape):
    g = data.draw(tensors(shape, dtype, finite), label="g")
    ref = torch.zeros(shape, dtype=dtype, requires_grad=True)
    ref.grad = g
    how = data.draw(st.sampled_from(["ulps", "backward", *REWRITES]), label="how")
    if how == "ulps":  # a few units in the last place, up or down per entry
        up = torch.tensor(data.draw(st.lists(st.booleans(), min_size=g.numel(), max_size=g.numel())), dtype=torch.bool)
        toward = torch.where(up.reshape(shape), math.inf, -math.inf).to(dtype)
        dt = g
        for _ in range(data.draw(st.integers(1, 4), label="ulps")):
            dt = torch.nextafter(dt, toward)
    elif how == "backward":  # the reference as autograd computes it, the answer as a learner writes it
        s = data.draw(st.floats(0.125, 100, width=32), label="s") * data.draw(st.sampled_from([-1, 1]))
        x = torch.zeros(shape, dtype=dtype, requires_grad=True)
        ((x * g) / s).sum().backward()  # autograd: (1 / s) * g
        ref, dt = x, g / s
    else:
        dt = REWRITES[how](g)
    assert utils.cmp("x", dt, ref), (how, dt, ref.grad)
