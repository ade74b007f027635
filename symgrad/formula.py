"""Formulas for people: what symgrad computes, written out.

Two views of the same graphs:

* `formula(output, wrt)` writes the derivative d(output)/d(wrt) the way a person would write it by hand:
  one line of Python over your tensors' names that numpy evaluates to the gradient, with matrix parts in
  matrix notation (`x.T @ (...)`), elementwise parts simplified by SymPy, broadcast gradients summed
  back with `sum(..., axis=...)`.
* `inspect(tensor)` shows the programs that compute a pending tensor, forward and backward, and
  `inspect(fn, *args)` the programs a call runs: each fused kernel's SymPy formula (with your names
  for the buffers), its LLVM IR, and the native assembly.

`to_dot(tensor)` draws the recorded (forward) graph and the gradient graph in Graphviz DOT.

>>> import symgrad
>>> x = symgrad.ones(2, 2, requires_grad=True)
>>> out = (3 * (x + 2) ** 2).mean()
>>> print(symgrad.formula(out, x))
3*(x + 2)/2
>>> (g,) = symgrad.autograd.grad((x * x).sum(), x)
>>> print(symgrad.inspect(g, names={"x": x}).formulas()[0])
g[i] = 2*x[i]

How the text is built (see `_Builder`): the gradient graph that `autograd.grad` returns is walked once,
inputs before users, without recursion. Elementwise nodes become SymPy expressions through the op
table's own `formula`s, so constants fold, `x*1`, `x+0` and double negations vanish and chains of
scalar factors multiply out as the expression is built. Nodes that move data between positions
(matrix products, reductions, transposes, reshapes, slices, gathers) become *parts*: SymPy symbols that
stand for `a @ b`, `sum(a, axis=0)`, ... whose operands are SymPy expressions again. Broadcasting is
numpy's: a value is printed at the smallest shape that broadcasts to the node's shape (`EXPAND` prints
nothing), and only made explicit (`broadcast_to`) where an operation needs the exact shape.

Every step is linear in the graph and none recurses deeper than a bounded piece, so a chain of
hundreds of steps prints too: SymPy pieces are cut (as opaque "expr" parts) past MAX_DEPTH levels or
MAX_NODES nodes; after SymPy's tidying and the idioms (`_rewrite_idioms`: softmax, factors out of sums),
repeated subexpressions become parts (`_share_subexpressions`), and parts are named when naming
shortens the text or when they would nest deeper than NAME_NESTING (`_choose_names`). `_one_line`
writes each definition where it is first read, `(h := ...)`, or, past MAX_NESTING brackets, all of
them first: `(h := ..., h1 := ..., formula)[-1]`. Values the scheduler computed midway (a graph
past graph.PENDING_LIMIT nodes drops its history) are rebuilt from autograd's records (`_histories`).
"""
from __future__ import annotations

import builtins
import itertools
import keyword
import math
import re
import sys
from dataclasses import dataclass, field

import numpy as np
import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from codegen import Gemm, IsNan

from .graph import Node, postorder
from .ops import OPS
from .schedule import plan_for
from .tensor import Tensor

__all__ = ["Formula", "Formulas", "formula", "inspect", "to_dot", "render_svg", "VOCABULARY", "numpy_namespace"]


# -- the vocabulary ---------------------------------------------------------------------------------
def _erf(x):
    try:
        from scipy.special import erf
    except ImportError:  # scipy is optional: math.erf elementwise is exact, only slower
        return np.vectorize(math.erf, otypes=[np.result_type(x, np.float32)])(x)
    return erf(x)


def _scatter_add(base, index, src, axis):
    """torch's `base.scatter_add(axis, index, src)` as a new array (numpy's add.at works in place)."""
    out = np.array(base, dtype=np.result_type(base, src), copy=True)
    index = np.asarray(index)
    positions = list(np.indices(index.shape, sparse=True))
    positions[axis] = index
    np.add.at(out, tuple(positions), np.asarray(src)[tuple(slice(0, n) for n in index.shape)])
    return out


def _assemble(shape, regions, *parts):
    """A new array of `shape` with each part written in turn at its region ((start, step) per axis)."""
    out = np.zeros(shape, np.result_type(*parts))
    for region, part in zip(regions, parts):
        part = np.asarray(part)
        out[tuple(slice(s, s + t * n, t) for (s, t), n in zip(region, part.shape))] = part
    return out


def _window_view(x, shape, maps):
    """The WINDOW view (sliding windows): input axis k at output index i is sum(maps[k][j] * i[j]) + maps[k][-1]."""
    index = np.indices(shape, sparse=True)
    return np.asarray(x)[tuple(sum(m[j] * index[j] for j in range(len(shape))) + m[-1] for m in maps)]


def _unwindow(x, shape, maps):
    """WINDOW's adjoint: zeros of `shape`, with every element of x added where the window of `maps`
    reads it (the fold of a convolution's gradient)."""
    x = np.asarray(x)
    index = np.indices(x.shape, sparse=True)
    at = tuple(np.broadcast_to(sum(m[j] * index[j] for j in range(x.ndim)) + m[-1], x.shape) for m in maps)
    out = np.zeros(shape, x.dtype)
    np.add.at(out, at, x)
    return out


def _softmax(x, axis):
    """exp(x) / sum(exp(x), axis=axis, keepdims=True), shifted by the max first (as torch computes it)."""
    x = np.asarray(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


#: The names a printed formula may use besides its tensors, and what they mean. Every one is the numpy
#: function of that name except `erf` (scipy.special.erf), and `softmax`, `scatter_add`, `assemble`,
#: `window` and `unwindow` (written out above: numpy has no expression for them).
VOCABULARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
    "abs": np.abs, "sign": np.sign, "erf": _erf, "isnan": np.isnan,
    "maximum": np.maximum, "minimum": np.minimum, "where": np.where,
    "sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod,
    "reshape": np.reshape, "transpose": np.transpose, "broadcast_to": np.broadcast_to,
    "take_along_axis": np.take_along_axis, "pad": np.pad, "arange": np.arange, "array": np.array,
    "zeros": np.zeros, "trunc": np.trunc, "inf": np.inf, "nan": np.nan, "pi": np.pi,
    "scatter_add": _scatter_add, "assemble": _assemble, "window": _window_view, "unwindow": _unwindow,
    "softmax": _softmax,
}


def numpy_namespace(**arrays) -> dict:
    """The globals to `eval` a printed formula with: the vocabulary plus your arrays.

    >>> import numpy as np
    >>> eval("sum(2*x, axis=0)", numpy_namespace(x=np.ones((2, 3))))
    array([4., 4., 4.])
    """
    return {"__builtins__": {}, **VOCABULARY, **arrays}


# -- parts: the non-elementwise pieces of a formula -------------------------------------------------
ATOM = PRECEDENCE["Atom"]
MATMUL = PRECEDENCE["Mul"]   # `a @ b` binds like `*` in Python


@dataclass(eq=False)
class _Part:
    """`kind(operands...; params)`: a matrix product, a reduction, a transpose, ... of SymPy operands."""

    kind: str
    operands: list
    params: tuple
    shape: tuple              # the shape the printed text evaluates to
    node: Node | None = None  # the graph node it came from (to find the user's name for it)

    @property
    def precedence(self):
        return MATMUL if self.kind == "matmul" else ATOM


def _strip(shape):
    """`shape` without leading 1s: the smallest shape that broadcasts the same way."""
    k = 0
    while k < len(shape) and shape[k] == 1:
        k += 1
    return tuple(shape[k:])


def _broadcast(*shapes):
    return tuple(np.broadcast_shapes(*shapes))


