"""symgrad side by side with torch (the oracle) on the shared op table (tests/opcases.py).

Guards, for every case in float32 and float64 on identical inputs:
* forward values (float64: rtol 1e-10; float32: rtol 1e-6, 1e-5 for transcendental functions), result
  dtype, shape and requires_grad;
* `type(out.grad_fn).__name__`, `out.grad_fn.name()` and the `next_functions` structure;
* the gradient of every input (value, dtype, shape; None where torch has None) for the same
  random upstream gradient.
Also torch's gradient conventions at kinks and ties, type promotion (int/bool/0-d/Python-number
operands, and each input's gradient in its own dtype), and the exact recorded graphs of `x + 2`,
`2 - x`, `2 / x`, `x ** 2`, `2 ** x`.
"""
from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.oracle

sys.path.insert(0, os.path.dirname(__file__))

import symgrad  # noqa: E402

from opcases import (  # noqa: E402
    BOOL, CASES, INT, POS, Case, In, draw, params,
)

DTYPES = ["float32", "float64"]
FORWARD_TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}
# Arithmetic, comparisons and movement are (nearly) exact in float32; only transcendental functions
# (our own polynomials vs torch's SLEEF) get the looser 1e-5.
EXACT_TOL32 = dict(rtol=1e-6, atol=1e-7)
GRAD_TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-10)}


def _structure(fn, depth=6):
    """The recorded graph below `fn` as nested (name, children) tuples (None for absent inputs)."""
    if fn is None:
        return None
    if depth == 0:
        return (type(fn).__name__, "...")
    return (type(fn).__name__, tuple((_structure(child, depth - 1), index) for child, index in fn.next_functions))


def _run(T, case, arrays):
    leaves = [T.tensor(a, requires_grad=spec.differentiable) for spec, a in zip(case.inputs, arrays)]
    out = case.fn(T, *leaves)
    return leaves, out


def _values(t):
    return t.detach().numpy()


def _same_dtype(ours, theirs):
    return repr(ours) == str(theirs)


# -- forward, dtype, grad_fn ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", params(CASES, "forward_bug"))
def test_forward_matches_torch(case, dtype):
    arrays = draw(case, dtype)
    _, ours = _run(symgrad, case, arrays)
    _, theirs = _run(torch, case, arrays)
    assert _same_dtype(ours.dtype, theirs.dtype), f"dtype {ours.dtype} vs torch {theirs.dtype}"
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert ours.requires_grad == theirs.requires_grad
    tol = FORWARD_TOL[repr(ours.dtype).removeprefix("torch.")]
    if dtype == "float32" and not case.transcendental:
        tol = EXACT_TOL32
    np.testing.assert_allclose(_values(ours), _values(theirs), **tol)
    assert type(ours.grad_fn).__name__ == type(theirs.grad_fn).__name__
    assert ours.grad_fn.name() == theirs.grad_fn.name()


# Cases whose recorded graph differs from torch's below the top node.
STRUCTURE_BUGS: dict = {  # case label -> "BUG: ..."
    **{label: "BUG: torch pads circularly with a tree of narrow/copy_ (CopySlices, SliceBackward0); ours is one "
              "gather (same values, gradient and top grad_fn)"
       for label in ("pad-circular", "pad-circular-crop-1d", "conv2d-circular")},
}


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=STRUCTURE_BUGS[c.label])]
                 if c.label in STRUCTURE_BUGS else [])
    for c in CASES])
def test_next_functions_match_torch(case):
    arrays = draw(case, "float64")
    _, ours = _run(symgrad, case, arrays)
    _, theirs = _run(torch, case, arrays)
    assert _structure(ours.grad_fn) == _structure(theirs.grad_fn)


