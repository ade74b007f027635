"""symgrad.compile: a traced function replays as one program and does what the eager function does."""
import numpy as np
import pytest

import symgrad
from symgrad import nn


def _linreg(compiled):
    rng = np.random.default_rng(42)
    x = symgrad.tensor(rng.standard_normal((120, 1)).astype(np.float32))
    y = 2 * x + 3  # NOTE: pending before the loop: the trace computes it once
    b = symgrad.tensor(rng.standard_normal(1).astype(np.float32), requires_grad=True)
    w = symgrad.tensor(rng.standard_normal(1).astype(np.float32), requires_grad=True)

    def step(lr=0.1):
        loss = ((y - (b + w * x)) ** 2).mean()
        loss.backward()
        with symgrad.no_grad():
            b.sub_(lr * b.grad)
            w.sub_(lr * w.grad)
        b.grad.zero_()
        w.grad.zero_()
        return loss

    return (symgrad.compile(step) if compiled else step), (b, w)


def _mlp(compiled):
    rng = np.random.default_rng(0)
    x, y = (symgrad.tensor(rng.standard_normal(s).astype(np.float32)) for s in ((16, 30), (16, 5)))
    w1 = symgrad.tensor(rng.standard_normal((30, 20)).astype(np.float32), requires_grad=True)
    w2 = symgrad.tensor(rng.standard_normal((20, 5)).astype(np.float32), requires_grad=True)

    def step(x, y, lr):
        loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
        loss.backward()
        with symgrad.no_grad():
            w1.sub_(lr * w1.grad)
            w2.sub_(lr * w2.grad)
            w1.grad = None
            w2.grad = None
        return loss

    fn = symgrad.compile(step) if compiled else step
    return (lambda lr=1e-4: fn(x, y, lr)), (w1, w2)


@pytest.mark.parametrize("name", ["linreg", "mlp", "module+sgd"])
def test_compiled_loop_matches_eager_and_replays(name):
    make = {"linreg": _linreg, "mlp": _mlp,
            "module+sgd": _module_step(lambda p: symgrad.optim.SGD(p, lr=0.05, momentum=0.9))}[name]
    eager, eager_params = make(False)
    compiled, compiled_params = make(True)
    losses = []
    for _ in range(12):
        losses.append((eager().item(), compiled().item()))
    for a, b in losses:
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    for p, q in zip(eager_params, compiled_params):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)
        if p.grad is not None or q.grad is not None:
            np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-5, atol=1e-6)
    entries = _compiled_of(compiled).entries.values()
    assert sum(e.replayed for e in entries) >= 8, _compiled_of(compiled).explain()


def _compiled_of(fn):
    """The CompiledFunction behind a test's step (the MLP and module steps wrap it)."""
    if isinstance(fn, symgrad.compiled.CompiledFunction):
        return fn
    if hasattr(fn, "compiled"):
        return fn.compiled
    return next(c.cell_contents for c in fn.__closure__ if isinstance(c.cell_contents, symgrad.compiled.CompiledFunction))


def test_a_float_argument_is_a_runtime_value():
    w = symgrad.ones(3, requires_grad=True)

    @symgrad.compile
    def step(lr):
        (w * w).sum().backward()
        with symgrad.no_grad():
            w.sub_(lr * w.grad)
        w.grad = None

    expected = np.ones(3)
    for k in range(10):
        lr = 0.01 * (k + 1)  # a new value every call: replayed, not traced again
        step(lr)
        expected = expected - lr * 2 * expected
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-5)
    entry, = step.entries.values()
    assert entry.replayed == 7 and entry.traces == 2


def test_a_float_python_computes_with_is_guarded_by_value():
    w = symgrad.ones(2)

    @symgrad.compile
    def step(lr):
        w.mul_(1 - lr)  # NOTE: 1 - lr is computed by Python: a constant of the trace

    expected = 1.0
    for lr in (0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.1):
        step(lr)
        expected *= 1 - lr
    np.testing.assert_allclose(w.numpy(), [expected, expected], rtol=1e-6)