class _Builder:
    """Turns graph nodes into SymPy expressions over names and parts; see the module docstring."""

    def __init__(self, names: dict, constant_ids: set, histories: dict | None = None):
        self.names = names              # id(node) -> the name it is printed as
        self.constant_ids = constant_ids
        self.histories = histories or {}   # id(realized node) -> its value recomputed as a pending graph
        self.parts: dict[sympy.Symbol, _Part] = {}
        self._part_keys: dict = {}
        self.values: dict[int, tuple] = {}   # id(node) -> (expr, printed shape)
        self.anonymous: dict[str, Node] = {}
        self.used_names: dict[str, Node] = {}

    # -- parts ---------------------------------------------------------------------------------------
    def part(self, kind, operands, params, shape, node=None) -> sympy.Symbol:
        key = (kind, tuple(sympy.srepr(o) for o in operands), repr(params))
        found = self._part_keys.get(key)
        if found is not None:
            return found
        symbol = sympy.Symbol(f"_p{len(self.parts)}")
        self.parts[symbol] = _Part(kind, list(operands), params, tuple(shape), node)
        self._part_keys[key] = symbol
        return symbol

    def shape_of(self, expr) -> tuple:
        """The shape an elementwise expression over names and parts evaluates to (numpy broadcasting)."""
        shapes = [self.parts[s].shape if s in self.parts else self.used_names[s.name].shape
                  for s in expr.free_symbols if s in self.parts or s.name in self.used_names]
        return _broadcast(*shapes) if shapes else ()

    def reshape(self, expr, shape, new):
        """reshape(expr, new) for `expr` printed at `shape` (same size); a reshape of a reshape is one."""
        part = self.parts.get(expr) if isinstance(expr, sympy.Symbol) else None
        if part is not None and part.kind == "reshape":
            expr, shape = part.operands[0], part.params[1]
        if tuple(shape) == tuple(new):
            return expr
        return self.part("reshape", [expr], (tuple(new), tuple(shape)), tuple(new))

    def exact(self, expr, shape, target):
        """`expr` (printed at `shape`) as an array of exactly `target`'s shape."""
        if tuple(shape) == tuple(target):
            return expr
        if math.prod(shape) == math.prod(target) and _strip(shape) == _strip(target):
            return self.reshape(expr, shape, target)
        return self.part("broadcast_to", [expr], (tuple(target),), target)

    # -- the walk ------------------------------------------------------------------------------------
    def build(self, root: Node):
        for node in _postorder(root, self.names, self.histories):
            history = self.histories.get(id(node))
            if history is not None and id(node) not in self.names:
                self.values[id(node)] = self.values[id(history)]
            else:
                self.values[id(node)] = self.visit(node)
        return self.values[id(root)]

    def leaf(self, node: Node):
        if id(node) in self.names:
            name = self.names[id(node)]
            self.used_names[name] = node
            return sympy.Symbol(name), node.shape
        if node.op in ("CONST", "SCALAR"):
            return _number(node.arg, node.dtype), ()
        if node.op != "BUFFER":
            raise NotImplementedError(f"formula(): no leaf rule for {node.op}")
        values = node.numpy()
        if values.size == 1 and id(node) in self.constant_ids:
            return _number(values.reshape(-1)[0].item(), node.dtype), ()
        if node.dtype == "int64" and values.size > 1:
            stripped = _strip(node.shape)
            if len([n for n in stripped if n != 1]) == 1 and np.array_equal(values.reshape(-1), np.arange(values.size)):
                text = self.part("arange", [], (values.size,), (values.size,))
                return self.exact(text, (values.size,), stripped) if len(stripped) > 1 else text, stripped
        if values.size <= 8 and id(node) in self.constant_ids:
            return self.part("array", [], (values.tolist(),), node.shape), node.shape
        name = f"x{len(self.anonymous)}"
        while name in self.names.values():
            name = "_" + name
        self.anonymous[name] = node
        self.names[id(node)] = name
        self.used_names[name] = node
        return sympy.Symbol(name), node.shape

    def visit(self, node: Node):
        if id(node) in self.names or not node.inputs:
            return self.leaf(node)
        args = [self.values[id(i)] for i in node.inputs]
        op = OPS.get(node.op)
        if op is not None and op.kind == "elementwise":
            shape = _broadcast(*(s for _, s in args))
            # a long chain of arithmetic is cut into opaque parts too: SymPy walks expressions
            # recursively (so each piece stays shallow however deep the graph is), and flattens sums
            # and products (so a shared product would be copied into every user, quadratic in a chain)
            args = [(self.part("expr", [a], (), s) if _too_big(a) else a, s) for a, s in args]
            if node.op in FUNCTION_OPS:
                # SymPy's functions ask their argument's assumptions (is it real? a multiple of i*pi?),
                # which costs exponentially in the nesting (tanh(tanh(...)) 10 deep: seconds), so a
                # function of a function gets its argument as an opaque part, printed the same
                args = [(self.part("expr", [a], (), s) if _function_depth(a) >= 2 else a, s) for a, s in args]
            try:
                return op.formula(*(a for a, _ in args)), shape
            except (AttributeError, TypeError):
                # SymPy's set logic cannot reason about some conditions (isnan in a Piecewise): hand it
                # the compound operands as opaque parts, which print the same
                opaque = [a if a.is_Atom else self.part("expr", [a], (), s) for a, s in args]
                return op.formula(*opaque), shape
        handler = getattr(self, f"_{node.op.lower()}", None)
        if handler is None:
            raise NotImplementedError(f"formula(): no rule to print {node.op} nodes")
        return handler(node, args)

    # -- structural nodes ----------------------------------------------------------------------------
    def _expand(self, node, args):
        return args[0]   # numpy broadcasts: the printed value already has a shape that broadcasts

    def _cast(self, node, args):
        (expr, shape), = args
        source = node.inputs[0].dtype
        if source == "bool" and node.dtype != "bool":
            return sympy.Piecewise((sympy.Integer(1), expr), (sympy.Integer(0), True)), shape
        if node.dtype == "bool" and source != "bool":
            return sympy.Ne(expr, 0), shape
        if node.dtype == "int64" and source.startswith("float"):
            return self.part("trunc", [expr], (), shape), shape
        return expr, shape

    def _reshape(self, node, args):
        (expr, shape), = args
        source, target = node.inputs[0].shape, node.shape
        padded = (1,) * (len(source) - len(shape)) + tuple(shape)
        if math.prod(shape) == 1:
            return (expr, shape) if len(shape) <= len(target) else (self._squeeze_all(expr, shape), ())
        if [n for n in source if n != 1] == [n for n in target if n != 1]:
            # only size-1 axes come or go: keep the broadcast pattern of the axes that stay
            kept = iter(p for p, n in zip(padded, source) if n != 1)
            new = tuple(next(kept) if n != 1 else 1 for n in target)
            dropped = self._drop_keepdims(expr, shape, new)
            if dropped is not None:
                return dropped, self.parts[dropped].shape
            if _strip(new) == _strip(tuple(shape)) and len(shape) <= len(target):
                return expr, shape
            return self.reshape(expr, shape, new), new
        full = self.exact(expr, shape, source)
        return self.reshape(full, source, target), target

    def _squeeze_all(self, expr, shape):
        if isinstance(expr, sympy.Symbol) and expr in self.parts and self.parts[expr].kind in REDUCTIONS:
            part = self.parts[expr]
            if part.params[0] is None or part.params[1]:
                return self.part(part.kind, part.operands, (None, False), ())
        return self.reshape(expr, shape, ())

    def _drop_keepdims(self, expr, shape, new):
        """sum(a, axis=k, keepdims=True) reshaped without axis k: sum(a, axis=k)."""
        part = self.parts.get(expr) if isinstance(expr, sympy.Symbol) else None
        if part is None or part.kind not in REDUCTIONS or not part.params[1]:
            return None
        axes = part.params[0]
        kept = [k for k in range(len(shape)) if k not in axes]
        if _strip(tuple(shape[k] for k in kept)) != _strip(new):
            return None
        # the size-1 axes left in front are reduced too (over one element: no change), so that the
        # printed value has the stripped shape exactly (sum(g, axis=(0, 2, 3)) for a conv's bias)
        while kept and shape[kept[0]] == 1:
            axes = tuple(sorted((*axes, kept.pop(0))))
        return self.part(part.kind, part.operands, (axes, False), tuple(shape[k] for k in kept))

    def _permute(self, node, args):
        (expr, shape), = args
        perm = node.arg
        rank = len(perm)
        padded = (1,) * (rank - len(shape)) + tuple(shape)
        moved = tuple(padded[k] for k in perm)
        if [p for p in perm if padded[p] != 1] == sorted(p for p in perm if padded[p] != 1):
            # the axes that hold data keep their order: a reshape (or nothing) is enough
            if _strip(moved) == _strip(tuple(shape)):
                return expr, shape
            return self.reshape(expr, shape, moved), moved
        if len(shape) < rank:
            expr = self.reshape(expr, shape, padded)
        if perm == (1, 0):
            return self.transpose(expr, moved), moved
        return self.part("transpose", [expr], (perm,), moved), moved

    def transpose(self, expr, shape):
        """expr.T, with (a @ b).T written b.T @ a.T and a.T.T as a (as people simplify them)."""
        part = self.parts.get(expr) if isinstance(expr, sympy.Symbol) else None
        if part is not None and part.kind == "T":
            return part.operands[0]
        if part is not None and part.kind == "matmul" and len(part.shape) == 2:
            a, b = part.operands
            return self.part("matmul", [self.transpose(b, shape), self.transpose(a, shape)], (), shape)
        return self.part("T", [expr], (), shape)

    def _reduce(self, kind, node, args):
        (expr, shape), = args
        rank = len(node.inputs[0].shape)
        offset = rank - len(shape)
        axes = sorted(node.arg)
        repeat = 1
        real = []
        for k in axes:
            size = node.inputs[0].shape[k]
            if k < offset or shape[k - offset] == 1:
                repeat *= size      # a broadcast axis: every element along it is the same value
            else:
                real.append(k - offset)
        if repeat != 1:
            expr = expr * repeat if kind == "sum" else (expr ** repeat if kind == "prod" else expr)
        if not real:
            return expr, shape
        new = tuple(1 if k in real else n for k, n in enumerate(shape))
        if len(real) == len([n for n in shape if n != 1]):
            # a reduction of everything swallows reductions of the same kind inside it
            while isinstance(expr, sympy.Symbol) and expr in self.parts and self.parts[expr].kind == kind:
                expr = self.parts[expr].operands[0]
            return self.part(kind, [expr], (None, False), ()), ()
        return self.part(kind, [expr], (tuple(real), True), new), new

    def _sum(self, node, args):
        return self._reduce("sum", node, args)

    def _max(self, node, args):
        return self._reduce("max", node, args)

    def _min(self, node, args):
        return self._reduce("min", node, args)

    def _prod(self, node, args):
        return self._reduce("prod", node, args)

    def _matmul(self, node, args):
        (a, sa), (b, sb) = args
        na, nb = node.inputs
        a = self._matrix(a, sa, na.shape)
        b = self._matrix(b, sb, nb.shape)
        return self.part("matmul", [a, b], (), node.shape, node), node.shape

    def _matrix(self, expr, shape, target):
        if len(shape) >= 2 and tuple(shape[-2:]) == tuple(target[-2:]):
            return expr     # batch axes broadcast in `@`
        return self.exact(expr, shape, target)

    def _slice(self, node, args):
        (expr, shape), = args
        source = node.inputs[0].shape
        offset = len(source) - len(shape)
        index, new = [], []
        for k, ((start, step), n) in enumerate(zip(node.arg, node.shape)):
            if k < offset:
                continue
            if shape[k - offset] == 1:
                index.append(None)
                new.append(1)
            else:
                index.append((start, step, n))
                new.append(n)
        if all(i is None or (i[0] == 0 and i[1] == 1 and i[2] == source[k + offset])
               for k, i in enumerate(index)):
            return expr, shape
        return self.part("slice", [expr], (tuple(index),), tuple(new)), tuple(new)

    def _assemble(self, node, args):
        regions, shape = list(node.arg), node.shape
        items = list(zip(args, node.inputs, regions))
        full = tuple((0, 1) for _ in shape)
        # a part that covers everything hides the parts before it
        last_full = max((k for k, (_, i, r) in enumerate(items) if r == full and i.shape == shape), default=0)
        items = items[last_full:]
        # zeros written first onto a new (zero) buffer change nothing
        while len(items) > 1 and items[0][0][0] == 0:
            items = items[1:]
        if len(items) == 1:
            (expr, printed), part, region = items[0]
            if region == full and part.shape == shape:
                return expr, printed
            if all(step == 1 for _, step in region):
                widths = tuple((start, n - start - m) for (start, _), n, m in zip(region, shape, part.shape))
                return self.part("pad", [self.exact(expr, printed, part.shape)], (widths,), shape), shape
        parts = [self.exact(e, s, i.shape) for (e, s), i, _ in items]
        regions = tuple(r for _, _, r in items)
        return self.part("assemble", parts, (tuple(shape), regions), shape), shape

    def _gather(self, node, args):
        (x, sx), (index, si) = args
        axis = node.arg
        x = self.exact(x, sx, node.inputs[0].shape)
        index = self.exact(index, si, node.inputs[1].shape)
        source, target = node.inputs[0].shape, node.inputs[1].shape
        cut = tuple(None if k == axis or source[k] == target[k] else (0, 1, target[k]) for k in range(len(source)))
        if any(c is not None for c in cut):
            x = self.part("slice", [x], (cut,), tuple(target[k] if c else source[k] for k, c in enumerate(cut)))
        return self.part("take_along_axis", [x, index], (axis,), node.shape), node.shape

    def _window(self, node, args):
        (expr, shape), = args
        expr = self.exact(expr, shape, node.inputs[0].shape)
        return self.part("window", [expr], (tuple(node.shape), node.arg), node.shape), node.shape

    def _unwindow(self, node, args):
        (expr, shape), = args
        expr = self.exact(expr, shape, node.inputs[0].shape)
        return self.part("unwindow", [expr], (tuple(node.shape), node.arg), node.shape), node.shape

    def _scatter_add(self, node, args):
        parts = [self.exact(e, s, i.shape) for (e, s), i in zip(args, node.inputs)]
        return self.part("scatter_add", parts, (node.arg,), node.shape), node.shape


REDUCTIONS = ("sum", "max", "min", "prod")
FUNCTION_OPS = frozenset({"EXP", "LOG", "SQRT", "TANH", "SIGMOID", "SIN", "COS", "RELU", "ABS", "SIGN", "MAXIMUM",
                          "MINIMUM", "ERF", "POW"})


# the largest SymPy piece the builder makes before it cuts: SymPy's walks are recursive (depth) and
# each operation on a piece costs its size
MAX_DEPTH = 24
MAX_NODES = 80


def _too_big(expr) -> bool:
    """Is `expr` deeper than MAX_DEPTH or larger than MAX_NODES? (Stops counting at the first excess.)"""
    count, stack = 0, [(expr, 1)]
    while stack:
        e, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            return True
        stack.extend((a, depth + 1) for a in e.args)
    return False


def _function_depth(expr) -> int:
    """How many function applications nest in `expr` (exp(x - log(s)) is 2). SymPy still simplifies
    exp(x - log(s)) to exp(x)/s; only deeper nests are cut."""
    deepest, stack = 0, [(expr, 0)]
    while stack:
        e, d = stack.pop()
        if isinstance(e, (sympy.Function, sympy.Max, sympy.Min, sympy.Piecewise)) or (
                isinstance(e, sympy.Pow) and not e.exp.is_Integer):
            d += 1
        deepest = max(deepest, d)
        stack.extend((a, d) for a in e.args)
    return deepest


def _number(value, dtype):
    if dtype == "bool" or isinstance(value, bool):
        return sympy.true if value else sympy.false
    if isinstance(value, float):
        if math.isnan(value):
            return sympy.nan
        if math.isinf(value):
            return sympy.oo if value > 0 else -sympy.oo
        if value.is_integer():
            return sympy.Integer(int(value))
        return sympy.Float(value)
    return sympy.Integer(int(value))


def _postorder(root: Node, names: dict, histories: dict | None = None) -> list[Node]:
    """Nodes reachable from `root`, inputs first, without recursion; named nodes are not entered, and a
    realized value with a recorded history (see `_histories`) has that history as its one input."""
    if not histories:
        return postorder([root], enter=lambda node: id(node) not in names)

    def inputs(node):
        history = histories.get(id(node))
        return node.inputs if history is None else (history,)

    return postorder([root], enter=lambda node: id(node) not in names, inputs=inputs)


def _histories(output: Tensor, names: dict) -> dict:
    """The realized intermediate values of `output`'s forward graph, recomputed as pending graphs over
    their inputs: id(realized node) -> pending node.

    A pending graph is computed on the spot when it grows past graph.PENDING_LIMIT nodes (a long chain,
    or a value used twice a few times over), which keeps the value and drops its history. Autograd
    kept each step (the op, its saved inputs, its output), so the steps are run again, lazily, never
    computed, to write the formula in terms of the inputs and not of numbers computed on the way."""
    from .autograd import BackwardFunction, GradMode, _topological
    from .replay import Replay
    from .tensor import _compute, no_grad

    functions = [fn for fn in reversed(_topological([output.grad_fn]))   # inputs first
                 if isinstance(fn, BackwardFunction) and fn.saved is not None]
    if not any(fn.out.realized and id(fn.out) not in names for fn in functions):
        return {}
    histories: dict = {}
    outer = GradMode.in_backward, Replay.busy
    # in_backward: a graph built here is never realized midway (as in a backward walk); busy: the
    # calls run as written, not replayed from a loop's captured template
    GradMode.in_backward, Replay.busy = True, True
    try:
        with no_grad():
            for fn in functions:
                if not fn.out.realized or id(fn.out) in names:
                    continue
                operands = [Tensor._wrap(histories.get(id(entry[0]), entry[0])) if isinstance(entry, tuple)
                            else entry for entry in fn.saved]
                try:
                    node = _compute(fn.op, operands, fn.arg)._node
                except Exception:   # noqa: BLE001 - a step that cannot run again stays a computed value
                    continue
                if node is not fn.out and node.shape == fn.out.shape and node.dtype == fn.out.dtype:
                    histories[id(fn.out)] = node
    finally:
        GradMode.in_backward, Replay.busy = outer
    return histories


# -- simplification ---------------------------------------------------------------------------------
# SymPy passes are guarded by size: each is cheap on a formula a person reads, and none runs on an
# unbounded expression (never sympy.simplify).
SIMPLIFY_LIMIT = 60


