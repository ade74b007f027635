"""Gradients of every differentiable op in `symgrad.ops.OPS`, without torch.

Guards:
* each case of the shared table (tests/opcases.py) against float64 central finite differences of
  symgrad's own forward, with a random upstream gradient, on inputs away from kinks and on the
  broadcasting shape pairs (3,1)x(1,4), (2,3)x(3,), ()x(2,2), (4,)x(); gradients must also have the
  input's shape and dtype;
* that each case really records the op it claims, and that no differentiable entry of OPS is left
  without a case (so a new op cannot land untested);
* each elementwise VJP rule of the table against `g * sympy.diff(formula, x_i)`: the rule is run on
  symgrad tensors, and its gradient graph is turned into SymPy by the scheduler's expression builder
  (the same translation that feeds codegen), then compared symbolically, or at random points away
  from a kink where torch's convention is not the derivative SymPy takes there.
"""
from __future__ import annotations

import inspect
import os
import sys
import zlib

import numpy as np
import pytest
import sympy

sys.path.insert(0, os.path.dirname(__file__))

import symgrad  # noqa: E402
from symgrad.graph import pending_postorder  # noqa: E402
from symgrad.ops import OPS  # noqa: E402
from symgrad.tensor import _apply  # noqa: E402

from opcases import CASES, UNREACHABLE, differentiable_ops, draw, params, recorded_ops  # noqa: E402

IDS = [c.id for c in CASES]


def test_case_ids_are_unique():
    assert len(set(IDS)) == len(IDS), sorted(i for i in IDS if IDS.count(i) > 1)


# -- coverage of the op table ----------------------------------------------------------------------
def test_every_differentiable_op_has_a_case():
    covered = {c.op for c in CASES}
    missing = differentiable_ops(OPS) - covered - set(UNREACHABLE)
    assert not missing, f"differentiable ops without a gradient case in tests/opcases.py: {sorted(missing)}"


def test_case_table_names_real_ops():
    assert {c.op for c in CASES} <= set(OPS), {c.op for c in CASES} - set(OPS)
    assert all(OPS[c.op].differentiable for c in CASES)
    # a stale exclusion (op removed, renamed or made non-differentiable) must be cleaned up
    for name in UNREACHABLE:
        assert name in OPS and OPS[name].differentiable, name
        assert name not in {c.op for c in CASES}, f"{name} is excluded but also has a case"


def _leaves(case, arrays, requires_grad=True):
    return [symgrad.tensor(a, requires_grad=requires_grad and spec.differentiable)
            for spec, a in zip(case.inputs, arrays)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_records_its_op(case):
    arrays = draw(case)
    out = case.fn(symgrad, *_leaves(case, arrays))
    assert out.requires_grad and out.grad_fn is not None
    assert case.op in recorded_ops(out), f"{case.id} was meant to test {case.op}, recorded {recorded_ops(out)}"


# -- finite differences ----------------------------------------------------------------------------
def _weighted_value(case, arrays, weight):
    """sum(f(inputs) * weight) in float64, computed by symgrad without autograd."""
    with symgrad.no_grad():
        out = case.fn(symgrad, *(symgrad.tensor(a) for a in arrays))
        return float(np.sum(out.numpy().astype(np.float64) * weight))


def _finite_difference(case, arrays, k, weight):
    x = arrays[k]
    grad = np.zeros(x.shape, np.float64)
    for index in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] = x[index] + case.fd_eps
        minus[index] = x[index] - case.fd_eps
        step = float(plus[index]) - float(minus[index])  # the step float32 inputs really took
        up = _weighted_value(case, [*arrays[:k], plus, *arrays[k + 1:]], weight)
        down = _weighted_value(case, [*arrays[:k], minus, *arrays[k + 1:]], weight)
        grad[index] = (up - down) / step
    return grad


@pytest.mark.parametrize("case", params(CASES, "grad_bug"))
def test_gradient_matches_finite_differences(case):
    arrays = draw(case, "float64")
    leaves = _leaves(case, arrays)
    out = case.fn(symgrad, *leaves)
    rng = np.random.default_rng(zlib.crc32(case.id.encode()) + 1)
    weight = rng.standard_normal(tuple(out.shape))
    out.backward(symgrad.tensor(np.asarray(weight).astype(out.numpy(force=True).dtype)))
    checked = 0
    for k, (spec, leaf) in enumerate(zip(case.inputs, leaves)):
        if not spec.differentiable:
            assert leaf.grad is None
            continue
        assert leaf.grad is not None, f"input {k} got no gradient"
        assert tuple(leaf.grad.shape) == tuple(leaf.shape), f"input {k}: grad shape {leaf.grad.shape}"
        assert leaf.grad.dtype == leaf.dtype, f"input {k}: grad dtype {leaf.grad.dtype} for {leaf.dtype}"
        expected = _finite_difference(case, arrays, k, weight)
        np.testing.assert_allclose(leaf.grad.numpy().astype(np.float64), expected, rtol=case.fd_tol,
                                   atol=case.fd_tol, err_msg=f"{case.id}: gradient of input {k}")
        checked += 1
    assert checked