# -- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", params(CASES, "forward_bug", "grad_bug"))
def test_gradients_match_torch(case, dtype):
    arrays = draw(case, dtype)
    ours_in, ours = _run(symgrad, case, arrays)
    theirs_in, theirs = _run(torch, case, arrays)
    rng = np.random.default_rng(zlib.crc32(case.id.encode()) + 2)
    weight = np.asarray(rng.standard_normal(tuple(theirs.shape))).astype(_values(theirs).dtype)
    ours.backward(symgrad.tensor(weight))
    theirs.backward(torch.tensor(weight))
    for k, (a, b) in enumerate(zip(ours_in, theirs_in)):
        if b.grad is None:
            assert a.grad is None, f"input {k}: symgrad has a gradient where torch has none"
            continue
        assert a.grad is not None, f"input {k}: no gradient (torch has one)"
        assert _same_dtype(a.grad.dtype, b.grad.dtype), f"input {k}: grad dtype {a.grad.dtype} vs {b.grad.dtype}"
        assert tuple(a.grad.shape) == tuple(b.grad.shape)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **GRAD_TOL[str(b.grad.dtype)[6:]],
                                   err_msg=f"{case.id}: gradient of input {k}")


# Ties: torch splits the gradient of maximum/minimum in half between tied inputs, and spreads the
# gradient of max()/min() of a whole tensor evenly over tied extremes; max(dim)/min(dim)/argmax pick
# the first of tied extremes (and the first nan).
TIES = [
    Case("maximum-ties", "MAXIMUM", lambda T, a, b: T.maximum(a, b), (In((2, 3)), In((2, 3)))),
    Case("minimum-ties", "MINIMUM", lambda T, a, b: T.minimum(a, b), (In((2, 3)), In((2, 3)))),
    Case("max-ties", "MAX_ALL", lambda T, a: a.max(), (In((2, 3)),)),
    Case("min-ties", "MIN_ALL", lambda T, a: a.min(), (In((2, 3)),)),
    Case("clamp-at-bounds", "CLAMP", lambda T, a: a.clamp(-1.0, 1.0), (In((2, 3)),)),
    Case("relu-at-0", "RELU", lambda T, a: a.relu(), (In((2, 3)),)),
    Case("abs-at-0", "ABS", lambda T, a: a.abs(), (In((2, 3)),)),
    Case("norm-of-zeros", "NORM", lambda T, a: a.norm(), (In((2, 3)),)),
    Case("pow-zero-base", "POW", lambda T, a, b: a ** b, (In((2, 3)), In((2, 3)))),
    # max(dim)/min(dim) pass the whole gradient to the first tied extreme (the index they return)
    Case("max-dim-ties", "MAX_DIM", lambda T, a: a.max(1).values, (In((2, 3)),)),
    Case("min-dim-ties", "MIN_DIM", lambda T, a: T.min(a, 0, keepdim=True).values, (In((2, 3)),)),
    Case("max-dim-nan", "MAX_DIM", lambda T, a: a.max(-1).values, (In((2, 3)),)),
    Case("argmax-ties", "MUL", lambda T, a: a * (a.argmax(1, keepdim=True) == T.arange(3)), (In((2, 3)),)),
    Case("argmin-flat-ties", "MUL", lambda T, a: a * (a.argmin() == T.arange(6).reshape(2, 3)), (In((2, 3)),)),
    Case("prod-zeros", "PROD_DIM", lambda T, a: a.prod(1), (In((2, 3)),)),
    Case("std-constant", "STD", lambda T, a: a.std(1, correction=0), (In((2, 3)),)),
]
TIE_INPUTS = {
    "maximum-ties": [[[1.0, 2.0, -1.0], [0.5, 3.0, 0.0]], [[1.0, 1.0, -1.0], [0.0, 3.0, 0.0]]],
    "minimum-ties": [[[1.0, 2.0, -1.0], [0.5, 3.0, 0.0]], [[1.0, 1.0, -1.0], [0.0, 3.0, 0.0]]],
    "max-ties": [[[1.0, 3.0, -1.0], [3.0, 3.0, 0.0]]],
    "min-ties": [[[1.0, -3.0, -1.0], [-3.0, 3.0, 0.0]]],
    "clamp-at-bounds": [[[1.0, -1.0, 0.5], [2.0, -2.0, 0.0]]],
    "relu-at-0": [[[0.0, -0.0, 1.0], [-1.0, 0.0, 2.0]]],
    "abs-at-0": [[[0.0, -0.0, 1.0], [-1.0, 0.0, 2.0]]],
    "norm-of-zeros": [[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]],
    "pow-zero-base": [[[0.0, 0.0, 0.0], [2.0, 0.0, 1.0]], [[0.0, 2.0, 1.0], [0.5, 3.0, 1.0]]],
    "max-dim-ties": [[[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]],
    "min-dim-ties": [[[1.0, -3.0, 2.0], [1.0, -3.0, 0.0]]],
    "max-dim-nan": [[[1.0, float("nan"), float("nan")], [2.0, 0.0, 2.0]]],
    "argmax-ties": [[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]],
    "argmin-flat-ties": [[[1.0, -3.0, 2.0], [-3.0, 0.0, -3.0]]],
    "prod-zeros": [[[2.0, 0.0, 3.0], [0.0, 4.0, 0.0]]],
    "std-constant": [[[2.0, 2.0, 2.0], [1.0, 0.0, 2.0]]],
}
TIE_BUGS: dict = {}  # case label -> "BUG: ..." (none now)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.label, marks=[pytest.mark.xfail(strict=True, reason=TIE_BUGS[c.label])]
                 if c.label in TIE_BUGS else [])
    for c in TIES])