def _tidy(expr):
    if not isinstance(expr, sympy.Expr) or sympy.count_ops(expr) > SIMPLIFY_LIMIT:
        return expr
    # the first of the shortest (in operations) wins: factored forms come first, as people write them
    return min([*_candidates(expr), expr], key=sympy.count_ops)


def _candidates(expr):
    # factor and cancel work on polynomials: fast on small degrees and integers, unbounded otherwise
    # (factoring 3*x - 1e4 turns the float into a huge rational), so they run only on tame input
    algebraic = (sympy.factor, sympy.cancel) if _tame(expr) else ()
    # expanding a product of n sums makes 2**n terms: only small expressions are expanded
    expanded = (lambda e: sympy.factor_terms(sympy.expand(e)),) if sympy.count_ops(expr) <= 16 else ()
    for rewrite in (*algebraic[:1], sympy.factor_terms, *expanded, *algebraic[1:]):
        try:
            yield rewrite(expr)
        except (sympy.PolynomialError, TypeError, ValueError, NotImplementedError, AttributeError):
            continue


def _tame(expr):
    """A rational function of low degree with small integer coefficients (where factoring is quick)."""
    for atom in sympy.preorder_traversal(expr):
        if isinstance(atom, sympy.Pow):
            if not (atom.exp.is_Integer and abs(atom.exp) <= 6):
                return False
        elif atom.is_Rational:
            if max(abs(atom.p), abs(atom.q)) > 10**4:
                return False
        elif not isinstance(atom, (sympy.Add, sympy.Mul, sympy.Symbol)):
            return False
    return True


# -- printing ---------------------------------------------------------------------------------------
class _NumpyPrinter(StrPrinter):
    """SymPy's Python-like printer, speaking the numpy vocabulary, with parts printed in place."""

    def __init__(self, parts, named):
        super().__init__({"order": None})
        # named: part symbol -> the text printed in its place (its name, or a placeholder that
        # `_one_line` replaces by the definition or the name)
        self.parts, self.named = parts, named

    def parenthesize(self, item, level, strict=False):
        prec = self._precedence(item)
        if prec < level or (not strict and prec <= level):
            return f"({self._print(item)})"
        return self._print(item)

    def _precedence(self, item):
        if isinstance(item, sympy.Symbol) and item in self.parts and item not in self.named:
            part = self.parts[item]
            return self._precedence(part.operands[0]) if part.kind == "expr" else part.precedence
        # printed as Python operators: `a > b`, `a & b`, `a | b` (SymPy ranks them as functions)
        if isinstance(item, sympy.core.relational.Relational):
            return PRECEDENCE["Relational"]
        if isinstance(item, sympy.And):
            return PRECEDENCE["BitwiseAnd"]
        if isinstance(item, sympy.Or):
            return PRECEDENCE["BitwiseOr"]
        if isinstance(item, (sympy.Function, sympy.Piecewise, sympy.Max, sympy.Min, IsNan)):
            return ATOM   # printed as a call: f(...)
        return precedence(item)

    def operand(self, expr, level=ATOM, strict=True):
        if level is None:
            return self._print(expr)
        return self.parenthesize(expr, level, strict)

    def _print_Symbol(self, expr):
        part = self.parts.get(expr)
        if part is None:
            return expr.name
        if expr in self.named:
            return self.named[expr]
        return self.render(part)

    def render(self, part: _Part) -> str:
        o, p = part.operands, part.params
        kind = part.kind
        if kind == "matmul":
            return f"{self.operand(o[0], MATMUL, strict=True)} @ {self.operand(o[1], MATMUL, strict=False)}"
        if kind == "T":
            return f"{self.operand(o[0], ATOM)}.T"
        if kind in REDUCTIONS:
            axes, keepdims = p
            inner = self.arg(o[0])
            if kind == "sum" and _is_indicator(o[0]):
                inner = self.arg(o[0].args[0].cond)    # sum(where(c, 1, 0)) counts: sum(c)
            if axes is None:
                return f"{kind}({inner})"
            axis = axes[0] if len(axes) == 1 else axes
            return f"{kind}({inner}, axis={axis}{', keepdims=True' if keepdims else ''})"
        if kind == "reshape" and not o[0].is_Number:
            index = _new_axes_index(p[1], p[0])
            if index is not None:   # only unit axes come in: target[:, None], as people write it
                return f"{self.operand(o[0], ATOM)}[{index}]"
        if kind in ("reshape", "broadcast_to", "transpose"):   # (reshape also keeps its operand's shape)
            return f"{kind}({self.arg(o[0])}, {p[0]})"
        if kind == "softmax":
            return f"softmax({self.arg(o[0])}, axis={p[0]})"
        if kind == "slice":
            return f"{self.operand(o[0], ATOM)}[{_index_text(p[0])}]"
        if kind == "pad":
            return f"pad({self.arg(o[0])}, {p[0]})"
        if kind == "take_along_axis":
            return f"take_along_axis({self.arg(o[0])}, {self.arg(o[1])}, axis={p[0]})"
        if kind == "scatter_add":
            return f"scatter_add({', '.join(map(self.arg, o))}, axis={p[0]})"
        if kind == "assemble":
            return f"assemble({p[0]}, {p[1]}, {', '.join(map(self.arg, o))})"
        if kind == "window":
            return f"window({self.arg(o[0])}, {p[0]}, {p[1]})"
        if kind == "unwindow":
            return f"unwindow({self.arg(o[0])}, {p[0]}, {p[1]})"
        if kind == "arange":
            return f"arange({p[0]})"
        if kind == "array":
            return f"array({p[0]})"
        if kind == "expr":
            return self._print(o[0])
        if kind == "trunc":
            return f"trunc({self.arg(o[0])})"
        raise NotImplementedError(kind)

    def arg(self, expr) -> str:
        """`expr` printed as a call's argument (any expression, no parentheses needed)."""
        return self._print(expr)

    def _print_Function(self, expr):
        return f"{expr.func.__name__}({', '.join(self.arg(a) for a in expr.args)})"

    def _print_Mul(self, expr):
        # parts (sums, matrix products) after the other factors, as people write them: 2*b*sum(x, axis=0)
        # (SymPy sorts the parts' symbols first); the order of each kind is SymPy's
        factors = expr.as_ordered_factors()
        ordered = sorted(factors, key=lambda f: f in self.parts)
        if ordered == factors:
            return super()._print_Mul(expr)
        sign = ""
        if ordered[0].is_Number and ordered[0] < 0:   # (SymPy would rebuild, and reorder, -2*b*p as 2*...)
            sign = "-"
            ordered = ordered[1:] if ordered[0] == -1 else [-ordered[0], *ordered[1:]]
        return sign + super()._print_Mul(_InOrder(*ordered, evaluate=False))

    def _print_Float(self, expr):
        # 15 digits: 3*1e-05 is 3e-05, not 3.0000000000000004e-05 (float32 values carry far fewer)
        return repr(float(f"{float(expr):.15g}"))

    def _print_Max(self, expr):
        return self._nest("maximum", expr.args)

    def _print_Min(self, expr):
        return self._nest("minimum", expr.args)

    def _nest(self, name, args):
        args = sorted(args, key=lambda a: bool(a.is_Number))   # maximum(x, 0), as people write it
        # printed left to right, the order Python evaluates them (a `(h := ...)` comes before uses of h)
        texts = [self.arg(a) for a in args]
        text = texts[-1]
        for arg in reversed(texts[:-1]):
            text = f"{name}({arg}, {text})"
        return text

    def _print_Abs(self, expr):
        return f"abs({self.arg(expr.args[0])})"

    def _print_Piecewise(self, expr):
        pieces = list(expr.args)
        if pieces[-1].cond != sympy.true:
            pieces.append((sympy.nan, sympy.true))
        texts = [(self.arg(cond), self.arg(value)) for value, cond in pieces[:-1]]
        text = self.arg(pieces[-1][0])
        for cond, value in reversed(texts):
            text = f"where({cond}, {value}, {text})"
        return text

    def _print_Relational(self, expr):
        op = expr.rel_op
        level = self._precedence(expr)
        return f"{self.parenthesize(expr.lhs, level)} {op} {self.parenthesize(expr.rhs, level, strict=True)}"

    def _print_ITE(self, expr):
        return f"where({', '.join(self.arg(a) for a in expr.args)})"

    def _print_And(self, expr):
        return " & ".join(self.parenthesize(a, PRECEDENCE["BitwiseAnd"]) for a in expr.args)

    def _print_Or(self, expr):
        return " | ".join(self.parenthesize(a, PRECEDENCE["BitwiseOr"]) for a in expr.args)

    def _print_IsNan(self, expr):
        return f"isnan({self.arg(expr.args[0])})"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def _print_Exp1(self, expr):
        return "exp(1)"

    def _print_Infinity(self, expr):
        return "inf"

    def _print_NegativeInfinity(self, expr):
        return "-inf"

    def _print_NaN(self, expr):
        return "nan"

    _print_ComplexInfinity = _print_NaN

    def _print_sign(self, expr):
        return f"sign({self.arg(expr.args[0])})"

    def _print_erf(self, expr):
        return f"erf({self.arg(expr.args[0])})"


# -- one line of Python with named subexpressions ------------------------------------------------------
# Python's parser rejects more than 200 nested parentheses, and SymPy's printer recurses a few frames
# per level: definitions written where they are first used nest inside each other (h2 inside h1 inside
# h ...), so past this depth the definitions are written one after the other instead.
MAX_NESTING = 60

_TOKEN = re.compile("\x00([0-9]+)\x00")


def _token(k: int) -> str:
    """The placeholder printed for the k-th named part (no formula text contains NUL)."""
    return f"\x00{k}\x00"


def _pieces(text: str) -> list:
    """`text` split into strings and the indices of the placeholders in it."""
    pieces, start = [], 0
    for match in _TOKEN.finditer(text):
        pieces.append(text[start:match.start()])
        pieces.append(int(match.group(1)))
        start = match.end()
    pieces.append(text[start:])
    return pieces


def _nesting(text: str) -> int:
    """The deepest nesting of brackets in `text`."""
    deepest = level = 0
    for char in text:
        if char in "([{":
            level += 1
            deepest = max(deepest, level)
        elif char in ")]}":
            level -= 1
    return deepest


def _one_line(body: str, definitions: list[str], names: list[str]) -> str:
    """One Python expression from `body` and the `definitions` of `names` (texts with placeholders).

    Each definition is written as an assignment expression where its name is first read, which is
    where Python first evaluates it: `(h := maximum(x @ w1, 0)).T @ (2*(h @ w2 - y))`. When that nests
    too deep, the definitions come first, in order, in a tuple whose last item is the formula:
    `(h := tanh(x), h1 := tanh(h), ..., (1 - h**2)*...)[-1]`.
    """
    inline = _inline_definitions(body, definitions, names)
    if _nesting(inline) <= MAX_NESTING:
        return inline
    plain = [_TOKEN.sub(lambda m: names[int(m.group(1))], text) for text in (*definitions, body)]
    items = [f"{name} := {text}" for name, text in zip(names, plain)]
    return f"({', '.join([*items, plain[-1]])})[-1]"


def _inline_definitions(body, definitions, names) -> str:
    """`body` with each placeholder replaced by `(name := definition)` the first time, by `name` after
    (without recursion: a stack of the texts being written)."""
    out: list[str] = []
    defined: set[int] = set()
    stack = [(_pieces(body), 0)]
    while stack:
        pieces, at = stack.pop()
        if at == len(pieces):
            continue
        piece = pieces[at]
        if isinstance(piece, str):
            out.append(piece)
            stack.append((pieces, at + 1))
        elif piece == -1:    # the end of a definition
            out.append(")")
            stack.append((pieces, at + 1))
        elif piece in defined:
            out.append(names[piece])
            stack.append((pieces, at + 1))
        else:
            defined.add(piece)
            before = next((text for text in reversed(out) if text), "")
            after = pieces[at + 1] if at + 1 < len(pieces) else ""
            # a whole call argument needs no parentheses of its own: f(h := ..., 0)
            bare = before.endswith(("(", ", ")) and isinstance(after, str) and after.startswith((")", ","))
            out.append(f"{names[piece]} := " if bare else f"({names[piece]} := ")
            stack.append((pieces, at + 1))
            stack.append(([*_pieces(definitions[piece]), *([] if bare else [-1])], 0))
    return "".join(out)


class _InOrder(sympy.Mul):
    """A product whose factors print in the order given."""

    def as_ordered_factors(self, order=None):
        return list(self.args)


def _is_indicator(expr) -> bool:
    """Is `expr` where(c, 1, 0)?"""
    return (isinstance(expr, sympy.Piecewise) and len(expr.args) == 2 and expr.args[0].expr == 1
            and expr.args[1].expr == 0 and expr.args[1].cond == sympy.true)


def _new_axes_index(old, new) -> str | None:
    """The index that gives an array of shape `old` the shape `new` when `new` only adds unit axes
    ((8,) -> (8, 1): ":, None"), else None."""
    items, k = [], 0
    for n in new:
        if k < len(old) and old[k] == n:
            items.append(":")
            k += 1
        elif n == 1:
            items.append("None")
        else:
            return None
    if k != len(old) or "None" not in items:
        return None
    while items[-1] == ":":
        items.pop()
    return ", ".join(items)


