"""Large kernels split across threads from native code (codegen/parallel.py): the same results with
any thread count (bitwise for elementwise stores, within float tolerance for reductions, and the same
run to run), the thread-count API, and small kernels left on one thread."""
import numpy as np
import pytest
import sympy

import codegen
import symgrad
from codegen import Kernel, Load, Program, Store, parallel

x, y = sympy.symbols("x y", real=True)
s = sympy.Symbol("s", real=True)


@pytest.fixture
def threads():
    """Set the thread count inside a test; the previous count comes back afterwards."""
    before = codegen.get_num_threads()
    yield codegen.set_num_threads
    codegen.set_num_threads(before)


@pytest.fixture
def split_everything(monkeypatch):
    """Kernels compiled inside the test are split however small they are."""
    monkeypatch.setattr(parallel, "MIN_WORK_NS", 1e-3)


def run_with(threads, counts, program, make_arrays, scalars=()):
    """{count: output arrays} from running `program` with each thread count on fresh arrays."""
    native = codegen.compile_program(program)
    results = {}
    for n in counts:
        threads(n)
        arrays = make_arrays()
        native([a.ctypes.data for a in arrays], scalars)
        results[n] = arrays
    return native, results


def is_split(native):
    return "pthread_create" in native.ir


def test_elementwise_results_are_bitwise_equal_for_any_thread_count(threads, split_everything):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    body = sympy.tanh(x) * y + sympy.exp(-x * x) / (1 + sympy.exp(-y))
    kernel = Kernel((1000,), (Load(x, 0, (1,)), Load(y, 1, (1,))), (Store(2, (1,), body),))
    native, out = run_with(threads, (1, 2, 3, 8, 1), Program(("float32",) * 3, (kernel,)),
                           lambda: [a, b, np.full(1000, np.nan, np.float32)])
    assert is_split(native)
    for n in (2, 3, 8, 1):
        assert out[n][2].tobytes() == out[1][2].tobytes()
    expected = np.tanh(a) * b + np.exp(-a.astype(np.float64) ** 2) / (1 + np.exp(-b.astype(np.float64)))
    np.testing.assert_allclose(out[1][2], expected, rtol=1e-5, atol=1e-6)