def test_gradient_conventions_at_kinks_match_torch(case, dtype):
    arrays = [np.array(v, dtype) for v in TIE_INPUTS[case.label]]
    ours_in, ours = _run(symgrad, case, arrays)
    theirs_in, theirs = _run(torch, case, arrays)
    np.testing.assert_allclose(_values(ours), _values(theirs), **FORWARD_TOL[dtype])
    weight = np.asarray(np.arange(1, 1 + theirs.numel()).reshape(tuple(theirs.shape))).astype(dtype)
    ours.backward(symgrad.tensor(weight))
    theirs.backward(torch.tensor(weight))
    for k, (a, b) in enumerate(zip(ours_in, theirs_in)):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **GRAD_TOL[dtype], err_msg=f"input {k}")


# -- type promotion ---------------------------------------------------------------------------------
F32, F64 = "float32", "float64"
PROMOTION = [
    Case("int64*float32", "MUL", lambda T, a, b: a * b, (In((2, 3), INT), In((2, 3), dtype=F32))),
    Case("int*2.5", "MUL", lambda T, a: a * 2.5, (In((2, 3), INT),)),
    Case("int+2", "ADD", lambda T, a: a + 2, (In((2, 3), INT),)),
    Case("float32*python-float", "MUL", lambda T, a: a * 0.1, (In((2, 3), dtype=F32),)),
    Case("float32+float64-0d", "ADD", lambda T, a, b: a + b, (In((2, 3), dtype=F32), In((), dtype=F64))),
    Case("float64-0d*float32", "MUL", lambda T, a, b: a * b, (In((), dtype=F64), In((2, 3), dtype=F32))),
    Case("float32+float64", "ADD", lambda T, a, b: a + b, (In((2, 3), dtype=F32), In((3,), dtype=F64))),
    Case("int64-0d*float32", "MUL", lambda T, a, b: a * b, (In((), INT), In((2, 3), dtype=F32))),
    Case("float64-0d*python-float", "MUL", lambda T, a: a * 0.5, (In((), dtype=F64),)),
    Case("int64-0d*python-float", "MUL", lambda T, a: a * 0.5, (In((), INT),)),
    Case("bool+int", "ADD", lambda T, a, b: a + b, (In((2, 3), BOOL), In((2, 3), INT))),
    Case("bool*float32", "MUL", lambda T, a, b: a * b, (In((2, 3), BOOL), In((2, 3), dtype=F32))),
    Case("bool+bool", "ADD", lambda T, a, b: a + b, (In((2, 3), BOOL), In((2, 3), BOOL))),
    Case("bool*bool", "MUL", lambda T, a, b: a * b, (In((2, 3), BOOL), In((3,), BOOL))),
    Case("bool+python-int", "ADD", lambda T, a: a + 1, (In((2, 3), BOOL),)),
    Case("int+bool-0d", "ADD", lambda T, a, b: a + b, (In((2, 3), INT), In((), BOOL))),
    Case("float32<float32", "LT", lambda T, a, b: a < b, (In((2, 3), dtype=F32), In((3,), dtype=F32))),
    Case("int>=float", "GE", lambda T, a: a >= 0.5, (In((2, 3), INT),)),
    Case("float==int", "EQ", lambda T, a, b: a == b, (In((2, 3), INT, dtype=F32), In((2, 3), INT))),
    Case("int!=python-int", "NE", lambda T, a: a != 1, (In((2, 3), INT),)),
    Case("bool&bool", "AND", lambda T, a, b: a & b, (In((2, 3), BOOL), In((3,), BOOL))),
    Case("int/int", "DIV", lambda T, a, b: a / (b * b + 1), (In((2, 3), INT), In((2, 3), INT))),
    Case("int/python-int", "DIV", lambda T, a: a / 2, (In((2, 3), INT),)),
    Case("exp(int)", "EXP", lambda T, a: a.exp(), (In((2, 3), INT),)),
    Case("sqrt(int)", "SQRT", lambda T, a: (a * a).sqrt(), (In((2, 3), INT),)),
    Case("sigmoid(int)", "SIGMOID", lambda T, a: a.sigmoid(), (In((2, 3), INT),)),
    Case("neg(int)", "NEG", lambda T, a: -a, (In((2, 3), INT),)),
    Case("abs(int)", "ABS", lambda T, a: a.abs(), (In((2, 3), INT),)),
    Case("int**2", "POW", lambda T, a: a ** 2, (In((2, 3), INT),)),
    Case("int**0.5", "POW", lambda T, a: (a * a) ** 0.5, (In((2, 3), INT),)),
    Case("float32**int", "POW", lambda T, a, b: a ** b, (In((2, 3), POS, dtype=F32), In((2, 3), INT))),
    Case("maximum(int,float32)", "MAXIMUM", lambda T, a, b: T.maximum(a, b), (In((2, 3), INT), In((2, 3), dtype=F32))),
    Case("where(bool,int,float32)", "WHERE", lambda T, c, a, b: T.where(c, a, b),
         (In((2, 3), BOOL), In((2, 3), INT), In((2, 3), dtype=F32))),
    Case("where(bool,int,python-float)", "WHERE", lambda T, c, a: T.where(c, a, 0.5), (In((2, 3), BOOL), In((2, 3), INT))),
    Case("clamp(int,float)", "CLAMP", lambda T, a: a.clamp(min=0.5), (In((2, 3), INT),)),
    Case("sum(int)", "SUM_ALL", lambda T, a: a.sum(), (In((2, 3), INT),)),
    Case("sum(bool)", "SUM_ALL", lambda T, a: a.sum(), (In((2, 3), BOOL),)),
    Case("sum(bool,dim)", "SUM_DIM", lambda T, a: a.sum(0), (In((2, 3), BOOL),)),
    Case("max(int)", "MAX_ALL", lambda T, a: a.max(), (In((2, 3), INT),)),
    Case("int.float()", "CAST", lambda T, a: a.float(), (In((2, 3), INT),)),
    Case("float32.long()", "CAST", lambda T, a: (a * 3).long(), (In((2, 3), dtype=F32),)),
    Case("int.bool()", "CAST", lambda T, a: a.bool(), (In((2, 3), INT),)),
    Case("bool.float()", "CAST", lambda T, a: a.float(), (In((2, 3), BOOL),)),
    Case("float32.double()*float32", "MUL", lambda T, a, b: a.double() * b, (In((2, 3), dtype=F32), In((2, 3), dtype=F32))),
]
PROMOTION_BUGS: dict = {}  # case label -> "BUG: ..." (none now)
PROMOTION_GRAD_BUGS: dict = {}  # case label -> "BUG: ..." (none now)