def _index_text(index):
    items = []
    for item in index:
        if item is None:
            items.append(":")
            continue
        start, step, n = item
        stop = start + step * n
        text = f"{start if start else ''}:{stop}"
        items.append(text + (f":{step}" if step != 1 else ""))
    while items and items[-1] == ":":
        items.pop()
    return ", ".join(items) if items else "..."


class _UnicodePrinter(_NumpyPrinter):
    """The numpy text with the typography of a textbook: x⋅y, x², xᵀ."""

    SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")

    def _print_Mul(self, expr):
        return super()._print_Mul(expr).replace("*", "⋅")

    def _print_Pow(self, expr):
        exp = expr.exp
        if exp.is_Integer and 1 < exp < 10:
            return f"{self.parenthesize(expr.base, PRECEDENCE['Pow'], strict=False)}{str(exp).translate(self.SUPERSCRIPT)}"
        if exp == sympy.Rational(1, 2):
            return f"√{self.parenthesize(expr.base, ATOM, strict=False)}"
        return super()._print_Pow(expr)

    def render(self, part):
        if part.kind == "T":
            return f"{self.operand(part.operands[0], ATOM)}ᵀ"
        return super().render(part)


class _Latex(LatexPrinter):
    """LaTeX with parts as matrix notation: x^{\\mathsf{T}} (h ...), \\sum_{axis 0}."""

    def __init__(self, parts, named):
        super().__init__()
        self.parts, self.named = parts, named

    def parenthesize(self, item, level, is_neg=False, strict=False):
        if isinstance(item, sympy.Symbol) and item in self.parts and item not in self.named:
            prec = self.parts[item].precedence
            if prec < level or (not strict and prec <= level):
                return rf"\left({self._print(item)}\right)"
            return self._print(item)
        return super().parenthesize(item, level, is_neg, strict)

    def _print_Symbol(self, expr, style="plain"):
        part = self.parts.get(expr)
        if part is None:
            return _latex_name(expr.name)
        if expr in self.named:
            return _latex_name(self.named[expr])
        return self.render(part)

    def render(self, part):
        o, p, kind = part.operands, part.params, part.kind
        if kind == "matmul":
            return f"{self.parenthesize(o[0], MATMUL, strict=True)} {self.parenthesize(o[1], MATMUL)}"
        if kind == "T":
            return f"{self.parenthesize(o[0], ATOM, strict=True)}^{{\\mathsf{{T}}}}"
        if kind in REDUCTIONS:
            op = {"sum": r"\sum", "prod": r"\prod", "max": r"\max", "min": r"\min"}[kind]
            under = "" if p[0] is None else f"_{{\\text{{axis }} {', '.join(map(str, p[0]))}}}"
            return rf"{op}{under}\left({self._print(o[0])}\right)"
        args = ", ".join(self._print(a) for a in o)
        extra = ", ".join(str(x) for x in p)
        body = ", ".join(x for x in (args, extra) if x)
        name = kind.replace("_", "\\_")
        return rf"\operatorname{{{name}}}\left({body}\right)"


def _latex_name(name):
    match = re.fullmatch(r"([A-Za-z]+)_?(\d+)", name)
    if match:
        return f"{match.group(1)}_{{{match.group(2)}}}"
    return name.replace("_", r"\_")


# -- Formula ----------------------------------------------------------------------------------------
@dataclass
class Formula:
    """The derivative of an output with respect to one tensor, as a formula over named tensors.

    >>> import symgrad
    >>> x = symgrad.tensor([1.0, 2.0], requires_grad=True)
    >>> f = symgrad.formula((x * x.exp()).sum(), x)
    >>> str(f)
    '(x + 1)*exp(x)'
    >>> f.evaluate()
    tensor([ 5.4366, 22.1672])
    >>> f.sympy()
    (x + 1)*exp(x)
    """

    expr: sympy.Expr
    parts: dict
    named: dict                   # part symbol -> where-name
    inputs: dict                  # name -> Tensor the formula reads
    gradient: Tensor | None       # the lazy gradient tensor the formula describes
    shape: tuple
    _text: str = field(default="", repr=False)

    def __str__(self):
        if not self._text:
            printer = _NumpyPrinter(self.parts, {symbol: _token(k) for k, symbol in enumerate(self.named)})
            definitions = [printer.render(self.parts[symbol]) for symbol in self.named]
            self._text = _one_line(printer.doprint(self.expr), definitions, list(self.named.values()))
        return self._text

    def _repr_pretty_(self, p, cycle):   # IPython
        p.text(self.pretty())

    def where(self) -> list[tuple[str, str]]:
        """The named subexpressions, in the order they are defined: [("h", "x @ w1"), ...]."""
        printer = _NumpyPrinter(self.parts, self.named)
        return [(name, printer.render(self.parts[symbol])) for symbol, name in self.named.items()]

    def pretty(self) -> str:
        """Unicode, with named subexpressions on `where` lines below the formula.

        >>> import symgrad
        >>> x = symgrad.tensor([1.0, 2.0], requires_grad=True)
        >>> print(symgrad.formula((x ** 3).sum(), x).pretty())
        3⋅x²
        """
        printer = _UnicodePrinter(self.parts, self.named)
        lines = [printer.doprint(self.expr)]
        for symbol, name in self.named.items():
            lines.append(f"  where {name} = {printer.render(self.parts[symbol])}")
        return "\n".join(lines)

    def latex(self) -> str:
        r"""LaTeX of the formula, named subexpressions after `\quad\text{where}`.

        >>> import symgrad
        >>> x = symgrad.tensor([1.0, 2.0], requires_grad=True)
        >>> symgrad.formula((x ** 3).sum(), x).latex()
        '3 x^{2}'
        """
        printer = _Latex(self.parts, self.named)
        text = printer.doprint(self.expr)
        defs = [f"{_latex_name(name)} = {printer.render(self.parts[s])}" for s, name in self.named.items()]
        return text + (r" \quad\text{where } " + r",\; ".join(defs) if defs else "")

    def sympy(self, cse: bool = False):
        """The formula as a SymPy object.

        Elementwise formulas are ordinary SymPy over the input names (each name stands for every entry
        of its array), with sums and other non-elementwise parts as undefined functions named after the
        numpy operation: `sum(x**2, (0,), False)`. A formula with a matrix product or a transpose is a
        SymPy matrix expression: 2-D inputs are MatrixSymbols (1-D ones rows, as numpy broadcasts them),
        `@` MatMul, `.T` Transpose, elementwise arithmetic MatAdd / HadamardProduct / HadamardPower,
        elementwise functions the ordinary SymPy function of one entry applied to every entry
        (ElementwiseApplyFunction), `where(c, a, b)` the indicator of c times a plus the rest times b,
        sums and broadcasts products with OneMatrix. Substitute `self.sympy_values()` and `.doit()` to
        compute it. With `cse=True`: (definitions, formula) as `sympy.cse` gives them, the named
        subexpressions as symbols (needed for formulas hundreds of levels deep).

        >>> import symgrad, sympy
        >>> x = symgrad.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> w = symgrad.tensor([[1.0], [-1.0]], requires_grad=True)
        >>> f = symgrad.formula((x @ w).tanh().sum(), w)
        >>> print(f)
        x.T @ (1 - tanh(x @ w)**2)
        >>> e = f.sympy()
        >>> e.shape, sorted(s.name for s in e.free_symbols)
        ((2, 1), ['w', 'x'])
        >>> value = e.subs(f.sympy_values()).doit().as_explicit()
        >>> [round(float(v), 4) for v in value]
        [1.6799, 2.5198]
        >>> f.evaluate()
        tensor([[1.6799],
                [2.5198]])
        """
        return _SympyConverter(self).convert(cse)

    def sympy_values(self) -> dict:
        """The values of the inputs, keyed by the symbols of `self.sympy()`: an ImmutableMatrix for each
        MatrixSymbol (1-D arrays as rows), a number for each 0-D input."""
        converter = _SympyConverter(self)
        out = {}
        for name, t in self.inputs.items():
            symbol = converter.input_symbol(name) if converter.matrix else sympy.Symbol(name)
            array = t.detach().numpy()
            if isinstance(symbol, sympy.MatrixSymbol):
                out[symbol] = sympy.ImmutableMatrix(array.reshape(symbol.shape).tolist())
            elif array.size == 1:
                out[symbol] = sympy.sympify(array.reshape(-1)[0].item())
            else:
                raise ValueError(f"sympy_values(): {name} stands for every entry of a {tuple(t.shape)} array in "
                                 "this elementwise formula; evaluate str(f) with numpy instead")
        return out

    def evaluate(self, **arrays):
        """The formula evaluated with numpy (its inputs, or the arrays you pass by name), as a tensor.

        It is computed from the printed text, so it checks the text against `self.gradient`.
        """
        values = {name: t.detach().numpy() if isinstance(t, Tensor) else np.asarray(t)
                  for name, t in self.inputs.items()}
        values.update(arrays)
        result = np.asarray(eval(str(self), numpy_namespace(**values)))  # noqa: S307 - our own text
        if result.shape != self.shape:
            result = np.broadcast_to(result, self.shape)
        from .tensor import from_numpy

        dtype = self.gradient.numpy().dtype if self.gradient is not None else result.dtype
        return from_numpy(np.ascontiguousarray(result.astype(dtype)))


class Formulas(dict):
    """Formulas keyed by parameter name (what `formula(output, [w1, w2])` returns)."""

    def __str__(self):
        return "\n".join(f"d/d{name}: {f}" for name, f in self.items())

    def pretty(self) -> str:
        return "\n".join(f"d/d{name}: {f.pretty()}" for name, f in self.items())


# -- SymPy objects ----------------------------------------------------------------------------------
class _Unfit(Exception):
    """A piece with no SymPy matrix expression (a 3-D value, take_along_axis, ...)."""


# deeper than this, an inlined SymPy expression is more than SymPy's own recursive walks (printing,
# substitution) handle: `sympy(cse=True)` gives such a formula as definitions instead
SYMPY_INLINE_DEPTH = 120


def _matrix_shape(shape) -> tuple:
    """The SymPy matrix standing for a numpy value of `shape`: (m, n) as is, (n,) a row, () 1 x 1."""
    shape = tuple(shape)
    if len(shape) > 2:
        raise _Unfit
    return ((1, 1), (1, *shape), shape)[len(shape)]


