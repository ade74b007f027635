"""The backend alone: kernel specs in, correct and vectorized native code out (no tensors involved)."""
import re

import numpy as np
import pytest
import sympy

import codegen
from codegen import Kernel, Load, Program, Store, canonical_loops, to_float32, to_int64

x, y = sympy.symbols("x y", real=True)
s = sympy.Symbol("s", real=True)


def run(program, arrays, scalars=()):
    native = codegen.compile_program(program)
    native([a.ctypes.data for a in arrays], scalars)
    return native


def test_float32_elementwise_kernel_uses_simd_instructions():
    kernel = Kernel((1024,), (Load(x, 0, (1,)), Load(y, 1, (1,))), (Store(2, (1,), x * y + sympy.exp(x)),))
    native = codegen.compile_program(Program(("float32",) * 3, (kernel,)))
    asm = native.assembly()
    packed = re.findall(r"\bv\w+ps\s+[^\n]*%[yz]mm", asm)
    assert packed, "no packed single-precision vector instruction on ymm/zmm registers"
    assert not re.search(r"call\s+\S*exp", asm), "exp must be inlined polynomial code, not a libm call"


def test_broadcast_is_a_zero_stride_and_reduction_over_rows_and_columns():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    row = np.array([10.0, 20.0, 30.0, 40.0])
    rows, cols, both = np.zeros(3), np.zeros(4), np.zeros(12)
    kernel = Kernel((3, 4), (Load(x, 0, (4, 1)), Load(y, 1, (0, 1))), (
        Store(2, (1, 0), x * y, reduce="sum"),
        Store(3, (0, 1), x + y, reduce="max"),
        Store(4, (4, 1), x - y),
    ))
    run(Program(("float64",) * 5, (kernel,)), [a, row, rows, cols, both])
    np.testing.assert_allclose(rows, (a * row).sum(1))
    np.testing.assert_allclose(cols, (a + row).max(0))
    np.testing.assert_allclose(both, (a - row).ravel())


def test_runtime_scalar_changes_value_without_recompiling():
    a = np.arange(8, dtype=np.float32)
    out = np.zeros(8, np.float32)
    kernel = Kernel((8,), (Load(x, 0, (1,)),), (Store(1, (1,), s * x),))
    native = codegen.compile_program(Program(("float32", "float32"), (kernel,), (s,)))
    before = codegen.compile_count()
    for value in (0.5, -3.0):
        native([a.ctypes.data, out.ctypes.data], [value])
        np.testing.assert_allclose(out, value * a)
    assert codegen.compile_count() == before


def test_typed_casts_comparisons_and_piecewise():
    a = np.array([-1.5, 0.0, 2.7, np.nan], np.float32)
    as_int, mask, picked = np.zeros(4, np.int64), np.zeros(4, np.bool_), np.zeros(4, np.float32)
    kernel = Kernel((4,), (Load(x, 0, (1,)),), (
        Store(1, (1,), to_int64(x)),
        Store(2, (1,), x > 0),
        Store(3, (1,), sympy.Piecewise((x, x > 0), (to_float32(sympy.Integer(7)), True))),
    ))
    run(Program(("float32", "int64", "bool", "float32"), (kernel,)), [a, as_int, mask, picked])
    assert as_int[:3].tolist() == [-1, 0, 2]           # truncation toward zero, like torch
    assert mask.tolist() == [False, False, True, False]  # nan > 0 is False
    assert picked.tolist() == [7.0, 7.0, pytest.approx(2.7), 7.0]


def test_max_reduction_propagates_nan_like_torch():
    a = np.array([1.0, np.nan, 3.0], np.float32)
    out = np.zeros(1, np.float32)
    run(Program(("float32", "float32"), (Kernel((3,), (Load(x, 0, (1,)),), (Store(1, (0,), x, "max"),)),)), [a, out])
    assert np.isnan(out[0])


def test_float32_sum_of_millions_is_accurate():
    a = np.random.default_rng(0).random(3_000_001).astype(np.float32)
    out = np.zeros(1, np.float32)
    run(Program(("float32", "float32"), (Kernel((a.size,), (Load(x, 0, (1,)),), (Store(1, (0,), x, "sum"),)),)),
        [a, out])
    assert abs(out[0] - a.astype(np.float64).sum()) / a.sum() < 1e-6


def test_canonical_loops_merge_contiguous_axes_and_keep_reduced_ones():
    kernel = Kernel((2, 3, 4), (Load(x, 0, (12, 4, 1)),), (Store(1, (1, 0, 0), x, "sum"),))
    shape, load_strides, store_strides = canonical_loops(kernel)
    assert shape == (2, 12)
    assert load_strides == [[12, 1]] and store_strides == [[1, 0]]


