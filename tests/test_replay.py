"""Replay (symgrad/replay.py): a repeated loop body is served from captured templates, and what it
computes is bit for bit what the same code computes with replay off."""
import contextlib

import numpy as np
import pytest

import symgrad
from symgrad.replay import Replay, stats
from opcases import CASES, draw


@contextlib.contextmanager
def replay_enabled(on: bool):
    before = Replay.enabled
    Replay.enabled = on
    try:
        yield
    finally:
        Replay.enabled = before


def run_twice(fn, steps):
    """`fn(step)` returns arrays; run `steps` steps with replay off and on, in fresh states."""
    with replay_enabled(False):
        reference = [fn(step) for step in range(steps)]
    before = stats()
    with replay_enabled(True):
        replayed = [fn(step) for step in range(steps)]
    after = stats()
    for step, (want, got) in enumerate(zip(reference, replayed)):
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w, err_msg=f"step {step}")
    return {k: after[k] - before[k] for k in ("calls", "flushes")}


def two_layer_loop(learning_rates, activation="relu", steps=8):
    def make():
        symgrad.manual_seed(1)
        x, y = symgrad.randn(16, 20), symgrad.randn(16, 3)
        w1 = symgrad.randn(20, 8, requires_grad=True)
        w2 = symgrad.randn(8, 3, requires_grad=True)
        return x, y, w1, w2

    state = {}

    def step(k):
        if k == 0:
            state["tensors"] = make()
        x, y, w1, w2 = state["tensors"]
        h = x.mm(w1)
        h = h.clamp(min=0) if activation(k) == "relu" else h.tanh()
        loss = (h.mm(w2) - y).pow(2).sum()
        loss.backward()
        lr1, lr2 = learning_rates(k)
        with symgrad.no_grad():
            w1 -= lr1 * w1.grad
            w2 -= lr2 * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
        return loss.item(), w1.detach().numpy().copy(), w2.detach().numpy().copy()

    return step


def test_training_loop_is_replayed_and_matches_bit_for_bit():
    replayed = run_twice(two_layer_loop(lambda k: (1e-3, 1e-3), lambda k: "relu"), steps=8)
    assert replayed["calls"] >= 40 and replayed["flushes"] >= 4, replayed


def test_a_learning_rate_changing_every_step_is_replayed():
    replayed = run_twice(two_layer_loop(lambda k: (1e-3 * 0.9 ** k, 2e-3 * 0.8 ** k), lambda k: "relu"), steps=8)
    assert replayed["flushes"] >= 4, replayed


def test_learning_rates_equal_when_captured_then_different():
    # hash-consing shares one scalar node while the two rates are equal; later they must not be
    run_twice(two_layer_loop(lambda k: (1e-3, 1e-3) if k < 4 else (1e-3, 5e-4), lambda k: "relu"), steps=8)


def test_alternating_loop_bodies():
    replayed = run_twice(two_layer_loop(lambda k: (1e-3, 1e-3), lambda k: "relu" if k % 2 else "tanh"),
                         steps=10)
    assert replayed["flushes"] >= 2, replayed


def test_a_changing_float_exponent_is_not_baked_in():
    def step(k):
        x = symgrad.tensor(np.linspace(0.5, 2.0, 6), requires_grad=True)
        y = (x ** (1.5 + 0.25 * k)).sum()
        y.backward()
        return y.item(), x.grad.numpy().copy()

    run_twice(step, steps=6)


def test_an_integer_constant_change_is_a_different_guard():
    def step(k):
        x = symgrad.tensor(np.linspace(0.5, 2.0, 6), requires_grad=True)
        y = (x ** (2 + k % 3)).sum()
        y.backward()
        return y.item(), x.grad.numpy().copy()

    run_twice(step, steps=9)


def test_values_read_before_backward():
    def step(k):
        w = symgrad.tensor([1.0, -2.0, 3.0], requires_grad=True)
        loss = (w * w * (k + 1.5)).sum()
        value = loss.item()
        loss.backward()
        return value, w.grad.numpy().copy()

    run_twice(step, steps=5)


def test_errors_are_raised_while_replaying():
    w = symgrad.ones(3, requires_grad=True)
    for _ in range(4):
        loss = (w * w).sum()
        loss.backward()
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            loss.backward()
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            w.add_(1.0)
        w.grad = None


def test_replayed_graph_has_torch_names():
    names = []
    for _ in range(4):
        w = symgrad.ones(2, 2, requires_grad=True)
        out = (w.mm(w).relu() * 2.5).sum()
        names.append([out.grad_fn.name(), out.grad_fn.next_functions[0][0].name()])
        out.backward()
    assert names[-1] == names[0] == ["SumBackward0", "MulBackward0"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_op_case_replays_to_the_same_bits(case):
    """Each case's forward and backward, run as a loop body: replayed steps give the same bits."""
    arrays = draw(case, "float64")
    weight = np.random.default_rng(3).standard_normal(64)

    def step(_):
        leaves = [symgrad.tensor(a, requires_grad=spec.differentiable) for spec, a in zip(case.inputs, arrays)]
        out = case.fn(symgrad, *leaves)
        w = symgrad.tensor(weight[:out.numel()].reshape(tuple(out.shape)), dtype=out.dtype)
        (out * w).sum().backward()
        return [out.detach().numpy().copy()] + [leaf.grad.numpy().copy() for leaf in leaves
                                                 if leaf.grad is not None]

    run_twice(step, steps=3)


def test_a_float_alpha_changing_every_step_is_a_runtime_value():
    # optimizers pass per-step values as add's alpha: replay must not bake the first one in
    state = {}

    def step(k):
        if k == 0:
            state["w"] = symgrad.tensor([1.0, -2.0, 3.0], requires_grad=True)
        w = state["w"]
        (w * w).sum().backward()
        with symgrad.no_grad():
            w.add_(w.grad, alpha=-0.1 * 0.7 ** k)
            w.grad.zero_()
        return (w.detach().numpy().copy(),)

    replayed = run_twice(step, steps=8)
    assert replayed["flushes"] >= 4, replayed


def test_a_pending_value_from_before_the_loop_is_replayed():
    # seed 4's `y = 2 * x + 3` is never stored: every step's program recomputes it from x
    state = {}

    def step(k):
        if k == 0:
            symgrad.manual_seed(42)
            x = symgrad.randn(120, 1)
            state.update(x=x, y=2 * x + 3 + 0.5, b=symgrad.randn(1, requires_grad=True),
                         w=symgrad.randn(1, requires_grad=True))
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        loss = ((y - (b + w * x)) ** 2).mean()
        loss.backward()
        with symgrad.no_grad():
            b -= 0.1 * b.grad
            w -= 0.1 * w.grad
        b.grad.zero_()
        w.grad.zero_()
        return loss.item(), w.detach().numpy().copy(), b.detach().numpy().copy()

    replayed = run_twice(step, steps=10)
    assert replayed["flushes"] >= 6, replayed


def test_a_replayed_flush_whose_plan_left_the_cache_plans_again():
    # captured flushes keep only the plan's key, so the bounded program cache stays the one bound
    from symgrad.schedule import _ProgramCache

    loop = two_layer_loop(lambda k: (1e-3, 1e-3), lambda k: "relu")

    def step(k):
        if k in (4, 6):
            _ProgramCache.plans.clear()
        return loop(k)

    replayed = run_twice(step, steps=9)
    assert replayed["flushes"] >= 3, replayed