class _SympyConverter:
    """Formula -> SymPy, one part at a time, inputs first (no recursion across parts).

    Elementwise formulas stay ordinary SymPy over the input names, with the non-elementwise parts as
    undefined functions named after the numpy operation (`sum(x**2, 0, False)`). A formula with a matrix
    product or a transpose becomes a matrix expression: 2-D inputs are MatrixSymbols (1-D ones rows,
    as numpy broadcasts them), `@` MatMul, `.T` Transpose, sums products with OneMatrix, elementwise
    arithmetic MatAdd / HadamardProduct / HadamardPower, elementwise functions and `where` the ordinary
    SymPy function of one entry applied to every entry (ElementwiseApplyFunction of a Lambda; a
    condition is its 0/1 indicator), broadcasting OneMatrix products. A part with no such expression
    is a MatrixSymbol named after its text."""

    def __init__(self, f):
        self.f = f
        self.order = _parts_in_order(f.expr, f.parts)
        shapes = [tuple(t.shape) for t in f.inputs.values()] + [f.parts[s].shape for s in self.order]
        self.matrix = any(f.parts[s].kind in ("matmul", "T") for s in self.order) and all(len(x) <= 2 for x in shapes)
        self.entry = sympy.Dummy("t")
        self.functions: dict = {}

    def convert(self, cse: bool):
        f = self.f
        values: dict = {}
        definitions = []
        for symbol in self.order:
            part = f.parts[symbol]
            try:
                value = self.matrix_part(part, values) if self.matrix else self.function_part(part, values)
            except (_Unfit, sympy.ShapeError, TypeError, ValueError):
                if not self.matrix:
                    raise
                value = self.opaque(symbol, part)
            name = f.named.get(symbol)
            if name is not None:
                named = sympy.MatrixSymbol(name, *value.shape) if isinstance(value, sympy.MatrixExpr) \
                    else sympy.Symbol(name)
                definitions.append((named, value))
                value = named
            values[symbol] = value
        try:
            expr = self.elementwise(f.expr, values) if self.matrix else f.expr.xreplace(values)
        except (_Unfit, sympy.ShapeError, TypeError, ValueError):
            self.matrix = False   # the formula itself has no matrix form: the elementwise form of all of it
            return self.convert(cse)
        if cse:
            return definitions, expr
        depth: dict = {}
        for named, value in definitions:
            depth[named] = _depth_with(value, depth)
        if _depth_with(expr, depth) > SYMPY_INLINE_DEPTH:
            raise ValueError(f"sympy(): this formula is more than {SYMPY_INLINE_DEPTH} levels deep once its "
                             "named subexpressions are written in; f.sympy(cse=True) gives the definitions "
                             "and the formula over them, as sympy.cse does")
        inlined: dict = {}
        for named, value in definitions:
            inlined[named] = value.xreplace(inlined)
        return expr.xreplace(inlined)

    # -- the elementwise form ------------------------------------------------------------------------
    def function_part(self, part, values):
        args = [o.xreplace(values) for o in part.operands]
        if part.kind == "expr":
            return args[0]    # a piece the builder cut to keep SymPy's work bounded: nothing of its own
        args += [sympy.Tuple(*_tuple(p)) if isinstance(p, (tuple, list)) else sympy.sympify(str(p))
                 for p in part.params if p is not None]
        return self.functions.setdefault(part.kind, sympy.Function(part.kind))(*args)

    # -- the matrix form -----------------------------------------------------------------------------
    def input_symbol(self, name):
        t = self.f.inputs.get(name)
        if t is None or t.dim() == 0:
            return sympy.Symbol(name)
        return sympy.MatrixSymbol(name, *_matrix_shape(t.shape))

    def numpy_shape(self, expr) -> tuple:
        shapes = []
        for s in expr.free_symbols:
            if s in self.f.parts:
                shapes.append(self.f.parts[s].shape)
            elif s.name in self.f.inputs:
                shapes.append(tuple(self.f.inputs[s.name].shape))
        return _broadcast(*shapes) if shapes else ()

    def opaque(self, symbol, part):
        name = self.f.named.get(symbol) or _NumpyPrinter(self.f.parts, self.f.named).render(part)
        return sympy.MatrixSymbol(name, *_matrix_shape(part.shape))

    def matrix_part(self, part, values):
        kind, params = part.kind, part.params
        operands = [self.elementwise(o, values) for o in part.operands]
        matrices = all(isinstance(o, sympy.MatrixExpr) for o in operands)
        if kind == "expr":
            return operands[0]
        if kind == "matmul" and matrices and len(part.shape) == 2:
            return sympy.MatMul(*operands)
        if kind == "T" and matrices:
            return sympy.Transpose(operands[0])
        if kind == "sum" and matrices:
            return self.sum(operands[0], self.numpy_shape(part.operands[0]), *params)
        if kind == "softmax" and matrices:
            return self.softmax(operands[0], len(self.numpy_shape(part.operands[0])), params[0])
        if kind == "reshape":
            new, old = (_matrix_shape(x) for x in params)
            if not isinstance(operands[0], sympy.MatrixExpr) or new == old:
                return operands[0]
            if new == old[::-1] and 1 in new:
                return sympy.Transpose(operands[0])
        if kind == "broadcast_to":
            return self.broadcast(operands[0], _matrix_shape(params[0]))
        if kind == "arange":
            return sympy.ImmutableMatrix([list(range(params[0]))])
        if kind == "array":
            return sympy.ImmutableMatrix(np.asarray(params[0]).reshape(_matrix_shape(part.shape)).tolist())
        raise _Unfit

    def sum(self, a, numpy_shape, axes, keepdims):
        m, n = a.shape
        axes = set(range(len(numpy_shape))) if axes is None else set(axes)
        if len(numpy_shape) == 2 and axes == {0}:
            return sympy.MatMul(sympy.OneMatrix(1, m), a)
        if len(numpy_shape) == 2 and axes == {1}:
            column = sympy.MatMul(a, sympy.OneMatrix(n, 1))
            return column if keepdims else sympy.Transpose(column)   # (a 1-D result is a row)
        return sympy.MatMul(sympy.OneMatrix(1, m), a, sympy.OneMatrix(n, 1))   # everything: 1 x 1

    def softmax(self, y, rank, axis):
        m, n = y.shape
        e = self.apply(sympy.exp(self.entry), y)
        if rank == 2 and axis == 0:
            total = sympy.MatMul(sympy.OneMatrix(m, 1), sympy.OneMatrix(1, m), e)
        else:
            total = sympy.MatMul(e, sympy.OneMatrix(n, 1), sympy.OneMatrix(1, n))
        return sympy.HadamardProduct(e, sympy.HadamardPower(total, -1))

    def apply(self, body, matrix):
        """The function `body` of one entry (self.entry) applied to every entry of `matrix`."""
        from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

        return ElementwiseApplyFunction(sympy.Lambda(self.entry, body), matrix)

    def broadcast(self, value, target):
        if not isinstance(value, sympy.MatrixExpr):
            return sympy.OneMatrix(*target) if value == 1 else value * sympy.OneMatrix(*target)
        m, n = value.shape
        if m == 1 and target[0] != 1:
            value = sympy.MatMul(sympy.OneMatrix(target[0], 1), value)
        if n == 1 and target[1] != 1:
            value = sympy.MatMul(value, sympy.OneMatrix(1, target[1]))
        if tuple(value.shape) != tuple(target):
            raise _Unfit
        return value

    def common_shape(self, matrices):
        rows = {m.shape[0] for m in matrices} - {1}
        columns = {m.shape[1] for m in matrices} - {1}
        if len(rows) > 1 or len(columns) > 1:
            raise _Unfit
        return (rows.pop() if rows else 1, columns.pop() if columns else 1)

    def add(self, terms):
        matrices = [t for t in terms if isinstance(t, sympy.MatrixExpr)]
        if not matrices:
            return sympy.Add(*terms)
        target = self.common_shape(matrices)
        terms = [self.broadcast(t, target) for t in terms if t != 0]
        return terms[0] if len(terms) == 1 else sympy.MatAdd(*terms)

    def times(self, factors):
        scalars = [a for a in factors if not isinstance(a, sympy.MatrixExpr)]
        matrices = [a for a in factors if isinstance(a, sympy.MatrixExpr)]
        coefficient = sympy.Mul(*scalars)
        if not matrices or coefficient == 0:
            return coefficient
        target = self.common_shape(matrices)
        matrices = [self.broadcast(a, target) for a in matrices]
        product = matrices[0] if len(matrices) == 1 else sympy.HadamardProduct(*matrices)
        return product if coefficient == 1 else coefficient * product

    def elementwise(self, e, values):
        """An elementwise SymPy expression over names and parts, as a scalar or a matrix expression
        (bounded recursion: the builder cuts SymPy pieces at MAX_DEPTH)."""
        if isinstance(e, sympy.Symbol):
            return values[e] if e in values else self.input_symbol(e.name)
        if e.is_Number or e in (sympy.oo, -sympy.oo, sympy.nan, sympy.zoo):
            return e
        if isinstance(e, sympy.Add):
            return self.add([self.elementwise(a, values) for a in e.args])
        if isinstance(e, sympy.Mul):
            return self.times([self.elementwise(a, values) for a in e.args])
        if isinstance(e, sympy.Pow):
            base, exponent = self.elementwise(e.base, values), self.elementwise(e.exp, values)
            if isinstance(exponent, sympy.MatrixExpr):
                if isinstance(base, sympy.MatrixExpr):
                    raise _Unfit
                return self.apply(base ** self.entry, exponent)
            if isinstance(base, sympy.MatrixExpr):
                return base if exponent == 1 else sympy.HadamardPower(base, exponent)
            return base ** exponent
        if isinstance(e, sympy.Piecewise):
            return self.piecewise(e, values)
        if isinstance(e, (sympy.core.relational.Relational, sympy.And, sympy.Or, sympy.Not,
                          sympy.logic.boolalg.BooleanAtom)):
            return self.indicator(e, values)    # a boolean value: its 0/1 indicator
        if isinstance(e, (sympy.Function, sympy.Max, sympy.Min, IsNan)):
            args = [self.elementwise(a, values) for a in e.args]
            matrices = {a for a in args if isinstance(a, sympy.MatrixExpr)}
            if not matrices:
                return e.func(*args)
            if len(matrices) > 1:
                raise _Unfit
            matrix = matrices.pop()
            body = e.func(*(self.entry if a == matrix else a for a in args))
            if isinstance(e, IsNan):
                body = sympy.Piecewise((1, body), (0, True))
            return self.apply(body, matrix)
        raise _Unfit

    def piecewise(self, e, values):
        """where(c1, a1, where(c2, a2, ...)) as ind(c1)∘a1 + (1 - ind(c1))∘ind(c2)∘a2 + ..."""
        terms, remaining = [], sympy.Integer(1)
        for value, condition in e.args:
            indicator = self.indicator(condition, values)
            taken = self.times([remaining, indicator])
            value = self.elementwise(value, values)
            if value != 0:
                terms.append(self.times([taken, value]))
            remaining = self.times([remaining, self.add([sympy.Integer(1), self.times([-1, indicator])])])
            if condition == sympy.true:
                break
        return self.add(terms) if terms else sympy.Integer(0)

    def indicator(self, condition, values):
        """1 where `condition` holds, else 0: a number or a matrix."""
        if condition == sympy.true:
            return sympy.Integer(1)
        if condition == sympy.false:
            return sympy.Integer(0)
        if isinstance(condition, sympy.Symbol):
            return self.elementwise(condition, values)   # a boolean part or input: already 0/1
        if isinstance(condition, sympy.core.relational.Relational):
            difference = self.elementwise(condition.lhs - condition.rhs, values)
            if not isinstance(difference, sympy.MatrixExpr):
                return sympy.Piecewise((1, condition.func(difference, 0)), (0, True))
            return self.apply(sympy.Piecewise((1, condition.func(self.entry, 0)), (0, True)), difference)
        if isinstance(condition, sympy.And):
            return self.times([self.indicator(c, values) for c in condition.args])
        if isinstance(condition, sympy.Or):
            missed = self.times([self.add([sympy.Integer(1), self.times([-1, self.indicator(c, values)])])
                                 for c in condition.args])
            return self.add([sympy.Integer(1), self.times([-1, missed])])
        if isinstance(condition, sympy.Not):
            return self.add([sympy.Integer(1), self.times([-1, self.indicator(condition.args[0], values)])])
        if isinstance(condition, IsNan):
            return self.elementwise(condition, values)
        raise _Unfit


