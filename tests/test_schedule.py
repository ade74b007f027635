"""Execution: fusion, caching by structure, runtime scalars, bounded pending graphs."""
import numpy as np
import pytest

import codegen
import symgrad
from symgrad.graph import PENDING_LIMIT, pending_postorder
from symgrad.schedule import plan_for


def train_linear_regression(steps, learning_rates):
    symgrad.manual_seed(0)
    x = symgrad.randn(120, 1)
    y = 2 * x + 3
    b = symgrad.randn(1, requires_grad=True)
    w = symgrad.randn(1, requires_grad=True)
    compiles = []
    for step in range(steps):
        loss = ((y - (b + w * x)) ** 2).mean()
        loss.backward()
        with symgrad.no_grad():
            b -= learning_rates(step) * b.grad
            w -= learning_rates(step) * w.grad
        b.grad.zero_()
        w.grad.zero_()
        compiles.append(codegen.compile_count())
    return w, b, compiles


def test_training_loop_stops_compiling_and_a_changing_learning_rate_is_a_runtime_value():
    w, b, compiles = train_linear_regression(60, lambda step: 0.2 * 0.98 ** step)
    assert compiles[-1] == compiles[5], "a steady training loop must not compile after its first steps"
    # the learning rate changed every step: if it were baked into the code, every step would compile
    assert abs(w.item() - 2) < 0.5 and abs(b.item() - 3) < 0.5


def test_same_loop_body_twice_compiles_nothing_the_second_time():
    train_linear_regression(3, lambda step: 0.1)
    before = codegen.compile_count()
    train_linear_regression(3, lambda step: 0.05)
    assert codegen.compile_count() == before


def test_forward_reduction_and_elementwise_gradient_share_one_loop():
    x = symgrad.randn(1000, requires_grad=True)
    loss = (x.tanh() * x.sigmoid() + x * x).exp().mean()
    (grad,) = symgrad.autograd.grad(loss, x)
    plan, *_ = plan_for([loss._node, grad._node], need_program=True)
    big = [k for k in plan.program.kernels if k.shape == (1000,)]
    assert len(big) == 1, "the forward sum and the gradient should be one loop nest over x"
    assert sorted(s.reduce or "none" for s in big[0].stores) == ["none", "sum"]


def test_pending_graph_stays_bounded_without_observation():
    y = symgrad.ones(4)
    for _ in range(5 * PENDING_LIMIT):
        y = y * 1.0001
    assert len(pending_postorder([y._node])) <= PENDING_LIMIT + 1
    np.testing.assert_allclose(y.numpy(), 1.0001 ** (5 * PENDING_LIMIT), rtol=1e-3)


def test_parameter_updates_are_realized_with_the_next_program():
    w = symgrad.ones(3, requires_grad=True)
    for _ in range(20):
        (w * w).sum().backward()
        with symgrad.no_grad():
            w -= 0.01 * w.grad
        w.grad.zero_()
    # the history of w is cut at every backward: its pending graph is a handful of nodes, not 20 steps
    assert len(pending_postorder([w._node])) < 10
    np.testing.assert_allclose(w.detach().numpy(), 0.98 ** 20, rtol=1e-5)


def test_reshape_and_expand_of_a_computed_tensor_are_views():
    x = symgrad.arange(6.0)
    x.numpy()
    y = x.reshape(2, 3)
    assert np.shares_memory(y.numpy(), x.numpy())
    z = symgrad.tensor([1.0, 2.0]).reshape(2, 1).expand(2, 3)
    assert z.numpy().strides[1] == 0
    assert z.tolist() == [[1.0] * 3, [2.0] * 3]


def test_reshape_of_a_pending_value_with_incompatible_layout_is_computed_correctly():
    a = symgrad.arange(12.0).reshape(3, 4)
    b = (a * 2).reshape(4, 3) + symgrad.arange(3.0)
    expected = (np.arange(12.0).reshape(3, 4) * 2).reshape(4, 3) + np.arange(3.0)
    np.testing.assert_allclose(b.numpy(), expected)
    c = (a + 1).reshape(12).sum()
    assert c.item() == 78.0


def test_self_comparisons_detect_nan_instead_of_being_folded_by_sympy():
    x = symgrad.tensor([1.0, float("nan"), -np.inf])
    assert (x != x).tolist() == [False, True, False]
    assert (x == x).tolist() == [True, False, True]
    assert (x <= x).tolist() == [True, False, True]
    assert symgrad.isnan(x).tolist() == [False, True, False]


def test_empty_dim_list_reduces_everything_like_torch():
    x = symgrad.arange(6.0).reshape(2, 3)
    assert x.sum(dim=()).item() == 15.0
    assert x.mean(dim=[]).item() == 2.5


def test_reshape_of_an_empty_reduction():
    out = (symgrad.zeros(0, 3).sum(1, keepdim=True) + 1).reshape(-1)
    assert tuple(out.shape) == (0,) and out.tolist() == []