def test_split_reductions_are_deterministic_and_agree_with_one_thread(threads, split_everything):
    n = 3 * 4096 + 123  # whole SUM_BLOCKs per chunk and a ragged end
    a = np.random.default_rng(1).random(n).astype(np.float32) + 0.5
    kernel = Kernel((n,), (Load(x, 0, (1,)),), (
        Store(1, (0,), x * x, reduce="sum"),
        Store(2, (0,), x, reduce="max"),
        Store(3, (0,), -x, reduce="min"),
        Store(4, (1,), sympy.exp(x)),           # an elementwise store in the same loop
        Store(5, (0,), 1 + x / 1e4, reduce="prod"),
    ))
    program = Program(("float32",) * 6, (kernel,))
    fresh = lambda: [a, *(np.full(1, np.nan, np.float32) for _ in range(3)), np.empty(n, np.float32),  # noqa: E731
                     np.full(1, np.nan, np.float32)]
    native, out = run_with(threads, (1, 2, 3, 2, 3), program, fresh)
    assert is_split(native)
    for k in (2, 3):
        again = run_with(threads, (k,), program, fresh)[1][k]
        assert all(p.tobytes() == q.tobytes() for p, q in zip(again, out[k]))  # run to run: the same
        np.testing.assert_allclose(out[k][1], out[1][1], rtol=1e-6)
        assert out[k][2] == out[1][2] == a.max() and out[k][3] == out[1][3] == -a.max()
        assert out[k][4].tobytes() == out[1][4].tobytes()
        np.testing.assert_allclose(out[k][5], out[1][5], rtol=1e-5)
    np.testing.assert_allclose(out[1][1], (a.astype(np.float64) ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(out[1][5], np.prod(1 + a.astype(np.float64) / 1e4), rtol=1e-4)


def test_integer_and_bool_reductions_split_exactly(threads, split_everything):
    n = 20000
    a = np.random.default_rng(2).integers(-1000, 1000, n)
    flags = np.zeros(n, np.bool_)
    flags[n - 7] = True
    kernel = Kernel((n,), (Load(x, 0, (1,)), Load(y, 1, (1,))), (
        Store(2, (0,), x, reduce="sum"), Store(3, (0,), sympy.Ne(y, 0), reduce="max")))
    program = Program(("int64", "bool", "int64", "bool"), (kernel,))
    native, out = run_with(threads, (1, 2, 5), program,
                           lambda: [a, flags, np.zeros(1, np.int64), np.zeros(1, np.bool_)])
    assert is_split(native)
    for k in (1, 2, 5):
        assert out[k][2][0] == a.sum() and out[k][3][0]


def test_rows_of_a_row_reduction_go_to_different_threads(threads, split_everything):
    a = np.random.default_rng(3).standard_normal((301, 50))
    kernel = Kernel((301, 50), (Load(x, 0, (50, 1)), Load(s, 1, (0, 0))), (
        Store(2, (1, 0), x * s, reduce="sum"), Store(3, (50, 1), sympy.sin(x) * s)))
    program = Program(("float64",) * 4, (kernel,))
    scale = np.array([0.5])
    native, out = run_with(threads, (1, 2, 4), program, lambda: [a, scale, np.zeros(301), np.zeros((301, 50))])
    assert is_split(native)
    for k in (2, 4):
        assert out[k][2].tobytes() == out[1][2].tobytes() and out[k][3].tobytes() == out[1][3].tobytes()
    np.testing.assert_allclose(out[1][2], (a * 0.5).sum(1))


def test_kernels_whose_rows_write_the_same_place_stay_on_one_thread(threads, split_everything):
    a = np.random.default_rng(4).standard_normal((300, 40))
    kernel = Kernel((300, 40), (Load(x, 0, (40, 1)),), (Store(1, (0, 1), x, reduce="sum"),))
    native, out = run_with(threads, (2,), Program(("float64",) * 2, (kernel,)), lambda: [a, np.zeros(40)])
    assert not is_split(native)
    np.testing.assert_allclose(out[2][1], a.sum(0))


def test_runtime_scalars_reach_every_thread_and_the_count_changes_without_recompiling(threads, split_everything):
    a = np.arange(5000, dtype=np.float64)
    kernel = Kernel((5000,), (Load(x, 0, (1,)),), (Store(1, (1,), s * x + 1), Store(2, (0,), s * x, reduce="sum")))
    native = codegen.compile_program(Program(("float64",) * 3, (kernel,), (s,)))
    before = codegen.compile_count()
    for n, value in ((1, 2.0), (2, -3.0), (3, 0.25)):
        threads(n)
        out, total = np.zeros(5000), np.zeros(1)
        native([a.ctypes.data, out.ctypes.data, total.ctypes.data], [value])
        np.testing.assert_array_equal(out, value * a + 1)
        np.testing.assert_allclose(total[0], value * a.sum())
    assert codegen.compile_count() == before


def test_small_kernels_are_not_split_and_large_ones_are():
    def program(n):
        kernel = Kernel((n,), (Load(x, 0, (1,)),), (Store(1, (1,), sympy.exp(x) * sympy.tanh(x)),))
        return Program(("float32", "float32"), (kernel,))

    assert not is_split(codegen.compile_program(program(10_000)))
    assert is_split(codegen.compile_program(program(4_000_000)))


def test_set_num_threads_sets_kernels_and_blas_like_torch(threads):
    threads(1)
    assert symgrad.get_num_threads() == 1 == codegen.blas.get_num_threads()
    symgrad.set_num_threads(2)
    assert symgrad.get_num_threads() == 2 == codegen.blas.get_num_threads()
    for bad, message in ((0, "a positive integer"), (-3, "a positive integer"), (1.5, "an int, but got float"),
                         (True, "an int, but got bool")):
        with pytest.raises(RuntimeError, match=f"set_num_threads expects {message}"):
            symgrad.set_num_threads(bad)
    assert symgrad.get_num_threads() == 2


def test_a_large_forward_and_backward_step_is_the_same_with_one_and_two_threads(threads):
    data = np.random.default_rng(5).standard_normal(1 << 20).astype(np.float32) * 0.5
    results = {}
    for n in (1, 2):
        threads(n)
        x = symgrad.tensor(data, requires_grad=True)
        loss = (symgrad.tanh(x) * symgrad.sigmoid(x) + x * x).exp().mean()
        loss.backward()
        results[n] = (loss.item(), x.grad.numpy().copy())
    assert results[1][1].tobytes() == results[2][1].tobytes()
    assert results[1][0] == pytest.approx(results[2][0], rel=1e-6)