def _depth_with(expr, depth: dict) -> int:
    """The depth of `expr` once the symbols in `depth` are replaced by expressions that deep."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        e, d = stack.pop()
        if e in depth:
            d += depth[e]
        deepest = max(deepest, d)
        stack.extend((a, d + 1) for a in e.args)
    return deepest


def _tuple(p):
    out = []
    for item in p:
        out.append(sympy.Tuple(*_tuple(item)) if isinstance(item, (tuple, list)) else
                   (sympy.Integer(item) if isinstance(item, int) else sympy.sympify(str(item))))
    return out


# -- names ------------------------------------------------------------------------------------------
def _identifier(name: str) -> str:
    """`0.weight` -> `weight0`, `fc1.bias` -> `fc1_bias`: a parameter path as a Python name."""
    words = name.split(".")
    digits = "".join(w for w in words if w.isdigit())
    text = "_".join(w for w in words if not w.isdigit()) + digits
    text = re.sub(r"\W", "_", text) or "p"
    if text[0].isdigit() or keyword.iskeyword(text) or text in VOCABULARY:
        text = "_" + text
    return text


def _caller_names(frame):
    """The names the calling code holds tensors under: (leaves, intermediates), each id(node) -> name.

    Leaves (and a module variable's parameters) name the inputs of a formula; intermediate tensors
    (`h = x @ w1`) only name repeated parts, since formulas are written in terms of the inputs. A node
    held under two different names is ambiguous and gets neither."""
    from . import nn

    found: dict[int, set] = {}
    leaves: dict[int, Tensor] = {}
    scopes = [frame.f_locals] if frame.f_locals is frame.f_globals else [frame.f_locals, frame.f_globals]
    for scope in scopes:
        for name, value in list(scope.items()):
            if name.startswith("_"):
                continue
            if isinstance(value, Tensor):
                found.setdefault(id(value._node), set()).add(name)
                if value.is_leaf:
                    leaves[id(value._node)] = value
            elif isinstance(value, nn.Module):
                for path, p in value.named_parameters():
                    found.setdefault(id(p._node), set()).add(_identifier(path))
                    leaves[id(p._node)] = p
        if len(scopes) > 1 and found:
            break   # names in the function win over module globals
    unique = {k: next(iter(v)) for k, v in found.items() if len(v) == 1}
    return ({k: (n, leaves[k]) for k, n in unique.items() if k in leaves},
            {k: n for k, n in unique.items() if k not in leaves})


def _own_leaf(t: Tensor) -> None:
    """Compute a leaf whose value is still pending (`ones(2, 2)` is a broadcast constant), so that its
    node is its own: otherwise every constant 1 of the same shape in the gradient would print as `x`."""
    if not t._node.realized:
        from .tensor import _realize

        _realize([t._node])


def _safe(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or name in VOCABULARY:
        raise ValueError(f"formula(): {name!r} cannot name a tensor in a formula (not a Python name, or a "
                         "name of the vocabulary)")
    return name


# -- formula() --------------------------------------------------------------------------------------
def formula(output: Tensor, wrt, names: dict | None = None, grad_output: Tensor | None = None):
    """The derivative d(output)/d(wrt) as a `Formula` you can read, check and paste into numpy.

    `wrt` is a tensor (a `Formula` comes back) or a list/iterable of tensors, e.g. `model.parameters()`
    (a `Formulas` dict keyed by name). `output` must be a scalar unless `grad_output` is given, as with
    `backward`. Names: `names={"x": x, ...}`, else the caller's variable names where unambiguous (a
    module variable names its parameters: `0.weight` -> `weight0`), else x0, x1, ...

    `str(f)` is one line of Python over the names and the numpy vocabulary (`VOCABULARY`): with your
    arrays bound to the names, `eval(str(f), numpy_namespace(x=..., ...))` is the gradient. A part used
    more than once is named once with `:=` (`where h = ...` in `f.pretty()`).

    >>> import symgrad
    >>> a = symgrad.tensor([1.0], requires_grad=True)
    >>> d = 3 * (1 * a) + 4 * (2 * a)
    >>> print(symgrad.formula(d ** 2, a))
    242*a
    >>> x = symgrad.randn(4, 3)
    >>> w = symgrad.randn(3, 2, requires_grad=True)
    >>> print(symgrad.formula((x @ w).tanh().sum(), w))
    x.T @ (1 - tanh(x @ w)**2)
    """
    single = isinstance(wrt, Tensor)
    params = [wrt] if single else list(wrt)
    leaves, intermediates = _caller_names(sys._getframe(1))
    return _formulas(output, params, single, names, grad_output, leaves, intermediates)


def _formulas(output, params, single, names, grad_output, leaves, intermediates):
    from .autograd import grad_of

    for t in (*params, *(names or {}).values(), *(t for _, t in leaves.values())):
        _own_leaf(t)
    # realizing changed no node ids of realized leaves; re-read them for the pending ones
    leaves = {id(t._node): (name, t) for name, t in leaves.values()}
    node_names: dict[int, str] = {}
    constant_ids: set = set()
    for key, (name, t) in leaves.items():
        if not t.requires_grad and t.numel() == 1:
            constant_ids.add(key)   # a plain number held in a tensor (seed 3's weights) is written as the number
        else:
            node_names[key] = name
    for name, t in (names or {}).items():
        node_names[id(t._node)] = _safe(name)
        constant_ids.discard(id(t._node))
    labels = []
    taken = set(node_names.values()) | set(intermediates.values())
    for k, p in enumerate(params):
        name = node_names.get(id(p._node))
        if name is None:
            name = next(n for n in (f"x{j}" for j in range(k, k + len(params) + len(taken) + 1)) if n not in taken)
            node_names[id(p._node)] = name
            taken.add(name)
        constant_ids.discard(id(p._node))
        labels.append(name)
    if grad_output is not None and id(grad_output._node) not in node_names:
        node_names[id(grad_output._node)] = "grad_output" if "grad_output" not in taken else "_grad_output"
    # every other unnamed one-element buffer is a constant too (a tensor built inside a library call)
    grads = grad_of(output, params, grad_output, retain_graph=True, allow_unused=True)
    histories = _histories(output, node_names)
    result = Formulas()
    for label, p, g in zip(labels, params, grads):
        result[label] = _formula_of(g, p, dict(node_names), constant_ids, intermediates, histories)
    return result[labels[0]] if single else result


def _formula_of(gradient, param, names, constant_ids, intermediates, histories) -> Formula:
    shape = tuple(param.shape)
    if gradient is None:
        return Formula(sympy.Integer(0), {}, {}, {}, None, shape)
    builder = _Builder(names, _constant_buffers(gradient._node, names, histories) | constant_ids, histories)
    expr, printed = builder.build(gradient._node)
    if tuple(printed) != shape and (_strip(printed) != _strip(shape) or len(printed) > len(shape)):
        expr = builder.exact(expr, printed, shape)
    expr, parts = _simplify(expr, builder.parts)
    expr = _rewrite_idioms(expr, parts, builder)
    expr = _share_subexpressions(expr, parts, lambda sub: builder.part("expr", [sub], (), builder.shape_of(sub)))
    named = _choose_names(expr, parts, names, intermediates)
    f = Formula(expr, parts, named, {}, gradient, shape)
    text = str(f)
    f.inputs = {name: Tensor._wrap(node) for name, node in sorted(builder.used_names.items())
                if re.search(rf"\b{re.escape(name)}\b", text)}
    return f


def _constant_buffers(root, names, histories) -> set:
    """Unnamed realized one-element (or tiny) buffers: values a library call made, written as numbers."""
    out = set()
    for node in _postorder(root, names, histories):
        if node.op == "BUFFER" and id(node) not in names and id(node) not in histories and node.numel <= 8:
            out.add(id(node))
    return out


def _simplify(expr, parts):
    """Tidy every SymPy piece (the formula and the operands of each part), bounded by size."""
    for part in parts.values():
        part.operands = [_tidy(o) for o in part.operands]
    return _tidy(expr), parts


# -- idioms: rewrites people make when they read a gradient (each one exact) ----------------------------
def _rewrite_idioms(expr, parts, builder):
    """Factors the same along a sum's axes come out of it (`sum(-2*b*x, axis=0)` is
    `-2*b*sum(x, axis=0)` for b of shape (n,) and x of shape (m, n)), and
    `exp(y)/sum(exp(y), axis=k, keepdims=True)` (or `exp(y - log(sum(exp(y), ...)))`) is written
    `softmax(y, axis=k)`, without the terms of y that are constant along k (the max subtracted for
    stability: softmax does that itself)."""
    expr = _constants_out_of_sums(expr, parts, builder)
    expr = _recognize_softmax(expr, parts, builder)
    return _drop_implied_conditions(expr, parts)


def _drop_implied_conditions(expr, parts):
    """`(t != c) & (t == arange(n))` is `t == arange(n)` when c is not in range(n): the one-hot mask of
    a cross entropy without its ignore_index test (t may be reshaped the same way on both sides)."""

    def unreshaped(e):
        part = parts.get(e) if isinstance(e, sympy.Symbol) else None
        return (part.operands[0], part.params) if part is not None and part.kind == "reshape" else (e, None)

    def rewrite(e):
        if not isinstance(e, sympy.And):
            return e
        ranges = []   # (value, its reshape, n) for each `value == arange(n)`
        for condition in e.args:
            if isinstance(condition, sympy.Eq):
                for value, other in (condition.args, condition.args[::-1]):
                    part = parts.get(other) if isinstance(other, sympy.Symbol) else None
                    if part is not None and part.kind == "arange":
                        ranges.append((*unreshaped(value), part.params[0]))
        kept = []
        for condition in e.args:
            inner, reshape = unreshaped(condition)
            if isinstance(inner, sympy.Ne) and any(a.is_Integer for a in inner.args):
                value, constant = sorted(inner.args, key=lambda a: bool(a.is_Integer))
                if any(value == v and reshape == r and not 0 <= constant < n for v, r, n in ranges):
                    continue
            kept.append(condition)
        return e if len(kept) == len(e.args) else sympy.And(*kept)

    for symbol in _parts_in_order(expr, parts):
        parts[symbol].operands = [_map_tree(o, rewrite) for o in parts[symbol].operands]
    return _map_tree(expr, rewrite)


def _constants_out_of_sums(expr, parts, builder):
    """sum(c*a, axis=k) is c*sum(a, axis=k) for every factor c that is the same along k (a number, or
    a value broadcast along k that stays aligned with the sum's result)."""
    replace: dict = {}
    for symbol in _parts_in_order(expr, parts):     # inputs first: an operand's sums are done before
        part = parts[symbol]
        part.operands = [o.xreplace(replace) for o in part.operands]
        if part.kind != "sum" or not isinstance(part.operands[0], sympy.Mul):
            continue
        axes, keepdims = part.params
        shape = builder.shape_of(part.operands[0])
        if axes is None:
            axes = tuple(range(len(shape)))
        if tuple(part.shape) != (tuple(1 if k in axes else n for k, n in enumerate(shape)) if keepdims else
                                 tuple(n for k, n in enumerate(shape) if k not in axes)):
            continue   # (axes count from the operand's printed shape: check that they line up)

        def constant(factor):
            factor_shape = builder.shape_of(factor)
            lead = len(shape) - len(factor_shape)
            if keepdims:
                return all(k < lead or factor_shape[k - lead] == 1 for k in axes)
            return all(k < lead for k in axes)    # without the axis, the factor must still line up

        outside = [f for f in part.operands[0].args if constant(f)]
        if outside and len(outside) < len(part.operands[0].args):
            inside = sympy.Mul(*(f for f in part.operands[0].args if not constant(f)))
            replace[symbol] = sympy.Mul(*outside) * builder.part("sum", [inside], part.params, part.shape)
    return expr.xreplace(replace)


def _recognize_softmax(expr, parts, builder):
    def sum_of_exp(symbol):
        """(exp(y), k) when `symbol` is the part sum(exp(y), axis=k, keepdims=True), else None."""
        part = parts.get(symbol)
        if part is None or part.kind != "sum" or part.params[0] is None or len(part.params[0]) != 1 \
                or not part.params[1] or not isinstance(part.operands[0], sympy.exp):
            return None
        k = part.params[0][0]
        shape = builder.shape_of(part.operands[0])
        if len(shape) <= k or tuple(part.shape) != shape[:k] + (1,) + shape[k + 1:]:
            return None   # (axes count from the operand's printed shape: check that they line up)
        return part.operands[0], k

    def softmax(y, k):
        shape = builder.shape_of(y)
        offset = len(shape)
        kept = []
        for term in sympy.Add.make_args(y):
            term_shape = builder.shape_of(term)
            at = k - (offset - len(term_shape))
            if at >= 0 and term_shape[at] != 1:
                kept.append(term)
        if kept and builder.shape_of(sympy.Add(*kept)) == shape:
            y = sympy.Add(*kept)
        return builder.part("softmax", [y], (k,), shape)

    def unwrapped(e):
        """`e` with the opaque pieces the builder cut (kind "expr") put back, to compare values."""
        for _ in range(4):
            inner = {s: parts[s].operands[0] for s in e.free_symbols if s in parts and parts[s].kind == "expr"}
            if not inner:
                break
            e = e.xreplace(inner)
        return e

    def rewrite(e):
        if isinstance(e, sympy.Mul):
            for factor in e.args:
                if not (isinstance(factor, sympy.Pow) and factor.exp == -1):
                    continue
                found = sum_of_exp(factor.base)
                if found is None:
                    continue
                exp_y, k = found
                if exp_y in e.args:   # exp(y)/sum(exp(y))
                    others = [f for f in e.args if f is not factor and f != exp_y]
                    return sympy.Mul(*others, softmax(exp_y.args[0], k))
                for other in e.args:   # sum(a*exp(y))/sum(exp(y)) = sum(a*softmax(y)) (1/sum is the same along k)
                    part = parts.get(other) if isinstance(other, sympy.Symbol) else None
                    if part is not None and part.kind == "sum" and part.params == ((k,), True) \
                            and part.shape == parts[factor.base].shape and exp_y in sympy.Mul.make_args(part.operands[0]):
                        inside = part.operands[0].xreplace({exp_y: softmax(exp_y.args[0], k)})
                        others = [f for f in e.args if f is not factor and f is not other]
                        return sympy.Mul(*others, builder.part("sum", [inside], part.params, part.shape))
        if isinstance(e, sympy.exp):
            argument = e.args[0]
            if argument in parts and parts[argument].kind == "expr":
                argument = parts[argument].operands[0]
            for term in sympy.Add.make_args(argument):   # exp(y - log(sum(exp(y))))
                coefficient, rest = term.as_coeff_Mul()
                if coefficient == -1 and isinstance(rest, sympy.log):
                    found = sum_of_exp(rest.args[0])
                    if found is not None and unwrapped(argument - term) == unwrapped(found[0].args[0]):
                        return softmax(argument - term, found[1])
        return e

    for symbol in _parts_in_order(expr, parts):
        parts[symbol].operands = [_map_tree(o, rewrite) for o in parts[symbol].operands]
    return _map_tree(expr, rewrite)


def _map_tree(expr, fn):
    """`expr` rebuilt from its leaves up with `fn` applied to every node (without recursion)."""
    done: dict = {}
    stack = [(expr, False)]
    while stack:
        e, expanded = stack.pop()
        if e in done:
            continue
        if not expanded and e.args:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args if a not in done)
            continue
        args = tuple(done[a] for a in e.args)
        rebuilt = e if args == e.args else e.func(*args)
        done[e] = fn(rebuilt)
    return done[expr]


# a part nested this deep inside one definition is named, so that no printed piece nests deeper than
# about twice this (see MAX_NESTING). Depth counts brackets, and two for each part printed inside
# another: `(a*b)*c` may print without brackets, but the printer recurses through every part.
NAME_NESTING = 24


