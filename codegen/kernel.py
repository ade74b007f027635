"""The kernel spec: the plain data that the frontend hands to the backend.

A `Program` is a list of `Kernel`s run in order over a shared list of buffers. Each kernel is a loop nest
over an index space `shape`; every point of that space reads its `Load`s (a buffer seen through strides
and an offset, so broadcasting is a zero stride, never a copy), evaluates one SymPy expression per
`Store`, and writes it, or folds it into a reduction when the store's stride is 0 along an axis.

Nothing here knows about tensors or autograd.

>>> import sympy
>>> x = sympy.Symbol("x", real=True)
>>> k = Kernel(shape=(4,), loads=(Load(x, buffer=0, strides=(1,)),),
...            stores=(Store(buffer=1, strides=(0,), expr=x * x, reduce="sum"),))
>>> prog = Program(buffers=("float32", "float32"), kernels=(k,))
>>> prog.kernels[0].stores[0].reduce
'sum'
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from sympy.logic.boolalg import BooleanFunction

DTYPES = ("float32", "float64", "int64", "bool")
REDUCTIONS = ("sum", "prod", "max", "min")
# "add": accumulate into the buffer's current contents (no initialisation), e.g. a scatter-add
STORE_MODES = (*REDUCTIONS, "add")


@dataclass(frozen=True)
class Load:
    """`symbol` stands for `buffer[offset + sum(index[k] * strides[k])]` inside a kernel's body."""

    symbol: sympy.Symbol
    buffer: int
    strides: tuple[int, ...]
    offset: int = 0
    # a computed position: the address also moves by `index_stride` elements per unit of `index`, an
    # int64 expression of other loads (gather reads x at index[i]); None for plain strided loads
    index: sympy.Basic | None = None
    index_stride: int = 0


@dataclass(frozen=True)
class Store:
    """Write `expr` to `buffer[offset + sum(index[k] * strides[k])]`.

    With `reduce` set, axes whose stride is 0 are reduced: the buffer is first filled with the
    reduction's identity, then every point of the index space is folded into it.
    """

    buffer: int
    strides: tuple[int, ...]
    expr: sympy.Basic
    reduce: str | None = None
    offset: int = 0
    index: sympy.Basic | None = None  # as for Load: a computed position (scatter-add)
    index_stride: int = 0


@dataclass(frozen=True)
class Kernel:
    """One loop nest: every load and store has one stride per axis of `shape`."""

    shape: tuple[int, ...]
    loads: tuple[Load, ...]
    stores: tuple[Store, ...]

    def __post_init__(self):
        for access in (*self.loads, *self.stores):
            if len(access.strides) != len(self.shape):
                raise ValueError(f"kernel of shape {self.shape} got an access with strides {access.strides}")
        for store in self.stores:
            if store.reduce not in (None, *STORE_MODES):
                raise ValueError(f"unknown reduction {store.reduce!r}; expected one of {STORE_MODES}")


@dataclass(frozen=True)
class Gemm:
    """Matrix products through BLAS: `C[b] = A[b] @ B[b]` for every index b of `batch` (C += ... with
    `accumulate`). A is m x k, B is k x n, C is m x n and row-major contiguous.

    `a_strides`/`b_strides` are each matrix's (row, column) strides in elements; one of the two must
    be 1 (or its dimension 1) so the matrix maps onto BLAS's row-major/transposed forms: a transpose
    is a stride swap, never a copy. Batch strides give each operand's step per batch axis (0 for a
    broadcast operand).
    """

    a: int
    b: int
    c: int
    m: int
    n: int
    k: int
    a_strides: tuple[int, int]
    b_strides: tuple[int, int]
    batch: tuple[int, ...] = ()
    a_batch_strides: tuple[int, ...] = ()
    b_batch_strides: tuple[int, ...] = ()
    c_batch_strides: tuple[int, ...] = ()
    accumulate: bool = False

    def __post_init__(self):
        for name in ("a_batch_strides", "b_batch_strides", "c_batch_strides"):
            if len(getattr(self, name)) != len(self.batch):
                raise ValueError(f"Gemm with batch {self.batch} got {name}={getattr(self, name)}")


@dataclass(frozen=True)
class Program:
    """Kernels run in order. `buffers` gives each buffer slot's dtype; `scalars` are runtime arguments.

    Runtime scalars are passed as float64 values when the program is called and take the type of
    the expression they appear in (like Python numbers in torch), so changing one never recompiles.
    """

    buffers: tuple[str, ...]
    kernels: tuple[Kernel | Gemm, ...]
    scalars: tuple[sympy.Symbol, ...] = field(default=())


class Cast(sympy.Function):
    """Base of the explicit conversions `to_float32(x)`, `to_float64(x)`, `to_int64(x)`.

    Kernel bodies are typed: a loaded symbol has its buffer's dtype, numbers and runtime scalars take
    the type of their context, and a change of type is always one of these calls. Truth values are
    SymPy booleans (`Ne(b, 0)` for a loaded bool, relationals, `And`/`Or`/`Not`); storing one into a
    bool buffer writes 0 or 1, and `to_float32(Ne(b, 0))` turns one into a number.
    """

    nargs = 1
    dtype: str = ""


class to_float32(Cast):
    dtype = "float32"


class to_float64(Cast):
    dtype = "float64"


class to_int64(Cast):
    dtype = "int64"


CASTS = {c.dtype: c for c in (to_float32, to_float64, to_int64)}


class IsNan(BooleanFunction):
    """True where the value is NaN. Comparisons of a value with itself are written with it, because
    SymPy folds `Ne(x, x)` to False (its symbols are never NaN), while `x != x` is the NaN test."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return sympy.true if arg is sympy.nan else sympy.false
        return None
