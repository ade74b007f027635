"""codegen: kernel specs in, native vectorized CPU functions out.

This package knows nothing of tensors or autograd. Its contract is plain data (`Program`, `Kernel`,
`Gemm`, `Load`, `Store` and SymPy expressions); `compile_program` turns one into a native callable.
`Gemm` entries call numpy's bundled OpenBLAS. Large kernels run on several threads started from the
generated code (`parallel`); `set_num_threads`/`get_num_threads` control them and OpenBLAS's together.

>>> import numpy as np, sympy
>>> x = sympy.Symbol("x", real=True)
>>> k = Kernel((3,), (Load(x, 0, (1,)),), (Store(1, (0,), 2 * x, reduce="sum"),))
>>> run = compile_program(Program(("float32", "float32"), (k,)))
>>> a, out = np.array([1, 2, 3], np.float32), np.zeros(1, np.float32)
>>> run([a.ctypes.data, out.ctypes.data]); float(out[0])
12.0
"""
from __future__ import annotations

import ctypes
import threading

from . import blas, memory, parallel, pyentry
from .parallel import get_num_threads, set_num_threads
from .jit import PROGRAM_SIGNATURE, Compiled, compile_count, compile_ir
from .kernel import CASTS, Cast, Gemm, IsNan, Kernel, Load, Program, Store, to_float32, to_float64, to_int64
from .lower import canonical_loops, lower_program

__all__ = [
    "CASTS", "Cast", "Gemm", "IsNan", "Kernel", "Load", "Program", "Store", "to_float32", "to_float64", "to_int64",
    "NativeProgram", "BoundArguments", "compile_program", "compile_count", "lower_program", "canonical_loops",
    "blas", "memory", "parallel", "set_num_threads", "get_num_threads",
]


class NativeProgram:
    """A compiled `Program`: call it with buffer addresses and runtime scalar values."""

    def __init__(self, program: Program, ir_text: str, compiled: Compiled):
        self.program, self.ir, self.compiled = program, ir_text, compiled
        self._function = PROGRAM_SIGNATURE(compiled.address)
        self._address_type = ctypes.c_int64 * len(program.buffers)
        self._scalar_type = ctypes.c_double * max(1, len(program.scalars))
        # NOTE: building a ctypes array from a list costs ~5 us, filling a kept one by slice ~1 us, and a
        # tiny compiled step is all such overhead. The lock keeps the kept arrays to one caller at a time:
        # the call releases the GIL, so another thread (or a nested call) gets arrays of its own.
        self._arguments = (self._address_type(), self._scalar_type(), threading.Lock())
        self._argument_pointers = tuple(ctypes.addressof(a) for a in self._arguments[:2])
        # the kept arrays' builtin call (pyentry): made at the third call, so that a first step (cold
        # start) does not wait for its trampoline while a loop soon runs without ctypes
        self._bound_call, self._calls = None, 0

    def __call__(self, addresses, scalars=()):
        """Run every kernel once. `addresses[i]` is the data address of buffer slot i."""
        address_array, scalar_array, lock = self._arguments
        if not lock.acquire(False):
            self._function(self._address_type(*addresses), self._scalar_type(*scalars))
            return
        try:
            address_array[:] = addresses
            if scalars:
                scalar_array[:len(scalars)] = scalars
            if self._bound_call is not None:
                self._bound_call()
            else:
                self._function(*self._argument_pointers)
                self._calls += 1
                if self._calls == 2:
                    self._bound_call = pyentry.bound_call(self.compiled.address, *self._argument_pointers)
        finally:
            lock.release()

    def bound_arguments(self) -> "BoundArguments":
        """Argument arrays of this program for one caller to keep: fill `addresses` and `scalars` in
        place, then `call()`. The cheapest way to run a program many times from one place, where only
        some addresses change between runs.

        >>> import numpy as np, sympy
        >>> x = sympy.Symbol("x", real=True)
        >>> k = Kernel((2,), (Load(x, 0, (1,)),), (Store(1, (1,), x + 1),))
        >>> arguments = compile_program(Program(("float32", "float32"), (k,))).bound_arguments()
        >>> a, out = np.array([1, 2], np.float32), np.zeros(2, np.float32)
        >>> arguments.addresses[:] = [a.ctypes.data, out.ctypes.data]; arguments.call(); out.tolist()
        [2.0, 3.0]
        """
        return BoundArguments(self)

    def assembly(self) -> str:
        """The native assembly of the whole program (after LLVM's O3 pipeline)."""
        return self.compiled.assembly()


class BoundArguments:
    """A NativeProgram's argument arrays held by one caller (see `NativeProgram.bound_arguments`)."""

    __slots__ = ("native", "addresses", "scalars", "call")

    def __init__(self, native: NativeProgram):
        self.native = native  # NOTE: keeps the code alive as long as it can be called
        self.addresses = native._address_type()
        self.scalars = native._scalar_type()
        # NOTE: a builtin function, not a ctypes call: ~0.3 us instead of ~0.5-0.7 us (see pyentry)
        self.call = pyentry.bound_call(native.compiled.address, ctypes.addressof(self.addresses),
                                       ctypes.addressof(self.scalars))


def compile_program(program: Program) -> NativeProgram:
    """Lower, optimise and link `program`."""
    ir_text = lower_program(program)
    return NativeProgram(program, ir_text, compile_ir(ir_text, "program"))
