"""Tensor: torch's define-by-run API over lazy graph nodes.

A Tensor holds a `Cell` (the current value node, shared with aliases made by `detach()` and `.data`,
so in-place updates through either are seen by both) and its autograd metadata. Operations check
shapes and dtypes eagerly, build nodes, and record a `BackwardFunction` when gradients are wanted;
values are computed only when observed (`item`, `repr`, `numpy`, `bool`, `tolist`) or at `backward`.

>>> import symgrad
>>> x = symgrad.ones(2, 2, requires_grad=True)
>>> out = (3 * (x + 2) ** 2).mean()
>>> out
tensor(27., grad_fn=<MeanBackward0>)
>>> out.backward(); x.grad
tensor([[4.5000, 4.5000],
        [4.5000, 4.5000]])
"""
from __future__ import annotations

import builtins
import functools
import math
import warnings
import weakref

import numpy as np

import codegen

from . import _repr
from .autograd import AccumulateGrad, GradMode, backward_class, grad_of, run_backward
from .graph import NUMPY_DTYPE, PENDING_LIMIT, Node, contiguous_strides, row_major_strides
from .ops import KEEP, OPS, PROMOTE, TO_BOOL, TO_FLOAT, Op
from . import replay
from .replay import MAX_CALLS, Replay
from .compiled import Tracing


# -- dtypes ----------------------------------------------------------------------------------------
class dtype:
    """A tensor element type, printed as torch prints it (`torch.float32`)."""

    def __init__(self, name: str, category: int):
        self.name, self.category = name, category  # category: 0 bool, 1 integer, 2 floating
        self.is_floating_point = category == 2
        self.itemsize = np.dtype(NUMPY_DTYPE[name]).itemsize

    def __repr__(self):
        return f"torch.{self.name}"

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))


bool_ = dtype("bool", 0)
int64 = dtype("int64", 1)
float32 = dtype("float32", 2)
float64 = dtype("float64", 2)
DTYPES = {d.name: d for d in (bool_, int64, float32, float64)}
_ORDER = {"bool": 0, "int64": 1, "float32": 2, "float64": 3}
_TORCH_NAMES = {"bool": "Bool", "int64": "Long", "float32": "Float", "float64": "Double"}


def _dtype_by_name(name):
    return DTYPES[name]


def get_default_dtype() -> dtype:
    return float32


def _promote(a: dtype, b: dtype) -> dtype:
    return a if _ORDER[a.name] >= _ORDER[b.name] else b


def _scalar_dtype(value) -> dtype:
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    return get_default_dtype()


def result_type(*operands) -> dtype:
    """torch.result_type: dimensioned tensors outrank 0-d tensors, which outrank Python numbers,
    unless a lower-ranked operand is of a higher category (an int tensor times 2.5 is float).

    >>> import symgrad
    >>> result_type(symgrad.tensor([1, 2]), 2.5), result_type(symgrad.ones(2), symgrad.tensor(1.0).double())
    (torch.float32, torch.float32)
    """
    return _result_type_of_kinds(tuple(_operand_kind(o) for o in operands))


def _operand_kind(o):
    """What promotion looks at: (dtype name, has dimensions) for a tensor, the kind of a number."""
    if isinstance(o, Tensor):
        node = o._cell.node
        return node.dtype, len(node.shape) > 0
    if o is None:
        return None
    if isinstance(o, (bool, np.bool_)):
        return "bool"
    if isinstance(o, (int, np.integer)):
        return "int"
    return "float"


_SCALAR_KINDS = {"bool": "bool", "int": "int64"}


@functools.lru_cache(maxsize=4096)
def _result_type_of_kinds(kinds) -> "dtype":
    # NOTE: memoized: promotion depends only on these kinds, and ops call it on every use
    dims = zero = scalars = None
    for kind in kinds:
        if kind is None:
            continue
        if isinstance(kind, tuple):
            d = DTYPES[kind[0]]
            if kind[1]:
                dims = d if dims is None else _promote(dims, d)
            else:
                zero = d if zero is None else _promote(zero, d)
        else:
            d = DTYPES[_SCALAR_KINDS[kind]] if kind in _SCALAR_KINDS else get_default_dtype()
            scalars = d if scalars is None else _promote(scalars, d)
    return _combine(dims, _combine(zero, scalars))


def _combine(higher, lower):
    if higher is None:
        return lower
    if lower is None or higher.is_floating_point:
        return higher
    if higher is bool_ or lower.is_floating_point or lower.category > higher.category:
        return _promote(higher, lower)
    return higher


class Size(tuple):
    """torch.Size: a tuple that prints as `torch.Size([2, 3])`."""

    def __repr__(self):
        return f"torch.Size([{', '.join(str(d) for d in self)}])"

    def numel(self) -> int:
        return math.prod(self)


# -- grad mode -------------------------------------------------------------------------------------
class set_grad_enabled:
    """Context manager and decorator that turns recording on or off.

    >>> import symgrad
    >>> with symgrad.set_grad_enabled(False):
    ...     (symgrad.ones(1, requires_grad=True) * 2).requires_grad
    False
    """

    def __init__(self, mode: bool = True):
        self.mode = bool(mode)
        self.previous = GradMode.enabled
        GradMode.enabled = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        GradMode.enabled = self.previous
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)

        GradMode.enabled = self.previous
        return wrapper


class _GradModeContext:
    mode = True

    def __enter__(self):
        self.previous = GradMode.enabled
        GradMode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        GradMode.enabled = self.previous
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradModeContext):
    """Operations inside are not recorded (context manager or decorator).

    >>> import symgrad
    >>> with symgrad.no_grad():
    ...     (symgrad.ones(1, requires_grad=True) * 2).requires_grad
    False
    """

    mode = False


class enable_grad(_GradModeContext):
    """Re-enables recording inside a `no_grad` block (context manager or decorator)."""

    mode = True


def is_grad_enabled() -> bool:
    return GradMode.enabled


# -- pending in-place updates ----------------------------------------------------------------------
class Cell:
    """The current value of a tensor and of its aliases (`detach()`, `.data`)."""

    __slots__ = ("node", "__weakref__")

    # NOTE: no __init__: `Cell()` then `cell.node = ...` costs no Python frame, and every result is wrapped


class _WeakCells:
    """A set of cells held weakly: weak references by id, dead ones dropped when iterating. What
    weakref.WeakSet does, without its Python-level iteration guards (every flush iterates this)."""

    __slots__ = ("_refs",)

    def __init__(self):
        self._refs: dict[int, weakref.ref] = {}

    def add(self, cell: Cell) -> None:
        # NOTE: Tensor._assign does the same inline for _Updated.cells: change both
        ref = self._refs.get(id(cell))
        if ref is None or ref() is not cell:  # NOTE: a dead cell's id can be reused by a new one
            self._refs[id(cell)] = weakref.ref(cell)

    def discard_computed(self, cells) -> None:
        """Discard those of `cells` whose value is computed (one loop: a flush ends with this)."""
        refs = self._refs
        for cell in cells:
            if cell.node.buffer is not None:
                ref = refs.get(id(cell))
                if ref is not None and ref() is cell:
                    del refs[id(cell)]

    def live(self) -> list:
        """The cells still alive (the dead ones are dropped)."""
        live = []
        for key, ref in list(self._refs.items()):
            cell = ref()
            if cell is None:
                del self._refs[key]
            else:
                live.append(cell)
        return live

    def __iter__(self):
        return iter(self.live())


class _Updated:
    """Cells changed in place since the last realization; they are realized with the next program,
    so a training loop's parameter updates become buffers instead of an ever longer history."""

    cells = _WeakCells()


# NOTE: the weak references of _Updated.cells by id, read directly by Tensor._assign (every optimizer
# update assigns: no class attribute read, no call)
_UPDATED_REFS = _Updated.cells._refs


def _realize(nodes):
    """Compute `nodes`; pending in-place updates that the program computes anyway are stored too."""
    trace = Tracing.active
    if trace is not None and trace.failure is None:
        return  # NOTE: a traced call is one program: everything is computed when the call ends
    cells = _Updated.cells.live()
    if Replay.enabled:
        replay.flush(nodes, cells, _realize_now)
    else:
        _realize_now(nodes, cells)
    _Updated.cells.discard_computed(cells)


def _realize_now(nodes, cells):
    from .schedule import realize

    realize(nodes, [c.node for c in cells])


# -- shapes ----------------------------------------------------------------------------------------
def broadcast_shapes(*shapes) -> tuple[int, ...]:
    """numpy/torch broadcasting; raises torch's RuntimeError for incompatible sizes.

    >>> broadcast_shapes((3, 1), (4,))
    (3, 4)
    """
    result: tuple[int, ...] = ()
    for shape in shapes:
        result = _broadcast_pair(result, tuple(shape))
    return result


@functools.lru_cache(maxsize=4096)
def _broadcast_pair(a, b):
    # NOTE: like torch's infer_size: scanned from the last dimension, a mismatch names the
    # dimension in the result's numbering and the sizes of a (left) and b (right).
    rank = builtins.max(len(a), len(b))
    out = [1] * rank
    for k in range(rank - 1, -1, -1):
        size_a = a[k - rank + len(a)] if k - rank + len(a) >= 0 else 1
        size_b = b[k - rank + len(b)] if k - rank + len(b) >= 0 else 1
        if size_a != size_b and size_a != 1 and size_b != 1:
            raise RuntimeError(f"The size of tensor a ({size_a}) must match the size of tensor b ({size_b}) at "
                               f"non-singleton dimension {k}")
        out[k] = size_b if size_a == 1 else size_a
    return tuple(out)