def _choose_names(expr, parts, names, intermediates) -> dict:
    """The parts to name: those printed more than once when naming them makes the text shorter (`h`,
    `h1`, ..., or the caller's variable name for that value), and those nested too deep to print inline.

    One pass over the parts, inputs before users, each printed once with its operand parts as
    placeholders: a part's length and nesting follow from its operands' (linear in the formula)."""
    order = _parts_in_order(expr, parts)
    position = {symbol: k for k, symbol in enumerate(order)}
    uses = dict.fromkeys(order, 0)
    for tree in [expr, *(o for symbol in order for o in parts[symbol].operands)]:
        for sub in sympy.preorder_traversal(tree):
            if sub in position:
                uses[sub] += 1
    printer = _NumpyPrinter(parts, {symbol: _token(k) for k, symbol in enumerate(order)})
    length, nesting, chosen = {}, {}, set()
    for symbol in order:
        size = deepest = level = 0
        for piece in _pieces(printer.render(parts[symbol])):
            if isinstance(piece, str):
                size += len(piece)
                for char in piece:
                    level += char in "([{"
                    level -= char in ")]}"
                    deepest = max(deepest, level)
            elif order[piece] in chosen:
                size += 2
            else:
                size += length[order[piece]]
                deepest = max(deepest, level + 2 + nesting[order[piece]])
        length[symbol], nesting[symbol] = size, deepest
        count = uses[symbol]
        # (count - 1) copies of the text are saved; `(h := )` and the names cost about 6 + 2 * count
        if (count >= 2 and (count - 1) * size > 8 + 2 * count) or deepest > NAME_NESTING:
            chosen.add(symbol)
    taken = set(names.values())
    named = {}
    for symbol in sorted(chosen, key=_part_number):
        node = parts[symbol].node
        name = intermediates.get(id(node)) if node is not None else None
        named[symbol] = name if name is not None and name not in taken else None
        taken.add(name)
    # h, h1, h2, ... numbered in the order the definitions are read
    named = _definition_order(named, parts)
    fresh = (n for n in itertools.chain(["h"], (f"h{k}" for k in itertools.count(1))) if n not in taken)
    return {symbol: name if name is not None else next(fresh) for symbol, name in named.items()}


def _part_number(symbol) -> int:
    return int(symbol.name[2:])   # parts are _p0, _p1, ... in the order they were made


def _parts_in_order(expr, parts) -> list:
    """The parts `expr` reads, each after the parts its operands read."""
    roots = sorted((s for s in expr.free_symbols if s in parts), key=_part_number)
    return _dependencies_first(roots, lambda symbol: sorted(
        {s for o in parts[symbol].operands for s in o.free_symbols if s in parts}, key=_part_number, reverse=True))


def _definition_order(named, parts) -> dict:
    """`named` reordered so that every name is defined after the names its definition uses."""
    order = _dependencies_first(list(named), lambda symbol: [
        s for o in parts[symbol].operands for s in sorted(o.free_symbols, key=str) if s in parts])
    return {symbol: named[symbol] for symbol in order if symbol in named}


def _dependencies_first(roots, children) -> list:
    """Depth-first from each root in turn, every symbol after what `children(symbol)` lists (pushed in
    that order, so the last is visited first); iterative, since part chains can be thousands deep."""
    order, done = [], set()
    stack = [(root, False) for root in reversed(roots)]
    while stack:
        symbol, expanded = stack.pop()
        if expanded:
            order.append(symbol)
            continue
        if symbol in done:
            continue
        done.add(symbol)
        stack.append((symbol, True))
        stack.extend((s, False) for s in children(symbol))
    return order


SHARE_ROUNDS = 20


def _share_subexpressions(expr, parts, new_part):
    """Elementwise subexpressions printed more than once (`maximum(x @ w1, 0)`) become parts of their
    own, so that `_choose_names` can name them. Largest first: each round takes every repeated
    subexpression that is not inside a larger one taken (linear in the formula, a bounded number of
    rounds)."""
    printer = _NumpyPrinter(parts, _SymbolNames())   # parts print as their symbols: the text of one level
    for _ in range(SHARE_ROUNDS):
        order = _parts_in_order(expr, parts)
        counts: dict = {}
        for tree in [expr, *(o for symbol in order for o in parts[symbol].operands)]:
            for sub in sympy.preorder_traversal(tree):
                if sub.is_Atom or isinstance(sub, (sympy.Tuple, sympy.functions.elementary.piecewise.ExprCondPair)):
                    continue
                counts[sub] = counts.get(sub, 0) + 1
        shared = [sub for sub, n in counts.items() if n >= 2 and len(printer.doprint(sub)) >= 8]
        if not shared:
            break
        shared.sort(key=lambda e: (-_node_count(e), sympy.default_sort_key(e)))
        chosen, inside = [], set()
        for sub in shared:
            if sub not in inside:
                chosen.append(sub)
                inside.update(sympy.preorder_traversal(sub))
        replace = {sub: new_part(sub) for sub in chosen}
        made = set(replace.values())
        expr = expr.xreplace(replace)
        for symbol in order:
            if symbol not in made:   # (a new part may be an old one with the same operand)
                parts[symbol].operands = [o.xreplace(replace) for o in parts[symbol].operands]
    return expr


class _SymbolNames(dict):
    """A `named` mapping under which every part prints as its own symbol's name."""

    def __contains__(self, symbol):
        return True

    def __getitem__(self, symbol):
        return symbol.name


def _node_count(expr) -> int:
    count, stack = 0, [expr]
    while stack:
        e = stack.pop()
        count += 1
        stack.extend(e.args)
    return count


# -- inspect ----------------------------------------------------------------------------------------
@dataclass
class Program:
    """One compiled program: its kernels with a SymPy formula per store, LLVM IR and native assembly.

    `label` says what it computes ("forward", "backward") or, for a function, the line of it that ran
    the program; `runs` how many times the inspected call ran it. Buffers are named after your tensors
    (`x`, `w.grad`), else `in0`, `out0` (results) and `t3` (values stored between kernels)."""

    label: str
    plan: object = field(repr=False)
    names: dict = field(repr=False)     # buffer slot -> name
    runs: int = 1
    layouts: dict = field(default_factory=dict, repr=False)   # buffer slot -> strides of what it is named
    scalars: dict = field(default_factory=dict)                # runtime scalar -> its value in the run

    @property
    def kernels(self) -> list:
        program = getattr(self.plan, "program", None)
        return list(program.kernels) if program is not None else []

    @property
    def native(self):
        return self.plan.native

    @property
    def ir(self) -> str:
        """The LLVM IR the program was compiled from (one function per kernel, before optimisation)."""
        return self.plan.native.ir

    def assembly(self) -> str:
        """The native assembly (after LLVM's O3 pipeline, which inlines the kernels into one function)."""
        return self.plan.native.assembly()

    def name(self, slot: int) -> str:
        return self.names.get(slot, f"in{slot}")

    def kernel_formulas(self, kernel) -> list[str]:
        """`out[i] = formula` per store of a loop kernel (reductions `sum over i of ...`); `c = a @ b.T`
        for a matrix product."""
        if isinstance(kernel, Gemm):
            def operand(slot, strides, rows, columns):
                # the product reads the buffer as the named tensor is laid out, or transposed
                own = self.layouts.get(slot)
                if own is not None and len(own) == 2:
                    def same(a, b):
                        return all(x == y or n == 1 for x, y, n in zip(a, b, (rows, columns)))
                    if same(strides, own):
                        return self.name(slot)
                    if same(strides, own[::-1]):
                        return f"{self.name(slot)}.T"
                transposed = strides[0] == 1 and strides[1] != 1 and rows > 1 and columns > 1
                return self.name(slot) + (".T" if transposed else "")
            batch = "[b]" if kernel.batch else ""
            product = f"{operand(kernel.a, kernel.a_strides, kernel.m, kernel.k)}{batch} @ " \
                      f"{operand(kernel.b, kernel.b_strides, kernel.k, kernel.n)}{batch}"
            return [f"{self.name(kernel.c)}{batch} {'+=' if kernel.accumulate else '='} {product}"]
        rename = {}
        for load in kernel.loads:
            rename[load.symbol] = sympy.Symbol(self.name(load.buffer) + ("[i]" if any(load.strides) else ""))
        lines = []
        for store in kernel.stores:
            target = self.name(store.buffer) + ("[i]" if any(store.strides) else "")
            body = _NumpyPrinter({}, {}).doprint(store.expr.xreplace(rename))
            lines.append(f"{target} = {store.reduce} over i of {body}" if store.reduce else f"{target} = {body}")
        return lines

    def formulas(self) -> list[str]:
        """One line per store of every kernel, in the order they run."""
        return [line for kernel in self.kernels for line in self.kernel_formulas(kernel)]

    def listing(self) -> str:
        """Each kernel's formula beside its LLVM IR, then the program's assembly."""
        out = [f"== {self.label}" + (f" (ran {self.runs} times)" if self.runs > 1 else "")]
        if self.scalars:
            out.append("runtime scalars: " + ", ".join(f"{k} = {v!r}" for k, v in self.scalars.items()))
        functions = _ir_functions(self.ir)
        for index, kernel in enumerate(self.kernels):
            out += [f"-- kernel {index}: " + "; ".join(self.kernel_formulas(kernel))]
            out += [functions.get(f"{'gemm' if isinstance(kernel, Gemm) else 'kernel'}{index}", "")]
        out += ["-- assembly (the kernels inlined into one function)", self.assembly()]
        return "\n".join(out)

    def __str__(self):
        return "\n".join(self.formulas())


def _ir_functions(ir_text: str) -> dict:
    """The functions of an LLVM IR module by name (their `define ... { ... }` text)."""
    found = {}
    for match in re.finditer(r'^define [^\n]*?@"?([\w.]+)"?\([^\n]*\n?\{\n.*?^\}', ir_text, re.MULTILINE | re.DOTALL):
        found[match.group(1)] = match.group(0)
    return found


@dataclass
class Inspection:
    """The programs that compute something: `programs`, each a `Program` (kernels with their formulas,
    LLVM IR, assembly). `str()` is the formulas; `listing()` everything."""

    programs: list

    @property
    def kernels(self) -> list:
        return [k for p in self.programs for k in p.kernels]

    @property
    def ir(self) -> str:
        return "\n".join(p.ir for p in self.programs)

    @property
    def native(self):
        return self.programs[0].native if self.programs else None

    def formulas(self) -> list[str]:
        """One line per store, every program in turn."""
        return [line for p in self.programs for line in p.formulas()]

    def assembly(self) -> str:
        return "\n".join(p.assembly() for p in self.programs)

    def listing(self) -> str:
        return "\n\n".join(p.listing() for p in self.programs)

    def __getitem__(self, label) -> Program:
        """The program labelled `label` ("forward", "backward"), or the k-th program."""
        if isinstance(label, int):
            return self.programs[label]
        found = [p for p in self.programs if p.label == label]
        if not found:
            raise KeyError(f"inspect(): no program labelled {label!r}; there are {[p.label for p in self.programs]}")
        return found[0]

    def __len__(self):
        return len(self.programs)

    def __str__(self):
        if len(self.programs) == 1:
            return str(self.programs[0])
        return "\n".join(f"# {p.label}" + (f" (ran {p.runs} times)" if p.runs > 1 else "") + "\n" + str(p)
                         for p in self.programs)


def inspect(target, *more, names: dict | None = None, backward: bool = True) -> Inspection:
    """The compiled programs behind a tensor or a function: each kernel's SymPy formula (with your
    tensors' names), its LLVM IR, and the native assembly.

    * `inspect(t1, t2, ...)`: tensors not computed yet. The "forward" program computes them; with
      `backward=True` (and tensors that require grad) the "backward" program computes their gradients
      with respect to the leaves, as `backward()` would (nothing is run or accumulated).
    * `inspect(fn, *args)`: calls `fn(*args)` and records every program it runs, in order, forward and
      backward as the function does them (call `.backward()` or an optimizer step inside, as a training
      step does), then the program computing what it returns (if that is still pending). Each program
      is labelled with the line of `fn` that ran it. The call runs for real: updates happen.

    Names: `names={"x": x}`, else the caller's variable names, and for a function its arguments' and
    its globals' names (`w.grad` for a gradient, a module's parameters by path).

    >>> import symgrad
    >>> x = symgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (g,) = symgrad.autograd.grad((x * x).sum(), x)
    >>> print(symgrad.inspect(g, names={"x": x}))
    g[i] = 2*x[i]
    >>> def step():
    ...     loss = (x.exp() * 3).sum()
    ...     loss.backward()
    ...     return loss
    >>> programs = symgrad.inspect(step)
    >>> [p.label for p in programs.programs]
    ['loss.backward()']
    >>> print(programs)
    t1 = sum over i of 3*exp(x[i])
    x.grad[i] = 3*exp(x[i])
    loss = t1
    >>> "define" in programs.ir and len(programs.assembly()) > 0
    True
    """
    known = _Known(sys._getframe(1), names)
    if callable(target) and not isinstance(target, Tensor):
        return _inspect_call(target, more, known)
    tensors = [target, *more]
    programs = []
    found = plan_for([t._node for t in tensors], need_program=True)
    if found is not None:
        programs.append(_program("forward", *found[:3], known, scalars=found[3]))
    if backward:
        from .autograd import AccumulateGrad, _topological, grad_of
        from .tensor import ones_like

        differentiable = [t for t in tensors if t.grad_fn is not None]
        leaves = [fn.variable for fn in _topological([t.grad_fn for t in differentiable])
                  if isinstance(fn, AccumulateGrad)]
        if leaves:
            seeds = [None if t.dim() == 0 else ones_like(t) for t in differentiable]
            grads = grad_of(differentiable, leaves, seeds if any(s is not None for s in seeds) else None,
                            retain_graph=True, allow_unused=True)
            for leaf, g in zip(leaves, grads):
                if g is not None:
                    known.grads[id(g._node)] = known.name_of(leaf._node)
            found = plan_for([g._node for g in grads if g is not None], need_program=True)
            if found is not None:
                programs.append(_program("backward", *found[:3], known, scalars=found[3]))
    if not programs:
        raise ValueError("inspect(): these tensors are already computed and need no gradient program; "
                         "inspect them before observing them")
    return Inspection(programs)