def test_python_control_flow_on_a_float_is_guarded_by_value():
    x = symgrad.ones(2)

    @symgrad.compile
    def f(a):
        return x * 2 if a > 0 else x * 3

    results = [f(a).numpy().tolist() for a in (1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 2.0)]
    assert results == [[2, 2]] * 4 + [[3, 3]] * 2 + [[2, 2]]


def test_new_shapes_are_traced_again():
    f = symgrad.compile(lambda x: (x * x).sum(0))
    for n in (2, 2, 2, 2, 3, 3, 3, 3, 2):
        x = symgrad.arange(n * 2, dtype=symgrad.float32).reshape(n, 2)
        np.testing.assert_allclose(f(x).numpy(), (x.numpy() ** 2).sum(0))
    assert len(f.entries) == 2


def test_results_are_new_tensors_with_torch_metadata():
    w = symgrad.ones(2, requires_grad=True)

    @symgrad.compile
    def step():
        loss = (w * 3).sum()
        loss.backward()
        return loss, w

    outs = [step() for _ in range(5)]
    assert outs[-1][1] is w
    assert outs[-1][0] is not outs[-2][0]
    assert repr(outs[-1][0]) == "tensor(6., grad_fn=<SumBackward0>)"
    np.testing.assert_allclose(w.grad.numpy(), [15, 15])  # five accumulations
    with pytest.raises(RuntimeError):
        w.requires_grad_(False)
        outs[-1][0].backward()


@pytest.mark.parametrize("body, reason", [
    (lambda x: (x * 2).sum().item(), "reads tensor values"),
    (lambda x: x + symgrad.randn(2), "data made inside the call that changes"),
    (lambda x: (x * symgrad.ones(2, requires_grad=True)).sum(), "autograd history"),
])
def test_functions_that_cannot_be_one_program_run_eagerly(body, reason):
    f = symgrad.compile(body)
    x = symgrad.ones(2)
    for _ in range(8):  # NOTE: enough for traces that keep differing to give up
        f(x)
    assert reason in f.explain()


def test_data_made_inside_the_call_with_the_same_values_is_a_constant():
    # a pooling matrix or a mask built with tensor(...) from shapes alone: one program, replayed
    w = symgrad.ones(3, requires_grad=True)

    def step():
        loss = (w * symgrad.tensor([1.0, 2.0, 3.0])).sum()
        loss.backward()
        with symgrad.no_grad():
            w.sub_(0.1 * w.grad)
            w.grad = None
        return loss

    compiled = symgrad.compile(step)
    losses = [compiled().item() for _ in range(8)]
    assert "compiled: 5 calls replayed" in compiled.explain()
    w.data = symgrad.ones(3)
    assert losses == [step().item() for _ in range(8)]


def test_state_python_reads_from_elsewhere_stops_compiling():
    w = symgrad.ones(2)
    state = {"step": 0}

    @symgrad.compile
    def step():
        state["step"] += 1
        w.mul_(1 / (1 + state["step"]))  # a scalar from Python state that changes every call

    expected = 1.0
    for k in range(1, 12):
        step()
        expected /= 1 + k
    np.testing.assert_allclose(w.numpy(), [expected] * 2, rtol=1e-5)
    assert "traces differ" in step.explain()


def test_a_guard_on_grad_state_traces_again():
    w = symgrad.ones(2, requires_grad=True)

    @symgrad.compile
    def step():
        (w * w).sum().backward()

    for _ in range(5):
        step()
    np.testing.assert_allclose(w.grad.numpy(), [10, 10])
    w.grad = None  # the traces accumulated into an existing gradient: this one starts afresh
    for _ in range(5):
        step()
    np.testing.assert_allclose(w.grad.numpy(), [10, 10])