def test_access_with_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match="strides"):
        Kernel((2, 3), (Load(x, 0, (1,)),), ())


def test_boolean_forms_sympy_creates_are_lowered():
    # SymPy rewrites nested Piecewise conditions into ITE and may produce Xor
    a = np.array([3.0, 1.0, -1.0], np.float64)
    b = np.array([1.0, 2.0, -2.0], np.float64)
    ite, xor = np.zeros(3, np.bool_), np.zeros(3, np.bool_)
    condition = sympy.ITE(x > y, sympy.false, x > 2 * y)
    kernel = Kernel((3,), (Load(x, 0, (1,)), Load(y, 1, (1,))), (
        Store(2, (1,), condition), Store(3, (1,), sympy.Xor(x > 0, y > 0))))
    run(Program(("float64", "float64", "bool", "bool"), (kernel,)), [a, b, ite, xor])
    assert ite.tolist() == [False, False, False]
    assert xor.tolist() == [False, False, False]
    a[:] = [0.5, -1.5, 3.0]
    b[:] = [0.1, -1.0, -2.0]
    run(Program(("float64", "float64", "bool", "bool"), (kernel,)), [a, b, ite, xor])
    assert ite.tolist() == [False, True, False] and xor.tolist() == [False, False, True]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool"])
def test_product_reduction_over_rows_and_columns(dtype):
    values = np.array([[1, 2, 3, 1], [2, 1, 2, 2], [1, 3, 1, 0]])
    a = values.astype(dtype)
    rows, cols, whole = np.zeros(3, dtype), np.zeros(4, dtype), np.zeros((), dtype)
    symbol = x if dtype in ("float32", "float64") else (sympy.Symbol("i", integer=True) if dtype == "int64" else None)
    load = Load(symbol if symbol is not None else sympy.Symbol("b"), 0, (4, 1))
    body = load.symbol if dtype != "bool" else sympy.Ne(load.symbol, 0)
    kernel = Kernel((3, 4), (load,), (
        Store(1, (1, 0), body, reduce="prod"),   # along the inner axis: a register accumulator
        Store(2, (0, 1), body, reduce="prod"),   # along the outer axis: folded into memory
        Store(3, (0, 0), body, reduce="prod"),
    ))
    run(Program((dtype,) * 4, (kernel,)), [a, rows, cols, whole])
    if dtype == "bool":
        np.testing.assert_array_equal(rows, a.all(1))
        np.testing.assert_array_equal(cols, a.all(0))
        assert whole == a.all()
    else:
        np.testing.assert_array_equal(rows, a.prod(1))
        np.testing.assert_array_equal(cols, a.prod(0))
        assert whole == a.prod()


def test_float32_product_accumulates_in_float32_like_torch():
    # torch's float32 prod of [1e30, 1e30, 1e-30] overflows to inf: products are not widened to float64
    a = np.array([1e30, 1e30, 1e-30], np.float32)
    out = np.zeros((), np.float32)
    kernel = Kernel((3,), (Load(x, 0, (1,)),), (Store(1, (0,), x, reduce="prod"),))
    run(Program(("float32", "float32"), (kernel,)), [a, out])
    assert np.isinf(out)


def test_computed_index_loads_gather_and_add_stores_scatter_with_repeats():
    i = sympy.Symbol("i", integer=True)
    table = np.array([10.0, 20.0, 30.0, 40.0], np.float32)
    index = np.array([3, 0, 0, 2, 0, 1, 3, 3, 0, 2, 1, 0, 0, 3, 2, 1, 0], np.int64)
    values = np.arange(index.size, dtype=np.float32)
    gathered = np.zeros(index.size, np.float32)
    scattered = np.full(4, 100.0, np.float32)  # "add" accumulates onto what is there
    n = index.size
    kernel = Kernel((n,), (Load(x, 0, (0,), index=i, index_stride=1), Load(i, 1, (1,)), Load(y, 2, (1,))), (
        Store(3, (1,), x),
        Store(4, (0,), y, reduce="add", index=i, index_stride=1),
    ))
    run(Program(("float32", "int64", "float32", "float32", "float32"), (kernel,)),
        [table, index, values, gathered, scattered])
    np.testing.assert_array_equal(gathered, table[index])
    expected = np.full(4, 100.0)
    np.add.at(expected, index, values)
    np.testing.assert_array_equal(scattered, expected)
