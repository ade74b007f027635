"""Cheaper fused bodies (codegen/rewrite.py and the lowering): sigmoid forms, common factors, tanh and
sigmoid from one exp reduction. Each keeps results within the accuracy the plain formula has, and a
value's bits never depend on what else its kernel computes; the work they save is checked on the IR."""
import re

import numpy as np
import pytest
import sympy

import codegen
from codegen import Kernel, Load, Program, Store, rewrite
from test_mathlib import _ld_ref, inputs, ulp_errors

x, y = sympy.symbols("x y", real=True)


def compile_and_run(shape, loads, stores, dtypes, arrays):
    native = codegen.compile_program(Program(tuple(dtypes), (Kernel(shape, loads, stores),)))
    native([a.ctypes.data for a in arrays])
    return native


def count(ir_text, opcode):
    return len(re.findall(rf"= {opcode} ", ir_text))


def exp_reductions(ir_text):
    """How many exp range reductions the IR does: FMAs by +-log2(e) (as float32 or float64; tanh and
    sigmoid reduce -|x| with the sign in the constant)."""
    return sum(1 for line in ir_text.splitlines() if "llvm.fma" in line and re.search(
        "0x[3b]ff7154760000000|0x[3b]ff71547652b82fe", line, re.IGNORECASE))


def sigmoid(v):
    return 1 / (1 + sympy.exp(-v))


def test_sigmoid_forms_become_one_stable_sigmoid():
    a = np.array([-90.0, -30.0, -1.0, 0.0, 0.5, 20.0, 100.0, np.inf, -np.inf, np.nan], np.float32)
    out = np.zeros_like(a)
    body = x * sigmoid(x) + (1 - sigmoid(x)) * sigmoid(x)  # silu plus the sigmoid's own gradient
    assert rewrite.prepare([body]) == [x * rewrite.Sigmoid(x) + (1 - rewrite.Sigmoid(x)) * rewrite.Sigmoid(x)]
    native = compile_and_run(a.shape, (Load(x, 0, (1,)),), (Store(1, (1,), body),), ("float32",) * 2, [a, out])
    assert exp_reductions(native.ir) == 1  # one sigmoid for its three uses
    assert count(native.ir, "fdiv") == 0  # its quotient (denominator in [1, 2]) is mathlib.div_in's FMAs
    with np.errstate(all="ignore"):
        s = 1 / (1 + np.exp(-a.astype(np.float64)))
        expected = a * s + (1 - s) * s
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-45)
    assert out[0] < 0 and out[0] != -0.0  # -90 * sigmoid(-90) ~ -7e-38, not 0 from 1/(1 + inf)


def test_a_value_has_the_same_bits_whatever_it_is_fused_with():
    """Replay and the scheduler may group stores differently from one run to the next: no rewrite may
    depend on the rest of the kernel (a reciprocal shared by two stores, tanh computed differently
    beside a sigmoid)."""
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(1000) * 3, rng.random(1000) + 0.5
    alone = [sympy.tanh(x), x / (y + 2)]
    together = [sympy.tanh(x), x / (y + 2), sigmoid(x), sympy.sin(x) / (y + 2), sympy.tanh(x) * sigmoid(x)]
    loads = (Load(x, 0, (1,)), Load(y, 1, (1,)))
    for dtype in ("float32", "float64"):
        xs, ys = a.astype(dtype), b.astype(dtype)
        outs = {}
        for name, bodies in (("alone", alone), ("together", together)):
            arrays = [xs, ys] + [np.zeros(1000, dtype) for _ in bodies]
            stores = tuple(Store(2 + k, (1,), e) for k, e in enumerate(bodies))
            compile_and_run((1000,), loads, stores, (dtype,) * len(arrays), arrays)
            outs[name] = arrays[2:]
        for k in range(len(alone)):
            assert outs["alone"][k].tobytes() == outs["together"][k].tobytes(), (dtype, alone[k])


def test_common_factors_and_rational_content_are_pulled_out_of_sums():
    content, common, inner = rewrite.factor_add(x * sympy.exp(y) / 2 + y * sympy.exp(y) / 4 + sympy.exp(y) / 4)
    assert (content, common, inner) == (sympy.Rational(1, 4), [sympy.exp(y)], 2 * x + y + 1)
    assert rewrite.factor_add(x + y) is None
    assert rewrite.factor_add(x + y / 4096) is None  # scaling x up by 4096 could overflow
    # a mean over 3 of a sum: divided once by 3, as (a + b) / 3 rounds in float32
    a = np.array([1.0, 0.1, 1e30], np.float32)
    b = np.array([2.0, 0.2, -1e30], np.float32)
    out = np.zeros(3, np.float32)
    native = compile_and_run((3,), (Load(x, 0, (1,)), Load(y, 1, (1,))), (Store(2, (1,), x / 3 + y / 3),),
                             ("float32",) * 3, [a, b, out])
    assert count(native.ir, "fdiv") == 1
    np.testing.assert_array_equal(out, (a + b) / np.float32(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_sigmoid_of_one_argument_share_one_exp_and_stay_within_4_ulp(dtype):
    name = {np.float32: "float32", np.float64: "float64"}[dtype]
    points = np.concatenate([inputs("tanh", dtype, 40000)[0], inputs("sigmoid", dtype, 40000)[0]]).astype(dtype)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 5e-324, 30.0, -30.0, 800.0, -800.0])
    with np.errstate(over="ignore"):
        points = np.concatenate([points, specials.astype(dtype)])
    tanh_out, sigmoid_out = np.zeros_like(points), np.zeros_like(points)
    native = compile_and_run(points.shape, (Load(x, 0, (1,)),),
                             (Store(1, (1,), sympy.tanh(x)), Store(2, (1,), sigmoid(x))), (name,) * 3,
                             [points, tanh_out, sigmoid_out])
    assert exp_reductions(native.ir) == 1
    assert ulp_errors(tanh_out, _ld_ref("tanh", points), dtype).max() <= 4.0
    assert ulp_errors(sigmoid_out, _ld_ref("sigmoid", points), dtype).max() <= 4.0
    assert np.signbit(tanh_out[points.size - specials.size + 1])  # tanh(-0) = -0
    assert np.isnan(tanh_out[-8]) and np.isnan(sigmoid_out[-8])
    alone = np.zeros_like(points)
    compile_and_run(points.shape, (Load(x, 0, (1,)),), (Store(1, (1,), sympy.tanh(x)),), (name,) * 2,
                    [points, alone])
    assert alone.tobytes() == tanh_out.tobytes()


def test_the_elementwise_benchmark_body_needs_no_division_and_two_exp_reductions():
    n = 4096
    t, s = sympy.tanh(x), sigmoid(x)
    forward = sympy.exp(t * s + x * x)
    grad = x * forward / (n // 2) + (1 - s) * forward * t * s / n + (1 - t ** 2) * forward * s / n
    kernel = Kernel((n,), (Load(x, 0, (1,)),), (Store(1, (0,), forward, "sum"), Store(2, (1,), grad)))
    ir_text = codegen.lower_program(Program(("float32",) * 3, (kernel,)))
    assert count(ir_text, "fdiv") == 0  # tanh's and sigmoid's quotients are mathlib.div_in's FMAs
    assert exp_reductions(ir_text) == 2  # one for tanh and sigmoid, one for the outer exp
