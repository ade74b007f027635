"""symgrad.nn losses and functional layers against torch: value and gradient for every reduction,
the recorded grad_fn, and torch's exceptions for bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import symgrad
from oracle import assert_raises_like_torch

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.oracle

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}
REDUCTIONS = ["mean", "sum", "none"]


def _data(dtype):
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((6, 4)).astype(dtype) * 2,
        "t": rng.standard_normal((6, 4)).astype(dtype) * 2,
        "p": rng.uniform(0.05, 0.95, (6, 4)).astype(dtype),
        "q": rng.uniform(0.0, 1.0, (6, 4)).astype(dtype),
        "big": (rng.standard_normal((6, 4)) * 60).astype(dtype),
        "probs": rng.dirichlet(np.ones(4), 6).astype(dtype),
        "w": rng.uniform(0.5, 2.0, 4).astype(dtype),
        "img": rng.standard_normal((2, 4, 3, 2)).astype(dtype),
    }


LABELS = np.array([0, 3, 1, 1, 2, 3])
LABELS_IGNORED = np.array([0, -100, 1, 3, -100, 2])
LABELS_IMG = np.array([[[0, 1], [3, 3], [2, 0]], [[1, 1], [0, 2], [3, 1]]])


def _module(lib, name, **kwargs):
    return getattr(lib.nn, name)(**kwargs)


# (id, fn(lib, F, inputs: dict of tensors, reduction) -> loss, names of inputs that require grad)
LOSSES = [
    ("MSELoss", lambda L, d, r: _module(L, "MSELoss", reduction=r)(d["x"], d["t"]), ["x", "t"]),
    ("L1Loss", lambda L, d, r: _module(L, "L1Loss", reduction=r)(d["x"], d["t"]), ["x", "t"]),
    ("SmoothL1Loss", lambda L, d, r: _module(L, "SmoothL1Loss", reduction=r)(d["x"], d["t"]), ["x", "t"]),
    ("SmoothL1Loss-beta", lambda L, d, r: _module(L, "SmoothL1Loss", reduction=r, beta=0.3)(d["x"], d["t"]), ["x"]),
    ("SmoothL1Loss-beta0", lambda L, d, r: _module(L, "SmoothL1Loss", reduction=r, beta=0.0)(d["x"], d["t"]),
     ["x"]),
    ("HuberLoss", lambda L, d, r: _module(L, "HuberLoss", reduction=r, delta=0.8)(d["x"], d["t"]), ["x", "t"]),
    ("CrossEntropyLoss", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r)(d["x"], L.tensor(LABELS)),
     ["x"]),
    ("CrossEntropyLoss-ignore", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r)(
        d["x"], L.tensor(LABELS_IGNORED)), ["x"]),
    ("CrossEntropyLoss-ignore-3", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r, ignore_index=3)(
        d["x"], L.tensor(LABELS)), ["x"]),
    ("CrossEntropyLoss-weight", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r, weight=d["w"])(
        d["x"], L.tensor(LABELS_IGNORED)), ["x"]),
    ("CrossEntropyLoss-smoothing", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r, label_smoothing=0.2)(
        d["x"], L.tensor(LABELS_IGNORED)), ["x"]),
    ("CrossEntropyLoss-smoothing-weight", lambda L, d, r: _module(
        L, "CrossEntropyLoss", reduction=r, label_smoothing=0.1, weight=d["w"])(d["x"], L.tensor(LABELS_IGNORED)),
     ["x"]),
    ("CrossEntropyLoss-probs", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r)(d["x"], d["probs"]),
     ["x", "probs"]),
    ("CrossEntropyLoss-probs-smoothing-weight", lambda L, d, r: _module(
        L, "CrossEntropyLoss", reduction=r, label_smoothing=0.3, weight=d["w"])(d["x"], d["probs"]), ["x"]),
    ("CrossEntropyLoss-image", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r)(
        d["img"], L.tensor(LABELS_IMG)), ["img"]),
    ("CrossEntropyLoss-1d", lambda L, d, r: _module(L, "CrossEntropyLoss", reduction=r)(d["x"][0], L.tensor(2)),
     ["x"]),
    ("NLLLoss", lambda L, d, r: _module(L, "NLLLoss", reduction=r)(d["x"], L.tensor(LABELS_IGNORED)), ["x"]),
    ("NLLLoss-weight", lambda L, d, r: _module(L, "NLLLoss", reduction=r, weight=d["w"])(d["x"], L.tensor(LABELS)),
     ["x"]),
    ("BCELoss", lambda L, d, r: _module(L, "BCELoss", reduction=r)(d["p"], d["q"]), ["p", "q"]),
    ("BCELoss-weight", lambda L, d, r: _module(L, "BCELoss", reduction=r, weight=d["w"])(d["p"], d["q"]), ["p"]),
    ("BCEWithLogitsLoss", lambda L, d, r: _module(L, "BCEWithLogitsLoss", reduction=r)(d["x"], d["q"]), ["x", "q"]),
    ("BCEWithLogitsLoss-large", lambda L, d, r: _module(L, "BCEWithLogitsLoss", reduction=r)(d["big"], d["q"]),
     ["big"]),
    ("BCEWithLogitsLoss-weights", lambda L, d, r: _module(
        L, "BCEWithLogitsLoss", reduction=r, weight=d["w"], pos_weight=d["w"] * 2)(d["x"], d["q"]), ["x", "q"]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss_value_gradient_and_grad_fn_match_torch(case, reduction, dtype):
    label, fn, wanted = case
    arrays = _data(dtype)

    def run(lib):
        inputs = {k: lib.tensor(v, requires_grad=k in wanted) for k, v in arrays.items()}
        out = fn(lib, inputs, reduction)
        rng = np.random.default_rng(7)
        upstream = lib.tensor(rng.standard_normal(tuple(out.shape)).astype(dtype))
        out.backward(upstream)
        return out, {k: inputs[k].grad for k in wanted}

    (ours, our_grads), (theirs, their_grads) = run(symgrad), run(torch)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert str(ours.dtype) == str(theirs.dtype)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), **TOL[dtype])
    assert ours.grad_fn.name() == theirs.grad_fn.name()
    for k in wanted:
        assert (our_grads[k] is None) == (their_grads[k] is None), k
        if their_grads[k] is not None:
            np.testing.assert_allclose(our_grads[k].numpy(), their_grads[k].numpy(), **TOL[dtype],
                                       err_msg=f"{label} gradient of {k}")


def test_bce_with_logits_is_finite_for_huge_logits():
    x = symgrad.tensor([1e4, -1e4, 500.0, -500.0], requires_grad=True)
    t = symgrad.tensor([1.0, 0.0, 0.0, 1.0])
    loss = symgrad.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    loss.sum().backward()
    assert loss.tolist() == [0.0, 0.0, 500.0, 500.0]
    assert x.grad.tolist() == [0.0, 0.0, 1.0, -1.0]


# (id, fn(lib, F, x) -> output); x (6, 4) requires grad
FUNCTIONAL = [
    ("relu", lambda L, F, x: F.relu(x)),
    ("leaky_relu", lambda L, F, x: F.leaky_relu(x, 0.1)),
    ("gelu", lambda L, F, x: F.gelu(x)),
    ("gelu-tanh", lambda L, F, x: F.gelu(x, approximate="tanh")),
    ("silu", lambda L, F, x: F.silu(x)),
    ("softmax", lambda L, F, x: F.softmax(x, dim=1)),
    ("log_softmax", lambda L, F, x: F.log_softmax(x, dim=0)),
    ("tanh-module", lambda L, F, x: L.nn.Tanh()(x)),
    ("sigmoid-module", lambda L, F, x: L.nn.Sigmoid()(x)),
    ("layer_norm", lambda L, F, x: F.layer_norm(x, (4,))),
    ("layer_norm-2d", lambda L, F, x: F.layer_norm(x.reshape(2, 3, 4), (3, 4), eps=1e-3)),
    ("linear", lambda L, F, x: F.linear(x, x[:3] * 0.5, x[0, :3])),
    ("linear-nobias", lambda L, F, x: F.linear(x, x[:3] * 0.5)),
    ("linear-1d", lambda L, F, x: F.linear(x[0], x[:3] * 0.5, x[0, :3])),
    ("embedding", lambda L, F, x: F.embedding(L.tensor([[1, 5], [5, 0]]), x)),
    ("embedding-pad", lambda L, F, x: F.embedding(L.tensor([[1, 5], [5, 0]]), x, padding_idx=5)),
    ("flatten", lambda L, F, x: L.nn.Flatten(0)(x.reshape(2, 3, 4))),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", FUNCTIONAL, ids=[c[0] for c in FUNCTIONAL])
def test_functional_value_gradient_and_grad_fn_match_torch(case, dtype):
    label, fn = case
    x_values = _data(dtype)["x"]

    def run(lib):
        x = lib.tensor(x_values, requires_grad=True)
        out = fn(lib, lib.nn.functional, x)
        upstream = lib.tensor(np.random.default_rng(3).standard_normal(tuple(out.shape)).astype(dtype))
        out.backward(upstream)
        return out, x.grad

    (ours, our_grad), (theirs, their_grad) = run(symgrad), run(torch)
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), **tol)
    assert ours.grad_fn.name() == theirs.grad_fn.name()
    np.testing.assert_allclose(our_grad.numpy(), their_grad.numpy(), **tol, err_msg=f"{label} gradient")


def _errors(lib):
    F = lib.nn.functional
    x = lib.zeros(4, 3)
    return {
        "reduction": lambda: F.mse_loss(x, x, reduction="avg"),
        "nll batch": lambda: F.nll_loss(x, lib.tensor([0, 1, 2])),
        "nll out of bounds": lambda: F.nll_loss(x, lib.tensor([0, 1, 2, 3])),
        "nll negative": lambda: F.nll_loss(x, lib.tensor([0, 1, 2, -1])),
        "nll float target": lambda: F.nll_loss(x, lib.tensor([0.0, 1, 2, 1])),
        "ce out of bounds": lambda: F.cross_entropy(x, lib.tensor([0, 1, 2, 3])),
        "ce batch": lambda: F.cross_entropy(x, lib.tensor([0, 1, 2])),
        "ce smoothing": lambda: F.cross_entropy(x, lib.tensor([0, 1, 2, 1]), label_smoothing=1.5),
        "ce multi-target": lambda: F.cross_entropy(x, lib.zeros(4, 2)),
        "bce size": lambda: F.binary_cross_entropy(x, lib.zeros(4)),
        "bce logits size": lambda: F.binary_cross_entropy_with_logits(x, lib.zeros(4)),
        "mse broadcast": lambda: F.mse_loss(x, lib.zeros(2)),
        "embedding float": lambda: F.embedding(lib.tensor([0.0]), x),
        "embedding range": lambda: F.embedding(lib.tensor([7]), x),
        "layer_norm shape": lambda: F.layer_norm(x, (4,)),
        "smooth_l1 beta": lambda: F.smooth_l1_loss(x, x, beta=-1.0),
        "huber delta": lambda: F.huber_loss(x, x, delta=-1.0),
        "linear bias": lambda: F.linear(x, lib.zeros(2, 3), lib.zeros(3)),
        "dropout p": lambda: F.dropout(x, 1.5),
    }


@pytest.mark.parametrize("case", list(_errors(symgrad)))
def test_errors_match_torch(case):
    assert_raises_like_torch(_errors(symgrad)[case], _errors(torch)[case])


def test_mse_size_mismatch_warns_like_torch():
    def caught(lib):
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            lib.nn.functional.mse_loss(lib.zeros(4, 3), lib.zeros(3))
        return [str(r.message) for r in records]

    assert caught(symgrad) == caught(torch)
