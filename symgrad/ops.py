"""THE op table: every operation symgrad can differentiate, declared once.

An entry says how the op computes (a SymPy `formula` for elementwise primitives, which the scheduler
fuses into kernels; or a `forward` written in other ops for composites), its dtype rule, the name of
its `grad_fn` in torch, and its `vjp`: given the incoming gradient `g`, the inputs and the output, the
gradient for each input, written with ordinary tensor operations so that gradients are graph too
(and can be differentiated again). Gradients of broadcast inputs are summed back to the input's shape
by the autograd walk, not by each rule.

A composite entry without a `vjp` gets its gradient for free: the walk differentiates its `forward`.
Like `derivatives.yaml`, the table reads top to bottom as one list of rules. A composite `forward` may
branch on shapes, ints and None, never on a float's value: floats are runtime values (see replay.py).

>>> OPS["MUL"].grad_fn, OPS["MUL"].formula(*sympy.symbols("a b"))
('MulBackward0', a*b)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import sympy

from codegen import IsNan

# dtype rules: how an op's result dtype follows from its promoted operand dtype
PROMOTE = "promote"      # a + b: torch's result_type
TO_FLOAT = "float"       # exp(int) is float32, like torch
TO_BOOL = "bool"         # comparisons
KEEP = "keep"            # the first operand's dtype (casts, reductions, movement)


@dataclass(frozen=True)
class Op:
    name: str
    grad_fn: str
    kind: str                                  # "elementwise" | "reduce" | "movement" | "composite"
    formula: Callable | None = None            # elementwise: SymPy forward formula
    vjp: Callable | None = None                # (g, inputs, out, arg) -> one gradient per input
    dtype_rule: str = PROMOTE
    forward: Callable | None = None            # composite: forward written in other ops
    differentiable: bool = True
    saves: bool = True                         # False: backward needs no input values (only shapes)


def _where(mask, value, other):
    """where(mask, value, other) that also takes Python numbers for value and other."""
    return mask._select(value, other)


def _maximum_vjp(g, inputs, out, arg):
    # NOTE: torch splits the gradient in half between tied inputs of maximum/minimum.
    a, b = inputs
    shared = _where(a == b, g / 2, g)
    return _where(a < b, 0.0, shared), _where(a > b, 0.0, shared)


def _minimum_vjp(g, inputs, out, arg):
    a, b = inputs
    shared = _where(a == b, g / 2, g)
    return _where(a > b, 0.0, shared), _where(a < b, 0.0, shared)


def _pow_vjp(g, inputs, out, arg):
    base, exponent = inputs
    d_base = d_exponent = None
    if not isinstance(base, (int, float)):
        if isinstance(exponent, (int, float)):
            d_base = g * 0.0 if exponent == 0 else g * exponent * base ** (exponent - 1)
        else:
            # NOTE: torch makes d/da a**b zero where b == 0, where b * a**(b-1) is nan at a == 0.
            d_base = _where(exponent == 0, 0.0, g * exponent * base ** (exponent - 1))
    if not isinstance(exponent, (int, float)):
        if isinstance(base, (int, float)):
            d_exponent = g * out * math.log(base) if base > 0 else g * out * float("nan")
            if base == 0:
                d_exponent = _where(exponent >= 0, 0.0, d_exponent)
        else:
            # NOTE: torch defines d/db a**b as 0 where a == 0 and b >= 0, instead of 0 * log(0) = nan.
            d_exponent = _where((base == 0) & (exponent >= 0), 0.0, g * out * base.log())
    return d_base, d_exponent


def _not_nan(a):
    # NOTE: x == x, x <= x and x >= x are False exactly where x is NaN; SymPy would fold them to True
    return sympy.Not(IsNan(a))


def _sign(z):
    return sympy.sign(z)


ELEMENTWISE = [
    Op("ADD", "AddBackward0", "elementwise", lambda a, b: a + b, lambda g, i, o, arg: (g, g), saves=False),
    Op("SUB", "SubBackward0", "elementwise", lambda a, b: a - b, lambda g, i, o, arg: (g, -g), saves=False),
    Op("MUL", "MulBackward0", "elementwise", lambda a, b: a * b,
       lambda g, i, o, arg: (g * i[1], g * i[0])),
    Op("DIV", "DivBackward0", "elementwise", lambda a, b: a / b,
       lambda g, i, o, arg: (g / i[1], -g * i[0] / (i[1] * i[1])), TO_FLOAT),
    Op("NEG", "NegBackward0", "elementwise", lambda a: -a, lambda g, i, o, arg: (-g,), KEEP, saves=False),
    Op("RECIPROCAL", "ReciprocalBackward0", "elementwise", lambda a: 1 / a,
       lambda g, i, o, arg: (-g * o * o,), TO_FLOAT),
    Op("POW", "PowBackward1", "elementwise", lambda a, b: a ** b, _pow_vjp),
    Op("EXP", "ExpBackward0", "elementwise", sympy.exp, lambda g, i, o, arg: (g * o,), TO_FLOAT),
    Op("LOG", "LogBackward0", "elementwise", sympy.log, lambda g, i, o, arg: (g / i[0],), TO_FLOAT),
    Op("SQRT", "SqrtBackward0", "elementwise", sympy.sqrt,
       lambda g, i, o, arg: (g / (2 * o),), TO_FLOAT),
    Op("TANH", "TanhBackward0", "elementwise", sympy.tanh,
       lambda g, i, o, arg: (g * (1 - o * o),), TO_FLOAT),
    Op("SIGMOID", "SigmoidBackward0", "elementwise", lambda a: 1 / (1 + sympy.exp(-a)),
       lambda g, i, o, arg: (g * o * (1 - o),), TO_FLOAT),
    Op("SIN", "SinBackward0", "elementwise", sympy.sin, lambda g, i, o, arg: (g * i[0].cos(),), TO_FLOAT),
    Op("COS", "CosBackward0", "elementwise", sympy.cos, lambda g, i, o, arg: (-g * i[0].sin(),), TO_FLOAT),
    # NOTE: relu's gradient is 0 at 0 (torch), where d/dx Max(x, 0) = Heaviside(x) would say 1/2.
    Op("RELU", "ReluBackward0", "elementwise", lambda a: sympy.Max(a, 0),
       lambda g, i, o, arg: (_where(o > 0, g, 0.0),), KEEP),
    Op("ABS", "AbsBackward0", "elementwise", sympy.Abs, lambda g, i, o, arg: (g * i[0].sign(),), KEEP),
    Op("SIGN", "SignBackward0", "elementwise", _sign, lambda g, i, o, arg: (g * 0,), KEEP),
    Op("MAXIMUM", "MaximumBackward0", "elementwise", sympy.Max, _maximum_vjp),
    Op("MINIMUM", "MinimumBackward0", "elementwise", sympy.Min, _minimum_vjp),
    Op("WHERE", "WhereBackward0", "elementwise", lambda c, a, b: sympy.Piecewise((a, c), (b, True)),
       lambda g, i, o, arg: (None, _where(i[0], g, 0.0), _where(i[0], 0.0, g))),
    Op("LT", "", "elementwise", lambda a, b: a < b, None, TO_BOOL, differentiable=False),
    Op("LE", "", "elementwise", lambda a, b: _not_nan(a) if a == b else a <= b, None, TO_BOOL,
       differentiable=False),
    Op("GT", "", "elementwise", lambda a, b: a > b, None, TO_BOOL, differentiable=False),
    Op("GE", "", "elementwise", lambda a, b: _not_nan(a) if a == b else a >= b, None, TO_BOOL,
       differentiable=False),
    Op("EQ", "", "elementwise", lambda a, b: _not_nan(a) if a == b else sympy.Eq(a, b), None, TO_BOOL,
       differentiable=False),
    Op("NE", "", "elementwise", lambda a, b: IsNan(a) if a == b else sympy.Ne(a, b), None, TO_BOOL,
       differentiable=False),
    Op("AND", "", "elementwise", sympy.And, None, TO_BOOL, differentiable=False),
    Op("OR", "", "elementwise", sympy.Or, None, TO_BOOL, differentiable=False),
    Op("NOT", "", "elementwise", sympy.Not, None, TO_BOOL, differentiable=False),
]

STRUCTURAL = [
    # Graph primitives used by the composites below; `arg` is (axes, keepdim), the target shape, or
    # the target dtype. CAST's formula is one of codegen's typed conversions (the scheduler's job).
    Op("CAST", "ToCopyBackward0", "convert", vjp=lambda g, i, o, arg: (g.to(i[0].dtype),), dtype_rule=KEEP,
       saves=False),
    Op("SUM", "SumBackward1", "reduce", dtype_rule=KEEP),
    Op("MAX", "MaxBackward1", "reduce", dtype_rule=KEEP),
    Op("MIN", "MinBackward1", "reduce", dtype_rule=KEEP),
    Op("PROD", "ProdBackward0", "reduce", dtype_rule=KEEP),
    Op("RESHAPE", "ViewBackward0", "movement", vjp=lambda g, i, o, arg: (g.reshape(i[0].shape),),
       dtype_rule=KEEP, saves=False),
    Op("EXPAND", "ExpandBackward0", "movement", vjp=lambda g, i, o, arg: (g.sum_to_size(i[0].shape),),
       dtype_rule=KEEP, saves=False),
    # SLICE: `arg` = (region, shape), region = (start, step) per axis; a view, like broadcasting.
    Op("SLICE", "SliceBackward0", "movement", vjp=lambda g, i, o, arg: _indexing().slice_vjp(g, i, o, arg),
       dtype_rule=KEEP, saves=False),
    # ASSEMBLE: `arg` = (regions, shape); parts written in order into one new buffer (cat, x[i] = v,
    # the gradient of a slice). Each part's gradient is its region of g, minus later parts' regions.
    Op("ASSEMBLE", "CatBackward0", "assemble", vjp=lambda g, i, o, arg: _indexing().assemble_vjp(g, i, o, arg),
       dtype_rule=KEEP, saves=False),
    # GATHER: out[..., i, ...] = x[..., index[..., i, ...], ...] along `arg` = dim (loads at computed
    # addresses); its gradient scatter-adds g back. SCATTER_ADD: base + src added at index positions.
    Op("GATHER", "GatherBackward0", "gather",
       vjp=lambda g, i, o, arg: (i[0]._zeros_like_unrecorded().scatter_add(arg, i[1], g), None)),
    Op("SCATTER_ADD", "ScatterAddBackward0", "gather",
       vjp=lambda g, i, o, arg: (g, None, g.gather(arg, i[1]))),
    Op("PERMUTE", "PermuteBackward0", "movement", vjp=lambda g, i, o, arg: (g.permute(_inverse(arg)),),
       dtype_rule=KEEP, saves=False),
    # Batched matrix product; the operands' batch dimensions broadcast. Gradients are products too:
    # dA = g @ B^T and dB = A^T @ g, summed back over broadcast batch dimensions by the walk.
    Op("MATMUL", "BmmBackward0", "matmul", vjp=lambda g, i, o, arg: (g.matmul(i[1].mT), i[0].mT.matmul(g))),
]


def _indexing():
    from . import indexing  # indexing builds on this table, so it is imported when a rule runs

    return indexing


def _inverse(permutation):
    inverse = [0] * len(permutation)
    for k, axis in enumerate(permutation):
        inverse[axis] = k
    return tuple(inverse)


def _sum_vjp(g, inputs, out, arg):
    (x,), (axes, keepdim) = inputs, arg
    if not keepdim:
        g = g.reshape(_keepdim_shape(x.shape, axes))
    return (g.expand(x.shape),)


def _keepdim_shape(shape, axes):
    return tuple(1 if (axes is None or k in axes) else n for k, n in enumerate(shape))


def _extreme_vjp(g, inputs, out, arg):
    # NOTE: torch's max()/min() of a whole tensor spreads the gradient evenly over ties.
    (x,) = inputs
    mask = (x == out).to(g.dtype)
    return (g * mask / mask.sum(),)


def _select_vjp(g, inputs, out, arg):
    # NOTE: max(dim)/min(dim) give the whole gradient to the index they return (the first of tied
    # extremes, torch's rule), where max()/min() of a whole tensor spread it over ties.
    (x,), (axes, keepdim, indices) = inputs, arg
    kept = _keepdim_shape(x.shape, axes)
    chosen = x._positions(axes) == type(x)._wrap(indices).reshape(kept)
    return (_where(chosen, g.reshape(kept), 0.0),)


def _prod_vjp(g, inputs, out, arg):
    # NOTE: torch's rule: d prod / d x_i = prod / x_i while no element is 0. Where a slice holds zeros
    # (torch then multiplies exclusive cumulative products) the product of the others is the product of
    # the slice's nonzero elements at its only zero, and 0 at every other element; with two or more
    # zeros in a slice every product of others contains a zero, so the whole slice gets 0, as in torch.
    (x,), (axes, keepdim) = inputs, arg
    kept = _keepdim_shape(x.shape, axes)
    zero = x == 0
    zeros = zero._reduced("SUM", axes, True)
    safe = _where(zero, 1.0, x)
    nonzero_product = safe._prod(axes, True)
    others = _where(zeros == 0, out.reshape(kept) / safe, _where(zero & (zeros == 1), nonzero_product, 0.0))
    return (g.reshape(kept) * others,)


def _count(shape, axes):
    count = 1
    for k in axes:
        count *= shape[k]
    return count


def _var_forward(x, arg):
    axes, correction, keepdim = arg
    # NOTE: like torch, a slice with no more elements than `correction` divides by 0 (nan or inf);
    # `var`/`std` warn about it at the call.
    dof = _count(x.shape, axes) - correction
    deviation = x - x.mean(dim=axes, keepdim=True)
    squares = (deviation * deviation).sum(dim=axes, keepdim=keepdim)
    return squares / dof if dof > 0 else squares * math.inf


def _var_vjp(g, inputs, out, arg):
    # torch's var_backward: 2 / (n - correction) * g * (x - mean), with n - correction not clamped at 0
    (x,), (axes, correction, keepdim) = inputs, arg
    dof = _count(x.shape, axes) - correction
    scale = 2.0 / dof if dof != 0 else math.inf
    return (g.reshape(_keepdim_shape(x.shape, axes)) * scale * (x - x.mean(dim=axes, keepdim=True)),)


def _std_vjp(g, inputs, out, arg):
    # NOTE: torch's std gradient is 0 where std is 0 (a constant slice), where g / (2 * std) is inf.
    return _var_vjp(_where(out == 0, 0.0, g / (2 * out)), inputs, out, arg)


def _logsumexp_forward(x, arg):
    axes, keepdim = arg
    # Stable: exp(x - max) is at most 1. An infinite max is replaced by 0 (as torch does), so that
    # inf - inf never makes a nan: logsumexp([inf, 1]) is inf and logsumexp([-inf, -inf]) is -inf.
    top = x._reduced("MAX", axes, True)
    top = _where(top.abs() == math.inf, 0.0, top)
    out = (x - top).exp().sum(dim=axes, keepdim=True).log() + top
    return out if keepdim else out.reshape(tuple(n for k, n in enumerate(x.shape) if k not in axes))


def _logsumexp_vjp(g, inputs, out, arg):
    (x,), (axes, keepdim) = inputs, arg
    kept = _keepdim_shape(x.shape, axes)
    return (g.reshape(kept) * (x - out.reshape(kept)).exp(),)


def _softmax_forward(x, axes):
    # Stable: the max along the dim is subtracted first. It is a constant of the forward only: the
    # rules below are torch's, written with the output, so no gradient flows through it.
    shifted = (x - x._reduced("MAX", axes, True)).exp()
    return shifted / shifted.sum(dim=axes, keepdim=True)


def _log_softmax_forward(x, axes):
    shifted = x - x._reduced("MAX", axes, True)
    return shifted - shifted.exp().sum(dim=axes, keepdim=True).log()


def _softmax_vjp(g, inputs, out, axes):
    return (out * (g - (g * out).sum(dim=axes, keepdim=True)),)


def _log_softmax_vjp(g, inputs, out, axes):
    return (g - out.exp() * g.sum(dim=axes, keepdim=True),)


def _mean_forward(x, arg):
    axes, keepdim = arg
    count = 1
    for k in (axes if axes is not None else range(x.dim())):
        count *= x.shape[k]
    # the mean of no elements is nan (0 / 0), as in torch; a division by the integer 0 has no formula
    return x.sum(dim=axes, keepdim=keepdim) / count if count else x.sum(dim=axes, keepdim=keepdim) * math.nan


def _clamp_forward(x, low, high, arg):
    if low is not None:
        x = x._elementwise("MAXIMUM", low)
    if high is not None:
        x = x._elementwise("MINIMUM", high)
    return x


def _clamp_vjp(g, inputs, out, arg):
    # NOTE: clamp passes the whole gradient on its closed interval; maximum(x, lo) would halve it
    # at x == lo. Tensor bounds get the gradient where they were the result (torch's rule, which
    # gives it to `max` when min > max).
    x, low, high = inputs
    inside = None
    if low is not None:
        inside = x >= low
    if high is not None:
        inside = (x <= high) if inside is None else inside & (x <= high)
    d_low = d_high = None
    if low is not None and not isinstance(low, (int, float)):
        chosen = x < low if high is None else (x < low) & (low < high)
        d_low = _where(chosen, g, 0.0)
    if high is not None and not isinstance(high, (int, float)):
        chosen = x > high if low is None else (x > high) | (high < low)
        d_high = _where(chosen, g, 0.0)
    return (_where(inside, g, 0.0), d_low, d_high)



def _norm_vjp(g, inputs, out, arg):
    # NOTE: the norm of a zero vector has gradient 0 in torch, where x / |x| would give nan.
    (x,) = inputs
    return (_where(out == 0, 0.0, g * x / out),)


def _add_scaled_forward(x, other, arg):
    return x._elementwise("ADD", other * arg)


def _sub_scaled_forward(x, other, arg):
    return x._elementwise("SUB", other * arg)


def _mv_forward(matrix, vector, arg):
    return matrix.matmul(vector.reshape(-1, 1)).reshape(-1)


def _index_select_forward(x, index, arg):
    shape = tuple(-1 if k == arg else 1 for k in range(x.dim()))
    target = tuple(index.shape[0] if k == arg else n for k, n in enumerate(x.shape))
    return x.gather(arg, index.reshape(shape).expand(target))


def _cumsum_forward(x, dim):
    """Running sums along `dim` in log2(n) steps: add the value shifted by 1, 2, 4, ... places."""
    n = x.shape[dim] if x.dim() else 1
    shift = 1
    while shift < n:
        kept = x.narrow(dim, 0, n - shift)
        pad_shape = tuple(shift if k == dim else size for k, size in enumerate(x.shape))
        x = x + _indexing().cat([x._zeros_unrecorded(pad_shape), kept], dim)
        shift *= 2
    return x


def _cumsum_vjp(g, inputs, out, dim):
    # NOTE: the gradient is the sum from each position to the end: total - running sum + g
    return (g.sum(dim, keepdim=True) - g.cumsum(dim) + g,)


COMPOSITE = [
    Op("CUMSUM", "CumsumBackward0", "composite", forward=_cumsum_forward, vjp=_cumsum_vjp, saves=False),
    # index_select is a gather of the index broadcast over the other dims; its gradient comes free
    Op("INDEX_SELECT", "IndexSelectBackward0", "composite", forward=_index_select_forward),
    # x[index] = value: x with the region overwritten; value's gradient is the region of g
    Op("SETITEM", "CopySlices", "composite", forward=lambda *a: _indexing().setitem_forward(*a),
       vjp=lambda g, i, o, arg: _indexing().setitem_vjp(g, i, o, arg), saves=False),
    Op("STACK", "StackBackward0", "composite", forward=lambda *a: _indexing().stack_forward(*a),
       vjp=lambda g, i, o, arg: _indexing().stack_vjp(g, i, o, arg), saves=False),
    Op("DOT", "DotBackward0", "composite", forward=lambda a, b, arg: (a * b).sum(),
       vjp=lambda g, i, o, arg: (g * i[1], g * i[0])),
    Op("MV", "MvBackward0", "composite", forward=_mv_forward,
       vjp=lambda g, i, o, arg: (g.reshape(-1, 1) * i[1], i[0].t().matmul(g))),
    # torch's add/sub with alpha is one op (AddBackward0), not an add of a product
    Op("ADD_SCALED", "AddBackward0", "composite", forward=_add_scaled_forward,
       vjp=lambda g, i, o, arg: (g, g * arg), saves=False),
    Op("SUB_SCALED", "SubBackward0", "composite", forward=_sub_scaled_forward,
       vjp=lambda g, i, o, arg: (g, -g * arg), saves=False),
    Op("SUM_ALL", "SumBackward0", "composite", forward=lambda x, arg: x._reduced("SUM", *arg), vjp=_sum_vjp,
       dtype_rule=KEEP, saves=False),
    Op("SUM_DIM", "SumBackward1", "composite", forward=lambda x, arg: x._reduced("SUM", *arg), vjp=_sum_vjp,
       dtype_rule=KEEP, saves=False),
    Op("MAX_ALL", "MaxBackward1", "composite", forward=lambda x, arg: x._reduced("MAX", None, False),
       vjp=_extreme_vjp, dtype_rule=KEEP),
    Op("MIN_ALL", "MinBackward1", "composite", forward=lambda x, arg: x._reduced("MIN", None, False),
       vjp=_extreme_vjp, dtype_rule=KEEP),
    # max(dim)/min(dim): the values; the indices (computed beside them, never differentiable) are
    # saved in `arg` = (axes, keepdim, indices node), as torch's MaxBackward0 saves them.
    Op("MAX_DIM", "MaxBackward0", "composite", forward=lambda x, arg: x._reduced("MAX", arg[0], arg[1]),
       vjp=_select_vjp, dtype_rule=KEEP),
    Op("MIN_DIM", "MinBackward0", "composite", forward=lambda x, arg: x._reduced("MIN", arg[0], arg[1]),
       vjp=_select_vjp, dtype_rule=KEEP),
    Op("PROD_ALL", "ProdBackward0", "composite", forward=lambda x, arg: x._reduced("PROD", *arg), vjp=_prod_vjp,
       dtype_rule=KEEP),
    Op("PROD_DIM", "ProdBackward1", "composite", forward=lambda x, arg: x._reduced("PROD", *arg), vjp=_prod_vjp,
       dtype_rule=KEEP),
    # var/std: `arg` is (axes, correction, keepdim)
    Op("VAR", "VarBackward0", "composite", forward=_var_forward, vjp=_var_vjp, dtype_rule=KEEP),
    Op("STD", "StdBackward0", "composite", forward=lambda x, arg: _var_forward(x, arg).sqrt(), vjp=_std_vjp,
       dtype_rule=KEEP),
    Op("LOGSUMEXP", "LogsumexpBackward0", "composite", forward=_logsumexp_forward, vjp=_logsumexp_vjp,
       dtype_rule=KEEP),
    # softmax/log_softmax: `arg` is the dim as a tuple of axes (empty for a 0-d tensor)
    Op("SOFTMAX", "SoftmaxBackward0", "composite", forward=_softmax_forward, vjp=_softmax_vjp, dtype_rule=KEEP),
    Op("LOG_SOFTMAX", "LogSoftmaxBackward0", "composite", forward=_log_softmax_forward, vjp=_log_softmax_vjp,
       dtype_rule=KEEP),
    # mean has no rule of its own: its gradient is the gradient of its forward, sum(x) / n.
    Op("MEAN_ALL", "MeanBackward0", "composite", forward=_mean_forward, dtype_rule=KEEP, saves=False),
    Op("MEAN_DIM", "MeanBackward1", "composite", forward=_mean_forward, dtype_rule=KEEP, saves=False),
    Op("CLAMP", "ClampBackward1", "composite", forward=_clamp_forward, vjp=_clamp_vjp, dtype_rule=KEEP),
    Op("NORM", "LinalgVectorNormBackward0", "composite", forward=lambda x, arg: (x * x).sum().sqrt(),
       vjp=_norm_vjp, dtype_rule=KEEP),
    # Values are immutable nodes, so a clone shares its input's node until either is changed in place.
    Op("CLONE", "CloneBackward0", "composite", forward=lambda x, arg: x._alias(), vjp=lambda g, i, o, arg: (g,),
       dtype_rule=KEEP, saves=False),
]

OPS: dict[str, Op] = {op.name: op for op in (*ELEMENTWISE, *STRUCTURAL, *COMPOSITE)}


# -- nn: layers and losses (symgrad.nn.functional calls these through `tensor._apply`) --------------
# Losses take `reduction` ("mean" | "sum" | "none") in `arg`; optional weights ride in `arg` too, as
# constants of the rule (torch never lists them in next_functions, so they get no gradient).
_SQRT1_2 = math.sqrt(0.5)
_GELU_PDF = 1.0 / math.sqrt(2.0 * math.pi)   # the normal density's factor, exp(-x^2/2) / sqrt(2 pi)
_GELU_TANH = math.sqrt(2.0 / math.pi)
_GELU_KAPPA = 0.044715


def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _unreduce(g, shape, reduction):
    """The gradient of each element of a loss, given the gradient `g` of its reduction."""
    if reduction == "mean":
        count = math.prod(shape)
        return (g / count if count else g * math.nan).expand(shape)
    if reduction == "sum":
        return g.expand(shape)
    return g


def _erf_vjp(g, inputs, out, arg):
    (x,) = inputs
    return (g * (2.0 / math.sqrt(math.pi)) * (-(x * x)).exp(),)


def _addmm_forward(bias, a, b, arg):
    return a.matmul(b) + bias


def _leaky_relu_forward(x, slope):
    return _where(x > 0, x, x * slope)


def _gelu_forward(x, approximate):
    if approximate == "tanh":
        inner = (x + x * x * x * _GELU_KAPPA) * _GELU_TANH
        return x * 0.5 * (1 + inner.tanh())
    return x * 0.5 * (1 + (x * _SQRT1_2)._elementwise("ERF"))


def _gelu_vjp(g, inputs, out, approximate):
    # torch's GeluBackward0 formulas, so values at float32 agree with its kernels
    (x,) = inputs
    if approximate == "tanh":
        t = ((x + x * x * x * _GELU_KAPPA) * _GELU_TANH).tanh()
        slope = (1 - t * t) * _GELU_TANH * (1 + x * x * (3 * _GELU_KAPPA))
        return (g * ((1 + t) * 0.5 + x * 0.5 * slope),)
    cdf = (1 + (x * _SQRT1_2)._elementwise("ERF")) * 0.5
    pdf = (x * x * -0.5).exp() * _GELU_PDF
    return (g * (cdf + x * pdf),)


def _silu_vjp(g, inputs, out, arg):
    (x,) = inputs
    s = x.sigmoid()
    return (g * s * (1 + x * (1 - s)),)


def _embedding_forward(weight, indices, padding_idx):
    rows = weight.index_select(0, indices.reshape(-1))
    return rows.reshape(tuple(indices.shape) + (weight.shape[1],))


def _embedding_vjp(g, inputs, out, padding_idx):
    # NOTE: the row at padding_idx gets no gradient (torch's rule), so it stays as initialized
    weight, indices = inputs
    flat = indices.reshape(-1)
    rows = g.reshape(-1, weight.shape[1])
    if padding_idx is not None:
        rows = _where((flat == padding_idx).reshape(-1, 1), 0.0, rows)
    index = flat.reshape(-1, 1).expand(rows.shape)
    return (weight._zeros_like_unrecorded().scatter_add(0, index, rows), None)


def _layer_norm_forward(x, weight, bias, arg):
    axes, eps = arg
    mean = x.mean(dim=axes, keepdim=True)
    centered = x - mean
    variance = (centered * centered).mean(dim=axes, keepdim=True)
    out = centered * (variance + eps).sqrt().reciprocal()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _mse_forward(a, b, reduction):
    d = a - b
    return _reduce(d * d, reduction)


def _mse_vjp(g, inputs, out, reduction):
    # torch's rule, 2 (a - b) g: cheaper than differentiating the forward again on every backward
    a, b = inputs
    d = a - b
    g = _unreduce(g, d.shape, reduction)
    d_a = g * d * 2
    return d_a, -d_a


def _smooth_l1_forward(a, b, arg):
    reduction, beta = arg
    d = a - b
    size = d.abs()
    if beta == 0:
        return _reduce(size, reduction)
    return _reduce(_where(size < beta, d * d * (0.5 / beta), size - 0.5 * beta), reduction)


def _huber_forward(a, b, arg):
    reduction, delta = arg
    d = a - b
    size = d.abs()
    return _reduce(_where(size < delta, d * d * 0.5, (size - 0.5 * delta) * delta), reduction)


def _nll_forward(logp, target, arg):
    """-logp[n, target[n]] (times the class weight), over (N, C), (C,) or (N, C, d1, ...) inputs."""
    # NOTE: the target class is picked by comparing with the class positions rather than by a gather:
    # the same O(N*C) work as the log-softmax before it, fused with it, and an ignored target (no
    # class matches it) drops out with no special index.
    reduction, ignore_index, weight = arg
    class_dim = 0 if logp.dim() == 1 else 1
    chosen = (target.unsqueeze(class_dim) == logp._positions((class_dim,))) & (target != ignore_index).unsqueeze(
        class_dim)
    if weight is None:
        losses = _where(chosen, -logp, 0.0).sum(dim=class_dim)
        scale = chosen.to(logp.dtype).sum(dim=class_dim)
    else:
        shape = tuple(-1 if k == class_dim else 1 for k in range(logp.dim()))
        column = weight.to(logp.dtype).reshape(shape)
        losses = _where(chosen, -logp * column, 0.0).sum(dim=class_dim)
        scale = _where(chosen, column, 0.0).sum(dim=class_dim)
    if reduction == "mean":
        return losses.sum() / scale.sum()
    return losses.sum() if reduction == "sum" else losses


def _bce_forward(x, t, arg):
    # NOTE: torch clamps the logs at -100 so that x = 0 or 1 gives a finite loss
    reduction, weight = arg
    losses = -(t * x.log().clamp(min=-100) + (1 - t) * (1 - x).log().clamp(min=-100))
    return _reduce(losses if weight is None else losses * weight, reduction)


def _bce_vjp(g, inputs, out, arg):
    reduction, weight = arg
    x, t = inputs
    g = _unreduce(g, x.shape, reduction)
    if weight is not None:
        g = g * weight
    d_x = g * (x - t) / ((1 - x) * x).clamp(min=1e-12)
    d_t = g * ((1 - x).log().clamp(min=-100) - x.log().clamp(min=-100))
    return d_x, d_t


def _softplus_neg_abs(x):
    """log(1 + exp(-|x|)): finite for any logit, since exp(-|x|) <= 1."""
    return ((-x.abs()).exp() + 1).log()


def _bce_logits_forward(x, t, arg):
    # Stable form of -(t log s(x) + (1 - t) log(1 - s(x))): (1 - t) x + w (log(1 + e^-|x|) + max(-x, 0)),
    # with w = 1 + (pos_weight - 1) t; no exp of a large positive number is ever taken.
    reduction, weight, pos_weight = arg
    softplus = _softplus_neg_abs(x) + (-x).relu()
    log_weight = 1 if pos_weight is None else (pos_weight - 1) * t + 1
    losses = (1 - t) * x + log_weight * softplus
    return _reduce(losses if weight is None else losses * weight, reduction)


def _bce_logits_vjp(g, inputs, out, arg):
    # torch's rule, sigmoid(x) - t (with pos_weight: (p t + 1 - t) sigmoid(x) - p t), which is also
    # right at x = 0, where differentiating max(-x, 0) and |x| would be one-sided
    reduction, weight, pos_weight = arg
    x, t = inputs
    g = _unreduce(g, x.shape, reduction)
    if weight is not None:
        g = g * weight
    s = x.sigmoid()
    if pos_weight is None:
        return g * (s - t), -g * x
    pt = pos_weight * t
    d_x = g * ((pt + 1 - t) * s - pt)
    d_t = g * ((pos_weight - 1) * (_softplus_neg_abs(x) + (-x).relu()) - x)
    return d_x, d_t


NN = [
    Op("ERF", "ErfBackward0", "elementwise", sympy.erf, _erf_vjp, TO_FLOAT),
    # Linear on a matrix: bias + input @ weight.T in one op, as torch records it
    Op("ADDMM", "AddmmBackward0", "composite", forward=_addmm_forward,
       vjp=lambda g, i, o, arg: (g, g.mm(i[2].t()), i[1].t().mm(g))),
    Op("LEAKY_RELU", "LeakyReluBackward0", "composite", forward=_leaky_relu_forward,
       vjp=lambda g, i, o, slope: (_where(i[0] > 0, g, g * slope),), dtype_rule=KEEP),
    Op("GELU", "GeluBackward0", "composite", forward=_gelu_forward, vjp=_gelu_vjp, dtype_rule=KEEP),
    Op("SILU", "SiluBackward0", "composite", forward=lambda x, arg: x * x.sigmoid(), vjp=_silu_vjp,
       dtype_rule=KEEP),
    Op("EMBEDDING", "EmbeddingBackward0", "composite", forward=_embedding_forward, vjp=_embedding_vjp,
       dtype_rule=KEEP),
    # layer_norm: `arg` is (normalized axes, eps); weight and bias may be None. Gradient: of the forward.
    Op("LAYER_NORM", "NativeLayerNormBackward0", "composite", forward=_layer_norm_forward, dtype_rule=KEEP),
    Op("MSE_LOSS", "MseLossBackward0", "composite", forward=_mse_forward, vjp=_mse_vjp, dtype_rule=KEEP),
    Op("SMOOTH_L1_LOSS", "SmoothL1LossBackward0", "composite", forward=_smooth_l1_forward, dtype_rule=KEEP),
    Op("HUBER_LOSS", "HuberLossBackward0", "composite", forward=_huber_forward, dtype_rule=KEEP),
    Op("NLL_LOSS", "NllLossBackward0", "composite", forward=_nll_forward, dtype_rule=KEEP),
    Op("BINARY_CROSS_ENTROPY", "BinaryCrossEntropyBackward0", "composite", forward=_bce_forward, vjp=_bce_vjp,
       dtype_rule=KEEP),
    Op("BCE_WITH_LOGITS", "BinaryCrossEntropyWithLogitsBackward0", "composite", forward=_bce_logits_forward,
       vjp=_bce_logits_vjp, dtype_rule=KEEP),
]
OPS.update({op.name: op for op in NN})

# An optimizer's update of one tensor, `arg(*operands)` in ordinary ops (floats as operands, so they stay
# runtime values): recorded as one call, which replay then serves as one template.
OPS["UPDATE"] = Op("UPDATE", "", "composite", forward=lambda *operands: operands[-1](*operands[:-1]),
                   differentiable=False)


# -- convolution, pooling, batch norm (the rules live in convolution.py) ---------------------------
def _convolution():
    from . import convolution  # written in Tensor operations, like indexing; imported when a rule runs

    return convolution


CONV = [
    # WINDOW: an affine view, input index = integer-linear map of the output index (`arg`: one row of
    # coefficients per input axis, the last entry an offset): sliding windows for im2col and pooling,
    # and (with a negative coefficient) the gather of col2im. Used inside the composites below only.
    Op("WINDOW", "", "movement", dtype_rule=KEEP, saves=False),
    # AS_WINDOWS: a WINDOW view recorded, `arg` = (maps, shape): gradient rules of the ops below build
    # it under create_graph=True, so that gradients of their gradients exist (its own: a scatter-add)
    Op("AS_WINDOWS", "AsStridedBackward0", "composite", forward=lambda x, arg: _convolution().as_windows_forward(x, arg),
       vjp=lambda g, i, o, arg: _convolution().as_windows_vjp(g, i, o, arg), dtype_rule=KEEP),
    # UNWINDOW: WINDOW's adjoint, `arg` = the maps; a new buffer of the node's shape, zero but where the
    # maps reach, which gets the sum of the input's elements mapped there (col2im, the fold of a
    # convolution's or a pool's gradient). Stored, never fused into its consumers. Used like WINDOW.
    Op("UNWINDOW", "", "movement", dtype_rule=KEEP, saves=False),
    # AS_UNWINDOW: an UNWINDOW recorded, `arg` = (maps, shape), by gradient rules under create_graph=True
    Op("AS_UNWINDOW", "AsStridedScatterBackward0", "composite",
       forward=lambda x, arg: _convolution().as_unwindow_forward(x, arg),
       vjp=lambda g, i, o, arg: _convolution().as_unwindow_vjp(g, i, o, arg), dtype_rule=KEEP),
    # conv1d/conv2d: `arg` = (stride, ((lo, hi) padding per axis), dilation, groups); bias may be None.
    # Forward: pad, WINDOW, one GEMM; backward: dW = g @ cols.T and dcols = W.T @ g (GEMMs), then fold.
    Op("CONVOLUTION", "ConvolutionBackward0", "composite",
       forward=lambda x, w, b, arg: _convolution().conv_forward(x, w, b, arg),
       vjp=lambda g, i, o, arg: _convolution().conv_vjp(g, i, o, arg), dtype_rule=KEEP),
    # pooling: `arg` = (kernel, stride, padding (lo, hi) per axis, dilation, output size); the gradient
    # of a max goes to the first maximal tap of each window (torch's rule), folded back onto the input
    Op("MAX_POOL", "MaxPool2DWithIndicesBackward0", "composite",
       forward=lambda x, arg: _convolution().max_pool_forward(x, arg),
       vjp=lambda g, i, o, arg: _convolution().max_pool_vjp(g, i, o, arg), dtype_rule=KEEP),
    Op("AVG_POOL", "AvgPool2DBackward0", "composite",
       forward=lambda x, arg: _convolution().avg_pool_forward(x, arg),
       vjp=lambda g, i, o, arg: _convolution().avg_pool_vjp(g, i, o, arg), dtype_rule=KEEP),
    # batch_norm: operands (x, weight, bias, running_mean, running_var), `arg` = (training, eps); in
    # training the batch statistics normalize (the module updates the running ones beside)
    Op("BATCH_NORM", "NativeBatchNormBackward0", "composite",
       forward=lambda x, w, b, rm, rv, arg: _convolution().batch_norm_forward(x, w, b, rm, rv, arg),
       vjp=lambda g, i, o, arg: _convolution().batch_norm_vjp(g, i, o, arg), dtype_rule=KEEP),
    # adaptive average pooling over uneven windows: rows @ x @ cols.T with constant averaging matrices
    Op("ADAPTIVE_AVG_POOL", "AdaptiveAvgPool2DBackward0", "composite",
       forward=lambda x, r, c, arg: _convolution().adaptive_avg_pool_forward(x, r, c, arg), dtype_rule=KEEP),
    # adaptive max pooling over uneven windows: a gather of each window's taps (operand 2: their flat
    # positions, short windows repeating their last) and max over them; gradient: g scatter-added to the
    # first maximum of each window
    Op("ADAPTIVE_MAX_POOL", "AdaptiveMaxPool2DBackward0", "composite",
       forward=lambda x, t, arg: _convolution().adaptive_max_pool_forward(x, t, arg),
       vjp=lambda g, i, o, arg: _convolution().adaptive_max_pool_vjp(g, i, o, arg), dtype_rule=KEEP),
    # F.pad: `arg` = (((lo, hi) per trailing axis), mode, value); constant pads ASSEMBLE into a filled
    # buffer, reflect and replicate GATHER along each padded axis. Gradients: of the forward.
    Op("PAD", "ConstantPadNdBackward0", "composite", forward=lambda x, arg: _convolution().pad_forward(x, arg),
       dtype_rule=KEEP),
    # group_norm: operands (x, weight, bias), `arg` = (groups, eps); gradient: of the forward
    Op("GROUP_NORM", "NativeGroupNormBackward0", "composite",
       forward=lambda x, w, b, arg: _convolution().group_norm_forward(x, w, b, arg), dtype_rule=KEEP),
    # interpolate (nearest, nearest-exact, linear, bilinear, bicubic, trilinear): products with one
    # constant resampling matrix per spatial axis (operands x, m_1, ..., m_S)
    Op("RESAMPLE", "UpsampleNearest2DBackward0", "composite",
       forward=lambda x, *rest: _convolution().resample_forward(x, *rest), dtype_rule=KEEP),
]
OPS.update({op.name: op for op in CONV})
