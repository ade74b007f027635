"""The table of differentiable operations shared by tests/test_gradients.py (finite differences,
no torch) and tests/test_oracle_gradients.py (side by side with torch).

Each `Case` calls the public API through `fn(T, *inputs)`, where `T` is the `symgrad` module or the
`torch` module, so one lambda describes the same computation in both libraries. `op` names the
entry of `symgrad.ops.OPS` the case exists to exercise; the gradient tests check that this op
really appears in the recorded graph, and that every differentiable entry of `OPS` has a case.

Inputs are drawn by `draw(case, dtype)` with a generator seeded from the case id, so a failure
is reproducible, and redrawn while `case.avoid(*arrays)` says the draw is too close to a kink
(|x| near 0 for abs/relu, ties for maximum/minimum/max, x near a clamp bound, ...).

Shapes are few and small on purpose: compiled programs are cached by structure, so reusing shapes
keeps the number of LLVM compiles (and the suite's runtime) down.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

# -- inputs ----------------------------------------------------------------------------------------
# Domains: how an input's values are drawn.
ANY = "any"      # |x| in [0.25, 2], random sign: away from 0, the kink of abs/relu/sign
POS = "pos"      # [0.5, 2]: log, sqrt, fractional powers, positive bases
BOOL = "bool"    # a bool mask (never requires grad)
INT = "int"      # int64 values in [-3, 3] (never requires grad)


@dataclass(frozen=True)
class In:
    shape: tuple
    domain: str = ANY
    dtype: str | None = None          # fixed dtype; None follows the dtype under test
    grad: bool = True                 # requires_grad (only floating inputs)
    zeros: tuple = ()                 # flat positions set to exactly 0 after drawing (prod's zero rules)

    @property
    def differentiable(self):
        return self.grad and self.domain not in (BOOL, INT)


def _spell(shape):
    return "x".join(map(str, shape)) if shape else "0d"


@dataclass(frozen=True)
class Case:
    label: str                        # readable part of the test id
    op: str                           # the OPS entry this case exercises
    fn: Callable                      # fn(T, *inputs) -> tensor, T is symgrad or torch
    inputs: tuple                     # In, ...
    avoid: Callable | None = None     # avoid(*arrays) -> True: redraw (too close to a kink)
    transcendental: bool = False      # looser float32 forward tolerance against torch
    fd_eps: float = 1e-6              # finite-difference step (float64)
    fd_tol: float = 1e-6              # finite-difference tolerance (relative and absolute)
    grad_bug: str | None = None       # known library bug in the gradient: the gradient tests xfail
    forward_bug: str | None = None    # known library bug in value/dtype/grad_fn: the forward oracle xfails

    @property
    def id(self):
        return f"{self.label}[{','.join(_spell(i.shape) for i in self.inputs)}]"


NP = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}


def draw(case: Case, dtype: str = "float64", attempts: int = 200):
    """numpy arrays for the case's inputs (deterministic per case id and dtype)."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    for _ in range(attempts):
        arrays = []
        for spec in case.inputs:
            if spec.domain == ANY:
                values = rng.uniform(0.25, 2.0, spec.shape) * rng.choice([-1.0, 1.0], spec.shape)
            elif spec.domain == POS:
                values = rng.uniform(0.5, 2.0, spec.shape)
            elif spec.domain == BOOL:
                values = rng.random(spec.shape) < 0.5
            elif spec.domain == INT:
                values = rng.integers(-3, 4, spec.shape)
            else:
                raise ValueError(spec.domain)
            want = spec.dtype or (dtype if spec.domain in (ANY, POS) else ("bool" if spec.domain == BOOL else "int64"))
            values = np.array(values)
            values.reshape(-1)[list(spec.zeros)] = 0
            arrays.append(values.astype(NP[want]))
        if case.avoid is None or not case.avoid(*arrays):
            return arrays
    raise AssertionError(f"{case.id}: could not draw inputs away from the kinks")


# -- kink guards -----------------------------------------------------------------------------------
MARGIN = 0.05


def near(a, b, margin=MARGIN):
    """Some broadcast pair of elements of a and b is closer than `margin`."""
    return bool(np.any(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) < margin))


def ties(a, b):
    return near(a, b)


def top_tied(x):
    """The two largest elements of x are closer than MARGIN (max() nearly tied)."""
    flat = np.sort(np.asarray(x, np.float64).reshape(-1))
    return flat.size > 1 and flat[-1] - flat[-2] < MARGIN


def bottom_tied(x):
    """The two smallest elements of x are closer than MARGIN (min() nearly tied)."""
    flat = np.sort(np.asarray(x, np.float64).reshape(-1))
    return flat.size > 1 and flat[1] - flat[0] < MARGIN


def top_tied_along(dim):
    """max(dim) nearly tied: in some slice along `dim` the two largest elements are closer than MARGIN."""
    def avoid(x):
        x = np.sort(np.moveaxis(np.asarray(x, np.float64), dim, -1), axis=-1)
        return x.shape[-1] > 1 and bool(np.any(x[..., -1] - x[..., -2] < MARGIN))
    return avoid