class _Known:
    """The names of tensors, looked up when a program runs (parameters get new nodes as they update)."""

    def __init__(self, frame, names):
        from . import nn

        # name -> Tensor or Module; the first name of a tensor wins: yours, then the caller's locals
        self.explicit = dict(names or {})
        self.named: dict[str, object] = {}
        for scope in (frame.f_locals, frame.f_globals):
            self.add(scope)
        self.grads: dict[int, str] = {}
        # nodes the tensors had earlier in an inspected call (a parameter's value before its update),
        # held so that their ids stay theirs
        self.history: dict[int, tuple] = {}

    def remember(self):
        for name, t in self.tensors():
            self.history.setdefault(id(t._node), (t._node, name))

    def add(self, scope: dict, first: bool = False):
        """Names from `scope`, after the ones known (or before them, after yours, with `first`)."""
        from . import nn

        found = {name: value for name, value in list(scope.items())
                 if not name.startswith("_") and isinstance(value, (Tensor, nn.Module))}
        self.named = {**found, **self.named} if first else {**self.named, **{k: v for k, v in found.items()
                                                                                if k not in self.named}}

    def copy(self) -> "_Known":
        other = _Known.__new__(_Known)
        other.explicit, other.named, other.grads, other.history = self.explicit, dict(self.named), self.grads, \
            self.history
        return other

    def tensors(self):
        from . import nn

        for name, value in [*self.explicit.items(), *self.named.items()]:
            if isinstance(value, nn.Module):
                for path, p in value.named_parameters():
                    yield _identifier(path), p
            else:
                yield name, value

    def lookup(self) -> dict[int, str]:
        """id(node) -> name, for the tensors' current nodes and their gradients' (`w.grad`)."""
        found: dict[int, str] = dict(self.grads)
        for name, t in self.tensors():
            found.setdefault(id(t._node), name)
            if t.is_leaf and t._grad is not None:
                found.setdefault(id(t._grad._node), f"{name}.grad")
        for key, (_, name) in self.history.items():
            found.setdefault(key, name)
        return found

    def by_data(self) -> dict:
        """data address -> (name, strides) for the computed tensors among the known."""
        found = {}
        nodes = [(name, t._node) for name, t in self.tensors()] + [(name, n) for n, name in self.history.values()]
        for name, node in nodes:
            if node.buffer is not None:
                found.setdefault(_data_of(node), (name, tuple(node.strides)))
        return found

    def name_of(self, node) -> str | None:
        name = self.lookup().get(id(node))
        return None if name is None else f"{name}.grad"


def _program(label, plan, targets, leaves, known: _Known, before=None, scalars=()) -> Program:
    """The Program of a plan, its buffers named: inputs by `before` (lookup, by_data), or by the names
    known now, results by the names known now."""
    from .graph import row_major_strides

    lookup, by_data = before if before is not None else (known.lookup(), known.by_data())
    names: dict[int, str] = {}
    layouts: dict[int, tuple] = {}
    for slot, leaf in enumerate(leaves):
        if id(leaf) in lookup:
            names[slot], layouts[slot] = lookup[id(leaf)], tuple(leaf.strides)
        elif leaf.buffer is not None and _data_of(leaf) in by_data:
            # a view the scheduler resolved into a buffer of its own (w.T read by a matrix product):
            # named after the tensor whose data it is, accesses say how they read it
            names[slot], layouts[slot] = by_data[_data_of(leaf)]
    leaf_count = getattr(plan, "leaf_count", len(leaves))
    stored = getattr(plan, "stored_positions", [])
    for k, (shape, _) in enumerate(getattr(plan, "stored_specs", [])):
        names.setdefault(leaf_count + k, f"t{leaf_count + k}")
        layouts[leaf_count + k] = row_major_strides(shape)
    after = known.lookup() if before is not None else lookup
    for k, (node, position) in enumerate(zip(targets, getattr(plan, "target_positions", []))):
        if position in stored:
            names[leaf_count + stored.index(position)] = after.get(id(node), f"out{k}")
    return Program(label, plan, names, layouts=layouts,
                   scalars={f"s{k}": node.arg for k, node in enumerate(scalars)})


def _data_of(node) -> int:
    """The address of a computed node's first element (views of one tensor share it)."""
    from .graph import ITEMSIZE

    return node.buffer.address + node.offset * ITEMSIZE[node.dtype]


def _inspect_call(fn, args, known: _Known) -> Inspection:
    import inspect as python_inspect

    from . import schedule
    from .tensor import _realize, _Updated

    # the function's own names come before the caller's: its arguments, then the variables it closes over
    known.add(getattr(fn, "__globals__", {}))
    code = getattr(fn, "__code__", None)
    cells = zip(code.co_freevars if code is not None else (), getattr(fn, "__closure__", None) or ())
    known.add({name: cell.cell_contents for name, cell in cells if _filled(cell)}, first=True)
    try:
        known.add(python_inspect.signature(fn).bind(*args).arguments, first=True)
    except (TypeError, ValueError):
        pass
    programs: list[Program] = []
    original = schedule._Plan.run

    after_the_call = []

    def run(plan, targets, leaves, scalars):
        label, frame = after_the_call[0] if after_the_call else _calling_line(fn)
        again = bool(programs) and programs[-1].plan is plan and programs[-1].label == label
        if not again:
            # named by the function's variables too (loss); inputs as they are before the run (an
            # update replaces a parameter's value), results after it (w.grad after backward)
            here = known.copy()
            here.add(frame.f_locals if frame is not None else {}, first=True)
            before = here.lookup(), here.by_data()
        result = original(plan, targets, leaves, scalars)
        known.remember()
        if again:
            programs[-1].runs += 1
        else:
            programs.append(_program(label, plan, targets, leaves, here, before, scalars))
        return result

    plan_for_as_usual = schedule.plan_for

    def plan_keeping_kernels(nodes, *rest, **options):
        # a plan rebuilt from its record on disk holds only its IR: ask for the kernel bodies
        return plan_for_as_usual(nodes, *rest, **{**options, "need_program": True})

    known.remember()
    # NOTE: the hooks are this module's to set and restore: the scheduler knows nothing of inspection
    schedule._Plan.run, schedule.plan_for = run, plan_keeping_kernels
    try:
        result = fn(*args)
        # what the call leaves to compute is part of it: its results, and the in-place updates symgrad
        # defers to the next program (an optimizer step)
        pending = [t._node for t in _tensors_in(result) if not t._node.realized]
        pending += [cell.node for cell in list(_Updated.cells) if not cell.node.realized]
        if pending:
            after_the_call.append(("after the call: its result and pending updates",
                                   None if not isinstance(result, Tensor) else _Scope(result=result)))
            _realize(pending)
    finally:
        schedule._Plan.run, schedule.plan_for = original, plan_for_as_usual
    return Inspection(programs)


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:   # a closure variable not assigned yet
        return False
    return True


class _Scope:
    """Stands for a frame: names to look tensors up by."""

    def __init__(self, **values):
        self.f_locals = values


def _tensors_in(value):
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v)]
    return []


def _calling_line(fn):
    """The source line of `fn` (or of the code it calls outside symgrad) that is running now, and its
    frame."""
    import linecache
    import os

    package = os.path.dirname(os.path.abspath(__file__))
    own = getattr(fn, "__code__", None)
    frame = sys._getframe(2)
    fallback = None
    while frame is not None:
        code = frame.f_code
        if code is own or not os.path.abspath(code.co_filename).startswith(package):
            line = linecache.getline(code.co_filename, frame.f_lineno).strip()
            text = line or f"{code.co_name}:{frame.f_lineno}"
            if code is own:
                return text, frame
            fallback = fallback or (text, frame)
        frame = frame.f_back
    return fallback or ("the call", None)


def to_dot(tensor: Tensor, names: dict | None = None, svg: str | None = None) -> str:
    """Graphviz DOT text of `tensor`'s forward graph (its `grad_fn` chain, as torch records it) and of its
    backward graph (the gradient graph `autograd.grad` builds for the leaves that require grad).

    Leaves are labelled with `names={"x": x}`, else the caller's variable names. With `svg="out.svg"` the
    text is also rendered there by Graphviz's `dot` program (`render_svg`); when `dot` is not installed a
    warning says so and no file is written. The DOT text is returned either way.

    >>> import symgrad
    >>> x = symgrad.tensor([1.0, 2.0], requires_grad=True)
    >>> text = symgrad.to_dot((x * x).sum())
    >>> print(text.splitlines()[0])
    digraph symgrad {
    >>> "SumBackward0" in text and "MulBackward0" in text and 'label="x (2,)"' in text
    True
    """
    from .autograd import AccumulateGrad, grad_of
    from .tensor import ones_like

    leaves, _ = _caller_names(sys._getframe(1))
    label_of = {key: name for key, (name, _) in leaves.items()}
    label_of.update({id(t._node): name for name, t in (names or {}).items()})

    lines = ["digraph symgrad {", "  rankdir=BT;", "  node [fontname=Helvetica, fontsize=10];"]
    ids: dict[int, str] = {}

    def ident(obj, prefix):
        key = id(obj)
        if key not in ids:
            ids[key] = f"{prefix}{len(ids)}"
        return ids[key]

    # forward: the recorded functions, inputs below users, as torchviz draws them
    lines += ["  subgraph cluster_forward {", '    label="forward (grad_fn)";']
    variables, seen, stack = [], set(), [tensor.grad_fn or tensor._grad_node]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if isinstance(fn, AccumulateGrad):
            v = fn.variable
            variables.append(v)
            name = label_of.get(id(v._node), "")
            label = f"{name} {tuple(v.shape)}".strip()
            lines.append(f'    {ident(fn, "f")} [label="{label}", shape=box, style=filled, fillcolor=lightblue];')
        else:
            lines.append(f'    {ident(fn, "f")} [label="{type(fn).__name__}", shape=box];')
        for child, _ in fn.next_functions:
            if child is not None:
                lines.append(f"    {ident(child, 'f')} -> {ident(fn, 'f')};")
                stack.append(child)
    lines.append("  }")

    # backward: the gradient graph, one node per graph node, shared values drawn once
    if variables:
        seed = None if tensor.dim() == 0 else ones_like(tensor)
        grads = grad_of(tensor, variables, seed, retain_graph=True, allow_unused=True)
        lines += ["  subgraph cluster_backward {", '    label="backward (gradient graph)";']
        roots = [(v, g) for v, g in zip(variables, grads) if g is not None]
        for v, g in roots:
            for node in _postorder(g._node, label_of):
                me = ident(node, "n")
                if id(node) in label_of:
                    lines.append(f'    {me} [label="{label_of[id(node)]}", shape=box, style=filled, '
                                 'fillcolor=lightblue];')
                elif node.op in ("CONST", "SCALAR"):
                    lines.append(f'    {me} [label="{_number(node.arg, node.dtype)}", shape=plaintext];')
                else:
                    lines.append(f'    {me} [label="{node.op} {node.shape}"];')
                for child in node.inputs:
                    lines.append(f"    {ident(child, 'n')} -> {me};")
            name = label_of.get(id(v._node), "")
            lines.append(f'    {ident(g, "g")} [label="d/d{name}", shape=oval, style=filled, fillcolor=palegreen];')
            lines.append(f"    {ident(g._node, 'n')} -> {ident(g, 'g')};")
        lines.append("  }")
    lines.append("}")
    text = "\n".join(_dedupe(lines)) + "\n"
    if svg is not None and render_svg(text, svg) is None:
        import warnings

        warnings.warn(f"to_dot(): Graphviz's `dot` program is not installed (not on PATH): {svg} was not written",
                      RuntimeWarning, stacklevel=2)
    return text


def render_svg(dot_text: str, path: str | None = None) -> str | None:
    """The SVG drawing of Graphviz DOT text by Graphviz's `dot` program (found on PATH), also written to
    `path` when given; None when `dot` is not installed. A failing `dot` raises RuntimeError with its
    message.

    >>> svg = render_svg("digraph { a -> b }")
    >>> svg is None or "<svg" in svg   # (None here when Graphviz is not installed)
    True
    """
    import shutil
    import subprocess

    program = shutil.which("dot")
    if program is None:
        return None
    done = subprocess.run([program, "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"to_dot(): Graphviz's dot failed (exit status {done.returncode}): {done.stderr.strip()}")
    if path is not None:
        with open(path, "w") as out:
            out.write(done.stdout)
    return done.stdout


def _dedupe(lines):
    seen, out = set(), []
    for line in lines:
        if line.strip().startswith(("}", "label=", "subgraph")) or line not in seen:
            out.append(line)
            seen.add(line)
    return out


# `symgrad.formula` is this function (exported by symgrad/__init__.py), so the module's helpers ride on it
formula.VOCABULARY = VOCABULARY
formula.numpy_namespace = numpy_namespace
formula.Formula = Formula
formula.Formulas = Formulas
to_dot.render_svg = render_svg
