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


def _aligned(n, dtype, misalign_bytes=0):
    """An n-element array starting `misalign_bytes` past a 64-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n * itemsize + 128, np.uint8)
    start = -raw.ctypes.data % 64 + misalign_bytes
    return raw[start:start + n * itemsize].view(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_outputs_are_streamed_when_aligned_and_equal_either_way(dtype):
    """A kernel moving more than memory.stream_bytes() writes its final outputs with non-temporal
    vector stores when they start on a 64-byte line (a second copy of the loop, plain stores, serves
    other addresses); the values are the same, and the sum beside them too."""
    n = max(codegen.memory.stream_bytes() // (2 * np.dtype(dtype).itemsize) * 2, 1 << 16) + 37  # ragged end
    kernel = Kernel((n,), (Load(x, 0, (1,)),), (Store(1, (0,), x, reduce="sum"), Store(2, (1,), sympy.exp(x) * x)))
    native = codegen.compile_program(Program((dtype,) * 3, (kernel,)))
    if re.match(r"x86_64|i.86", codegen.jit.target_machine().triple):
        assert re.search(r"\bvmovntp[sd]\b", native.assembly())
    assert "!nontemporal" in native.compiled.optimized_ir
    data = np.random.default_rng(3).standard_normal(n).astype(dtype)
    results = []
    for misalign in (0, 4, 32):
        a, total, out = _aligned(n, dtype), np.zeros(1, dtype), _aligned(n, dtype, misalign)
        a[:] = data
        native([a.ctypes.data, total.ctypes.data, out.ctypes.data])
        results.append((out.copy(), total[0]))
    for out, total in results[1:]:
        assert out.tobytes() == results[0][0].tobytes() and total == results[0][1]
    np.testing.assert_allclose(results[0][0], np.exp(data) * data, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_outputs_read_by_a_later_kernel_and_small_kernels_are_not_streamed():
    n = codegen.memory.stream_bytes() // 4
    first = Kernel((n,), (Load(x, 0, (1,)),), (Store(1, (1,), x * 2),))
    second = Kernel((n,), (Load(x, 1, (1,)),), (Store(2, (1,), x + 1),))
    text = codegen.lower_program(Program(("float32",) * 3, (first, second)))
    assert text.count(codegen.lower.STREAM_DOMAIN + ".store") == 1  # the second kernel's output only
    small = Kernel((1000,), (Load(x, 0, (1,)),), (Store(1, (1,), x * 2),))
    assert codegen.lower.STREAM_DOMAIN not in codegen.lower_program(Program(("float32",) * 2, (small,)))


def test_stream_stores_marks_only_aligned_vector_stores_of_the_stream_scope():
    text = "\n".join([
        "  store <16 x float> %a, ptr %p, align 64, !alias.scope !0",
        "  store <16 x float> %b, ptr %q, align 4, !alias.scope !0",
        "  store <8 x double> %c, ptr %r, align 64, !alias.scope !3",
        "  store float %d, ptr %s, align 64, !alias.scope !0",
        '!0 = !{!1}', '!1 = !{!"codegen.stream.store", !2}', '!2 = !{!"codegen.stream"}',
        '!3 = !{!4}', '!4 = !{!"some.other.scope", !2}'])
    out = codegen.jit.stream_stores(text).splitlines()
    assert out[0].endswith("!alias.scope !0, !nontemporal !5") and "!5 = !{i32 1}" in out
    assert "nontemporal" not in "".join(out[1:4])


def test_bound_arguments_call_runs_the_program_as_a_builtin_function():
    # the kept arrays' call is a builtin (pyentry), not ctypes: it must read the arrays as they are at
    # each call, and hand back None without unbalancing None's reference count
    import sys

    x = sympy.Symbol("x", real=True)
    s = sympy.Symbol("s", real=True)
    k = Kernel((3,), (Load(x, 0, (1,)),), (Store(1, (1,), x * s),))
    arguments = codegen.compile_program(Program(("float32", "float32"), (k,), (s,))).bound_arguments()
    a, b = np.array([1, 2, 3], np.float32), np.array([4, 5, 6], np.float32)
    out = np.zeros(3, np.float32)
    assert type(arguments.call).__name__ == "builtin_function_or_method"
    for source, scale in ((a, 2.0), (b, -1.0), (a, 0.5)):
        arguments.addresses[:] = [source.ctypes.data, out.ctypes.data]
        arguments.scalars[0] = scale
        before = sys.getrefcount(None)
        for _ in range(1000):
            arguments.call()
        assert abs(sys.getrefcount(None) - before) < 10
        assert arguments.call() is None
        np.testing.assert_array_equal(out, source * np.float32(scale))