# -- VJP rules against sympy.diff ------------------------------------------------------------------
ELEMENTWISE = sorted(name for name, op in OPS.items()
                     if op.kind == "elementwise" and op.formula is not None and op.vjp is not None)

# The operand patterns the public API hands to each rule: "T" is a tensor, numbers are Python numbers
# (x + 2, 2 - x, x ** 0.5, 2 ** x, where(c, x, 0.0), ...). Ops not listed get all-tensor operands.
VARIANTS = {
    "ADD": [("T", "T"), ("T", 2), ("T", 2.5)],
    "SUB": [("T", "T"), ("T", 1.5), (2, "T")],
    "MUL": [("T", "T"), ("T", 3), ("T", 0.5)],
    "DIV": [("T", "T"), ("T", 2.0)],
    "POW": [("T", "T"), ("T", 2), ("T", 3), ("T", 0.5), ("T", -1.5), ("T", 0), (2, "T"), (2.5, "T")],
    "WHERE": [("B", "T", "T"), ("B", "T", 0.0), ("B", 0.0, "T")],
}
# Inputs that must be positive for the formula to be real (and differentiable).
POSITIVE = {"LOG": (0,), "SQRT": (0,), "POW": (0,)}
# Compared at random points instead of symbolically, away from the kink, because torch's convention
# at the kink is not the derivative SymPy takes there (the rules carry the torch convention):
NUMERIC = {
    "RELU": "Max(x, 0)' is Heaviside(x) (1/2 at 0); torch's relu gradient is 0 at 0",
    "SIGN": "sign(x)' is 2*DiracDelta(x); torch's sign gradient is 0 everywhere",
    "MAXIMUM": "Max(a, b)' is Heaviside(a - b); the rule is a Piecewise over a < b, a == b, a > b",
    "MINIMUM": "Min(a, b)' is Heaviside(b - a); the rule is a Piecewise over a > b, a == b, a < b",
    "WHERE": "the condition is a boolean, SymPy keeps Piecewise derivatives unevaluated",
    "ERF": "the rule's factor 2/sqrt(pi) is a Python float (a runtime scalar), so it reads back as a rational",
}
# Symbolic simplification of the pow rule leaves Piecewise(0 if a == 0 and b >= 0) branches that need
# the positivity of the base; the symbols carry it, so these are symbolic too.


def _variant_id(name, variant):
    return f"{name}({','.join(str(v) for v in variant)})"


