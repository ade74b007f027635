"""Native programs as Python builtin functions: a call without ctypes.

Calling a program through a ctypes function pointer costs ~2.5k instructions (argument conversion,
libffi); a tiny compiled training step is mostly such overhead. Here one small native function, made
once per process, is the C body of a builtin function object (`METH_NOARGS`, as `len` or `id` are
made). Its `self` is a tuple: a Python int, the address of three pointers (program, address array,
scalar array), and the ctypes array holding them (so the function keeps it alive). Calling it is one
vectorcall into native code, which releases the GIL around the program as ctypes does, and returns
None.

>>> import ctypes, numpy as np, sympy
>>> from codegen import Kernel, Load, Program, Store, compile_program
>>> x = sympy.Symbol("x", real=True)
>>> k = Kernel((2,), (Load(x, 0, (1,)),), (Store(1, (1,), x + 1),))
>>> native = compile_program(Program(("float32", "float32"), (k,)))
>>> a, out = np.array([1, 2], np.float32), np.zeros(2, np.float32)
>>> addresses, scalars = (ctypes.c_int64 * 2)(a.ctypes.data, out.ctypes.data), (ctypes.c_double * 1)()
>>> call = bound_call(native.compiled.address, ctypes.addressof(addresses), ctypes.addressof(scalars))
>>> call(); out.tolist()
[2.0, 3.0]
"""
from __future__ import annotations

import ctypes
import functools

from .jit import link_ir

# NOTE: the trampoline reads its three pointers from `self`; Py_BuildValue("") is None as a new
# reference on every Python version (Py_None's reference count is handled by CPython itself).
_IR = r"""
declare ptr @PyTuple_GetItem(ptr, i64)
declare ptr @PyLong_AsVoidPtr(ptr)
declare ptr @PyEval_SaveThread()
declare void @PyEval_RestoreThread(ptr)
declare ptr @Py_BuildValue(ptr, ...)

@empty = private unnamed_addr constant [1 x i8] zeroinitializer

define ptr @symgrad_bound_call(ptr %self, ptr %unused) {
  %where = call ptr @PyTuple_GetItem(ptr %self, i64 0)
  %parts = call ptr @PyLong_AsVoidPtr(ptr %where)
  %function = load ptr, ptr %parts
  %addresses_at = getelementptr ptr, ptr %parts, i64 1
  %addresses = load ptr, ptr %addresses_at
  %scalars_at = getelementptr ptr, ptr %parts, i64 2
  %scalars = load ptr, ptr %scalars_at
  %thread = call ptr @PyEval_SaveThread()
  call void %function(ptr %addresses, ptr %scalars)
  call void @PyEval_RestoreThread(ptr %thread)
  %none = call ptr (ptr, ...) @Py_BuildValue(ptr @empty)
  ret ptr %none
}
"""
_PYTHON_API = ("PyTuple_GetItem", "PyLong_AsVoidPtr", "PyEval_SaveThread", "PyEval_RestoreThread", "Py_BuildValue")
METH_NOARGS = 0x0004


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


@functools.cache
def _method():
    """The method definition every bound call shares (kept, with its code, for the life of the process)."""
    symbols = {name: ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value for name in _PYTHON_API}
    address, library = link_ir(_IR, "symgrad_bound_call", symbols, "symgrad_pyentry")
    definition = _MethodDef(b"native_program", address, METH_NOARGS,
                            b"Run a compiled program with its kept argument arrays.")
    make = ctypes.pythonapi.PyCFunction_NewEx
    make.restype, make.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p)
    return library, definition, make


def bound_call(function: int, addresses: int, scalars: int):
    """A builtin function of no arguments running `function(addresses, scalars)` (a program's native
    entry and the addresses of its two argument arrays, which the caller keeps alive)."""
    _, definition, make = _method()
    parts = (ctypes.c_void_p * 3)(function, addresses, scalars)
    return make(ctypes.addressof(definition), (ctypes.addressof(parts), parts), None)
