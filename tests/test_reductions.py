"""Reductions with dim (issue 3), side by side with torch, for what the case table cannot express.

Guards:
* max(dim)/min(dim) results: torch.return_types repr, attribute access, unpacking, the type's name;
* indices (max/min(dim), argmax/argmin): int64, torch's first-occurrence rule on ties and on nan, every
  dim form (negative, keepdim, None = flattened, 0-d, empty slices), integer and bool inputs;
* prod's dtypes (bool and int give int64, `dtype=`), float32 accumulation, empty products;
* var/std overloads (unbiased, correction, empty dim lists), the degrees-of-freedom warning and the
  nan of one element; logsumexp of integers and infinities;
* numerical stability of softmax/log_softmax/logsumexp at 1e4 (float32) and beyond;
* exceptions: type and first line of the message, for bad dims and bad arguments, method and function;
* second derivatives (create_graph) of the new rules.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import symgrad

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.oracle

NAN = float("nan")
INF = float("inf")
GRID = [[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]


def both(fn, *values, dtype=None, requires_grad=False):
    """fn(T, *tensors) in symgrad and in torch, on tensors made from the same values."""
    ours = fn(symgrad, *(symgrad.tensor(v, dtype=_dtype(symgrad, dtype), requires_grad=requires_grad)
                         for v in values))
    theirs = fn(torch, *(torch.tensor(v, dtype=_dtype(torch, dtype), requires_grad=requires_grad) for v in values))
    return ours, theirs


def _dtype(T, name):
    return None if name is None else getattr(T, name)


def assert_same(ours, theirs, rtol=1e-6, atol=1e-7):
    assert repr(ours.dtype) == str(theirs.dtype), (ours.dtype, theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=rtol, atol=atol)


# -- max(dim) / min(dim) results ---------------------------------------------------------------------
@pytest.mark.parametrize("expression", [
    lambda T, x: x.max(1),
    lambda T, x: x.min(0, keepdim=True),
    lambda T, x: T.max(x, dim=-1, keepdim=True),
    lambda T, x: x.long().max(1),
    lambda T, x: x.sum().min(0),
], ids=["max1", "min0-keep", "fn-max-keep", "int", "0d"])
def test_namedtuple_repr_matches_torch(expression):
    ours, theirs = both(expression, GRID, requires_grad=True)
    assert repr(ours) == repr(theirs)
    assert str(ours) == str(theirs)


def test_namedtuple_access():
    x = symgrad.tensor(GRID, requires_grad=True)
    result = x.max(1)
    values, indices = result
    assert result.values is values is result[0]
    assert result.indices is indices is result[1]
    assert isinstance(result, tuple) and len(result) == 2
    assert type(result) is symgrad.return_types.max and type(x.min(1)) is symgrad.return_types.min
    assert type(result).__name__ == type(torch.tensor(GRID).max(1)).__name__ == "max"
    assert result.n_fields == torch.return_types.max.n_fields == 2
    assert values.grad_fn.name() == "MaxBackward0" and x.min(0).values.grad_fn.name() == "MinBackward0"
    assert indices.dtype is symgrad.int64 and indices.grad_fn is None and not indices.requires_grad
    rebuilt = symgrad.return_types.max((values, indices))
    assert rebuilt.values is values and rebuilt.indices is indices


def test_max_with_a_tensor_is_maximum():
    ours, theirs = both(lambda T, x: T.max(x, other=x * 0.5), GRID, requires_grad=True)
    assert ours.grad_fn.name() == theirs.grad_fn.name() == "MaximumBackward0"
    ours, theirs = both(lambda T, x: x.min(-x), GRID)
    assert_same(ours, theirs)


# -- indices ------------------------------------------------------------------------------------------
TIED = {
    "ties": [[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 0.0, 2.0], [-4.0, 5.0, -4.0, 5.0]],
    "all-equal": [[7.0, 7.0, 7.0], [7.0, 7.0, 7.0]],
    "nan": [[1.0, NAN, 3.0, NAN], [2.0, 0.0, 2.0, -1.0], [NAN, NAN, 0.0, 0.0]],
    "inf": [[INF, 1.0, INF], [-INF, -INF, 0.0]],
    "3d": np.array([[[1, 2, 2], [0, 2, 1]], [[3, 3, 0], [1, 1, 1]]], np.float64).tolist(),
}
INDEX_FORMS = {
    "argmax": lambda T, x: x.argmax(),
    "argmin": lambda T, x: x.argmin(),
    "argmax-keep": lambda T, x: T.argmax(x, keepdim=True),
    "argmax-0": lambda T, x: x.argmax(0),
    "argmin-neg1": lambda T, x: x.argmin(-1),
    "argmin-1-keep": lambda T, x: T.argmin(x, dim=1, keepdim=True),
    "max-indices-0": lambda T, x: x.max(0).indices,
    "max-indices-neg1-keep": lambda T, x: x.max(-1, keepdim=True).indices,
    "min-indices-1": lambda T, x: T.min(x, 1)[1],
    "max-values-neg1": lambda T, x: x.max(-1).values,
    "min-values-0-keep": lambda T, x: x.min(0, True).values,
}


# integers have no nan or inf, so those data sets run in floating dtypes only
TIED_CASES = [(data, dtype) for data in TIED for dtype in ("float32", "float64", "int64")
              if not (dtype == "int64" and data in ("nan", "inf"))]


@pytest.mark.parametrize("data,dtype", TIED_CASES, ids=[f"{d}-{t}" for d, t in TIED_CASES])
@pytest.mark.parametrize("form", INDEX_FORMS, ids=list(INDEX_FORMS))
def test_indices_follow_torchs_first_occurrence_rule(form, data, dtype):
    values = TIED[data]
    ours, theirs = both(INDEX_FORMS[form], values, dtype=dtype)
    assert_same(ours, theirs)


@pytest.mark.parametrize("form", ["argmax", "argmin", "argmax-0", "max-indices-0", "min-values-0-keep"])
def test_indices_of_a_0d_tensor(form):
    ours, theirs = both(INDEX_FORMS[form], 2.5)
    assert_same(ours, theirs)


def test_indices_of_bool_tensors_along_a_dim():
    values = [[True, False, True], [False, False, True]]
    for fn in (lambda T, x: x.max(1), lambda T, x: x.min(0, keepdim=True)):
        ours, theirs = both(fn, values)
        assert repr(ours) == repr(theirs)


def test_argmax_is_int64_and_has_no_gradient():
    x = symgrad.tensor(GRID, requires_grad=True)
    for index in (x.argmax(), x.argmin(1), symgrad.argmax(x, 0, True)):
        assert index.dtype is symgrad.int64
        assert index.grad_fn is None and not index.requires_grad


def test_empty_slices():
    for fn in (lambda T, e: e.max(1), lambda T, e: T.min(e, -1, keepdim=True)):
        ours, theirs = both(fn, np.zeros((0, 3)))
        assert repr(ours) == repr(theirs)
    ours, theirs = both(lambda T, e: e.argmax(1), np.zeros((0, 3)))
    assert_same(ours, theirs)


def test_max_dim_gradient_goes_to_the_returned_index():
    values = [[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0]]
    xs, xt = symgrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    (xs.max(1).values * symgrad.tensor([1.0, 2.0])).sum().backward()
    (xt.max(1).values * torch.tensor([1.0, 2.0])).sum().backward()
    np.testing.assert_array_equal(xs.grad.numpy(), xt.grad.numpy())
    np.testing.assert_array_equal(xs.grad.numpy(), [[0, 1, 0, 0], [2, 0, 0, 0]])


# -- prod ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", [
    lambda T, x: x.prod(),
    lambda T, x: x.prod(1),
    lambda T, x: T.prod(x, -1, keepdim=True),
    lambda T, x: x.prod(0, dtype=T.float64),
    lambda T, x: x.prod(dtype=T.float32),
], ids=["all", "dim1", "fn-keep", "dtype-f64", "dtype-f32"])
@pytest.mark.parametrize("dtype", ["bool", "int64", "float32", "float64"])
def test_prod_dtypes_match_torch(form, dtype):
    values = [[1, 0, 3], [2, 1, 2]] if dtype != "bool" else [[True, False, True], [True, True, True]]
    ours, theirs = both(form, values, dtype=dtype)
    assert_same(ours, theirs)


def test_prod_of_empty_and_float32_overflow_match_torch():
    for fn, values in [(lambda T, e: e.prod(), np.zeros((0, 3))), (lambda T, e: e.prod(0), np.zeros((0, 3))),
                       (lambda T, e: e.prod(1), np.zeros((0, 3))), (lambda T, x: x.prod(), [1e30, 1e30, 1e-30])]:
        ours, theirs = both(fn, values, dtype="float32")
        assert_same(ours, theirs)


def test_prod_gradient_with_zeros_matches_torch():
    cases = [([2.0, 0.0, 3.0], lambda T, x: x.prod()), ([2.0, 0.0, 0.0], lambda T, x: x.prod()),
             ([[2.0, 0.0, 3.0], [1.0, 4.0, 0.0]], lambda T, x: x.prod(0)),
             ([[2.0, 0.0, 3.0], [1.0, 4.0, 5.0], [0.0, 0.0, 1.0]], lambda T, x: x.prod(1, keepdim=True)),
             (0.0, lambda T, x: x.prod(0))]
    for values, fn in cases:
        xs = symgrad.tensor(values, requires_grad=True)
        xt = torch.tensor(values, requires_grad=True)
        fn(symgrad, xs).sum().backward()
        fn(torch, xt).sum().backward()
        np.testing.assert_array_equal(xs.grad.numpy(), xt.grad.numpy(), err_msg=str(values))


# -- var / std ----------------------------------------------------------------------------------------
VARIANCE_FORMS = {
    "default": lambda T, x, f: f(x),
    "unbiased-pos": lambda T, x, f: f(x, False),
    "unbiased-kw": lambda T, x, f: f(x, unbiased=False),
    "dim": lambda T, x, f: f(x, 1),
    "dim-unbiased-keep": lambda T, x, f: f(x, 0, False, True),
    "dims-kw": lambda T, x, f: f(x, dim=(0, 1), unbiased=True, keepdim=True),
    "none-unbiased": lambda T, x, f: f(x, None, False),
    "correction0": lambda T, x, f: f(x, correction=0),
    "correction2": lambda T, x, f: f(x, (0, 1), correction=2),
    "correction-float": lambda T, x, f: f(x, 0, correction=0.5),
    "correction-none": lambda T, x, f: f(x, 1, correction=None),
    "dim-empty-list": lambda T, x, f: f(x, dim=[]),
    "dim-empty-tuple-keep": lambda T, x, f: f(x, dim=(), keepdim=True),
    "correction-too-big": lambda T, x, f: f(x, 1, correction=5),
}


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("form", VARIANCE_FORMS, ids=list(VARIANCE_FORMS))
@pytest.mark.parametrize("call", ["method", "function"])
def test_variance_overloads_match_torch(name, form, call):
    def fn(T, x):
        f = getattr(T, name) if call == "function" else (lambda t, *a, **k: getattr(t, name)(*a, **k))
        return VARIANCE_FORMS[form](T, x, f)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = both(fn, GRID, dtype="float64", requires_grad=True)
    assert_same(ours, theirs, rtol=1e-12, atol=1e-12)
    assert ours.grad_fn.name() == theirs.grad_fn.name()


@pytest.mark.parametrize("name", ["var", "std"])
def test_one_element_gives_nan_with_torchs_warning(name):
    with pytest.warns(UserWarning, match=rf"{name}\(\): degrees of freedom is <= 0"):
        ours = getattr(symgrad.tensor([[2.0, 3.0]]), name)(0)
    with pytest.warns(UserWarning, match=rf"{name}\(\): degrees of freedom is <= 0"):
        theirs = getattr(torch.tensor([[2.0, 3.0]]), name)(0)
    assert_same(ours, theirs)
    assert np.isnan(ours.numpy()).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # correction 0 of one element is fine: 0, and no warning
        assert getattr(symgrad.tensor(2.0), name)(correction=0).item() == 0.0


def test_no_warning_when_degrees_of_freedom_are_positive():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        symgrad.tensor(GRID).var(1)
        symgrad.tensor(GRID).std(0, correction=1)


# -- logsumexp ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("form,values,dtype", [
    (lambda T, x: x.logsumexp(1), [[1, 2, 3], [0, -1, 4]], "int64"),
    (lambda T, x: T.logsumexp(x, 0), [[True, False], [True, True]], "bool"),
    (lambda T, x: x.logsumexp(0), [INF, 1.0], "float32"),
    (lambda T, x: x.logsumexp(0), [-INF, -INF], "float32"),
    (lambda T, x: x.logsumexp(-1), [[NAN, 1.0], [2.0, -INF]], "float64"),
    (lambda T, x: x.logsumexp((), keepdim=True), GRID, "float32"),
    (lambda T, x: x.logsumexp([0], keepdim=True), GRID, "float32"),
    (lambda T, x: x.logsumexp(()), 2.5, "float32"),
    (lambda T, x: x.logsumexp(0), np.zeros((0, 3)), "float32"),
], ids=["int", "bool", "inf", "minus-inf", "nan", "empty-dims-keep", "list", "0d-empty-dims", "empty"])
def test_logsumexp_special_inputs_match_torch(form, values, dtype):
    ours, theirs = both(form, values, dtype=dtype)
    assert_same(ours, theirs, rtol=1e-6)


# -- numerical stability ------------------------------------------------------------------------------
def test_softmax_at_1e4_in_float32_equals_torch():
    ours, theirs = both(lambda T, x: T.softmax(x, 0), [1e4, 1e4 + 1], dtype="float32")
    assert_same(ours, theirs, rtol=1e-6, atol=0)
    assert np.isfinite(ours.numpy()).all()
    np.testing.assert_allclose(ours.numpy(), [1 / (1 + math.e), math.e / (1 + math.e)], rtol=1e-6)


@pytest.mark.parametrize("fn", [
    lambda T, x: x.softmax(-1),
    lambda T, x: x.log_softmax(-1),
    lambda T, x: x.logsumexp(-1),
    lambda T, x: x.softmax(0),
    lambda T, x: T.log_softmax(x, 0),
    lambda T, x: T.logsumexp(x, (0, 1)),
], ids=["softmax", "log_softmax", "logsumexp", "softmax0", "log_softmax0", "logsumexp-all"])
@pytest.mark.parametrize("dtype,scale", [("float32", 1e4), ("float32", -1e4), ("float32", 3e38),
                                          ("float64", 1e300), ("float64", -1e4)])
def test_large_inputs_do_not_overflow(fn, dtype, scale):
    values = np.array([[1.0, 1.0 + 1e-4 * abs(scale) / scale, 1.0], [0.5, 1.0, 1.0 - 1e-5]]) * scale
    ours, theirs = both(fn, values, dtype=dtype)
    assert np.isfinite(ours.numpy()).all()
    assert_same(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [lambda T, x: x.softmax(1), lambda T, x: x.log_softmax(1),
                                lambda T, x: x.logsumexp(1)], ids=["softmax", "log_softmax", "logsumexp"])
def test_gradients_at_1e4_are_finite_and_match_torch(fn):
    values = [[1e4, 1e4 + 1, 1e4 - 2], [-1e4, -1e4 + 0.5, -1e4 + 3]]
    grads = []
    for T in (symgrad, torch):
        x = T.tensor(values, dtype=T.float64, requires_grad=True)
        out = fn(T, x)
        weight = T.tensor(np.linspace(-1.0, 2.0, out.numel()).reshape(tuple(out.shape)), dtype=T.float64)
        out.backward(weight)
        grads.append(x.grad.numpy())
    assert np.isfinite(grads[0]).all()
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_softmax_of_minus_inf_rows_is_nan_like_torch():
    ours, theirs = both(lambda T, x: x.softmax(1), [[-INF, -INF], [0.0, -INF]])
    assert_same(ours, theirs)


# -- exceptions ---------------------------------------------------------------------------------------
def _raised(fn, T, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = fn(T, x)
        except Exception as error:  # noqa: BLE001 - the type is what is compared
            return type(error), str(error).split("\n")[0]
    pytest.fail(f"no exception: {result!r}")


ERRORS = {
    # dims out of range (IndexError), for every new reduction, positive, negative and on a 0-d tensor
    "max-dim": lambda T, x: x.max(2),
    "min-dim-neg": lambda T, x: x.min(-3),
    "max-0d": lambda T, x: x.sum().max(1),
    "argmax-dim": lambda T, x: x.argmax(2),
    "argmin-dim-neg": lambda T, x: T.argmin(x, -3),
    "argmax-0d": lambda T, x: x.sum().argmax(-2),
    "prod-dim": lambda T, x: x.prod(5),
    "var-dim": lambda T, x: x.var(2),
    "std-dims": lambda T, x: x.std((0, 3)),
    "logsumexp-dim": lambda T, x: x.logsumexp(-3),
    "softmax-dim": lambda T, x: x.softmax(2),
    "log_softmax-dim": lambda T, x: T.log_softmax(x, -3),
    "softmax-0d": lambda T, x: x.sum().softmax(1),
    # repeated dims
    "var-repeated": lambda T, x: x.var((0, 0)),
    "std-repeated-neg": lambda T, x: x.std((1, -1)),
    "logsumexp-repeated": lambda T, x: x.logsumexp((0, -2)),
    "sum-repeated": lambda T, x: x.sum((1, 1)),
    # empty reductions
    "max-empty-dim": lambda T, x: T.zeros(0, 3).max(0),
    "min-empty-dim-neg": lambda T, x: T.zeros(0, 3).min(-2),
    "argmax-empty": lambda T, x: T.zeros(0, 3).argmax(),
    "argmin-empty-dim": lambda T, x: T.zeros(3, 0).argmin(1),
    # dtypes
    "argmax-bool": lambda T, x: (x > 1).argmax(),
    "argmin-bool-dim": lambda T, x: (x > 1).argmin(0),
    "var-int": lambda T, x: x.long().var(),
    "std-bool": lambda T, x: (x > 1).std(0),
    "softmax-int-lastdim": lambda T, x: x.long().softmax(1),
    "softmax-int": lambda T, x: x.long().softmax(0),
    "log_softmax-int": lambda T, x: x.long().log_softmax(-1),
    "log_softmax-bool": lambda T, x: (x > 1).log_softmax(0),
    # argument types and combinations
    "max-float-dim": lambda T, x: x.max(1.0),
    "max-tuple-dim": lambda T, x: x.max((0, 1)),
    "max-bool-dim": lambda T, x: x.max(True),
    "min-dim-none": lambda T, x: x.min(dim=None),
    "max-keepdim-only": lambda T, x: x.max(keepdim=True),
    "max-three-args": lambda T, x: x.max(1, True, 3),
    "max-keepdim-int": lambda T, x: x.max(1, keepdim=1),
    "max-fn-float-dim": lambda T, x: T.max(x, 1.0),
    "min-fn-str": lambda T, x: T.min(x, "a"),
    "max-dim-twice": lambda T, x: x.max(1, dim=0),
    "prod-tuple-dim": lambda T, x: x.prod((0, 1)),
    "prod-bool-dim": lambda T, x: x.prod(True),
    "prod-float-dim": lambda T, x: T.prod(x, 1.0),
    "argmax-float-dim": lambda T, x: x.argmax(1.0),
    "argmax-bool-dim": lambda T, x: x.argmax(True),
    "argmax-tuple-dim": lambda T, x: x.argmax((0, 1)),
    "argmax-keepdim-int": lambda T, x: x.argmax(1, 1),
    "argmin-fn-float-dim": lambda T, x: T.argmin(x, 1.0),
    "var-str": lambda T, x: x.var(1, "a"),
    "var-float-dim": lambda T, x: x.var(1.0),
    "var-unbiased-and-correction": lambda T, x: x.var(0, unbiased=True, correction=1),
    "std-four-args": lambda T, x: x.std(1, True, True, True),
    "var-fn-float-dim": lambda T, x: T.var(x, 1.0),
    "logsumexp-no-dim": lambda T, x: x.logsumexp(),
    "logsumexp-fn-no-dim": lambda T, x: T.logsumexp(x),
    "logsumexp-float-dim": lambda T, x: x.logsumexp(1.0),
    "logsumexp-fn-float-dim": lambda T, x: T.logsumexp(x, 1.0),
    "logsumexp-empty-dims": lambda T, x: x.logsumexp(()),
    "softmax-no-dim": lambda T, x: x.softmax(),
    "softmax-fn-no-dim": lambda T, x: T.softmax(x),
    "softmax-tuple-dim": lambda T, x: x.softmax((0, 1)),
    "softmax-none-dim": lambda T, x: x.softmax(None),
    "softmax-fn-float-dim": lambda T, x: T.softmax(x, 1.0),
    "log_softmax-float-dim": lambda T, x: x.log_softmax(dim=1.0),
    "softmax-bad-dtype": lambda T, x: x.softmax(1, dtype=5),
    "softmax-too-many": lambda T, x: x.softmax(1, None, 3),
    "softmax-fn-too-many": lambda T, x: T.softmax(x, 1, None, 3),
    "softmax-unknown-keyword": lambda T, x: x.softmax(1, foo=2),
    "argmax-too-many": lambda T, x: x.argmax(1, True, 3),
    "argmax-keepdim-kw-int": lambda T, x: T.argmax(x, 1, keepdim=2),
    "logsumexp-keepdim-int": lambda T, x: x.logsumexp(1, keepdim=2),
    "logsumexp-too-many": lambda T, x: x.logsumexp(1, False, 3),
    "max-keepdim-positional-int": lambda T, x: x.max(1, 1),
    "max-fn-keepdim-positional-int": lambda T, x: T.max(x, 1, 1),
    "prod-keepdim-int": lambda T, x: x.prod(1, keepdim=2),
    "prod-keepdim-positional-int": lambda T, x: x.prod(1, 2),
    "max-float-dim-keepdim": lambda T, x: x.max(1.0, True),
    "max-none-dim-keepdim": lambda T, x: x.max(None, True),
    "max-float-dim-kw-keepdim": lambda T, x: x.max(dim=1.0, keepdim=True),
    "max-fn-float-dim-keepdim": lambda T, x: T.max(x, 1.0, keepdim=True),
    "prod-none-dim-keepdim": lambda T, x: x.prod(dim=None, keepdim=True),
    "prod-fn-float-dim-keepdim": lambda T, x: T.prod(x, 1.0, True),
}


@pytest.mark.parametrize("name", ERRORS, ids=list(ERRORS))
def test_errors_match_torch(name):
    fn = ERRORS[name]
    ours = _raised(fn, symgrad, symgrad.tensor(GRID))
    theirs = _raised(fn, torch, torch.tensor(GRID))
    assert ours == theirs


# -- second derivatives ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [
    lambda T, x: x.softmax(1),
    lambda T, x: x.log_softmax(0),
    lambda T, x: x.logsumexp(1),
    lambda T, x: x.var(1),
    lambda T, x: x.std(0),
    lambda T, x: x.prod(1),
    lambda T, x: x.prod(),
    lambda T, x: x.max(1).values ** 2,
], ids=["softmax", "log_softmax", "logsumexp", "var", "std", "prod-dim", "prod", "max-dim"])
def test_second_derivatives_match_torch(fn):
    values = [[0.5, -1.25, 2.0], [1.5, 0.75, -0.5]]
    grads = []
    for T in (symgrad, torch):
        x = T.tensor(values, dtype=T.float64, requires_grad=True)
        out = fn(T, x)
        weight = T.tensor(np.linspace(-1.0, 2.0, out.numel()).reshape(tuple(out.shape)), dtype=T.float64)
        (g,) = T.autograd.grad((out * weight).sum(), x, create_graph=True)
        (h,) = T.autograd.grad((g * g).sum(), x)
        grads.append((g.detach().numpy(), h.numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-9, atol=1e-12)


def test_mean_of_no_elements_is_nan_like_torch():
    for fn in (lambda T, e: e.mean(), lambda T, e: e.mean(0)):
        ours, theirs = both(fn, np.zeros((0, 3)), dtype="float32")
        assert_same(ours, theirs)
