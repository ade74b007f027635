"""Indexing, index assignment, joining and splitting against torch: values, names and errors."""
import numpy as np
import pytest

import symgrad

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.oracle


def both(fn):
    return fn(symgrad), fn(torch)


def grid(T):
    return T.arange(20.0).reshape(4, 5)


@pytest.mark.parametrize("expr", [
    "x[0]", "x[-1, 1:4]", "x[:, ::2]", "x[None, 1]", "x[..., 3]", "x[1:3, None, -1]", "x[:]", "x[:, :]",
    "x[3:100]", "x[2:1]", "x[..., 1, ...]",
])
def test_getitem_values_shapes_and_grad_fn_names(expr):
    def run(T):
        x = grid(T).requires_grad_()
        return eval(expr, {"x": x})

    ours, theirs = both(run)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.detach().numpy(), theirs.detach().numpy())
    assert type(ours.grad_fn).__name__ == type(theirs.grad_fn).__name__


def test_index_assignment_under_no_grad_matches_torch():
    def run(T):
        z = T.zeros(3, 4)
        with T.no_grad():
            z[0] = 1
            z[1, 1:3] = T.tensor([5.0, 6.0])
            z[:, -1] += 2
            z[2, ::2] = 7
        return z

    ours, theirs = both(run)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_assignment_changes_only_the_target_and_keeps_clones_intact():
    x = symgrad.arange(6.0)
    kept = x.clone()
    x[2:4] = 0.0
    assert x.tolist() == [0.0, 1.0, 0.0, 0.0, 4.0, 5.0]
    assert kept.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("expr", [
    "x[4]", "x[0, 0, 0]", "x[::-1]", "T.cat([x, T.ones(3, 4)], 0)",
    "T.stack([x, T.ones(3, 4)])", "T.cat([], 0)", "x.split([1, 2])",
    "x.gather(1, T.tensor([[0, 5]]))", "x.gather(1, T.tensor([0, 1]))", "x.gather(1, T.tensor([[0.0, 1.0]]))",
    "x.gather(1, T.tensor([[0, -1]]))", "x.gather(0, T.zeros(5, 6, dtype=T.long))",
    "x.index_select(1, T.tensor([5]))", "x.index_select(1, T.tensor([[1]]))", "x.index_select(1, T.tensor([-1]))",
])
def test_errors_match_torch(expr):
    def run(T):
        try:
            eval(expr, {"x": grid(T), "T": T})
        except Exception as error:  # noqa: BLE001 - comparing what each library raises
            return type(error), str(error).split("\n")[0]
        return None

    ours, theirs = both(run)
    assert theirs is not None
    assert ours == theirs


def test_leaf_that_requires_grad_refuses_assignment_and_stays_unchanged():
    for T in (symgrad, torch):
        x = T.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
            x[0] = 5.0
        assert x.tolist() == [1.0, 1.0, 1.0]


def test_split_chunk_unbind_shapes_and_output_numbers():
    def run(T):
        x = grid(T).requires_grad_()
        pieces = [*x.split(2), *x.split([1, 4], 1), *x.chunk(3, 1), *x.unbind(0)]
        return [(tuple(p.shape), type(p.grad_fn).__name__) for p in pieces]

    ours, theirs = both(run)
    assert ours == theirs