def test_changes_made_outside_between_calls_are_seen():
    w = symgrad.ones(2)

    @symgrad.compile
    def f(x):
        return (w * x).sum()

    x = symgrad.tensor([1.0, 2.0])
    for _ in range(4):
        assert f(x).item() == 3
    w.mul_(2)  # pending when the next call starts
    assert f(x).item() == 6
    w.data = symgrad.tensor([5.0, 5.0])  # the same layout in other memory: read from there
    assert f(x).item() == 15
    base = symgrad.tensor([0.0, 1.0, 2.0, 3.0])
    for start in (0, 2, 1):  # views of one buffer at other offsets
        w.data = base[start:start + 2]
        assert f(x).item() == start + 2 * (start + 1)
    w.data = symgrad.tensor([1.0, 1.0, 1.0])  # a new shape: traced again
    assert f(symgrad.ones(3)).item() == 3


def test_keyword_arguments():
    f = symgrad.compile(lambda x, *, scale: x * scale)
    for s in (1.0, 2.0, 3.0, 4.0):
        np.testing.assert_allclose(f(symgrad.ones(2), scale=s).numpy(), [s, s])


def _module_step(optimizer, scheduler=None):
    def make(compiled):
        symgrad.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
        opt = optimizer(model.parameters())
        sched = scheduler(opt) if scheduler else None
        x, y = symgrad.randn(9, 5), symgrad.randn(9, 2)

        def step():
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss

        fn = symgrad.compile(step) if compiled else step

        def epoch():
            loss = fn()
            if sched is not None:
                sched.step()
            return loss

        epoch.compiled = fn
        return epoch, tuple(model.parameters())

    return make


OPTIMIZERS = {
    "adam": _module_step(lambda p: symgrad.optim.Adam(p, lr=0.01)),
    "adamw+amsgrad": _module_step(lambda p: symgrad.optim.AdamW(p, lr=0.01, amsgrad=True)),
    "rmsprop": _module_step(lambda p: symgrad.optim.RMSprop(p, lr=0.01)),
    "adagrad": _module_step(lambda p: symgrad.optim.Adagrad(p, lr=0.1, lr_decay=0.01)),
    "sgd+steplr": _module_step(lambda p: symgrad.optim.SGD(p, lr=0.1, momentum=0.9),
                               lambda o: symgrad.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.9)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_read_with_runtime_value_is_replayed(name):
    """Adam's step count and a scheduler's learning rate change every call: runtime values, not constants
    of the trace, so the compiled step replays and still follows the eager numbers."""
    eager, eager_params = OPTIMIZERS[name](False)
    compiled, compiled_params = OPTIMIZERS[name](True)
    for _ in range(12):
        assert compiled().item() == pytest.approx(eager().item(), rel=1e-5, abs=1e-7)
    for p, q in zip(eager_params, compiled_params):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6)
    entry, = compiled.compiled.entries.values()
    assert entry.replayed >= 8, compiled.compiled.explain()


def test_an_exception_while_tracing_leaves_everything_as_it_was():
    w = symgrad.ones(2)
    calls = []

    @symgrad.compile
    def step(scale):
        calls.append(scale)
        if len(calls) == 2:
            raise ValueError("boom")
        w.mul_(scale)

    step(2.0)
    with pytest.raises(ValueError):
        step(2.0)
    assert symgrad.compiled.Tracing.active is None and symgrad.replay.Replay.enabled
    for _ in range(5):
        step(2.0)
    np.testing.assert_allclose(w.numpy(), [64.0, 64.0])


def test_results_of_earlier_calls_keep_their_values():
    w = symgrad.ones(3)

    @symgrad.compile
    def f(k):
        w.add_(k)
        return w * 2

    results = [f(1.0) for _ in range(12)]  # NOTE: more than the result blocks a plan keeps for reuse
    assert [r.numpy()[0] for r in results] == [2.0 * (k + 2) for k in range(12)]


