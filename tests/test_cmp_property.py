"""Property: cmp never raises, and never calls a wrong gradient correct, whatever it is handed."""
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
def tensors(draw, shape=None, dtype=None):
    shape = draw(shapes) if shape is None else shape
    dtype = draw(st.sampled_from(DTYPES)) if dtype is None else dtype
    n = math.prod(shape)
    data = draw(st.lists(values, min_size=n, max_size=n))
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


@st.composite
def answers(draw, ref):
    """Anything a learner might hand in, biased towards near misses of the true gradient."""
    g = ref.grad
    options = [st.none(), st.just(...), st.integers(), st.floats(), st.text(max_size=5), st.lists(st.floats(), max_size=4),
               st.builds(np.zeros, shapes), tensors()]
    if g is not None:
        options += [
            st.just(g), st.just(g.clone()), st.just(g.view(g.shape)), st.just(ref.detach()),
            st.builds(lambda s: g * s, st.floats(-3, 3)),
            st.builds(lambda e: g + e, st.floats(-1e-3, 1e-3)),
            st.just(g.reshape(-1)), st.just(g.unsqueeze(0)), st.just(g.T if g.dim() == 2 else g),
            st.just(g.double() if g.dtype == torch.float32 else g.float()),
            tensors(tuple(g.shape)), tensors(tuple(g.shape), g.dtype),
        ]
    return draw(st.one_of(*options))


def is_truly_right(dt, ref) -> bool:
    g = ref.grad
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
    if res:
        assert is_truly_right(dt, ref)
    if dt is ref.grad or dt is None or dt is ...:
        assert not res


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=3), tensors()), st.one_of(st.none(), st.integers(), tensors()))
def test_cmp_survives_any_reference(dt, t):
    assert not utils.cmp("x", dt, t)  # a reference with no .grad never yields a correct verdict