def test_program_cache_keeps_recently_used_plans_when_full(monkeypatch):
    import symgrad.schedule as schedule

    monkeypatch.setattr(schedule, "PROGRAM_CACHE_LIMIT", 2)
    monkeypatch.setattr(schedule._ProgramCache, "plans", {})
    x = symgrad.ones(5)
    (x * 2).sum().item()                      # plan A
    (x + 1).sum().item()                      # plan B
    (x * 2).sum().item()                      # A again: most recently used now
    (x - 3).sum().item()                      # plan C evicts B, the least recently used
    before = codegen.compile_count()
    (x * 2).sum().item()
    assert codegen.compile_count() == before


def test_pending_updates_in_any_order_give_the_same_program():
    from symgrad.schedule import realize

    def build():
        x = symgrad.tensor([1.0, 2.0, 3.0])
        first, second = x * 2, x + 1
        return (first + second).sum(), first, second

    total, first, second = build()
    realize([total._node], [first._node, second._node])
    before = codegen.compile_count()
    total, first, second = build()
    realize([total._node], [second._node, first._node])   # a WeakSet may hand them over in any order
    assert codegen.compile_count() == before
    assert first._node.realized and second._node.realized
    assert total.item() == 21.0


def _kernel_kinds(program):
    return [type(k).__name__ for k in program.kernels]


def test_linear_layer_step_needs_no_transposed_copies():
    # x @ v.T with v freshly computed reads v through GEMM's transpose flag, and the gradient
    # (x.T @ g).T is computed transposed by the GEMM itself: two products, no copy kernels
    symgrad.manual_seed(0)
    x = symgrad.randn(8, 30)
    w = symgrad.randn(5, 30)
    v = (w * 0.5).requires_grad_()  # pending, like weights an optimizer just updated
    loss = x.mm(v.t()).pow(2).sum()
    (grad,) = symgrad.autograd.grad(loss, v)
    plan, *_ = plan_for([loss._node, grad._node, v._node], need_program=True)
    kinds = _kernel_kinds(plan.program)
    assert kinds.count("Gemm") == 2, kinds
    copies = [k for k in plan.program.kernels
              if type(k).__name__ == "Kernel" and len(k.shape) == 2 and k.stores[0].expr.is_Symbol]
    assert not copies, copies
    ours = grad.numpy()
    vv = 0.5 * w.numpy()
    np.testing.assert_allclose(ours, (2 * (x.numpy() @ vv.T)).T @ x.numpy(), rtol=1e-4)


def test_a_transposed_product_that_is_requested_and_also_consumed():
    # the weight gradient (x.T @ g).T computed transposed by the GEMM is read from memory by the
    # elementwise update beside it (a compiled SGD step with momentum asks for both at once)
    symgrad.manual_seed(0)
    x, g = symgrad.randn(5, 3), symgrad.randn(5, 4)
    grad = (x.t() @ g).t()
    update = grad * 0.9 + 1
    plan, targets, leaves, scalars = plan_for([grad._node, update._node])
    plan.run(targets, leaves, scalars)
    expected = (x.numpy().T @ g.numpy()).T
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(update.numpy(), expected * 0.9 + 1, rtol=1e-5)


def test_a_convolution_weight_gradient_is_written_by_its_gemm():
    # dW = (g @ cols.T).reshape(weight.shape): the reshape of a product is the product's own memory,
    # so the GEMM writes the requested gradient directly (no copy kernel of the weight's shape), and a
    # value computed from it beside reads it back
    symgrad.manual_seed(0)
    x = symgrad.randn(2, 3, 5, 5)
    w = symgrad.randn(4, 3, 3, 3, requires_grad=True)
    (grad,) = symgrad.autograd.grad(symgrad.nn.functional.conv2d(x, w, padding=1).pow(2).sum(), w)
    update = grad * 0.5 + 1
    plan, *_ = plan_for([grad._node, update._node], need_program=True)
    copies = [k for k in plan.program.kernels if type(k).__name__ == "Kernel" and k.shape == (4, 3, 3, 3)
              and len(k.stores) == 1 and k.stores[0].expr.is_Symbol]
    assert not copies, copies
    plan, targets, leaves, scalars = plan_for([grad._node, update._node])
    plan.run(targets, leaves, scalars)
    torch = pytest.importorskip("torch")
    xt, wt = torch.tensor(x.numpy()), torch.tensor(w.detach().numpy(), requires_grad=True)
    torch.nn.functional.conv2d(xt, wt, padding=1).pow(2).sum().backward()
    np.testing.assert_allclose(grad.numpy(), wt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(update.numpy(), wt.grad.numpy() * 0.5 + 1, rtol=1e-4, atol=1e-4)


def test_a_batch_norm_training_step_compiles_nothing_the_second_time(monkeypatch):
    # the running statistics are computed buffers from the start: read as the constants they were
    # made from, the first step's programs differed from every later step's
    from symgrad.replay import Replay

    monkeypatch.setattr(Replay, "enabled", False)  # (replay captures differently on later steps)
    symgrad.manual_seed(0)
    conv, bn = symgrad.nn.Conv2d(3, 4, 3, padding=1), symgrad.nn.BatchNorm2d(4)
    x = symgrad.randn(2, 3, 5, 5)

    def step():
        conv.zero_grad()
        bn.zero_grad()
        bn(conv(x)).pow(2).sum().backward()

    step()
    compiled = codegen.compile_count()
    step()
    assert codegen.compile_count() == compiled
