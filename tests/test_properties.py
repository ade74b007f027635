"""Random compositions of ops on random broadcasting shapes agree with numpy in float64."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symgrad

UNARY = {
    "exp": (lambda t: t.exp(), np.exp),
    "tanh": (lambda t: t.tanh(), np.tanh),
    "sigmoid": (lambda t: t.sigmoid(), lambda a: 1 / (1 + np.exp(-a))),
    "neg": (lambda t: -t, np.negative),
    "relu": (lambda t: t.relu(), lambda a: np.maximum(a, 0)),
    "sin": (lambda t: t.sin(), np.sin),
    "abs": (lambda t: t.abs(), np.abs),
}
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "maximum": (lambda a, b: symgrad.maximum(a, b), np.maximum),
    "where": (lambda a, b: symgrad.where(a > b, a, b * 2), lambda a, b: np.where(a > b, a, b * 2)),
}
# shapes drawn from a small set so compiled programs are reused across examples
SHAPES = [(), (3,), (1, 3), (2, 1), (2, 3), (4, 1, 3)]


@st.composite
def programs(draw):
    """A random expression: a list of (op, operand indices) over a few random inputs."""
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=2, max_size=3))
    steps = draw(st.lists(st.one_of(
        st.tuples(st.just("u"), st.sampled_from(sorted(UNARY))),
        st.tuples(st.just("b"), st.sampled_from(sorted(BINARY)))), min_size=1, max_size=5))
    picks = draw(st.lists(st.integers(0, 10), min_size=2 * len(steps), max_size=2 * len(steps)))
    return shapes, steps, picks


def evaluate(values, steps, picks, unary, binary):
    pool = list(values)
    for k, (kind, name) in enumerate(steps):
        a = pool[picks[2 * k] % len(pool)]
        if kind == "u":
            pool.append(unary[name](a))
        else:
            pool.append(binary[name](a, pool[picks[2 * k + 1] % len(pool)]))
    return pool[-1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(0, 2**31 - 1))
def test_random_compositions_match_numpy(program, seed):
    shapes, steps, picks = program
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2, 2, size=s) for s in shapes]
    ours = evaluate([symgrad.tensor(a, dtype=symgrad.float64) for a in arrays], steps, picks,
                    {k: f for k, (f, _) in UNARY.items()}, {k: f for k, (f, _) in BINARY.items()})
    expected = evaluate(arrays, steps, picks, {k: f for k, (_, f) in UNARY.items()},
                        {k: f for k, (_, f) in BINARY.items()})
    assert tuple(ours.shape) == np.shape(expected)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(SHAPES[1:]), st.sampled_from(SHAPES), st.integers(0, 2**31 - 1))
def test_broadcast_gradients_sum_back_to_each_input_shape(shape_a, shape_b, seed):
    try:
        np.broadcast_shapes(shape_a, shape_b)
    except ValueError:
        return
    rng = np.random.default_rng(seed)
    a_np, b_np = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    a = symgrad.tensor(a_np, dtype=symgrad.float64, requires_grad=True)
    b = symgrad.tensor(b_np, dtype=symgrad.float64, requires_grad=True)
    (a * b).sum().backward()
    full = np.broadcast_shapes(shape_a, shape_b)
    expected_a = np.broadcast_to(b_np, full).copy()
    expected_b = np.broadcast_to(a_np, full).copy()
    for _ in range(len(full) - len(shape_a)):
        expected_a = expected_a.sum(0)
    expected_a = expected_a.sum(axis=tuple(k for k, n in enumerate(shape_a) if n == 1), keepdims=True)
    for _ in range(len(full) - len(shape_b)):
        expected_b = expected_b.sum(0)
    expected_b = expected_b.sum(axis=tuple(k for k, n in enumerate(shape_b) if n == 1), keepdims=True)
    np.testing.assert_allclose(a.grad.numpy(), expected_a.reshape(shape_a), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), expected_b.reshape(shape_b), rtol=1e-12, atol=1e-12)