def test_reused_result_memory_never_changes_a_value_someone_holds():
    # a plan hands its result nodes out again once nothing refers to them; anything still holding a
    # result (an alias, a view, a numpy array of it) must see what it sees in the eager loop
    def run(compiled):
        w = symgrad.ones(4)

        def step():
            w.add_(1.0)
            return w * 2

        fn = symgrad.compile(step) if compiled else step
        held = {}
        for k in range(40):
            out = fn()
            if k == 10:
                held["alias"] = w.detach()
            if k == 11:
                held["numpy"] = w.numpy()
            if k == 12:
                held["view"] = w[1:3]
            if k == 13:
                held["numpy of a result"] = out.numpy().reshape(2, 2)
            if k == 14:
                held["result"] = out
        held = {k: np.array(v.tolist()) for k, v in held.items()}
        return held, w.tolist(), fn

    eager, eager_w, _ = run(False)
    compiled, compiled_w, fn = run(True)
    assert compiled_w == eager_w == [41.0] * 4
    for name, value in eager.items():
        np.testing.assert_array_equal(compiled[name], value, err_msg=name)
    assert eager["numpy of a result"].tolist() == [[30.0, 30.0], [30.0, 30.0]]
    assert eager["result"].tolist() == [32.0] * 4
    plan = next(iter(fn.entries.values())).program.plan
    assert len(plan.result_sets) <= 4  # NOTE: reused, not one per call


def test_eager_loops_around_compiled_calls_see_their_effects():
    # eager code (itself replayed after its first steps) that uses what compiled calls update, and
    # pending values they read: every value as if nothing were compiled
    def run(compiled):
        w = symgrad.ones(3, requires_grad=True)
        x = symgrad.tensor([1.0, 2.0, 3.0])

        def step(lr):
            loss = ((w * x).sum() - 1) ** 2
            loss.backward()
            with symgrad.no_grad():
                w.sub_(lr * w.grad)
                w.grad = None
            return loss

        fn = symgrad.compile(step) if compiled else step
        seen = []
        for k in range(12):
            before = (w * 2).sum()  # pending while the step runs
            loss = fn(0.01)
            after = (w.detach() * x + before).sum()
            if k % 3 == 0:
                with symgrad.no_grad():
                    w.add_(0.001)  # a pending in-place change the next step reads
            seen.append((before.item(), loss.item(), after.item()))
        return seen, fn

    eager, _ = run(False)
    compiled, fn = run(True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-6)  # NOTE: fused differently, rounded differently
    assert "compiled: 9 calls replayed" in fn.explain()


def test_a_returned_loss_cannot_be_backpropagated_again():
    w = symgrad.ones(2, requires_grad=True)

    @symgrad.compile
    def step():
        loss = (w * w).sum()
        loss.backward()
        return loss

    for _ in range(5):
        loss = step()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_a_long_compiled_loop_keeps_memory_bounded():
    import gc

    from symgrad.graph import Node

    w = symgrad.ones(4, requires_grad=True)

    @symgrad.compile
    def step(lr):
        loss = (w * w).sum()
        loss.backward()
        with symgrad.no_grad():
            w.sub_(lr * w.grad)
            w.grad = None
        return loss

    def live_nodes():
        gc.collect()
        return sum(isinstance(o, Node) for o in gc.get_objects())

    for _ in range(20):
        step(0.01)
    before = live_nodes()
    for _ in range(200):
        step(0.01)
    assert live_nodes() <= before + 5


def test_compiled_functions_nest():
    inner = symgrad.compile(lambda x: x * 2)
    outer = symgrad.compile(lambda x: inner(x) + 1)
    for _ in range(5):
        assert outer(symgrad.ones(2)).tolist() == [3.0, 3.0]


def test_dict_arguments_and_results():
    w = symgrad.ones(2)

    @symgrad.compile
    def f(batch):
        out = w * batch["x"] * batch["scale"]
        return {"out": out, "total": out.sum(), "tag": "fixed"}

    for k in range(6):
        result = f({"x": symgrad.tensor([1.0, 2.0]), "scale": float(k)})
        assert result["out"].tolist() == [k, 2 * k] and result["total"].item() == 3 * k
        assert result["tag"] == "fixed"
    assert "compiled: 3 calls replayed" in f.explain()
