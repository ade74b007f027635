"""The lazy value graph: immutable, hash-consed nodes; iterative traversal.

A `Node` is a value: an op applied to input nodes (`ADD(x, y)`, `SUM(x, axes)`, `RESHAPE(x)`), a
constant, a runtime scalar, or a realized buffer. Building the same op on the same inputs twice returns
the same node, so common subexpressions are shared as the user's code builds them. Once a node is
realized it keeps its buffer and forgets its inputs: history is cut there, and later graphs that use it
start from that buffer.

>>> import numpy as np
>>> x = Node.from_array(np.ones(3, np.float32))
>>> y = Node.make("MUL", (x, x), None, (3,), "float32")
>>> y is Node.make("MUL", (x, x), None, (3,), "float32")
True
>>> [n.op for n in pending_postorder([y])]
['MUL']
"""
from __future__ import annotations

import weakref

import numpy as np

NUMPY_DTYPE = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}
ITEMSIZE = {"float32": 4, "float64": 8, "int64": 8, "bool": 1}
LEAF_OPS = frozenset({"BUFFER", "CONST", "SCALAR"})

# NOTE: a pending node this large is realized on the spot, so a loop that never observes its values
# (`for _ in range(10**6): y = y * 2`) keeps a bounded graph.
PENDING_LIMIT = 512


class Buffer:
    """A flat numpy array and its data address (read once: `arr.ctypes.data` costs microseconds)."""

    __slots__ = ("_array", "address", "_carve")

    # NOTE: no __init__ (as Node): a flush makes a buffer for every result it computes, filled in place
    @staticmethod
    def of(array: np.ndarray) -> "Buffer":
        flat = array.reshape(-1)
        buffer = Buffer()
        buffer._array, buffer.address, buffer._carve = flat, flat.ctypes.data if flat.size else 0, None
        return buffer

    @staticmethod
    def carved(block: np.ndarray, offset: int, nbytes: int, dtype, address: int) -> "Buffer":
        """`nbytes` of `block` from `offset` (at `address`), viewed as `dtype` only when first read:
        a program's results are mostly consumed by the next program, which needs just the address."""
        buffer = Buffer()
        buffer._array, buffer.address = None, address
        buffer._carve = (block, offset, nbytes, dtype)  # NOTE: holds the block, as the view would
        return buffer

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            block, offset, nbytes, dtype = self._carve
            self._array = block[offset:offset + nbytes].view(dtype)
        return self._array

    def __repr__(self):
        return f"Buffer(address={self.address:#x})"


def row_major_strides(shape) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of `shape`."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def contiguous_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step if n != 1 else 0)
        step *= n
    return tuple(reversed(strides))


class Node:
    __slots__ = ("op", "inputs", "arg", "shape", "dtype", "buffer", "strides", "offset", "pending_size",
                 "_key", "__weakref__")

    _table: "weakref.WeakValueDictionary[tuple, Node]" = weakref.WeakValueDictionary()

    # NOTE: no __init__: `Node()` is an empty node (every field unset) made without a Python frame or an
    # argument tuple, about half the cost of `object.__new__(Node)`; a replayed step makes a hundred
    # nodes that way and fills their fields in place (replay._build_lines). `Node.new` is the
    # constructor everything else uses.
    @classmethod
    def new(cls, op: str, inputs: tuple, arg, shape: tuple, dtype: str) -> "Node":
        """A new pending node, not hash-consed (`make` shares identical nodes)."""
        node = cls()
        node.op, node.inputs, node.arg, node.shape, node.dtype = op, inputs, arg, shape, dtype
        node.buffer = None
        node.strides = ()
        node.offset = 0
        # an estimate (shared inputs count twice), capped: it only decides when to realize early
        node.pending_size = min(1 + sum(i.pending_size for i in inputs), 4 * PENDING_LIMIT)
        node._key = None
        return node

    @classmethod
    def raw(cls, op: str, inputs: tuple, arg, shape: tuple, dtype: str, pending_size: int) -> "Node":
        """A new node from parts already worked out (what a replayed call builds): no hash-consing."""
        node = cls()
        node.op, node.inputs, node.arg, node.shape, node.dtype = op, inputs, arg, shape, dtype
        node.buffer, node.strides, node.offset, node.pending_size, node._key = None, (), 0, pending_size, None
        return node

    @classmethod
    def make(cls, op: str, inputs: tuple, arg, shape: tuple, dtype: str) -> "Node":
        """The node for `op(inputs; arg)`, shared with any identical live node."""
        key = (op, inputs, arg, shape, dtype)
        node = cls._table.get(key)
        if node is None:
            node = cls.new(op, inputs, arg, shape, dtype)
            node._key = key
            cls._table[key] = node
        return node

    @classmethod
    def from_array(cls, array: np.ndarray) -> "Node":
        """A realized leaf viewing `array` (which must not be written to afterwards)."""
        dtype = next(name for name, t in NUMPY_DTYPE.items() if array.dtype == t)
        node = cls.new("BUFFER", (), None, tuple(array.shape), dtype)
        node.pending_size = 0
        contiguous = np.ascontiguousarray(array)
        node.buffer = Buffer.of(contiguous)
        node.strides = contiguous_strides(array.shape)
        return node

    @property
    def realized(self) -> bool:
        return self.buffer is not None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def set_buffer(self, buffer: Buffer, strides: tuple[int, ...], offset: int = 0) -> None:
        """Realize: keep the value, drop the history, leave the hash-consing table."""
        # NOTE: schedule._Plan.run_bound does the same inline for every result of a flush: change both
        if self._key is not None and Node._table.get(self._key) is self:
            del Node._table[self._key]
        self._key = None
        self.op, self.inputs, self.arg = "BUFFER", (), None
        self.buffer, self.strides, self.offset = buffer, strides, offset
        self.pending_size = 0

    def numpy(self) -> np.ndarray:
        """A numpy view of a realized node (no copy)."""
        base = self.buffer.array
        itemsize = base.itemsize
        return np.lib.stride_tricks.as_strided(
            base[self.offset:] if base.size else base, shape=self.shape,
            strides=tuple(s * itemsize for s in self.strides))

    def __repr__(self):
        return f"Node({self.op}, shape={self.shape}, dtype={self.dtype})"


def postorder(roots, include=None, enter=None, inputs=None) -> list[Node]:
    """Nodes reachable from `roots`, inputs before users, without recursion (deep graphs are fine).

    Nodes `include` rejects are neither listed nor entered; the inputs of nodes `enter` rejects are not
    visited (those nodes are still listed). `inputs(node)`, when given, replaces `node.inputs` (the
    formula printer walks a realized value's recorded history this way).
    """
    order, seen = [], set()
    for root in roots:
        if id(root) in seen or (include is not None and not include(root)):
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            if enter is not None and not enter(node):
                continue
            for child in reversed(node.inputs if inputs is None else inputs(node)):
                if id(child) not in seen and (include is None or include(child)):
                    stack.append((child, False))
    return order


def _pending(node) -> bool:
    return node.op != "BUFFER"


def pending_postorder(targets) -> list[Node]:
    """Every unrealized node reachable from `targets`, inputs before users."""
    return postorder(targets, include=_pending)