def _arity(formula):
    """How many operands an elementwise formula takes (SymPy classes declare it in `nargs`)."""
    nargs = getattr(formula, "nargs", None)
    if nargs is not None:
        return min(nargs) if isinstance(nargs, (set, frozenset)) or nargs.is_finite_set else 2
    return sum(1 for p in inspect.signature(formula).parameters.values()
               if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


SYMBOLIC_CASES = []
for _name in ELEMENTWISE:
    _default = [("B", "T", "T")] if _name == "WHERE" else [("T",) * _arity(OPS[_name].formula)]
    for _variant in VARIANTS.get(_name, _default):
        SYMBOLIC_CASES.append(pytest.param(_name, _variant, id=_variant_id(_name, _variant)))


def test_symbolic_cases_cover_every_elementwise_rule():
    assert {p.values[0] for p in SYMBOLIC_CASES} == set(ELEMENTWISE)
    assert "CAST" not in ELEMENTWISE  # CAST has no SymPy formula (codegen's typed conversions)


def _to_sympy(tensor, symbol_of_leaf):
    """The SymPy expression of a 0-d tensor's pending graph over the given leaf nodes, translated by
    the scheduler's expression builder (runtime float scalars become exact rationals)."""
    from symgrad.schedule import _ExpressionBuilder

    node = tensor._node
    leaf_ids = list(symbol_of_leaf)
    slot_of_leaf = {leaf: k for k, leaf in enumerate(leaf_ids)}
    scalars = {id(n): sympy.nsimplify(n.arg) for n in pending_postorder([node]) if n.op == "SCALAR"}
    builder = _ExpressionBuilder(slot_of_leaf, {}, set(), scalars, node)
    expr = builder.expr(node, ())
    replace = {load.symbol: symbol_of_leaf[leaf_ids[load.buffer]] for load in builder.loads.values()}
    return sympy.sympify(expr).xreplace(replace)


def _symbolic_vjp(name, variant):
    """(vjp expressions per tensor operand, expected g * d formula / d operand, symbols)."""
    op = OPS[name]
    g_sym = sympy.Symbol("g", real=True)
    g_leaf = symgrad.tensor(np.array(0.7))
    symbols, operands, exact, symbol_of_leaf = [], [], [], {id(g_leaf._node): g_sym}
    for k, kind in enumerate(variant):
        if kind in ("T", "B"):
            if kind == "B":
                s = sympy.Symbol(f"c{k}", integer=True, nonnegative=True)
                leaf = symgrad.tensor(np.array(True))
            else:
                s = sympy.Symbol(f"x{k}", positive=True) if k in POSITIVE.get(name, ()) else sympy.Symbol(f"x{k}", real=True)
                leaf = symgrad.tensor(np.array(1.0))
            symbol_of_leaf[id(leaf._node)] = s
            symbols.append(s)
            operands.append(leaf)
            exact.append(sympy.Ne(s, 0) if kind == "B" else s)
        else:
            symbols.append(None)
            operands.append(kind)
            exact.append(sympy.nsimplify(kind))
    assert g_leaf.dtype is symgrad.float64
    with symgrad.no_grad():
        out = _apply(op, tuple(operands))
        grads = op.vjp(g_leaf, list(operands), out, None)
    formula = op.formula(*exact)
    got, want = {}, {}
    for k, kind in enumerate(variant):
        if kind != "T":
            continue
        assert grads[k] is not None, f"{name}: no gradient for tensor operand {k}"
        got[k] = _to_sympy(grads[k], symbol_of_leaf) if isinstance(grads[k], symgrad.Tensor) else sympy.nsimplify(grads[k])
        want[k] = g_sym * sympy.diff(formula, symbols[k])
    return got, want, [g_sym, *[s for s in symbols if s is not None]]


def _random_point(name, variant, symbols, rng):
    while True:
        point = {}
        for s in symbols:
            if s.name == "g":
                point[s] = sympy.Float(rng.standard_normal())
            elif s.name.startswith("c"):
                point[s] = sympy.Integer(int(rng.integers(0, 2)))
            elif s.is_positive:
                point[s] = sympy.Float(rng.uniform(0.5, 2.0))
            else:
                point[s] = sympy.Float(rng.uniform(0.25, 2.0) * rng.choice([-1, 1]))
        xs = [float(v) for s, v in point.items() if s.name.startswith("x")]
        if len(xs) < 2 or abs(xs[0] - xs[1]) > 0.05:  # maximum/minimum: away from ties
            return point


# The rule given a Python-number base (`2 ** x`).
RULE_BUGS: dict = {}  # (op, operands) -> "BUG: ..." for rules known to be wrong (none now)


@pytest.mark.parametrize("name,variant", [
    pytest.param(*p.values, id=p.id, marks=[pytest.mark.xfail(strict=True, reason=RULE_BUGS[tuple(p.values)])]
                 if tuple(p.values) in RULE_BUGS else [])
    for p in SYMBOLIC_CASES])
def test_vjp_rule_matches_sympy_diff(name, variant):
    got, want, symbols = _symbolic_vjp(name, variant)
    if name in NUMERIC:
        rng = np.random.default_rng(zlib.crc32(_variant_id(name, variant).encode()))
        for _ in range(24):
            point = _random_point(name, variant, symbols, rng)
            for k in got:
                a = complex(sympy.N(got[k].subs(point)))
                b = complex(sympy.N(want[k].subs(point)))
                assert abs(a - b) <= 1e-12 * (1 + abs(b)), f"{name} operand {k} at {point}: {got[k]} vs {want[k]}"
        if name in ("MAXIMUM", "MINIMUM"):
            # At a tie torch gives each input half the gradient, which is SymPy's Heaviside(0) = 1/2.
            g, x0, x1 = symbols
            point = {g: sympy.Integer(3), x0: sympy.Rational(1, 3), x1: sympy.Rational(1, 3)}
            for k in got:
                assert got[k].subs(point) == want[k].subs(point) == sympy.Rational(3, 2), (name, k)
        return
    for k in got:
        difference = sympy.simplify(got[k] - want[k])
        assert difference == 0, f"{name} operand {k}: vjp {got[k]} but g * diff(formula) = {want[k]}"
