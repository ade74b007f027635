"""Rewrites of kernel bodies before lowering: cheaper forms of what the SymPy formulas say.

The frontend writes each op as SymPy in its plainest form (sigmoid is `1/(1 + exp(-x))`) and its
gradient formulas repeat those forms: the body of a fused forward+backward kernel of
`tanh(x) * sigmoid(x)` divides by `1 + exp(-x)` four times. Divisions are the slowest vector
instruction there is (a 16-lane `vdivps` blocks its port for ~10 cycles), so a kernel that is one pass
over memory can still be compute-bound on them. `prepare` rewrites the bodies of one kernel:

* `(1 + exp(v))**-k` becomes `Sigmoid(-v)**k`, computed by mathlib's stable sigmoid (one division,
  accurate for large |v| where `1/(1 + exp(-v))` overflows), shared by every use;
* `tanh(u)` and `Sigmoid(u)` of one `u` are found (`tanh_sigmoid_pairs`) and computed together
  from one exp range reduction (`mathlib.emit_tanh_sigmoid`, the same bits as each alone);
* sums whose terms share factors or a rational coefficient multiply by them once (`factor_add`).

Each rewrite depends on one expression only, never on what else the kernel computes: a value has the
same bits whichever kernel it is fused into (replay relies on that). So a reciprocal used by several
stores is not shared: whether it is would depend on the fusion. Every rewrite is local and linear in
the size of the expression DAG (memoised on subexpressions), so it is safe on the large gradient
bodies the scheduler produces.

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> prepare([x / (1 + sympy.exp(-x)) + (1 - 1 / (1 + sympy.exp(-x)))])
[x*Sigmoid(x) - Sigmoid(x) + 1]
"""
from __future__ import annotations

from collections import Counter

import sympy


class Sigmoid(sympy.Function):
    """`1 / (1 + exp(-x))`, lowered to mathlib's sigmoid."""

    nargs = 1

    def _eval_is_real(self):
        return self.args[0].is_real


def prepare(exprs):
    """The kernel bodies `exprs` with the rewrites above applied (same order)."""
    memo: dict = {}
    return [_rewrite(e, memo) for e in exprs]


def _sigmoid_of(base):
    """v such that base == 1 + exp(-v)... returned as the sigmoid's argument, or None."""
    if not base.is_Add or len(base.args) != 2:
        return None
    one, other = base.args
    if one != 1:
        one, other = other, one
    if one != 1 or not isinstance(other, sympy.exp):
        return None
    return -other.args[0]


def _rewrite(e, memo):
    found = memo.get(e)
    if found is not None:
        return found
    if not e.args or isinstance(e, (sympy.Symbol, sympy.Number)):
        memo[e] = e
        return e
    if e.is_Pow and e.exp.is_Integer and e.exp < 0:
        argument = _sigmoid_of(e.base)
        if argument is not None:
            result = Sigmoid(_rewrite(argument, memo)) ** (-e.exp)
            memo[e] = result
            return result
    args = [_rewrite(a, memo) for a in e.args]
    result = e if all(a is b for a, b in zip(args, e.args)) else e.func(*args)
    memo[e] = result
    return result


def tanh_sigmoid_pairs(exprs) -> set:
    """Arguments `u` for which the bodies compute both `tanh(u)` and `Sigmoid(u)`: mathlib computes
    the two from one exp range reduction."""
    tanh_of, sigmoid_of = set(), set()
    seen: set = set()
    stack = list(exprs)
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        if isinstance(e, sympy.tanh):
            tanh_of.add(e.args[0])
        elif isinstance(e, Sigmoid):
            sigmoid_of.add(e.args[0])
        stack.extend(e.args)
    return tanh_of & sigmoid_of


MAX_FACTORED_TERMS = 16
MAX_CONTENT_SPREAD = 1 << 10


def factor_add(e):
    """`e` (an Add) as (content, common, inner) with e == content * Mul(*common) * inner, pulling out
    the factors every term shares and the rational content of their coefficients, or None when there
    is nothing to pull out. The gradient of a mean multiplies every term by the upstream value and
    1/N: `y/N * (a + b + c)` costs two products where `a*y/N + b*y/N + c*y/N` costs six.

    The content is pulled out only when no term has a unit coefficient and while the coefficients stay
    within a factor of 2**10 of each other, so that scaling a term up cannot overflow where the
    original did not.

    >>> import sympy
    >>> x, y, z = sympy.symbols("x y z", real=True)
    >>> factor_add(x * y / 4 + y * z / 8)
    (1/8, [y], 2*x + z)
    """
    terms = e.args
    if len(terms) < 2 or len(terms) > MAX_FACTORED_TERMS:
        return None
    split = [term.as_coeff_Mul() for term in terms]
    if not all(c.is_Rational for c, _ in split):
        return None
    factor_lists = [Counter(sympy.Mul.make_args(rest)) for _, rest in split]
    common = factor_lists[0]
    for factors in factor_lists[1:]:
        common = common & factors
    common.pop(sympy.S.One, None)
    numerators = [abs(c.p) for c, _ in split]
    denominators = [c.q for c, _ in split]
    content = sympy.Rational(_gcd(numerators), _lcm(denominators))
    coefficients = [c / content for c, _ in split]
    # only when every term pays for its coefficient anyway: `x - s/6` stays as it is (as `(6x - s)/6`
    # it would cost as much, round differently, and hand LLVM a product to contract or not)
    if any(abs(c) == 1 for c, _ in split) or max(abs(c) for c in coefficients) > MAX_CONTENT_SPREAD:
        content, coefficients = sympy.S.One, [c for c, _ in split]
    if not common and content == 1:
        return None
    inner_terms = []
    for coefficient, factors in zip(coefficients, factor_lists):
        left = factors - common
        inner_terms.append(sympy.Mul(coefficient, *[f for f, n in left.items() for _ in range(n)]))
    return content, [f for f, n in common.items() for _ in range(n)], sympy.Add(*inner_terms)


def _gcd(values):
    from math import gcd

    out = 0
    for v in values:
        out = gcd(out, int(v))
    return out or 1


def _lcm(values):
    from math import lcm

    out = 1
    for v in values:
        out = lcm(out, int(v))
    return out