def _promotion_params(cases, bugs):
    return [pytest.param(c, id=c.label, marks=[pytest.mark.xfail(strict=True, reason=bugs[c.label])]
                         if c.label in bugs else []) for c in cases]


@pytest.mark.parametrize("case", _promotion_params(PROMOTION, PROMOTION_BUGS))
def test_type_promotion_matches_torch(case):
    arrays = draw(case, "float32")
    _, ours = _run(symgrad, case, arrays)
    _, theirs = _run(torch, case, arrays)
    assert _same_dtype(ours.dtype, theirs.dtype), f"{case.label}: {ours.dtype} vs torch {theirs.dtype}"
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(_values(ours), _values(theirs), rtol=1e-6, atol=1e-6)
    assert ours.requires_grad == theirs.requires_grad
    assert type(ours.grad_fn).__name__ == type(theirs.grad_fn).__name__


def _differentiable_in_torch(case):
    return _run(torch, case, draw(case, "float32"))[1].requires_grad


@pytest.mark.parametrize("case", _promotion_params([c for c in PROMOTION if _differentiable_in_torch(c)],
                                                   PROMOTION_GRAD_BUGS))
def test_promotion_gradients_match_torch(case):
    """Each input gets its gradient in its own dtype, whatever the result's dtype."""
    arrays = draw(case, "float32")
    ours_in, ours = _run(symgrad, case, arrays)
    theirs_in, theirs = _run(torch, case, arrays)
    weight = np.linspace(-1, 2, theirs.numel()).reshape(tuple(theirs.shape)).astype(_values(theirs).dtype)
    ours.backward(symgrad.tensor(weight))
    theirs.backward(torch.tensor(weight))
    for k, (a, b) in enumerate(zip(ours_in, theirs_in)):
        if b.grad is None:
            assert a.grad is None
            continue
        assert _same_dtype(a.grad.dtype, b.grad.dtype), f"input {k}: grad {a.grad.dtype} vs {b.grad.dtype}"
        assert tuple(a.grad.shape) == tuple(b.grad.shape)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-6)