def bottom_tied_along(dim):
    """min(dim) nearly tied: in some slice along `dim` the two smallest elements are closer than MARGIN."""
    def avoid(x):
        x = np.sort(np.moveaxis(np.asarray(x, np.float64), dim, -1), axis=-1)
        return x.shape[-1] > 1 and bool(np.any(x[..., 1] - x[..., 0] < MARGIN))
    return avoid


def quietly(fn):
    """fn() with warnings silenced (the expected ones: var of one element warns in both libraries)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


# -- known bugs (xfail strict: the lead removes the marker with the fix) -----------------------------

def _setitem_column_case(T, a, b):
    out = a * 1
    out[:, 2] = b * 2
    return out


def _setitem_case(T, a, b):
    out = a * 1
    out[1, 1:3] = b
    out[0] = 5.0
    return out


# -- the table -------------------------------------------------------------------------------------
# Broadcasting shape pairs every binary op runs on.
PAIRS = [((2, 3), (2, 3)), ((3, 1), (1, 4)), ((2, 3), (3,)), ((), (2, 2)), ((4,), ())]
UNARY_SHAPE = (2, 3)
RED_SHAPE = (2, 3, 4)


def _binary(label, op, fn, domain_a=ANY, domain_b=ANY, **kw):
    return [Case(label, op, fn, (In(sa, domain_a), In(sb, domain_b)), **kw) for sa, sb in PAIRS]


def _unary(label, op, fn, domain=ANY, shape=UNARY_SHAPE, **kw):
    return Case(label, op, fn, (In(shape, domain),), **kw)


CASES: list[Case] = [
    # arithmetic ----------------------------------------------------------------------------------
    *_binary("add", "ADD", lambda T, a, b: a + b),
    _unary("add-int", "ADD", lambda T, a: a + 2),
    _unary("radd-float", "ADD", lambda T, a: 2.5 + a),
    Case("add-alpha", "ADD_SCALED", lambda T, a, b: a.add(b, alpha=2), (In((2, 3)), In((3,)))),
    *_binary("sub", "SUB", lambda T, a, b: a - b),
    _unary("sub-float", "SUB", lambda T, a: a - 1.5),
    _unary("rsub-int", "SUB", lambda T, a: 2 - a),
    Case("sub-alpha", "SUB_SCALED", lambda T, a, b: a.sub(b, alpha=0.5), (In((3, 1)), In((1, 4)))),
    *_binary("mul", "MUL", lambda T, a, b: a * b),
    _unary("mul-int", "MUL", lambda T, a: a * 3),
    _unary("rmul-float", "MUL", lambda T, a: 0.5 * a),
    Case("mul-self", "MUL", lambda T, a: a * a, (In((2, 3)),)),
    *_binary("div", "DIV", lambda T, a, b: a / b),
    _unary("div-float", "DIV", lambda T, a: a / 2.0),
    _unary("rdiv-int", "RECIPROCAL", lambda T, a: 2 / a),
    _unary("neg", "NEG", lambda T, a: -a),
    _unary("reciprocal", "RECIPROCAL", lambda T, a: a.reciprocal()),
    # powers --------------------------------------------------------------------------------------
    _unary("pow-2", "POW", lambda T, a: a ** 2),
    _unary("pow-3", "POW", lambda T, a: a ** 3),
    _unary("pow-0", "POW", lambda T, a: a ** 0),
    _unary("pow-half", "POW", lambda T, a: a ** 0.5, POS, transcendental=True),
    _unary("pow-neg1.5", "POW", lambda T, a: a.pow(-1.5), POS, transcendental=True),
    *_binary("pow-tensor", "POW", lambda T, a, b: a ** b, POS, ANY, transcendental=True),
    _unary("rpow-int", "POW", lambda T, a: 2 ** a, transcendental=True),
    _unary("rpow-float", "POW", lambda T, a: 2.5 ** a, transcendental=True),
    Case("pow-0d-base", "POW", lambda T, a, b: a ** b, (In((), POS, grad=False), In((2, 3))),
         transcendental=True),
    # transcendental and other unary functions ------------------------------------------------------
    _unary("exp", "EXP", lambda T, a: a.exp(), transcendental=True),
    _unary("log", "LOG", lambda T, a: a.log(), POS, transcendental=True),
    _unary("sqrt", "SQRT", lambda T, a: a.sqrt(), POS, transcendental=True),
    _unary("tanh", "TANH", lambda T, a: a.tanh(), transcendental=True),
    _unary("sigmoid", "SIGMOID", lambda T, a: a.sigmoid(), transcendental=True),
    _unary("sigmoid-fn", "SIGMOID", lambda T, a: T.sigmoid(a), transcendental=True),
    _unary("sin", "SIN", lambda T, a: a.sin(), transcendental=True),
    _unary("cos", "COS", lambda T, a: a.cos(), transcendental=True),
    _unary("relu", "RELU", lambda T, a: a.relu()),
    _unary("abs", "ABS", lambda T, a: a.abs()),
    _unary("sign", "SIGN", lambda T, a: a.sign()),
    # clamp: Python-number bounds and tensor bounds (which receive gradients too in torch) ---------
    _unary("clamp-min", "CLAMP", lambda T, a: a.clamp(min=0.3), avoid=lambda a: near(a, 0.3)),
    _unary("clamp-max", "CLAMP", lambda T, a: a.clamp(max=-0.4), avoid=lambda a: near(a, -0.4)),
    _unary("clamp-both", "CLAMP", lambda T, a: a.clamp(-0.5, 0.6), avoid=lambda a: near(a, -0.5) or near(a, 0.6)),
    _unary("clip", "CLAMP", lambda T, a: T.clip(a, -1.0, 1.0), avoid=lambda a: near(a, -1.0) or near(a, 1.0)),
    Case("clamp-tensor-min", "CLAMP", lambda T, a, lo: a.clamp(min=lo), (In((2, 3)), In((3,))),
         avoid=lambda a, lo: near(a, lo)),
    Case("clamp-tensors", "CLAMP", lambda T, a, lo, hi: T.clamp(a, lo - 1.0, hi + 1.0),
         # NOTE: x has the full shape: torch's own clamp backward fails when a bound broadcasts x
         (In((3, 4)), In((1, 4)), In(())),
         avoid=lambda a, lo, hi: near(a, lo - 1.0) or near(a, hi + 1.0) or near(lo - 1.0, hi + 1.0)),
    # maximum / minimum / where ---------------------------------------------------------------------
    *_binary("maximum", "MAXIMUM", lambda T, a, b: T.maximum(a, b), avoid=ties),
    *_binary("minimum", "MINIMUM", lambda T, a, b: a.minimum(b), avoid=ties),
    Case("where", "WHERE", lambda T, c, a, b: T.where(c, a, b), (In((2, 3), BOOL), In((2, 3)), In((2, 3)))),
    Case("where", "WHERE", lambda T, c, a, b: T.where(c, a, b), (In((3, 1), BOOL), In((1, 4)), In(()))),
    Case("where-cmp-scalar", "WHERE", lambda T, a: T.where(a > 0, a, 0.0), (In((2, 3)),)),
    Case("where-method", "WHERE", lambda T, a, b: a.where(b < a, b), (In((2, 3)), In((3,))), avoid=ties),
    # reductions ----------------------------------------------------------------------------------
    _unary("sum", "SUM_ALL", lambda T, a: a.sum()),
    _unary("sum", "SUM_ALL", lambda T, a: a.sum(), shape=RED_SHAPE),
    _unary("sum-0d", "SUM_ALL", lambda T, a: a.sum(), shape=()),
    _unary("sum-dim1", "SUM_DIM", lambda T, a: a.sum(1), shape=RED_SHAPE),
    _unary("sum-dim-neg1", "SUM_DIM", lambda T, a: a.sum(dim=-1), shape=RED_SHAPE),
    _unary("sum-dim02", "SUM_DIM", lambda T, a: a.sum((0, 2)), shape=RED_SHAPE),
    _unary("sum-dim1-keep", "SUM_DIM", lambda T, a: a.sum(1, keepdim=True), shape=RED_SHAPE),
    _unary("sum-dim02-keep", "SUM_DIM", lambda T, a: a.sum((0, 2), keepdim=True), shape=RED_SHAPE),
    _unary("mean", "MEAN_ALL", lambda T, a: a.mean()),
    _unary("mean", "MEAN_ALL", lambda T, a: T.mean(a), shape=RED_SHAPE),
    _unary("mean-dim0", "MEAN_DIM", lambda T, a: a.mean(0), shape=RED_SHAPE),
    _unary("mean-dim-neg1", "MEAN_DIM", lambda T, a: a.mean(-1)),
    _unary("mean-dim12", "MEAN_DIM", lambda T, a: a.mean((1, 2)), shape=RED_SHAPE),
    _unary("mean-dim0-keep", "MEAN_DIM", lambda T, a: a.mean(0, keepdim=True), shape=RED_SHAPE),
    _unary("mean-dim12-keep", "MEAN_DIM", lambda T, a: a.mean(dim=(1, 2), keepdim=True), shape=RED_SHAPE),
    _unary("max", "MAX_ALL", lambda T, a: a.max(), avoid=top_tied),
    _unary("max", "MAX_ALL", lambda T, a: T.max(a), shape=RED_SHAPE, avoid=top_tied),
    _unary("min", "MIN_ALL", lambda T, a: a.min(), avoid=bottom_tied),
    _unary("min", "MIN_ALL", lambda T, a: T.min(a), shape=RED_SHAPE, avoid=bottom_tied),
    # reductions with dim (issue 3): values and indices, products with zeros, var/std, logsumexp, softmax
    _unary("max-dim1", "MAX_DIM", lambda T, a: a.max(1).values, shape=RED_SHAPE, avoid=top_tied_along(1)),
    _unary("max-dim-neg1-keep", "MAX_DIM", lambda T, a: a.max(-1, keepdim=True)[0], shape=RED_SHAPE,
           avoid=top_tied_along(-1)),
    _unary("max-fn-dim0", "MAX_DIM", lambda T, a: T.max(a, 0).values, avoid=top_tied_along(0)),
    _unary("max-fn-dim-kw", "MAX_DIM", lambda T, a: T.max(a, dim=-2, keepdim=True).values, shape=RED_SHAPE,
           avoid=top_tied_along(-2)),
    _unary("max-dim-0d", "MAX_DIM", lambda T, a: a.max(0).values, shape=()),
    _unary("min-dim1", "MIN_DIM", lambda T, a: a.min(dim=1).values, shape=RED_SHAPE, avoid=bottom_tied_along(1)),
    _unary("min-fn-dim-neg2-keep", "MIN_DIM", lambda T, a: T.min(a, -2, True)[0], shape=RED_SHAPE,
           avoid=bottom_tied_along(-2)),
    _unary("min-dim-neg1", "MIN_DIM", lambda T, a: a.min(-1).values * 2, avoid=bottom_tied_along(-1)),
    # the indices select the gradient: x * (position == index) passes it at the chosen elements only
    _unary("max-dim-indices", "MUL", lambda T, a: a * (a.max(1, keepdim=True).indices == T.arange(3)),
           avoid=top_tied_along(1)),
    _unary("argmax-dim", "MUL", lambda T, a: a * (a.argmax(-1, keepdim=True) == T.arange(3)), avoid=top_tied_along(-1)),
    _unary("argmin-dim0", "MUL", lambda T, a: a * (T.argmin(a, 0) == T.arange(2).reshape(2, 1)),
           avoid=bottom_tied_along(0)),
    _unary("argmax-flat", "MUL", lambda T, a: a * (a.argmax() == T.arange(6).reshape(2, 3)), avoid=top_tied),
    _unary("prod", "PROD_ALL", lambda T, a: a.prod()),
    _unary("prod", "PROD_ALL", lambda T, a: T.prod(a), shape=RED_SHAPE),
    _unary("prod-0d", "PROD_ALL", lambda T, a: a.prod(), shape=()),
    _unary("prod-dim1", "PROD_DIM", lambda T, a: a.prod(1), shape=RED_SHAPE),
    _unary("prod-dim-neg1-keep", "PROD_DIM", lambda T, a: T.prod(a, -1, keepdim=True), shape=RED_SHAPE),
    _unary("prod-dim-0d", "PROD_DIM", lambda T, a: a.prod(0), shape=()),
    # zeros: one zero (its gradient is the product of the others), two zeros in a slice (all 0), and
    # slices without a zero beside slices with one (torch then switches rules for the whole tensor)
    Case("prod-one-zero", "PROD_ALL", lambda T, a: a.prod(), (In((2, 3), zeros=(4,)),)),
    Case("prod-two-zeros", "PROD_ALL", lambda T, a: a.prod(), (In((2, 3), zeros=(1, 4)),)),
    Case("prod-dim-zeros", "PROD_DIM", lambda T, a: a.prod(1), (In((3, 4), zeros=(1, 6, 7)),)),
    Case("prod-dim0-zero-keep", "PROD_DIM", lambda T, a: a.prod(0, keepdim=True), (In((3, 4), zeros=(5,)),)),
    _unary("var", "VAR", lambda T, a: a.var()),
    _unary("var-dim1", "VAR", lambda T, a: a.var(1), shape=RED_SHAPE),
    _unary("var-dims-keep", "VAR", lambda T, a: a.var((0, -1), keepdim=True), shape=RED_SHAPE),
    _unary("var-unbiased-false", "VAR", lambda T, a: a.var(0, False)),
    _unary("var-unbiased-kw", "VAR", lambda T, a: a.var(unbiased=False), shape=RED_SHAPE),
    _unary("var-correction0", "VAR", lambda T, a: T.var(a, dim=-1, correction=0)),
    _unary("var-correction2-keep", "VAR", lambda T, a: a.var(1, correction=2, keepdim=True), shape=RED_SHAPE),
    _unary("var-0d-correction0", "VAR", lambda T, a: a.var(correction=0), shape=()),
    # one element, correction 1: 0 / 0, nan in value and gradient (torch warns)
    _unary("var-one-element", "VAR", lambda T, a: quietly(lambda: a.var(0)), shape=(1, 3)),
    _unary("std", "STD", lambda T, a: a.std(), transcendental=True),
    _unary("std-dim0", "STD", lambda T, a: a.std(0), transcendental=True),
    _unary("std-dims-correction0", "STD", lambda T, a: T.std(a, (1, 2), correction=0), shape=RED_SHAPE,
           transcendental=True),
    _unary("std-dim-unbiased-keep", "STD", lambda T, a: a.std(-1, True, True), transcendental=True),
    _unary("std-0d-correction0", "STD", lambda T, a: a.std(correction=0), shape=()),
    _unary("logsumexp-dim1", "LOGSUMEXP", lambda T, a: a.logsumexp(1), shape=RED_SHAPE, transcendental=True),
    _unary("logsumexp-dims-keep", "LOGSUMEXP", lambda T, a: T.logsumexp(a, (0, 2), keepdim=True), shape=RED_SHAPE,
           transcendental=True),
    _unary("logsumexp-neg1", "LOGSUMEXP", lambda T, a: T.logsumexp(a, dim=-1), transcendental=True),
    _unary("logsumexp-0d", "LOGSUMEXP", lambda T, a: a.logsumexp(0), shape=(), transcendental=True),
    _unary("softmax-dim1", "SOFTMAX", lambda T, a: a.softmax(1), transcendental=True),
    _unary("softmax-neg1", "SOFTMAX", lambda T, a: T.softmax(a, -1), shape=RED_SHAPE, transcendental=True),
    _unary("softmax-dim0", "SOFTMAX", lambda T, a: T.softmax(a, dim=0), shape=RED_SHAPE, transcendental=True),
    _unary("softmax-0d", "SOFTMAX", lambda T, a: a.softmax(-1), shape=(), transcendental=True),
    _unary("softmax-shifted-1e4", "SOFTMAX", lambda T, a: (a * 3 + 1e4).softmax(1), transcendental=True),
    Case("softmax-dtype", "SOFTMAX", lambda T, a: a.softmax(1, dtype=T.float64), (In((2, 3), dtype="float32"),),
         transcendental=True, fd_eps=1e-2, fd_tol=1e-4),
    _unary("log-softmax-dim1", "LOG_SOFTMAX", lambda T, a: a.log_softmax(1), transcendental=True),
    _unary("log-softmax-fn", "LOG_SOFTMAX", lambda T, a: T.log_softmax(a, dim=-2), shape=RED_SHAPE,
           transcendental=True),
    _unary("log-softmax-0d", "LOG_SOFTMAX", lambda T, a: T.log_softmax(a, 0), shape=(), transcendental=True),
    _unary("log-softmax-shifted-1e4", "LOG_SOFTMAX", lambda T, a: (a * 3 - 1e4).log_softmax(0), transcendental=True),
    _unary("norm", "NORM", lambda T, a: a.norm(), transcendental=True),
    _unary("norm", "NORM", lambda T, a: T.norm(a), shape=RED_SHAPE, transcendental=True),
    # shape ---------------------------------------------------------------------------------------
    _unary("reshape", "RESHAPE", lambda T, a: a.reshape(3, 2)),
    _unary("reshape-neg1", "RESHAPE", lambda T, a: a.reshape(4, -1), shape=RED_SHAPE),
    _unary("view", "RESHAPE", lambda T, a: a.view(-1)),
    _unary("view-tuple", "RESHAPE", lambda T, a: a.view((6, 4)), shape=RED_SHAPE),
    _unary("flatten", "RESHAPE", lambda T, a: a.flatten(), shape=RED_SHAPE),
    _unary("expand", "EXPAND", lambda T, a: a.expand(3, 4), shape=(3, 1)),
    _unary("expand-lead", "EXPAND", lambda T, a: a.expand(2, 3), shape=(3,)),
    _unary("expand-neg1", "EXPAND", lambda T, a: a.expand(2, -1, 4), shape=(3, 1)),
    _unary("expand-0d", "EXPAND", lambda T, a: a.expand(2, 2), shape=()),
    Case("expand-as", "EXPAND", lambda T, a, b: a.expand_as(b), (In((1, 4)), In((3, 4), grad=False))),
    _unary("clone", "CLONE", lambda T, a: a.clone()),
    _unary("clone-fn", "CLONE", lambda T, a: T.clone(a)),
    # dtype conversions: the input dtype is fixed so that the conversion is not a no-op
    Case("to-float64", "CAST", lambda T, a: a.to(T.float64), (In((2, 3), dtype="float32"),), fd_eps=1e-2, fd_tol=1e-4),
    Case("double", "CAST", lambda T, a: a.double(), (In((2, 3), dtype="float32"),), fd_eps=1e-2, fd_tol=1e-4),
    Case("float", "CAST", lambda T, a: a.float(), (In((2, 3), dtype="float64"),), fd_eps=1e-2, fd_tol=1e-4),
    Case("to-dtype-kw", "CAST", lambda T, a: a.to(dtype=T.float32), (In((2, 3), dtype="float64"),),
         fd_eps=1e-2, fd_tol=1e-4),
    # transposes, squeeze/unsqueeze (issue 3) ------------------------------------------------------
    _unary("permute", "PERMUTE", lambda T, a: a.permute(2, 0, 1), shape=RED_SHAPE),
    _unary("transpose", "PERMUTE", lambda T, a: a.transpose(0, 2), shape=RED_SHAPE),
    _unary("t", "PERMUTE", lambda T, a: a.t()),
    _unary("T", "PERMUTE", lambda T, a: a.T * 2),
    _unary("mT", "PERMUTE", lambda T, a: a.mT, shape=RED_SHAPE),
    _unary("squeeze", "RESHAPE", lambda T, a: a.squeeze(), shape=(2, 1, 3)),
    _unary("squeeze-dim", "RESHAPE", lambda T, a: a.squeeze(1), shape=(2, 1, 3)),
    _unary("unsqueeze", "RESHAPE", lambda T, a: a.unsqueeze(-1)),
    _unary("flatten-1", "RESHAPE", lambda T, a: a.flatten(1), shape=RED_SHAPE),
    # matrix products: gradients are products with transposed operands. Sums of products cancel, so
    # float32 forward values get the looser (transcendental) tolerance against torch.
    Case("mm", "MATMUL", lambda T, a, b: a.mm(b), (In((3, 4)), In((4, 5))), transcendental=True),
    Case("matmul-2d", "MATMUL", lambda T, a, b: a @ b, (In((3, 4)), In((4, 2))), transcendental=True),
    Case("matmul-t", "MATMUL", lambda T, a, b: a.t() @ b.t(), (In((4, 3)), In((2, 4))), transcendental=True),
    Case("matmul-3d-2d", "MATMUL", lambda T, a, b: a @ b, (In((2, 3, 4)), In((4, 5))), transcendental=True),
    Case("matmul-bcast", "MATMUL", lambda T, a, b: T.matmul(a, b), (In((2, 1, 3, 4)), In((3, 4, 2))), transcendental=True),
    Case("bmm", "MATMUL", lambda T, a, b: a.bmm(b), (In((2, 3, 4)), In((2, 4, 5))), transcendental=True),
    Case("mv", "MV", lambda T, a, b: a.mv(b), (In((3, 4)), In((4,))), transcendental=True),
    Case("matmul-1d-2d", "MATMUL", lambda T, a, b: a @ b, (In((4,)), In((4, 3))), transcendental=True),
    Case("dot", "DOT", lambda T, a, b: a.dot(b), (In((5,)), In((5,))), transcendental=True),
    Case("matmul-1d-1d", "DOT", lambda T, a, b: T.matmul(a, b), (In((5,)), In((5,))), transcendental=True),
    Case("outer", "MUL", lambda T, a, b: T.outer(a, b), (In((3,)), In((4,))), transcendental=True),
    # indexing, slicing, joining (SLICE views; ASSEMBLE writes parts into regions) ------------------
    _unary("getitem-int", "SLICE", lambda T, a: a[1], shape=RED_SHAPE),
    _unary("getitem-slice", "SLICE", lambda T, a: a[1:3], shape=(4, 3)),
    _unary("getitem-step", "SLICE", lambda T, a: a[:, ::2] * 2, shape=(3, 5)),
    _unary("getitem-mixed", "SLICE", lambda T, a: a[0, None, 1:, -1], shape=RED_SHAPE),
    _unary("getitem-ellipsis", "SLICE", lambda T, a: a[..., 2], shape=RED_SHAPE),
    _unary("narrow", "SLICE", lambda T, a: a.narrow(1, 1, 2), shape=(3, 4)),
    _unary("split", "SLICE", lambda T, a: a.split(2)[1] * 3, shape=(5, 2)),
    _unary("chunk", "SLICE", lambda T, a: a.chunk(2, 1)[0], shape=(2, 5)),
    _unary("unbind", "SLICE", lambda T, a: a.unbind(1)[2], shape=(2, 3)),
    Case("cat", "ASSEMBLE", lambda T, a, b: T.cat([a, b, a], 1), (In((2, 3)), In((2, 1)))),
    Case("cat-0", "ASSEMBLE", lambda T, a, b: T.cat([a * 2, b]), (In((1, 3)), In((2, 3)))),
    Case("stack", "STACK", lambda T, a, b: T.stack([a, b], 1), (In((2, 3)), In((2, 3)))),
    Case("stack-neg", "STACK", lambda T, a, b: T.stack((a, b, a), -1), (In((3,)), In((3,)))),
    Case("setitem", "SETITEM", _setitem_case, (In((3, 4)), In((2,)))),
    # loads at computed positions (repeated indices: gradients add up)
    _unary("gather-1", "GATHER", lambda T, a: a.gather(1, T.tensor([[0, 2, 2], [1, 1, 0]])), shape=(2, 3)),
    _unary("gather-0", "GATHER", lambda T, a: a.gather(0, T.tensor([[1, 0, 1, 1]])) * 3, shape=(2, 4)),
    _unary("gather-t", "GATHER", lambda T, a: a.t().gather(1, T.tensor([[1], [0], [1]])), shape=(2, 3)),
    _unary("index-select", "INDEX_SELECT", lambda T, a: a.index_select(1, T.tensor([2, 0, 2, 2])), shape=(3, 4)),
    _unary("index-select-0", "INDEX_SELECT", lambda T, a: T.index_select(a, 0, T.tensor([1, 1])), shape=RED_SHAPE),
    _unary("cumsum-1", "CUMSUM", lambda T, a: a.cumsum(1), shape=(3, 7)),
    _unary("cumsum-0", "CUMSUM", lambda T, a: T.cumsum(a, dim=0) * 2, shape=(5, 2)),
    _unary("cumsum-neg", "CUMSUM", lambda T, a: a.cumsum(-1), shape=RED_SHAPE),
    Case("scatter-add", "SCATTER_ADD", lambda T, a, b: a.scatter_add(1, T.tensor([[0, 0], [2, 1]]), b * 2),
         (In((2, 3)), In((2, 2)))),
    Case("setitem-column", "SETITEM", _setitem_column_case, (In((3, 4)), In((3,)))),
    # compositions: gradients flowing through several ops, shared inputs, broadcast + reduce ---------
    Case("chain-mse", "MEAN_ALL", lambda T, a, b: ((a - b) ** 2).mean(), (In((3, 1)), In((1, 4)))),
    Case("chain-softmax", "DIV", lambda T, a: a.exp() / a.exp().sum(1, keepdim=True), (In((2, 3)),),
         transcendental=True),
    Case("chain-reuse", "ADD", lambda T, a: a * a.sin() + a.tanh() * a, (In((2, 3)),), transcendental=True),
    Case("chain-bcast-sum", "SUM_DIM", lambda T, a, b: (a * b).sum(0), (In((3, 1)), In((1, 4)))),
    Case("chain-two-layer", "MATMUL", lambda T, x, w1, w2: (x.mm(w1).clamp(min=0).mm(w2) - 1.0).pow(2).sum(),
         (In((4, 6), grad=False), In((6, 5)), In((5, 3))), avoid=lambda x, w1, w2: bool((abs(x @ w1) < 0.05).any())),
    Case("chain-relu-mlp", "RELU", lambda T, a, b: ((a * b).relu().sum(1) + 1.0).sqrt(),
         (In((3, 1)), In((1, 4))), avoid=lambda a, b: near(a * b, 0.0), transcendental=True),
]

# Primitive reductions are never recorded: the public reductions are composites (SUM_ALL, SUM_DIM,
# MAX_ALL, PROD_DIM, ...) that build them with `Tensor._reduced`, outside autograd, and own the gradient rule.
UNREACHABLE = {
    "SUM": "graph primitive behind SUM_ALL / SUM_DIM / MEAN_*; never recorded by autograd",
    "MAX": "graph primitive behind MAX_ALL; never recorded by autograd",
    "MIN": "graph primitive behind MIN_ALL; never recorded by autograd",
    "PROD": "graph primitive behind PROD_ALL / PROD_DIM; never recorded by autograd",
}


def differentiable_ops(OPS):
    return {name for name, op in OPS.items() if op.differentiable}


def recorded_ops(out):
    """Names of the OPS entries recorded in the graph behind `out` (symgrad)."""
    names, stack, seen = set(), [out.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        op = getattr(fn, "op", None)
        if op is not None:
            names.add(op.name)
        stack.extend(child for child, _ in fn.next_functions)
    return names


def params(cases, *bug_fields):
    """pytest params with readable ids; a case with a known bug in one of `bug_fields` is xfail(strict)."""
    out = []
    for case in cases:
        reason = next((getattr(case, f) for f in bug_fields if getattr(case, f)), None)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# -- nn: layers and losses (symgrad.nn.functional, torch.nn.functional) -----------------------------
def _F(T):
    return T.nn.functional


def _erf_case(T, a):
    # NOTE: symgrad has no public erf yet (tensor.py is another engineer's); its op is reached through F
    return T.erf(a) if hasattr(T, "erf") else T.nn.functional._erf(a)


NN_CASES: list[Case] = [
    _unary("erf", "ERF", _erf_case, transcendental=True),
    # NOTE: torch's addmm accumulates the bias inside the GEMM; symgrad adds it after, a different
    # rounding of float32 sums that may cancel, hence the looser forward tolerance
    Case("linear", "ADDMM", lambda T, x, w, b: _F(T).linear(x, w, b), (In((4, 3)), In((2, 3)), In((2,))),
         transcendental=True),
    Case("linear-3d", "ADDMM", lambda T, x, w, b: _F(T).linear(x, w, b), (In((2, 2, 3)), In((2, 3)), In((2,))),
         transcendental=True),
    Case("linear-x-const", "ADDMM", lambda T, x, w, b: _F(T).linear(x, w, b),
         (In((4, 3), grad=False), In((2, 3)), In((2,))), transcendental=True),
    _unary("leaky-relu", "LEAKY_RELU", lambda T, a: _F(T).leaky_relu(a, 0.2)),
    _unary("gelu", "GELU", lambda T, a: _F(T).gelu(a), transcendental=True),
    _unary("gelu-tanh", "GELU", lambda T, a: _F(T).gelu(a, approximate="tanh"), transcendental=True),
    _unary("silu", "SILU", lambda T, a: _F(T).silu(a), transcendental=True),
    _unary("embedding", "EMBEDDING", lambda T, w: _F(T).embedding(T.tensor([[1, 0], [1, 3]]), w), shape=(4, 3)),
    # the padding row's gradient is 0 by convention (not by calculus), so its uses are masked out here for
    # the finite differences; tests/test_nn_functional.py checks the convention against torch
    _unary("embedding-pad", "EMBEDDING", lambda T, w: _F(T).embedding(T.tensor([2, 0, 2]), w, padding_idx=2)
           * T.tensor([[0.0], [1.0], [0.0]], dtype=w.dtype), shape=(4, 3)),
    _unary("layer-norm", "LAYER_NORM", lambda T, a: _F(T).layer_norm(a, (3,)), transcendental=True),
    Case("layer-norm-affine", "LAYER_NORM", lambda T, a, w, b: _F(T).layer_norm(a, (2, 3), w, b),
         (In((2, 2, 3)), In((2, 3)), In((2, 3))), transcendental=True),
    *[Case(f"mse-{r}", "MSE_LOSS", lambda T, a, b, r=r: _F(T).mse_loss(a, b, reduction=r), (In((2, 3)), In((2, 3))))
      for r in ("mean", "sum", "none")],
    *[Case(f"smooth-l1-{r}", "SMOOTH_L1_LOSS", lambda T, a, b, r=r: _F(T).smooth_l1_loss(a, b, reduction=r, beta=0.7),
           (In((2, 3)), In((2, 3))), avoid=lambda a, b: near(np.abs(a - b), 0.7) or near(a, b))
      for r in ("mean", "sum", "none")],
    Case("huber", "HUBER_LOSS", lambda T, a, b: _F(T).huber_loss(a, b, delta=1.5), (In((2, 3)), In((2, 3))),
         avoid=lambda a, b: near(np.abs(a - b), 1.5)),
    *[_unary(f"nll-{r}", "NLL_LOSS", lambda T, a, r=r: _F(T).nll_loss(a, T.tensor([0, 2, 2, -100]), reduction=r),
             shape=(4, 3)) for r in ("mean", "sum", "none")],
    _unary("nll-weight", "NLL_LOSS", lambda T, a: _F(T).nll_loss(
        a, T.tensor([0, 2, 1, 1]), weight=T.tensor([0.5, 2.0, 1.0], dtype=a.dtype)), shape=(4, 3)),
    _unary("nll-2d", "NLL_LOSS", lambda T, a: _F(T).nll_loss(a, T.tensor([[0, 2], [1, 1]])), shape=(2, 3, 2)),
    _unary("cross-entropy", "NLL_LOSS", lambda T, a: _F(T).cross_entropy(a, T.tensor([0, 2, 1, 1])), shape=(4, 3),
           transcendental=True),
    *[Case(f"bce-{r}", "BINARY_CROSS_ENTROPY",
           lambda T, a, b, r=r: _F(T).binary_cross_entropy(a.sigmoid(), b.sigmoid(), reduction=r),
           (In((2, 3)), In((2, 3))), transcendental=True) for r in ("mean", "sum", "none")],
    Case("bce-weight", "BINARY_CROSS_ENTROPY", lambda T, a, b: _F(T).binary_cross_entropy(
        a.sigmoid(), b.sigmoid(), weight=T.tensor([1.0, 2.0, 0.5], dtype=a.dtype)), (In((2, 3)), In((2, 3))),
         transcendental=True),
    *[Case(f"bce-logits-{r}", "BCE_WITH_LOGITS",
           lambda T, a, b, r=r: _F(T).binary_cross_entropy_with_logits(a, b.sigmoid(), reduction=r),
           (In((2, 3)), In((2, 3))), transcendental=True) for r in ("mean", "sum", "none")],
    Case("bce-logits-pos-weight", "BCE_WITH_LOGITS", lambda T, a, b: _F(T).binary_cross_entropy_with_logits(
        a, b.sigmoid(), pos_weight=T.tensor([1.0, 3.0, 0.5], dtype=a.dtype)), (In((2, 3)), In((2, 3))),
         transcendental=True),
]
CASES += NN_CASES

# -- convolution, pooling, batch norm, pad (tests/opcases_conv.py) ----------------------------------
from opcases_conv import CONV_CASES, CONV_UNREACHABLE  # noqa: E402

CASES += CONV_CASES
UNREACHABLE.update(CONV_UNREACHABLE)