def _normalize_dim(dim: int, rank: int) -> int:
    low, high = (-1, 0) if rank == 0 else (-rank, rank - 1)
    if not low <= dim <= high:
        raise IndexError(f"Dimension out of range (expected to be in range of [{low}, {high}], but got {dim})")
    return dim % builtins.max(rank, 1)


def _infer_shape(shape, numel) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '[{', '.join(map(str, shape))}]' is invalid for input of size {numel}")
        shape = tuple(numel // known if d == -1 else d for d in shape)
    if math.prod(shape) != numel:
        raise RuntimeError(f"shape '[{', '.join(map(str, shape))}]' is invalid for input of size {numel}")
    return shape


def _size_args(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(d) for d in size)


# -- node builders (no autograd) -------------------------------------------------------------------
def _constant(value, dt: dtype) -> Node:
    """A Python number as a node. Integers are part of the formula; floats are runtime scalars, so
    a learning rate that changes every step never changes the compiled program."""
    if dt is bool_:
        return Node.make("CONST", (), bool(value), (), "bool")
    if dt is int64:
        return Node.make("CONST", (), int(value), (), "int64")
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return Node.make("CONST", (), int(value), (), dt.name)
    node = Node.make("SCALAR", (), float(value), (), dt.name)
    if Tracing.active is not None:
        Tracing.active.scalar(value, node)
    return node


class _Fills:
    """The constant nodes `fill_` made lately with an integer value, by (value, dtype, shape).
    NOTE: holding them keeps the shared nodes alive between a loop's `grad.zero_()` calls, so each
    call finds them instead of making two nodes and their hash-consing entries anew (a zeroed
    gradient is replaced, so its nodes die, at every step)."""

    nodes: dict = {}
    LIMIT = 64


def _filled(value, dtype_name: str, shape: tuple) -> Node:
    """`value` expanded to `shape`: the node `_expand_node(_constant(value, ...), shape)` returns."""
    if value.__class__ is not int:  # NOTE: a float is a runtime scalar, which a trace must see made
        return _expand_node(_constant(value, DTYPES[dtype_name]), shape)
    key = (value, dtype_name, shape)
    node = _Fills.nodes.get(key)
    # a held node is the shared one while it is pending (computing it takes it out of hash-consing)
    if node is not None and node.buffer is None and (not node.inputs or node.inputs[0].buffer is None):
        return node
    if len(_Fills.nodes) >= _Fills.LIMIT:
        _Fills.nodes.clear()
    node = _Fills.nodes[key] = _expand_node(_constant(value, DTYPES[dtype_name]), shape)
    return node


def _cast_node(node: Node, dt: dtype) -> Node:
    if node.dtype == dt.name:
        return node
    if node.op == "CONST":
        return _constant(node.arg, dt)
    return Node.make("CAST", (node,), None, node.shape, dt.name)


def _expand_node(node: Node, shape: tuple) -> Node:
    if node.shape == shape:
        return node
    return Node.make("EXPAND", (node,), shape, shape, node.dtype)


def _reshape_node(node: Node, shape: tuple) -> Node:
    if node.shape == shape:
        return node
    if node.op == "EXPAND" and node.inputs[0].op in ("CONST", "SCALAR"):
        return _expand_node(node.inputs[0], shape)
    return Node.make("RESHAPE", (node,), shape, shape, node.dtype)


def _permute_node(node: Node, permutation: tuple) -> Node:
    if permutation == tuple(range(len(permutation))):
        return node
    shape = tuple(node.shape[axis] for axis in permutation)
    return Node.make("PERMUTE", (node,), permutation, shape, node.dtype)


def _matmul_node(a: Node, b: Node) -> Node:
    """A batched product of two tensors of rank >= 2 whose batch dimensions broadcast."""
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = _expand_node(a, batch + a.shape[-2:])
    b = _expand_node(b, batch + b.shape[-2:])
    return Node.make("MATMUL", (a, b), None, batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _is_constant(node: Node, value) -> bool:
    while node.op == "EXPAND":
        node = node.inputs[0]
    return node.op == "CONST" and node.arg == value


def _elementwise_node(op: str, nodes: tuple, shape: tuple, dt: str) -> Node:
    # Peepholes that keep gradient accumulation and zeroed grads from changing a program's structure.
    if op == "ADD" and _is_constant(nodes[0], 0) and nodes[1].dtype == dt:
        return nodes[1]
    if op in ("ADD", "SUB") and _is_constant(nodes[1], 0) and nodes[0].dtype == dt:
        return nodes[0]
    if op == "MUL" and _is_constant(nodes[1], 1) and nodes[0].dtype == dt:
        return nodes[0]
    if op == "MUL" and _is_constant(nodes[0], 1) and nodes[1].dtype == dt:
        return nodes[1]
    node = Node.make(op, nodes, None, shape, dt)
    if node.pending_size > PENDING_LIMIT and not GradMode.in_backward:
        _realize([node])
    return node


# -- the Tensor ------------------------------------------------------------------------------------
class Tensor:
    """A multi-dimensional array with autograd, torch's API; see the module docstring."""

    __slots__ = ("_cell", "_grad_node", "_grad", "_retains", "_output_nr", "__weakref__")
    __array_priority__ = 1000  # so numpy_array * tensor calls Tensor.__rmul__

    def __new__(cls, *args):
        """torch's legacy constructor: `Tensor([1, 2])` is a float32 copy, `Tensor(2, 3)` is uninitialised."""
        if len(args) == 1 and not isinstance(args[0], int):
            return tensor(args[0], dtype=float32)
        return zeros(*args)

    # construction ---------------------------------------------------------------------------------
    @classmethod
    def _wrap(cls, node: Node, grad_node=None) -> "Tensor":
        t = object.__new__(cls)
        cell = t._cell = Cell()
        cell.node = node
        t._grad_node = grad_node
        t._grad = None
        t._retains = False
        t._output_nr = 0  # which output of a multi-output op (split) this is, as in next_functions
        if Tracing.active is not None:
            Tracing.active.created(t)
        return t

    def _alias(self) -> "Tensor":
        """A tensor with the same value and no history (what clone and detach share)."""
        return Tensor._wrap(self._cell.node)

    @property
    def _node(self) -> Node:
        return self._cell.node

    def _assign(self, node: Node) -> None:
        if Tracing.active is not None:
            Tracing.active.assigning(self)
        cell = self._cell
        cell.node = node
        if node.buffer is None:  # NOTE: not the `realized` property: every optimizer update assigns
            # _Updated.cells.add(cell), inline
            ref = _UPDATED_REFS.get(id(cell))
            if ref is None or ref() is not cell:  # NOTE: a dead cell's id can be reused by a new one
                _UPDATED_REFS[id(cell)] = weakref.ref(cell)

    # metadata -------------------------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._cell.node.shape)

    def size(self, dim=None):
        if dim is None:
            return self.shape
        return self.shape[_normalize_dim(dim, self.dim())]

    def dim(self) -> int:
        return len(self._cell.node.shape)

    ndim = property(dim)

    def numel(self) -> int:
        return self._cell.node.numel

    nelement = numel

    @property
    def dtype(self) -> dtype:
        return DTYPES[self._cell.node.dtype]

    @property
    def device(self):
        return "cpu"

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def __len__(self):
        if self.dim() == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # autograd metadata ----------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._grad_node is not None

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not self.dtype.is_floating_point:
            # NOTE: torch words this differently from requires_grad_()
            raise RuntimeError("only Tensors of floating point and complex dtype can require gradients")
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Start (or stop) recording operations on this leaf tensor."""
        if not self.is_leaf:
            if requires_grad:
                return self
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                               "computed variable in a subgraph that doesn't require differentiation use "
                               "var_no_grad = var.detach().")
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._grad_node = AccumulateGrad(self) if requires_grad else None
        return self

    @property
    def grad_fn(self):
        node = self._grad_node
        return None if node is None or isinstance(node, AccumulateGrad) else node

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self):
        if self._grad is None and not self.is_leaf and not self._retains:
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad attribute "
                "won't be populated during autograd.backward(). If you indeed want the .grad field to be populated "
                "for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor.", UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None and tuple(value.shape) != tuple(self.shape):
            raise RuntimeError(f"assigned grad has data of a different size: expected {list(self.shape)}, "
                               f"got {list(value.shape)}")
        if Tracing.active is not None:
            Tracing.active.see(self)
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        return self._retains

    def retain_grad(self) -> None:
        """Keep the gradient of this non-leaf tensor in `.grad` during backward."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.is_leaf or self._retains:
            return
        self._retains = True
        fn = self.grad_fn
        fn._retained = (fn._retained or ()) + (self,)

    def detach(self) -> "Tensor":
        """The same values (shared: in-place changes show in both), without history."""
        t = Tensor._wrap(self._cell.node)
        t._cell = self._cell
        return t

    def detach_(self) -> "Tensor":
        self._grad_node = None
        return self

    @property
    def data(self) -> "Tensor":
        return self.detach()

    @data.setter
    def data(self, value: "Tensor") -> None:
        if Tracing.active is not None:
            Tracing.active.assigning(self)
        self._cell.node = value._node

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad`, then compute them.

        >>> import symgrad
        >>> x = symgrad.tensor([1.0, 2.0], requires_grad=True)
        >>> (x * 3).backward(symgrad.tensor([1.0, 0.5])); x.grad
        tensor([3.0000, 1.5000])
        """
        retain = create_graph if retain_graph is None else retain_graph
        if Replay.enabled and not Replay.busy and gradient is None and not create_graph:
            touched = replay.backward(self, retain, _backward_now)
        else:
            touched = _backward_now(self, gradient, retain, create_graph)
        nodes = [self._cell.node]
        for t in touched:
            nodes.append(t._cell.node)
        _realize(nodes)

    # realization ----------------------------------------------------------------------------------
    def _value(self) -> np.ndarray:
        if Replay.busy:
            replay.value_read()
        if Tracing.active is not None:
            Tracing.active.fail("it reads tensor values")
        node = self._cell.node
        if not node.realized:
            _realize([node])
        return node.numpy()

    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The values as a numpy array sharing this tensor's memory (no copy when already computed)."""
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                               "instead.")
        return self._value()

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._value().reshape(()).item()

    def tolist(self):
        return self._value().tolist()

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __float__(self):
        return float(self._scalar_for_python())

    def __int__(self):
        return int(self._scalar_for_python())

    def _scalar_for_python(self):
        if self.numel() != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self.item()

    def __index__(self):
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        values = self._value()
        return values.astype(dtype) if dtype is not None else values

    def __repr__(self):
        suffixes = []
        if self.grad_fn is not None:
            suffixes.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            suffixes.append("requires_grad=True")
        return _repr.format_tensor(self._value(), self.dtype.name, suffixes)

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if self.dim() == 0:
            raise TypeError("iteration over a 0-d tensor")
        values = self.detach()._value()
        return iter(tensor(values[i]) for i in range(self.shape[0]))

    # the one entry point for recorded operations ---------------------------------------------------
    def _elementwise(self, op_name: str, *others, name=None, positions=None) -> "Tensor":
        return _apply(OPS[op_name], (self, *others), name=name, positions=positions)

    def _select(self, value, other) -> "Tensor":
        """where(self, value, other) for a bool mask `self`."""
        return _apply(OPS["WHERE"], (self, value, other), positions=(1, 2))

    def _reduced(self, reduction: str, axes, keepdim) -> "Tensor":
        """A reduction over `axes` (None: all), unrecorded: used inside composite ops."""
        node = self._node
        axes = tuple(range(self.dim())) if axes is None else axes
        dt = node.dtype
        if reduction in ("SUM", "PROD") and dt in ("bool", "int64"):
            node, dt = _cast_node(node, int64), "int64"
        kept = tuple(1 if k in axes else n for k, n in enumerate(node.shape))
        reduced = Node.make(reduction, (node,), axes, kept, dt)
        if not keepdim:
            reduced = _reshape_node(reduced, tuple(n for k, n in enumerate(node.shape) if k not in axes))
        return Tensor._wrap(reduced)

    def _positions(self, axes) -> "Tensor":
        """int64 row-major positions of the elements within `axes` (the other axes have size 1), so
        that `x._positions((1,))[i, j, k] == j`; unrecorded, built from small aranges."""
        total, step = None, 1
        for k in reversed(axes):
            view = [1] * self.dim()
            view[k] = self.shape[k]
            term = arange(self.shape[k]).reshape(view)
            term = term * step if step != 1 else term
            total = term if total is None else total + term
            step *= self.shape[k]
        return total if total is not None else full((), 0, dtype=int64)

    def _prod(self, axes, keepdim) -> "Tensor":
        """prod over a tuple of normalized axes (recorded as ProdBackward1): used by gradient rules."""
        return _apply(OPS["PROD_DIM"], (self,), arg=(tuple(axes), keepdim))

    # arithmetic -----------------------------------------------------------------------------------
    def __add__(self, other):
        return _apply(OPS["ADD"], (self, other))

    __radd__ = __add__

    def __sub__(self, other):
        return _apply(OPS["SUB"], (self, other))

    def __rsub__(self, other):
        return _apply(OPS["SUB"], (other, self), name="RsubBackward1", positions=(1,))

    def __mul__(self, other):
        return _apply(OPS["MUL"], (self, other))

    __rmul__ = __mul__

    def __truediv__(self, other):
        return _apply(OPS["DIV"], (self, other))

    def __rtruediv__(self, other):
        return self.reciprocal() * other

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            return _apply(OPS["POW"], (self, exponent))
        return _apply(OPS["POW"], (self, exponent), name="PowBackward0", positions=(0,))

    def __rpow__(self, base):
        return _apply(OPS["POW"], (base, self), name="PowBackward2", positions=(1,))

    def __neg__(self):
        return _apply(OPS["NEG"], (self,))

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __lt__(self, other):
        return _apply(OPS["LT"], (self, other))

    def __le__(self, other):
        return _apply(OPS["LE"], (self, other))

    def __gt__(self, other):
        return _apply(OPS["GT"], (self, other))

    def __ge__(self, other):
        return _apply(OPS["GE"], (self, other))

    def __eq__(self, other):
        return _apply(OPS["EQ"], (self, other))

    def __ne__(self, other):
        return _apply(OPS["NE"], (self, other))

    def __and__(self, other):
        return _logical("AND", self, other)

    __rand__ = __and__

    def __or__(self, other):
        return _logical("OR", self, other)

    __ror__ = __or__

    def __invert__(self):
        if self.dtype is not bool_:
            raise NotImplementedError("bitwise not is only implemented for bool tensors")
        return _apply(OPS["NOT"], (self,))

    def add(self, other, *, alpha=1):
        return self + other if alpha == 1 else _apply(OPS["ADD_SCALED"], (self, other), arg=alpha)

    def sub(self, other, *, alpha=1):
        return self - other if alpha == 1 else _apply(OPS["SUB_SCALED"], (self, other), arg=alpha)

    subtract = sub

    def mul(self, other):
        return self * other

    multiply = mul

    def div(self, other):
        return self / other

    divide = true_divide = div

    def pow(self, exponent):
        return self ** exponent

    def neg(self):
        return -self

    negative = neg

    def reciprocal(self):
        return _apply(OPS["RECIPROCAL"], (self,))

    def exp(self):
        return _apply(OPS["EXP"], (self,))

    def erf(self):
        return _apply(OPS["ERF"], (self,))

    def log(self):
        return _apply(OPS["LOG"], (self,))

    def sqrt(self):
        return _apply(OPS["SQRT"], (self,))

    def tanh(self):
        return _apply(OPS["TANH"], (self,))

    def sigmoid(self):
        return _apply(OPS["SIGMOID"], (self,))

    def relu(self):
        return _apply(OPS["RELU"], (self,))

    def abs(self):
        return _apply(OPS["ABS"], (self,))

    absolute = abs

    def sign(self):
        return _apply(OPS["SIGN"], (self,))

    def sin(self):
        return _apply(OPS["SIN"], (self,))

    def cos(self):
        return _apply(OPS["COS"], (self,))

    def clamp(self, min=None, max=None):
        """Limit values to [min, max]; the gradient passes where min <= x <= max."""
        if min is None and max is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        tensors = isinstance(min, Tensor) or isinstance(max, Tensor)
        return _apply(OPS["CLAMP"], (self, min, max), name="ClampBackward0" if tensors else None,
                      positions=(0, 1, 2) if tensors else (0,))

    clip = clamp

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    def maximum(self, other):
        _require_tensor("maximum", other)
        return _apply(OPS["MAXIMUM"], (self, other))

    def minimum(self, other):
        _require_tensor("minimum", other)
        return _apply(OPS["MINIMUM"], (self, other))

    def where(self, condition, other):
        """`where(condition, self, other)`, as torch's method."""
        return where(condition, self, other)

    def isnan(self):
        """True where the value is NaN (the same as `self != self`)."""
        return self != self

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def logical_and(self, other):
        return self.bool() & other.bool()

    def logical_or(self, other):
        return self.bool() | other.bool()

    def logical_not(self):
        return ~self.bool()

    # reductions -----------------------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False, *, dtype=None):
        """Sum over all elements, or over `dim` (an int or a tuple of ints)."""
        x = self if dtype is None else self.to(dtype)
        axes = _axes(dim, x.dim())
        op = OPS["SUM_ALL"] if dim is None else OPS["SUM_DIM"]
        return _apply(op, (x,), arg=(axes, keepdim))

    def mean(self, dim=None, keepdim=False, *, dtype=None):
        """Mean over all elements, or over `dim` (an int or a tuple of ints)."""
        x = self if dtype is None else self.to(dtype)
        if not x.dtype.is_floating_point:
            raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating point "
                               f"or complex dtype. Got: {_TORCH_NAMES[x.dtype.name]}")
        axes = _axes(dim, x.dim())
        op = OPS["MEAN_ALL"] if dim is None else OPS["MEAN_DIM"]
        return _apply(op, (x,), arg=(axes, keepdim))

    def max(self, *args, **kwargs):
        """The largest element; `max(dim, keepdim=False)` gives `(values, indices)` along `dim` (the first
        index of tied maxima); `max(other)` is `maximum(other)`.

        >>> import symgrad
        >>> symgrad.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]).max(1)
        torch.return_types.max(
        values=tensor([3., 2.]),
        indices=tensor([1, 0]))
        """
        return _extreme(self, "max", args, kwargs)

    def min(self, *args, **kwargs):
        """The smallest element; `min(dim, keepdim=False)` gives `(values, indices)`; `min(other)` is
        `minimum(other)`."""
        return _extreme(self, "min", args, kwargs)

    def argmax(self, *args, **kwargs):
        """argmax(dim=None, keepdim=False): the index of the first largest element along `dim`, or in
        the flattened tensor (int64)."""
        return _arg_extreme(self, "argmax", args, kwargs)

    def argmin(self, *args, **kwargs):
        """argmin(dim=None, keepdim=False): the index of the first smallest element along `dim`, or in
        the flattened tensor (int64)."""
        return _arg_extreme(self, "argmin", args, kwargs)

    def prod(self, *args, dtype=None, **kwargs):
        """The product of all elements, or along `dim` (an int); bools and integers give int64.

        >>> import symgrad
        >>> symgrad.tensor([[1.0, 2.0], [3.0, 4.0]]).prod(1)
        tensor([ 2., 12.])
        """
        return _product(self, args, kwargs, dtype)

    def var(self, *args, **kwargs):
        """The variance over all elements or over `dim` (an int or a tuple), dividing by
        n - `correction` (1 by default; `unbiased=False` is correction 0).

        >>> import symgrad
        >>> symgrad.tensor([[1.0, 2.0], [3.0, 5.0]]).var(1, correction=0)
        tensor([0.2500, 1.0000])
        """
        return _variance(self, "var", args, kwargs)

    def std(self, *args, **kwargs):
        """The standard deviation: the square root of `var` (same arguments)."""
        return _variance(self, "std", args, kwargs)

    def logsumexp(self, *args, **kwargs):
        """logsumexp(dim, keepdim=False): log(sum(exp(x))) along `dim` (an int or a tuple), computed
        without overflow.

        >>> import symgrad
        >>> symgrad.tensor([10000.0, 10000.0]).logsumexp(0)
        tensor(10000.6934)
        """
        return _logsumexp(self, args, kwargs)

    def softmax(self, *args, **kwargs):
        """softmax(dim, dtype=None): exp(x) / sum(exp(x)) along `dim`, computed without overflow (the
        max is subtracted first).

        >>> import symgrad
        >>> symgrad.tensor([10000.0, 10001.0]).softmax(0)
        tensor([0.2689, 0.7311])
        """
        return _softmax(self, "softmax", args, kwargs)

    def log_softmax(self, *args, **kwargs):
        """log_softmax(dim, dtype=None): log(softmax(x)) along `dim`, computed as
        x - max - log(sum(exp(x - max)))."""
        return _softmax(self, "log_softmax", args, kwargs)

    def all(self):
        """True if every element is nonzero (a bool tensor)."""
        return self.bool()._reduced("MIN", None, False)

    def any(self):
        """True if some element is nonzero (a bool tensor)."""
        return self.bool()._reduced("MAX", None, False)

    def norm(self, p="fro", dim=None, keepdim=False):
        """The 2-norm of all elements."""
        if p not in ("fro", 2, 2.0) or dim is not None or keepdim:
            raise NotImplementedError("norm: only the 2-norm of the whole tensor is implemented")
        if not self.dtype.is_floating_point:
            raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                               f"Got {_TORCH_NAMES[self.dtype.name]}")
        return _apply(OPS["NORM"], (self,))

    # shape ----------------------------------------------------------------------------------------
    def reshape(self, *shape):
        """The same elements in a new shape (one size may be -1).

        Like torch, a reshape that cannot be a view of this tensor's (torch-modelled) memory layout
        records a copy (`CloneBackward0`) and then `UnsafeViewBackward0`.
        """
        shape = _infer_shape(_size_args(shape), self.numel())
        if _view_strides_torch(self._node, shape) is None:
            return _apply(OPS["RESHAPE"], (self.clone(),), arg=shape, name="UnsafeViewBackward0")
        return _apply(OPS["RESHAPE"], (self,), arg=shape)

    def view(self, *shape):
        """The same elements in a new shape; like torch, only where that is a view of the memory."""
        shape = _infer_shape(_size_args(shape), self.numel())
        if _view_strides_torch(self._node, shape) is None:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                               "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
        return _apply(OPS["RESHAPE"], (self,), arg=shape)

    def view_as(self, other):
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim=0, end_dim=-1):
        if self.dim() == 0:
            return self.reshape(1)
        start, end = _normalize_dim(start_dim, self.dim()), _normalize_dim(end_dim, self.dim())
        if start == end:
            return self
        shape = tuple(self.shape[:start]) + (-1,) + tuple(self.shape[end + 1:])
        return self.reshape(*shape)

    def expand(self, *sizes):
        sizes = _size_args(sizes)
        if len(sizes) < self.dim():
            raise RuntimeError(
                f"expand(torch.{_TORCH_NAMES[self.dtype.name]}Tensor{{[{', '.join(map(str, self.shape))}]}}, "
                f"size=[{', '.join(map(str, sizes))}]): the number of sizes provided ({len(sizes)}) must be greater "
                f"or equal to the number of dimensions in the tensor ({self.dim()})")
        offset = len(sizes) - self.dim()
        target = []
        for k, n in enumerate(sizes):
            own = self.shape[k - offset] if k >= offset else 1
            if n == -1:
                n = own
            if own != 1 and own != n:
                raise RuntimeError(f"The expanded size of the tensor ({n}) must match the existing size ({own}) at "
                                   f"non-singleton dimension {k}.  Target sizes: [{', '.join(map(str, sizes))}].  "
                                   f"Tensor sizes: [{', '.join(map(str, self.shape))}]")
            target.append(n)
        return _apply(OPS["EXPAND"], (self,), arg=tuple(target))

    def expand_as(self, other):
        return self.expand(other.shape)

    def sum_to_size(self, *size):
        """Sum the broadcast dimensions away so that the result has shape `size`."""
        size = _size_args(size)
        if tuple(size) == tuple(self.shape):
            return self
        lead = self.dim() - len(size)
        axes = tuple(k for k in range(self.dim()) if k < lead or (size[k - lead] == 1 and self.shape[k] != 1))
        summed = self.sum(dim=axes, keepdim=True) if axes else self
        return summed.reshape(size)

    def permute(self, *dims):
        """The same data with its dimensions reordered (a view: no copy)."""
        dims = tuple(_normalize_dim(d, self.dim()) for d in _size_args(dims))
        if sorted(dims) != list(range(self.dim())):
            raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                               f"length of the desired ordering of dimensions i.e. input.dim() = {self.dim()} is not "
                               f"equal to len(dims) = {len(dims)}" if len(dims) != self.dim()
                               else "permute(): duplicate dims are not allowed.")
        return _apply(OPS["PERMUTE"], (self,), arg=dims)

    def transpose(self, dim0, dim1):
        """Swap two dimensions (a view)."""
        order = list(range(self.dim()))
        a, b = _normalize_dim(dim0, self.dim()), _normalize_dim(dim1, self.dim())
        order[a], order[b] = order[b], order[a]
        return _apply(OPS["PERMUTE"], (self,), arg=tuple(order), name="TransposeBackward0")

    swapaxes = swapdims = transpose

    def t(self):
        """Transpose of a matrix (a vector or a scalar is returned as is)."""
        if self.dim() > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.dim()}D")
        if self.dim() < 2:
            return self
        return _apply(OPS["PERMUTE"], (self,), arg=(1, 0), name="TBackward0")

    @property
    def T(self):
        return self.permute(*reversed(range(self.dim())))

    @property
    def mT(self):
        if self.dim() < 2:
            raise RuntimeError("tensor.mT is only supported on matrices or batches of matrices. Got 1-D tensor.")
        return self.transpose(-2, -1)

    def squeeze(self, dim=None):
        """Drop dimensions of size 1 (all of them, or `dim` if it has size 1)."""
        if dim is None:
            shape = tuple(n for n in self.shape if n != 1)
            return _apply(OPS["RESHAPE"], (self,), arg=shape, name="SqueezeBackward0")
        dims = {_normalize_dim(d, self.dim()) for d in ((dim,) if isinstance(dim, int) else dim)}
        shape = tuple(n for k, n in enumerate(self.shape) if not (k in dims and n == 1))
        return _apply(OPS["RESHAPE"], (self,), arg=shape,
                      name="SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2")

    def unsqueeze(self, dim):
        """Insert a dimension of size 1 at `dim`."""
        dim = _normalize_dim(dim, self.dim() + 1)
        shape = self.shape[:dim] + (1,) + self.shape[dim:]
        return _apply(OPS["RESHAPE"], (self,), arg=tuple(shape), name="UnsqueezeBackward0")

    def mm(self, mat2):
        """Matrix product of two matrices."""
        for t in (self, mat2):
            if len(t._cell.node.shape) != 2:
                raise RuntimeError("self must be a matrix" if t is self else "mat2 must be a matrix")
        _check_product(self, mat2)
        return _apply(OPS["MATMUL"], (self, mat2), name="MmBackward0")

    def bmm(self, mat2):
        """Batched matrix product of two 3-D tensors."""
        for t in (self, mat2):
            if t.dim() != 3:
                raise RuntimeError(f"batch1 must be a 3D tensor" if t is self else "batch2 must be a 3D tensor")
        if self.shape[0] != mat2.shape[0]:
            raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: [{self.shape[0]}, "
                               f"{self.shape[2]}] but got: [{mat2.shape[0]}, {mat2.shape[1]}].")
        _check_product(self, mat2)
        return _apply(OPS["MATMUL"], (self, mat2))

    def mv(self, vec):
        if self.dim() != 2 or vec.dim() != 1:
            raise RuntimeError(f"vector + matrix @ vector expected, got {vec.dim()}, {self.dim()}, {vec.dim()}")
        _check_product(self, vec.unsqueeze(1))
        return _apply(OPS["MV"], (self, vec))

    def dot(self, other):
        if self.dim() != 1 or other.dim() != 1:
            raise RuntimeError(f"1D tensors expected, but got {self.dim()}D and {other.dim()}D tensors")
        if self.shape[0] != other.shape[0]:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{self.shape[0]}] and src "
                               f"[{other.shape[0]}] to have the same number of elements, but got "
                               f"{self.shape[0]} and {other.shape[0]} elements respectively")
        return _apply(OPS["DOT"], (self, other))

    def outer(self, vec2):
        return self.reshape(-1, 1) * vec2

    ger = outer

    def matmul(self, other):
        """torch.matmul: dot, matrix-vector, matrix, and broadcast batched products."""
        if self.dim() == 0 or other.dim() == 0:
            raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {self.dim()}D and "
                               f"{other.dim()}D")
        if self.dim() == 1 and other.dim() == 1:
            return self.dot(other)
        if self.dim() == 2 and other.dim() == 1:
            return self.mv(other)
        if self.dim() == 1 and other.dim() == 2:
            _check_product(self.unsqueeze(0), other)
            return _apply(OPS["RESHAPE"], (self.unsqueeze(0).mm(other),), arg=(other.shape[1],),
                          name="SqueezeBackward4")
        if self.dim() == 2 and other.dim() == 2:
            return self.mm(other)
        if other.dim() == 2 and self.dim() > 2:
            # NOTE: like torch, fold the batch into the rows: one large GEMM instead of many small ones
            _check_product(self, other)
            folded = self.reshape(-1, self.shape[-1]).mm(other)
            return _apply(OPS["RESHAPE"], (folded,), arg=tuple(self.shape[:-1]) + (other.shape[-1],),
                          name="UnsafeViewBackward0")
        a = self.unsqueeze(0) if self.dim() == 1 else self
        b = other.unsqueeze(-1) if other.dim() == 1 else other
        _check_product(a, b)
        # NOTE: torch's recipe, so the recorded graph matches: broadcast the batch dimensions, fold
        # them into one, bmm, and view the result with the batch shape.
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        (m, k), n = a.shape[-2:], b.shape[-1]
        a3 = a.expand(batch + (m, k)).reshape(-1, m, k)
        b3 = b.expand(batch + (k, n)).reshape(-1, k, n)
        out = _apply(OPS["RESHAPE"], (a3.bmm(b3),), arg=batch + (m, n), name="UnsafeViewBackward0")
        if self.dim() == 1:
            out = out.squeeze(-2)
        if other.dim() == 1:
            out = out.squeeze(-1)
        return out

    def gather(self, dim, index):
        """out[i][j] = self[index[i][j]][j] (dim=0) / self[i][index[i][j]] (dim=1), and so on."""
        dim = _normalize_dim(dim, self.dim())
        _check_index_tensor(self, index, dim, "gather")
        return _apply(OPS["GATHER"], (self, index), arg=dim, positions=(0,))

    def index_select(self, dim, index):
        """The slices at positions `index` (a vector of int64) along `dim`."""
        dim = _normalize_dim(dim, self.dim())
        if index.dim() > 1:
            raise IndexError("index_select(): Index is supposed to be a vector")
        if index.dtype is not int64:
            raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
        values = index.detach().reshape(-1).numpy()
        bad = values[(values < 0) | (values >= self.shape[dim])]
        if bad.size:
            raise RuntimeError(f"INDICES element is out of DATA bounds, id={int(bad[0])} axis_dim={self.shape[dim]}")
        return _apply(OPS["INDEX_SELECT"], (self, index.reshape(-1)), arg=dim, positions=(0,))

    def scatter_add(self, dim, index, src):
        """A copy of self with src added at index positions along dim (repeated positions add up)."""
        dim = _normalize_dim(dim, self.dim())
        _check_index_tensor(self, index, dim, "scatter_add", src)
        return _apply(OPS["SCATTER_ADD"], (self, index, src), arg=dim, positions=(0, 2))

    def _zeros_like_unrecorded(self):
        return zeros_like(self)

    def _zeros_unrecorded(self, shape):
        return zeros(*shape, dtype=self.dtype)

    def cumsum(self, dim, *, dtype=None):
        """Running sums along `dim`; bool and int tensors sum as int64, like torch."""
        x = self if dtype is None else self.to(dtype)
        if x.dtype is bool_:
            x = x.to(int64)
        dim = _normalize_dim(dim, x.dim())
        if x.dim() == 0:
            return _apply(OPS["CLONE"], (x,), name="CumsumBackward0")
        return _apply(OPS["CUMSUM"], (x,), arg=dim)

    def __getitem__(self, index):
        """Basic indexing: ints, slices with positive steps, None and `...` (views of the data)."""
        from .indexing import getitem

        return getitem(self, index)

    def __setitem__(self, index, value):
        """`x[index] = value` in place (under no_grad for a leaf that requires grad, as in torch)."""
        from .indexing import setitem

        setitem(self, index, value)

    def split(self, split_size_or_sections, dim=0):
        from .indexing import split

        return split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        from .indexing import chunk

        return chunk(self, chunks, dim)

    def unbind(self, dim=0):
        from .indexing import unbind

        return unbind(self, dim)

    def narrow(self, dim, start, length):
        return self[(slice(None),) * _normalize_dim(dim, self.dim()) + (slice(start, start + length),)]

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        return other.matmul(self)

    def clone(self):
        return _apply(OPS["CLONE"], (self,))

    def contiguous(self):
        return self

    # dtype conversion -----------------------------------------------------------------------------
    def to(self, dtype_or_device=None, dtype=None, **kwargs):
        target = dtype if dtype is not None else dtype_or_device
        if target is None or isinstance(target, str):
            return self
        if target is self.dtype:
            return self
        return _apply(OPS["CAST"], (self,), arg=target)

    def type(self, dtype=None):
        return self.to(dtype)

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)

    def bool(self):
        return self.to(bool_)

    # in place -------------------------------------------------------------------------------------
    def _inplace(self, result_fn, check_leaf=True) -> "Tensor":
        # NOTE: a leaf that requires grad is exactly a tensor whose gradient sink is an AccumulateGrad
        if check_leaf and isinstance(self._grad_node, AccumulateGrad) and GradMode.enabled:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        result = result_fn()
        node = result._cell.node
        if node.shape != self._cell.node.shape:
            raise RuntimeError(f"output with shape [{', '.join(map(str, self.shape))}] doesn't match the broadcast "
                               f"shape [{', '.join(map(str, result.shape))}]")
        if node.dtype != self._cell.node.dtype:
            if _ORDER[result.dtype.name] > _ORDER[self.dtype.name] and (
                    result.dtype.category > self.dtype.category):
                raise RuntimeError(f"result type {_TORCH_NAMES[result.dtype.name]} can't be cast to the desired "
                                   f"output type {_TORCH_NAMES[self.dtype.name]}")
            result = result.to(self.dtype)
        self._assign(result._cell.node)
        if result._grad_node is not None:  # it requires grad
            self._grad_node = result._grad_node
        return self

    def add_(self, other, *, alpha=1):
        return self._inplace(lambda: self.add(other, alpha=alpha))

    def sub_(self, other, *, alpha=1):
        return self._inplace(lambda: self.sub(other, alpha=alpha))

    def mul_(self, other):
        return self._inplace(lambda: self * other)

    def div_(self, other):
        return self._inplace(lambda: self / other)

    def clamp_(self, min=None, max=None):
        return self._inplace(lambda: self.clamp(min, max))

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        """Set every element to `value` (a number or a one-element tensor)."""
        if isinstance(value, Tensor):
            return self._inplace(lambda: value.reshape(()).expand(self.shape) + zeros_like(self))
        # NOTE: the common `grad.zero_()` of every training step, without building a temporary tensor
        if isinstance(self._grad_node, AccumulateGrad) and GradMode.enabled:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        node = self._cell.node
        self._assign(_filled(value, node.dtype, node.shape))
        return self

    def copy_(self, src):
        return self._inplace(lambda: src.expand(self.shape).to(self.dtype) if isinstance(src, Tensor)
                             else tensor(src, dtype=self.dtype))

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)


# -- helpers of the Tensor API ---------------------------------------------------------------------
def _torch_strides(node: Node) -> tuple[int, ...]:
    """The strides torch would give this value: results of computations are contiguous, movement
    ops are views (expand: stride 0, permute: permuted, reshape: a view where possible)."""
    chain = []
    while node.op in ("EXPAND", "PERMUTE", "RESHAPE", "SLICE") and node.inputs:
        chain.append(node)
        node = node.inputs[0]
    strides = row_major_strides(node.shape)
    for step in reversed(chain):
        source_shape = step.inputs[0].shape
        if step.op == "PERMUTE":
            strides = tuple(strides[axis] for axis in step.arg)
        elif step.op == "SLICE":
            strides = tuple(s * step_size for s, (_, step_size) in zip(strides, step.arg))
        elif step.op == "EXPAND":
            lead = len(step.shape) - len(source_shape)
            strides = tuple(0 if k < lead or source_shape[k - lead] == 1 and step.shape[k] != 1
                            else strides[k - lead] for k in range(len(step.shape)))
        else:
            strides = _compute_view_strides(source_shape, strides, step.shape) or row_major_strides(step.shape)
    return strides


def _view_strides_torch(node: Node, shape):
    return _compute_view_strides(node.shape, _torch_strides(node), shape)


def _compute_view_strides(old_shape, old_strides, new_shape):
    """torch's rule (computeStride) for viewing memory with `old_strides` in `new_shape`, or None."""
    if not old_shape or math.prod(old_shape) == 0:
        return row_major_strides(new_shape)
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base = old_strides[-1]
    tensor_numel = view_numel = 1
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[tensor_d]
        if tensor_d == 0 or (old_shape[tensor_d - 1] != 1
                             and old_strides[tensor_d - 1] != tensor_numel * chunk_base):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base = old_strides[tensor_d - 1]
                tensor_numel = view_numel = 1
    if view_d != -1:
        return None
    return tuple(new_strides)


def _check_index_tensor(x, index, dim, name, src=None):
    """torch's checks for gather/scatter indices, done at the call (the index values are read)."""
    if index.dtype is not int64:
        raise RuntimeError(f"{name}(): Expected dtype int32/int64 for index")
    if index.dim() != x.dim():
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    for k in range(x.dim()):
        if k != dim and index.shape[k] > x.shape[k]:
            raise RuntimeError(f"Size does not match at dimension {k} expected index {list(index.shape)} to be no "
                               f"larger than self {list(x.shape)} apart from dimension {dim}")
    values = index.detach().numpy()
    bad = values[(values < 0) | (values >= x.shape[dim])] if values.size else values[:0]
    if bad.size:
        raise RuntimeError(f"index {int(bad.reshape(-1)[0])} is out of bounds for dimension {dim} with size "
                           f"{x.shape[dim]}")


def _check_product(a, b):
    node_a, node_b = a._cell.node, b._cell.node
    if node_a.dtype in ("float32", "float64") and node_a.dtype == node_b.dtype and (
            node_a.shape[-1] == node_b.shape[-2]):
        return  # the common case, without building dtype and Size objects
    if not a.dtype.is_floating_point or not b.dtype.is_floating_point:
        raise NotImplementedError(f"matrix products of {a.dtype} and {b.dtype} tensors are not implemented "
                                  "(BLAS has float32 and float64); convert with .float() or .double()")
    if a.dtype is not b.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_TYPE_NAMES[a.dtype.name]} != "
                           f"{_TYPE_NAMES[b.dtype.name]}")
    if a.shape[-1] != b.shape[-2]:
        rows = "x".join(str(n) for n in a.shape[-2:])
        cols = "x".join(str(n) for n in b.shape[-2:])
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows} and {cols})")


_TYPE_NAMES = {"float32": "float", "float64": "double", "int64": "long int", "bool": "bool"}


def _require_tensor(name, other):
    if not isinstance(other, Tensor):
        raise TypeError(f"{name}(): argument 'other' (position 2) must be Tensor, not {type(other).__name__}")


def _axes(dim, rank):
    # NOTE: like torch, an empty dim list reduces over every dimension
    if dim is None or (not isinstance(dim, int) and len(tuple(dim)) == 0):
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    axes = [_normalize_dim(d, rank) for d in dims]
    for k, axis in enumerate(axes):
        if axis in axes[:k]:
            raise RuntimeError(f"dim {axis} appears multiple times in the list of dims")
    return tuple(sorted(axes)) if rank > 0 else ()


def _parse(name, args, kwargs, params, required, functional):
    """torch's binding of plain (non-overloaded) arguments: {name: (value, position or None)}, with
    the position counted from 1 (the input counts in the function form) for positional arguments."""
    if len(args) + functional > len(params) + functional:
        raise TypeError(f"{name}() takes from {required + functional} to {len(params) + functional} positional "
                        f"arguments but {len(args) + functional} were given")
    bound = {p: (v, k + 1 + functional) for k, (p, v) in enumerate(zip(params, args))}
    for key, value in kwargs.items():
        if key not in params:
            raise TypeError(f"{name}() got an unexpected keyword argument '{key}'")
        if key in bound:
            raise TypeError(f"{name}() got multiple values for argument '{key}'")
        bound[key] = (value, None)
    missing = [p for p in params[:required] if p not in bound]
    if missing:
        raise TypeError(f"{name}() missing {len(missing)} required positional arguments: "
                        + ", ".join(f'"{p}"' for p in missing))
    return bound


def _count(shape, axes) -> int:
    return math.prod(shape[k] for k in axes)


# -- reductions with dim: torch's argument parsing and messages --------------------------------------
class _ReturnType(tuple):
    """torch.return_types.max/min: a (values, indices) tuple that prints like torch's structseq."""

    __slots__ = ()
    n_fields = n_sequence_fields = 2
    n_unnamed_fields = 0

    def __new__(cls, sequence):
        sequence = tuple(sequence)
        if len(sequence) != 2:
            raise TypeError(f"{cls.__module__}.{cls.__name__}() takes a 2-sequence ({len(sequence)}-sequence given)")
        return super().__new__(cls, sequence)

    @property
    def values(self) -> "Tensor":
        return self[0]

    @property
    def indices(self) -> "Tensor":
        return self[1]

    def __repr__(self):
        return f"torch.return_types.{type(self).__name__}(\nvalues={self[0]!r},\nindices={self[1]!r})"

    __str__ = __repr__

    def __reduce__(self):
        return (type(self), (tuple(self),))


class return_types:
    """The namedtuple-like results of torch's reductions with indices (`torch.return_types`)."""

    max = type("max", (_ReturnType,), {"__slots__": (), "__qualname__": "return_types.max"})
    min = type("min", (_ReturnType,), {"__slots__": (), "__qualname__": "return_types.min"})


_SIGNATURES = {
    "max": ("()", "(Tensor other)", "(int dim, bool keepdim = False)"),
    "min": ("()", "(Tensor other)", "(int dim, bool keepdim = False)"),
    "prod": ("(*, torch.dtype dtype = None)", "(int dim, bool keepdim = False, *, torch.dtype dtype = None)"),
    "var": ("(tuple of ints dim, bool unbiased = True, bool keepdim = False)",
            "(tuple of ints dim = None, *, Number correction = None, bool keepdim = False)",
            "(bool unbiased = True)"),
}
_SIGNATURES["std"] = _SIGNATURES["var"]


def _type_name(value) -> str:
    return "Tensor" if isinstance(value, Tensor) else type(value).__name__


def _invalid_arguments(name, args, kwargs, functional) -> TypeError:
    """torch's TypeError for arguments that match no signature (its first line, then the signatures)."""
    # NOTE: torch lists keywords from a hash map (in reverse order of the call, for two or three of
    # them), and leaves a trailing ", " when only keywords were given.
    given = ["Tensor"] * functional + [_type_name(a) for a in args]
    text = "".join(f"{t}, " for t in given) + "".join(f"{k}={_type_name(v)}, " for k, v in reversed(kwargs.items()))
    if given:
        text = text[:-2]
    signatures = ""
    for signature in _SIGNATURES[name]:
        inner = signature[1:-1]
        if functional:
            inner = "Tensor input" + (", " + inner if inner else "")
        signatures += f" * ({inner})\n"
    return TypeError(f"{name}() received an invalid combination of arguments - got ({text}), but expected one of:\n"
                     + signatures)


def _bind(name, args, kwargs, positional, keyword_only=(), functional=False) -> dict:
    if len(args) > len(positional):
        raise _invalid_arguments(name, args, kwargs, functional)
    bound = dict(zip(positional, args))
    for key, value in kwargs.items():
        if key not in positional and key not in keyword_only:
            raise _invalid_arguments(name, args, kwargs, functional)
        if key in bound:
            raise TypeError(f"{name}() got multiple values for argument '{key}'")
        bound[key] = value
    return bound


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _argument_error(name, argument, position, expected, value) -> TypeError:
    where = f" (position {position})" if position else ""
    return TypeError(f"{name}(): argument '{argument}'{where} must be {expected}, not {type(value).__name__}")


def _check_keepdim(name, bound):
    keepdim, position = bound.get("keepdim", (False, None))
    if not isinstance(keepdim, (bool, np.bool_)):
        raise _argument_error(name, "keepdim", position, "bool", keepdim)
    return bool(keepdim)


def _dim_axes(x, dim) -> tuple:
    """The axes of one (normalized) dim: `(dim,)`, or `()` for a 0-d tensor."""
    axis = _normalize_dim(int(dim), x.dim())
    return (axis,) if x.dim() else ()


def _check_nonempty(x, name, axes):
    for k in axes:
        if x.shape[k] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {k} to have non-zero size.")


def _extreme(x, name, args, kwargs, functional=False):
    """max/min in torch's three forms: of all elements, along a dim (values and indices), of two tensors."""
    if not args and not kwargs:
        if x.numel() == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. Specify "
                               "the reduction dim with the 'dim' argument.")
        return _apply(OPS[f"{name.upper()}_ALL"], (x,))
    if (len(args) == 1 and not kwargs and isinstance(args[0], Tensor)) or (not args and list(kwargs) == ["other"]):
        other = args[0] if args else kwargs["other"]
        _require_tensor(name, other)
        return x.maximum(other) if name == "max" else x.minimum(other)
    bound = _bind(name, args, kwargs, ("dim", "keepdim"), functional=functional)
    if not _is_int(bound.get("dim")) or (functional and len(args) > 1 and not isinstance(args[1], bool)):
        if "keepdim" in bound and "dim" in bound and not functional:  # only the dim form takes keepdim
            raise _argument_error(name, "dim", 1 if args else None, "int", bound.get("dim"))
        raise _invalid_arguments(name, args, kwargs, functional)
    keepdim = _check_keepdim(name, {"keepdim": (bound.get("keepdim", False), 2 if len(args) > 1 else None)})
    axes = _dim_axes(x, bound["dim"])
    _check_nonempty(x, name, axes)
    indices = _extreme_indices(x, name.upper(), axes, keepdim)
    values = _apply(OPS[f"{name.upper()}_DIM"], (x,), arg=(axes, keepdim, indices._node))
    return getattr(return_types, name)((values, indices))


def _extreme_indices(x, reduction, axes, keepdim) -> "Tensor":
    """The first position (row-major within `axes`) of the max or min over `axes`, as int64.

    Built from primitives: positions where x equals its extreme keep their index, the others get the
    count of positions (past every index), and a MIN reduction takes the first.
    """
    with no_grad():
        extreme = x._reduced(reduction, axes, True)
        positions = x._positions(axes)
        count = _count(x.shape, axes)
        if x.dtype.is_floating_point:
            # NOTE: max and min propagate nan, and nan equals nothing: then the first nan is the one
            # chosen (torch's rule). `x <= inf` is false only for nan; the comparison is lowered as an
            # ordered one, where SymPy would fold `x != x` to False.
            others = where(x <= math.inf, count, positions)
        else:
            others = count
        return where(x == extreme, positions, others)._reduced("MIN", axes, keepdim)


def _arg_extreme(x, name, args, kwargs, functional=False):
    bound = _parse(name, args, kwargs, ("dim", "keepdim"), 0, functional)
    dim, position = bound.get("dim", (None, None))
    if dim is not None and not _is_int(dim):
        raise _argument_error(name, "dim", position, "int", dim)
    keepdim = _check_keepdim(name, bound)
    if x.dtype is bool_:
        raise RuntimeError(f"{name}(): does not support bool input")
    reduction = "MAX" if name == "argmax" else "MIN"
    if dim is None:
        if x.numel() == 0:
            raise IndexError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0.")
        indices = _extreme_indices(x, reduction, tuple(range(x.dim())), True)
        return indices if keepdim else indices.reshape(())
    axes = _dim_axes(x, dim)
    _check_nonempty(x, name, axes)
    return _extreme_indices(x, reduction, axes, keepdim)


def _product(x, args, kwargs, dtype, functional=False):
    bound = _bind("prod", args, kwargs, ("dim", "keepdim"), functional=functional)
    if "dim" not in bound:
        if bound:
            raise _invalid_arguments("prod", args, kwargs, functional)
        x = x if dtype is None else x.to(dtype)
        return _apply(OPS["PROD_ALL"], (x,), arg=(tuple(range(x.dim())), False))
    if not _is_int(bound["dim"]):
        if "keepdim" in bound:
            raise _argument_error("prod", "dim", 1 + functional if args else None, "int", bound["dim"])
        raise _invalid_arguments("prod", args, kwargs, functional)
    keepdim = _check_keepdim("prod", {"keepdim": (bound.get("keepdim", False), 2 + functional if len(args) > 1
                                                  else None)})
    axes = _dim_axes(x, bound["dim"])
    x = x if dtype is None else x.to(dtype)
    return _apply(OPS["PROD_DIM"], (x,), arg=(axes, keepdim))


def _variance(x, name, args, kwargs, functional=False):
    """var/std with torch's overloads: (dim, unbiased, keepdim), (dim, *, correction, keepdim), (unbiased)."""
    if (len(args) == 1 and isinstance(args[0], bool) and not kwargs) or (not args and list(kwargs) == ["unbiased"]):
        bound = {"unbiased": args[0] if args else kwargs["unbiased"]}
    else:
        bound = _bind(name, args, kwargs, ("dim", "unbiased", "keepdim"), ("correction",), functional)
    dim, unbiased = bound.get("dim"), bound.get("unbiased", True)
    keepdim, correction = bound.get("keepdim", False), bound.get("correction")
    dims_ok = dim is None or _is_int(dim) or (isinstance(dim, (tuple, list)) and all(_is_int(d) for d in dim))
    if (not dims_ok or not isinstance(unbiased, bool) or not isinstance(keepdim, bool)
            or (correction is not None and not isinstance(correction, (int, float)))
            or isinstance(correction, bool) or ("unbiased" in bound and "correction" in bound)):
        raise _invalid_arguments(name, args, kwargs, functional)
    if correction is None:
        correction = 1 if unbiased else 0
    # NOTE: as in torch, an empty list of dims reduces over all of them
    axes = _axes(None if dim is not None and not _is_int(dim) and len(dim) == 0 else dim, x.dim())
    if not x.dtype.is_floating_point:
        raise RuntimeError("std and var only support floating point and complex dtypes")
    if _count(x.shape, axes) - correction <= 0:
        warnings.warn(f"{name}(): degrees of freedom is <= 0. Correction should be strictly less than the reduction "
                      "factor (input numel divided by output numel).", UserWarning, stacklevel=3)
    return _apply(OPS[name.upper()], (x,), arg=(axes, correction, keepdim))


def _logsumexp(x, args, kwargs, functional=False):
    bound = _parse("logsumexp", args, kwargs, ("dim", "keepdim"), 1, functional)
    dim, position = bound["dim"]
    if not (_is_int(dim) or (isinstance(dim, (tuple, list)) and all(_is_int(d) for d in dim))):
        raise _argument_error("logsumexp", "dim", position, "tuple of ints", dim)
    keepdim = _check_keepdim("logsumexp", bound)
    axes = _axes(dim, x.dim())
    if not _is_int(dim) and len(dim) == 0:
        # NOTE: torch reduces over every dim for an empty list of dims, and then fails to write the
        # result unless it keeps the dims (or the tensor is 0-d); its message is reproduced.
        if not keepdim and x.dim() > 0:
            raise RuntimeError(f"output with shape [] doesn't match the broadcast shape [{', '.join(['1'] * x.dim())}]")
        axes = tuple(range(x.dim()))
    if not x.dtype.is_floating_point:
        x = x.to(get_default_dtype())
    return _apply(OPS["LOGSUMEXP"], (x,), arg=(axes, keepdim))


def _softmax(x, name, args, kwargs, functional=False):
    bound = _parse(name, args, kwargs, ("dim", "dtype"), 1, functional)
    (dim, position), (target, target_position) = bound["dim"], bound.get("dtype", (None, None))
    if not _is_int(dim):
        raise _argument_error(name, "dim", position, "int", dim)
    if target is not None and not isinstance(target, dtype):
        raise _argument_error(name, "dtype", target_position, "torch.dtype", target)
    x = x if target is None else x.to(target)
    axes = _dim_axes(x, dim)
    if not x.dtype.is_floating_point:
        kernel = f"{name}_lastdim_kernel_impl" if not axes or axes[0] == x.dim() - 1 else f"{name}_kernel_impl"
        raise NotImplementedError(f'"{kernel}" not implemented for \'{_TORCH_NAMES[x.dtype.name]}\'')
    return _apply(OPS["SOFTMAX" if name == "softmax" else "LOG_SOFTMAX"], (x,), arg=axes)


def _logical(op_name, a, b):
    for t in (a, b):
        if isinstance(t, Tensor) and t.dtype is not bool_:
            raise NotImplementedError(f"{op_name.lower()} is only implemented for bool tensors")
    return _apply(OPS[op_name], (a, b))


def _backward_now(root, gradient, retain, create_graph):
    """Walk the recorded functions from `root`; the leaves whose `.grad` changed."""
    grads = _seed_gradients([root], None if gradient is None else [gradient])
    return run_backward([root], grads, retain_graph=retain, create_graph=create_graph)


def _seed_gradients(outputs, grad_outputs):
    grads = []
    for k, out in enumerate(outputs):
        given = None if grad_outputs is None else grad_outputs[k]
        if not out.requires_grad:
            raise RuntimeError(f"element {k} of tensors does not require grad and does not have a grad_fn")
        if given is None:
            if out.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            given = ones_like(out)
        elif not isinstance(given, Tensor):
            given = tensor(given, dtype=out.dtype)
        if tuple(given.shape) != tuple(out.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[{k}] has a shape of {given.shape!r} and output[{k}] "
                               f"has a shape of {out.shape!r}.")
        grads.append(given.detach())
    return grads


def _operand_node(operand, dt: dtype, shape: tuple) -> Node:
    if isinstance(operand, Tensor):
        node = _cast_node(operand._node, dt)
    else:
        node = _constant(operand, dt)
    return _expand_node(node, shape)


def _compute_dtypes(op: Op, operands):
    """(dtype the op computes in, dtype of its result)."""
    values = operands[1:] if op.name == "WHERE" else operands
    compute = result_type(*values)
    if op.dtype_rule == TO_FLOAT and not compute.is_floating_point:
        compute = get_default_dtype()
    if op.dtype_rule == KEEP and op.kind == "elementwise" and op.name != "CAST":
        compute = operands[0].dtype if isinstance(operands[0], Tensor) else compute
    result = bool_ if op.dtype_rule == TO_BOOL else compute
    return compute, result


def _bool_variant(op: Op, compute: dtype):
    """torch's arithmetic on bools: + is or, * is and; comparisons compare 0/1; - is refused."""
    if op.name in ("ADD", "MAXIMUM"):
        return OPS["OR"], compute
    if op.name in ("MUL", "MINIMUM"):
        return OPS["AND"], compute
    if op.name == "SUB":
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or "
                           "`logical_xor()` operator instead.")
    if op.name == "NEG":
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If you are trying to "
                           "invert a mask, use the `~` or `logical_not()` operator instead.")
    if op.name in ("LT", "LE", "GT", "GE", "EQ", "NE"):
        return op, int64
    return op, compute


def _forward(op: Op, operands, arg) -> Tensor:
    if op.kind == "composite":
        with no_grad():
            return op.forward(*operands, arg)
    if op.kind == "matmul":
        a, b = operands
        return Tensor._wrap(_matmul_node(a._node, b._node))
    if op.kind == "gather":
        if op.name == "GATHER":
            x, index = operands
            return Tensor._wrap(Node.make("GATHER", (x._node, index._node), arg, index._node.shape, x._node.dtype))
        base, index, src = operands
        src_node = _cast_node(src._node, base.dtype)
        return Tensor._wrap(Node.make("SCATTER_ADD", (base._node, index._node, src_node), arg, base._node.shape,
                                      base._node.dtype))
    if op.kind == "assemble":
        regions, shape = arg
        dtype_name = operands[0]._node.dtype
        parts = tuple(_cast_node(p._node, DTYPES[dtype_name]) for p in operands)
        return Tensor._wrap(Node.make("ASSEMBLE", parts, regions, shape, dtype_name))
    (x,) = operands
    if op.name == "CAST":
        return Tensor._wrap(_cast_node(x._node, arg))
    if op.name == "RESHAPE":
        return Tensor._wrap(_reshape_node(x._node, arg))
    if op.name == "EXPAND":
        return Tensor._wrap(_expand_node(x._node, arg))
    if op.name == "PERMUTE":
        return Tensor._wrap(_permute_node(x._node, arg))
    if op.name == "SLICE":
        region, kept, shape = arg
        node = x._node
        if kept != node.shape or any(r != (0, 1) for r in region):
            node = Node.make("SLICE", (node,), region, kept, node.dtype)
        return Tensor._wrap(_reshape_node(node, shape))
    raise NotImplementedError(f"no forward for {op.name}")


def _apply(op: Op, operands, arg=None, name=None, positions=None) -> Tensor:
    """Run `op` on `operands` (tensors and Python numbers) and record it for autograd if needed.

    `positions` lists the operands that appear in `grad_fn.next_functions` (default: all), `name`
    overrides the grad_fn name where torch names a variant differently (`RsubBackward1`). A call a loop
    repeats is replayed from its captured template (see replay.py).
    """
    if Replay.enabled and not Replay.busy:
        # NOTE: replay.call's first case inline: a loop's repeated call goes straight to the fused
        # check-and-replay of the step taken last time (one frame less for every op of a replayed step)
        segment = Replay.segment
        if segment is not None and segment.tracking and segment.has_nodes:
            step = segment.step
            likely = step.likely
            if likely is not None and likely.fast is not None and segment.count <= MAX_CALLS:
                out = likely.fast(segment, op, operands, arg, name, positions, step, likely)
                if out is False or out is None:
                    return replay.after_fast(out, op, operands, arg, name, positions, _compute)
                return out
        return replay.call(op, operands, arg, name, positions, _compute)
    if Tracing.active is not None:
        Tracing.active.operands(operands)
    return _compute(op, operands, arg, name, positions)


def _compute(op: Op, operands, arg=None, name=None, positions=None) -> Tensor:
    if op.kind == "elementwise":
        compute, result = _compute_dtypes(op, operands)
        if compute is bool_:
            op, compute = _bool_variant(op, compute)
        shape = broadcast_shapes(*(o.shape for o in operands if isinstance(o, Tensor)))
        nodes = []
        for k, o in enumerate(operands):
            want = bool_ if (op.name == "WHERE" and k == 0) or op.name in ("AND", "OR", "NOT") else compute
            nodes.append(_operand_node(o, want, shape))
        out = Tensor._wrap(_elementwise_node(op.name, tuple(nodes), shape, result.name))
    else:
        out = _forward(op, operands, arg)
    if GradMode.enabled and op.differentiable and out.dtype.is_floating_point:
        if positions is None:
            positions = tuple(range(len(operands)))
        if any(isinstance(operands[p], Tensor) and operands[p].requires_grad for p in positions):
            _record(op, operands, out, arg, name, positions)
    return out


def _record(op, operands, out, arg, name, positions):
    # NOTE: plain loops: every replayed call records, and comprehensions cost a frame each here
    saved = []
    for o in operands:
        saved.append((o._cell.node, o._grad_node) if isinstance(o, Tensor) else o)
    next_functions = []
    for p in positions:
        o = operands[p]
        next_functions.append((o._grad_node, o._output_nr) if isinstance(o, Tensor) else (None, 0))
    fn = backward_class(name or op.grad_fn)(op, tuple(saved), out._cell.node, arg, tuple(next_functions), positions)
    out._grad_node = fn


# -- functions -------------------------------------------------------------------------------------
def where(condition, input, other):
    """Elements of `input` where `condition` holds, else of `other`.

    >>> import symgrad
    >>> x = symgrad.tensor([-1.0, 2.0])
    >>> symgrad.where(x > 0, x, 0.0)
    tensor([0., 2.])
    """
    if not isinstance(condition, Tensor) or condition.dtype is not bool_:
        raise RuntimeError("where expected condition to be a boolean tensor, but got a tensor with dtype "
                           f"{_TORCH_NAMES[condition.dtype.name] if isinstance(condition, Tensor) else 'None'}")
    return _apply(OPS["WHERE"], (condition, input, other), positions=(1, 2))


def maximum(input, other):
    _require_tensor("maximum", other)
    return input.maximum(other)


def minimum(input, other):
    _require_tensor("minimum", other)
    return input.minimum(other)


def _from_python(data, dtype_):
    if isinstance(data, Tensor):
        return data.detach()._value().copy()
    array = np.array(data)
    if array.dtype == object:
        raise TypeError(f"Could not infer dtype of {type(data).__name__}")
    if dtype_ is None:
        if array.dtype.kind == "b":
            dtype_ = bool_
        elif array.dtype.kind in "iu":
            dtype_ = int64
        elif array.dtype == np.float64 and not isinstance(data, np.ndarray) and not _holds_numpy_float64(data):
            dtype_ = get_default_dtype()
        elif array.dtype.kind == "f":
            dtype_ = float64 if array.dtype == np.float64 else float32
        else:
            raise TypeError(f"can't convert np.ndarray of type numpy.{array.dtype}. The only supported types are: "
                            "float64, float32, int64, and bool.")
    return array.astype(NUMPY_DTYPE[dtype_.name]), dtype_


def _holds_numpy_float64(data) -> bool:
    """torch keeps float64 for numpy float64 scalars (a Python float becomes the default dtype)."""
    if isinstance(data, np.float64):
        return True
    if isinstance(data, (list, tuple)):
        return any(_holds_numpy_float64(item) for item in data)
    return False


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor holding a copy of `data` (nested lists, numbers, numpy arrays).

    >>> import symgrad
    >>> symgrad.tensor([[1, 2], [3, 4]])
    tensor([[1, 2],
            [3, 4]])
    """
    if isinstance(data, Tensor):
        dtype = dtype or data.dtype
        array = data.detach()._value().astype(NUMPY_DTYPE[dtype.name])
    else:
        array, dtype = _from_python(data, dtype)
    if requires_grad and not dtype.is_floating_point:
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    # NOTE: a copy that starts on a cache line: generated kernels read it with 64-byte vector loads
    t = Tensor._wrap(Node.from_array(codegen.memory.aligned_copy(array)))
    if requires_grad:
        t.requires_grad_()
    return t


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a contiguous numpy array."""
    return Tensor._wrap(Node.from_array(array))


def FloatTensor(data) -> Tensor:
    return tensor(data, dtype=float32)


def DoubleTensor(data) -> Tensor:
    return tensor(data, dtype=float64)


def LongTensor(data) -> Tensor:
    return tensor(data, dtype=int64)


def full(size, fill_value, *, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of shape `size` filled with `fill_value` (computed lazily, never stored until needed)."""
    size = tuple(int(d) for d in size)
    dt = dtype or _scalar_dtype(fill_value)
    if requires_grad:
        # NOTE: a leaf that requires grad is a variable, not a constant: stored, so that `w * a` with
        # a = ones(..., requires_grad=True) keeps `a` in the graph (x * 1 folds away for constants)
        return tensor(np.full(size, fill_value, NUMPY_DTYPE[dt.name]), dtype=dt, requires_grad=True)
    return Tensor._wrap(_expand_node(_constant(fill_value, dt), size))


def ones(*size, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of ones.

    >>> import symgrad
    >>> symgrad.ones(2, 2, requires_grad=True)
    tensor([[1., 1.],
            [1., 1.]], requires_grad=True)
    """
    return full(_size_args(size), 1, dtype=dtype or get_default_dtype(), requires_grad=requires_grad)


def zeros(*size, dtype=None, requires_grad=False) -> Tensor:
    return full(_size_args(size), 0, dtype=dtype or get_default_dtype(), requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, requires_grad=False) -> Tensor:
    return full(input.shape, fill_value, dtype=dtype or input.dtype, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, requires_grad=False) -> Tensor:
    return full_like(input, 1, dtype=dtype, requires_grad=requires_grad)


def zeros_like(input, *, dtype=None, requires_grad=False) -> Tensor:
    return full_like(input, 0, dtype=dtype, requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, requires_grad=False) -> Tensor:
    """Values from `start` to `end` (exclusive) by `step`; int64 unless a bound is a float."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        floats = any(isinstance(v, float) for v in (start, end, step))
        dtype = get_default_dtype() if floats else int64
    count = builtins.max(0, math.ceil((end - start) / step))
    values = (start + step * np.arange(count, dtype=np.float64)).astype(NUMPY_DTYPE[dtype.name])
    return tensor(values, dtype=dtype, requires_grad=requires_grad)


class _Generator:
    """The random state behind randn/rand (numpy's PCG64; torch's numbers are not reproduced)."""

    state = np.random.default_rng(0)


def manual_seed(seed: int):
    _Generator.state = np.random.default_rng(int(seed))
    return _Generator


def randn(*size, dtype=None, requires_grad=False) -> Tensor:
    """Standard normal samples."""
    dt = dtype or get_default_dtype()
    values = _Generator.state.standard_normal(_size_args(size)).astype(NUMPY_DTYPE[dt.name])
    return tensor(values, dtype=dt, requires_grad=requires_grad)


def rand(*size, dtype=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    dt = dtype or get_default_dtype()
    values = _Generator.state.random(_size_args(size)).astype(NUMPY_DTYPE[dt.name])
    return tensor(values, dtype=dt, requires_grad=requires_grad)


def randn_like(input, *, dtype=None, requires_grad=False) -> Tensor:
    return randn(*input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def rand_like(input, *, dtype=None, requires_grad=False) -> Tensor:
    return rand(*input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)