# -- recorded graphs of Python-number operands -----------------------------------------------------
def _names(fn):
    return None if fn is None else (type(fn).__name__, tuple(_names(c) for c, _ in fn.next_functions))


GRAPHS = [
    ("x+2", lambda x: x + 2, ("AddBackward0", (("AccumulateGrad", ()), None))),
    ("2-x", lambda x: 2 - x, ("RsubBackward1", (("AccumulateGrad", ()),))),
    ("2/x", lambda x: 2 / x, ("MulBackward0", (("ReciprocalBackward0", (("AccumulateGrad", ()),)), None))),
    ("x**2", lambda x: x ** 2, ("PowBackward0", (("AccumulateGrad", ()),))),
    ("2**x", lambda x: 2 ** x, ("PowBackward2", (("AccumulateGrad", ()),))),
    ("x*x", lambda x: x * x, ("MulBackward0", (("AccumulateGrad", ()), ("AccumulateGrad", ())))),
    ("-x.exp()", lambda x: -x.exp(), ("NegBackward0", (("ExpBackward0", (("AccumulateGrad", ()),)),))),
]


@pytest.mark.parametrize("expression,fn,expected", GRAPHS, ids=[g[0] for g in GRAPHS])
def test_recorded_graph_of_number_operands(expression, fn, expected):
    ours = fn(symgrad.tensor([0.5, 1.5], requires_grad=True))
    theirs = fn(torch.tensor([0.5, 1.5], requires_grad=True))
    assert _names(theirs.grad_fn) == expected  # the oracle agrees with the expectation written here
    assert _names(ours.grad_fn) == expected
    assert _structure(ours.grad_fn) == _structure(theirs.grad_fn)  # including next_functions indices
    assert len(ours.grad_fn.next_functions) == len(theirs.grad_fn.next_functions)
