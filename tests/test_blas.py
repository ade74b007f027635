"""Gemm specs through numpy's bundled OpenBLAS, called from generated code (no tensors involved)."""
import numpy as np
import pytest
import sympy

import codegen
from codegen import Gemm, Kernel, Load, Program, Store, blas, jit

x = sympy.Symbol("x", real=True)
TOLERANCE = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}


def elements(array):
    return tuple(s // array.itemsize for s in array.strides)


def gemm_of(a, b, accumulate=False):
    """The Gemm computing a @ b for numpy views a (*batch, m, k) and b (*batch, k, n) into a contiguous C."""
    *batch, m, k = a.shape
    n = b.shape[-1]
    c_strides = elements(np.empty((*batch, m, n), a.dtype))
    return Gemm(0, 1, 2, m=m, n=n, k=k, a_strides=elements(a)[-2:], b_strides=elements(b)[-2:],
                batch=tuple(batch), a_batch_strides=elements(a)[:-2], b_batch_strides=elements(b)[:-2],
                c_batch_strides=c_strides[:-2], accumulate=accumulate)


def matmul(a, b, accumulate=False, c=None, gemm=None):
    """Run a @ b (C += a @ b with `accumulate`) through compile_program; return C and the NativeProgram."""
    *batch, m, _ = a.shape
    if c is None:
        c = np.zeros((*batch, m, b.shape[-1]), a.dtype)
    dtype = str(a.dtype)
    native = codegen.compile_program(Program((dtype,) * 3, (gemm or gemm_of(a, b, accumulate),)))
    native([a.ctypes.data, b.ctypes.data, c.ctypes.data])
    return c, native


def reference(a, b):
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def random(shape, dtype, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["plain", "a_transposed", "b_transposed", "both_transposed"])
def test_matrix_product_in_every_transpose_layout(dtype, layout):
    m, k, n = 7, 13, 5
    a = random((k, m), dtype, 1).T if layout in ("a_transposed", "both_transposed") else random((m, k), dtype, 1)
    b = random((n, k), dtype, 2).T if layout in ("b_transposed", "both_transposed") else random((k, n), dtype, 2)
    c, _ = matmul(a, b)
    np.testing.assert_allclose(c, reference(a, b), **TOLERANCE[dtype])


def test_leading_dimension_comes_from_the_row_stride_of_a_sliced_matrix():
    base = random((6, 20), "float64", 3)
    a = base[:, 2:9]            # 6 x 7 with row stride 20
    b = random((7, 30), "float64", 4)[:, ::1][:, 5:9]   # 7 x 4 with row stride 30
    gemm = Gemm(0, 1, 2, m=6, n=4, k=7, a_strides=(20, 1), b_strides=(30, 1))
    c = np.zeros((6, 4))
    native = codegen.compile_program(Program(("float64",) * 3, (gemm,)))
    native([a.ctypes.data, b.ctypes.data, c.ctypes.data])
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_product_with_broadcast_right_operand_is_one_blas_call(dtype):
    a = random((4, 3, 6), dtype, 5)
    b = np.broadcast_to(random((6, 5), dtype, 6), (4, 6, 5))   # batch stride 0
    c, native = matmul(a, b)
    np.testing.assert_allclose(c, reference(a, b), **TOLERANCE[dtype])
    # a shared right operand folds the batch into the rows of A and C: a single call, no batch loop
    assert native.ir.count("call void @\"scipy_cblas_") == 1 and "batch" not in native.ir
    assert "i64 12, i64 5, i64 6" in native.ir


def test_batched_product_with_broadcast_left_operand_loops_over_the_batch():
    a = np.broadcast_to(random((3, 6), "float32", 7), (4, 3, 6))
    b = random((4, 6, 5), "float32", 8)
    c, native = matmul(a, b)
    np.testing.assert_allclose(c, reference(a, b), **TOLERANCE["float32"])
    assert "batch" in native.ir


def test_two_batch_axes_with_transposes_and_a_broadcast_axis():
    a = np.broadcast_to(random((3, 1, 5, 4), "float64", 9), (3, 2, 5, 4)).swapaxes(-1, -2)   # 3x2 of 4x5, Trans
    b = random((2, 6, 5), "float64", 10).swapaxes(-1, -2)[None].repeat(3, axis=0)          # 3x2 of 5x6, Trans
    assert elements(a)[1] == 0
    c, native = matmul(a, b)
    np.testing.assert_allclose(c, reference(a, b), rtol=1e-12)
    assert native.ir.count(" = phi ") == 2 and native.ir.count("call void @\"scipy_cblas_dgemm64_") == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_accumulate_adds_into_c(dtype):
    a, b = random((2, 5, 3), dtype, 11), random((2, 3, 4), dtype, 12)
    start = random((2, 5, 4), dtype, 13)
    c, _ = matmul(a, b, accumulate=True, c=start.copy())
    np.testing.assert_allclose(c, start + reference(a, b), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vectors_as_one_row_and_one_column_matrices_with_degenerate_strides(dtype):
    k = 9
    u, v = random(k, dtype, 14), random(k, dtype, 15)
    # dot product: (1 x k) @ (k x 1), the strides of the size-1 dims are 0 or arbitrary
    for a_strides, b_strides in [((0, 1), (1, 0)), ((12345, 1), (1, 777)), ((1, 1), (1, 1))]:
        gemm = Gemm(0, 1, 2, m=1, n=1, k=k, a_strides=a_strides, b_strides=b_strides)
        c, _ = matmul(u.reshape(1, k), v.reshape(k, 1), gemm=gemm)
        np.testing.assert_allclose(c[0, 0], u.astype(np.float64) @ v, **TOLERANCE[dtype])
    # outer product: (k x 1) @ (1 x 5)
    w = random(5, dtype, 16)
    for a_strides, b_strides in [((1, 0), (0, 1)), ((1, 99), (3, 1))]:
        gemm = Gemm(0, 1, 2, m=k, n=5, k=1, a_strides=a_strides, b_strides=b_strides)
        c, _ = matmul(u.reshape(k, 1), w.reshape(1, 5), gemm=gemm)
        np.testing.assert_allclose(c, np.outer(u, w).astype(np.float64), **TOLERANCE[dtype])
    # matrix @ vector and vector @ matrix, the vector a size-1 matrix with stride 0
    mat = random((4, k), dtype, 17)
    gemm = Gemm(0, 1, 2, m=4, n=1, k=k, a_strides=(k, 1), b_strides=(1, 0))
    c, _ = matmul(mat, v.reshape(k, 1), gemm=gemm)
    np.testing.assert_allclose(c[:, 0], mat.astype(np.float64) @ v, **TOLERANCE[dtype])
    gemm = Gemm(0, 1, 2, m=1, n=4, k=k, a_strides=(0, 1), b_strides=(1, k))   # u @ mat.T
    c, _ = matmul(u.reshape(1, k), mat.T, gemm=gemm)
    np.testing.assert_allclose(c[0], u.astype(np.float64) @ mat.T, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_empty_inner_dimension_gives_zeros_or_leaves_the_accumulator(dtype):
    a, b = np.zeros((2, 3, 0), dtype), np.zeros((2, 0, 4), dtype)
    c, _ = matmul(a, b, c=np.full((2, 3, 4), np.nan, dtype))
    assert (c == 0).all()
    start = random((2, 3, 4), dtype, 18)
    c, _ = matmul(a, b, accumulate=True, c=start.copy())
    np.testing.assert_array_equal(c, start)


def test_empty_rows_columns_or_batch_do_nothing():
    for a_shape, b_shape in [((0, 3), (3, 4)), ((2, 3), (3, 0)), ((0, 2, 3), (0, 3, 4))]:
        a, b = np.ones(a_shape), np.ones(b_shape)
        c, native = matmul(a, b)
        assert c.size == 0 and "scipy_cblas" not in native.ir


def test_gemm_and_elementwise_kernels_run_in_program_order():
    # kernel0: buffer 0 = 2 * x ; gemm1: buffer 3 = buffer 0 @ buffer 2 ; kernel2: buffer 4 = relu(buffer 3)
    m, k, n = 6, 8, 5
    xs, b = random((m, k), "float32", 19), random((k, n), "float32", 20)
    a, c, out = np.full((m, k), np.nan, np.float32), np.zeros((m, n), np.float32), np.zeros((m, n), np.float32)
    y = sympy.Symbol("y", real=True)
    program = Program(("float32",) * 5, (
        Kernel((m * k,), (Load(x, 1, (1,)),), (Store(0, (1,), 2 * x),)),
        Gemm(0, 2, 3, m=m, n=n, k=k, a_strides=(k, 1), b_strides=(n, 1)),
        Kernel((m, n), (Load(y, 3, (n, 1)),), (Store(4, (n, 1), sympy.Max(y, 0)),)),
    ))
    native = codegen.compile_program(program)
    native([a.ctypes.data, xs.ctypes.data, b.ctypes.data, c.ctypes.data, out.ctypes.data])
    expected = reference(2 * xs, b)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, np.maximum(expected, 0), rtol=1e-5, atol=1e-5)
    assert (out == 0).any() and (out > 0).any()


def test_float32_matmul_calls_openblas_sgemm_in_the_compiled_module():
    a, b = random((64, 100), "float32", 21), random((100, 10), "float32", 22)
    c, native = matmul(a, b)
    np.testing.assert_allclose(c, reference(a, b), rtol=1e-4, atol=1e-4)
    assert 'call void @"scipy_cblas_sgemm64_"(i32 101, i32 111, i32 111, i64 64, i64 10, i64 100' in native.ir
    assert "call void @scipy_cblas_sgemm64_" in native.compiled.optimized_ir
    assert "dgemm" not in native.compiled.optimized_ir


def test_set_num_threads_controls_openblas():
    before = codegen.get_num_threads()
    try:
        codegen.set_num_threads(1)
        assert codegen.get_num_threads() == 1
        a, b = random((32, 32), "float64", 23), random((32, 32), "float64", 24)
        c, _ = matmul(a, b)
        np.testing.assert_allclose(c, a @ b, rtol=1e-12)
        with pytest.raises(ValueError, match="positive"):
            codegen.set_num_threads(0)
    finally:
        codegen.set_num_threads(before)
    assert codegen.get_num_threads() == before


def test_symbols_are_numpys_openblas():
    found = blas.symbols()
    assert set(found) == {"scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"} and all(found.values())
    assert "libscipy_openblas" in blas.library_path()


def test_modules_without_blas_calls_never_ask_for_openblas(monkeypatch):
    def unavailable():
        raise RuntimeError("OpenBLAS must not be needed here")

    monkeypatch.setattr(blas, "symbols", unavailable)
    a, out = np.arange(4, dtype=np.float64), np.zeros(4)
    native = codegen.compile_program(Program(("float64",) * 2, (Kernel((4,), (Load(x, 0, (1,)),), (Store(1, (1,), x + 1),)),)))
    native([a.ctypes.data, out.ctypes.data])
    np.testing.assert_array_equal(out, a + 1)
    assert jit.external_symbols(jit.optimize(native.ir)) == {}


def test_unsupported_dtypes_and_layouts_raise_clear_errors():
    gemm = Gemm(0, 1, 2, m=2, n=2, k=2, a_strides=(2, 1), b_strides=(2, 1))
    with pytest.raises(NotImplementedError, match="float32 or float64"):
        codegen.lower_program(Program(("int64",) * 3, (gemm,)))
    with pytest.raises(NotImplementedError, match="float32 or float64"):
        codegen.lower_program(Program(("float32", "float64", "float32"), (gemm,)))
    overlapping = Gemm(0, 1, 2, m=3, n=2, k=3, a_strides=(2, 2), b_strides=(2, 1))
    with pytest.raises(ValueError, match="operand A"):
        codegen.lower_program(Program(("float32",) * 3, (overlapping,)))
    in_place = Gemm(0, 1, 0, m=2, n=2, k=2, a_strides=(2, 1), b_strides=(2, 1))
    with pytest.raises(ValueError, match="reading it"):
        codegen.lower_program(Program(("float32",) * 2, (in_place,)))
