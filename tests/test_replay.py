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


# -- loops that break a captured path partway: each must compute what replay off computes -----------------
def linreg_state():
    symgrad.manual_seed(7)
    x = symgrad.randn(30, 1)
    return {"x": x, "y": 3 * x - 1, "b": symgrad.zeros(1, requires_grad=True),
            "w": symgrad.zeros(1, requires_grad=True)}


def linreg_loop(body):
    """A linear-regression loop whose step `body(k, state)` returns the loss; parameters and loss out."""
    state = {}

    def step(k):
        if k == 0:
            state.clear()
            state.update(linreg_state())
        loss = body(k, state)
        return loss.item(), state["w"].detach().numpy().copy(), state["b"].detach().numpy().copy()

    return step


def sgd(state, lr):
    b, w = state["b"], state["w"]
    with symgrad.no_grad():
        b -= lr * b.grad
        w -= lr * w.grad
    b.grad.zero_()
    w.grad.zero_()


def test_a_replayed_call_whose_result_is_an_earlier_value_then_floats_the_template_refuses():
    # `* 1` returns its operand's value (a peephole): the replayed call's result is a node it did not
    # make. From step 6 on w's rate differs from b's, whose scalar node it shared (hash-consing) when
    # captured, so the generated replay refuses its template after its guard matched, and the call
    # runs normally
    def body(k, state):
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        loss = (y - (b + w * x) * 1).pow(2).mean()
        loss.backward()
        with symgrad.no_grad():
            b -= 0.1 * b.grad
            w -= (0.1 if k < 6 else 0.05) * w.grad
        b.grad.zero_()
        w.grad.zero_()
        return loss

    replayed = run_twice(linreg_loop(body), steps=10)
    assert replayed["calls"] >= 20 and replayed["flushes"] >= 3, replayed


def test_a_guard_mismatch_midway_through_a_segment():
    # from step 5 on the third call of the step sees a different shape of operand: a different path
    def body(k, state):
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        pred = b + w * (x if k < 5 else x[:20])
        loss = ((y if k < 5 else y[:20]) - pred).pow(2).mean()
        loss.backward()
        sgd(state, 0.1)
        return loss

    replayed = run_twice(linreg_loop(body), steps=10)
    assert replayed["flushes"] >= 4, replayed


def test_a_call_with_a_new_operand_kind_midway_through_a_replayed_segment():
    # every third step multiplies by a Python int (exact in the guard) instead of a float (runtime)
    def body(k, state):
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        scale = 2 if k % 3 == 2 else 2.0
        loss = ((y - (b + w * x)) * scale).pow(2).mean()
        loss.backward()
        sgd(state, 0.05)
        return loss

    replayed = run_twice(linreg_loop(body), steps=12)
    assert replayed["calls"] >= 20, replayed


def test_values_read_midway_through_a_replayed_segment():
    # reading a forward value flushes in the middle of the usual segment on some steps only
    seen = []

    def body(k, state):
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        residual = y - (b + w * x)
        if k % 4 == 3:
            seen.append(residual.abs().max().item())
        loss = residual.pow(2).mean()
        loss.backward()
        sgd(state, 0.1)
        return loss

    replayed = run_twice(linreg_loop(body), steps=12)
    assert replayed["flushes"] >= 4, replayed
    assert seen[:3] == seen[3:], seen


def test_in_place_on_replayed_results():
    # replayed results changed in place, read through an alias, then used again
    def body(k, state):
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        pred = b + w * x
        residual = y - pred
        alias = residual.detach()
        alias.mul_(0.5)  # visible through `residual`: the loss is computed from the halved values
        loss = residual.pow(2).mean()
        loss.backward()
        sgd(state, 0.2)
        return loss

    replayed = run_twice(linreg_loop(body), steps=8)
    assert replayed["calls"] >= 20, replayed


def test_in_place_on_a_replayed_result_that_is_saved_for_backward_raises_or_matches():
    # torch refuses to backward through a saved value changed in place; we must behave the same with
    # replay on and off, at every step
    def run(on):
        messages = []
        with replay_enabled(on):
            w = symgrad.tensor([1.0, 2.0], requires_grad=True)
            for k in range(6):
                h = w * 3.0
                out = (h * h).sum()
                with symgrad.no_grad():
                    if k % 2:
                        h.add_(1.0)
                try:
                    out.backward()
                    messages.append(w.grad.numpy().copy().tolist())
                except RuntimeError as error:
                    messages.append(str(error).split(".")[0])
                w.grad = None
        return messages

    assert run(True) == run(False)


def test_gradients_accumulated_then_replaced():
    # even steps accumulate into .grad (two backwards), odd steps start from None: both replay exactly
    state = {}

    def step(k):
        if k == 0:
            state["w"] = symgrad.tensor([0.5, -1.0, 2.0], requires_grad=True)
        w = state["w"]
        (w * w).sum().backward()
        if k % 2 == 0:
            (w * 3.0).sum().backward()
        grad = w.grad.numpy().copy()
        with symgrad.no_grad():
            w -= 0.1 * w.grad
        if k % 2:
            w.grad = None
        else:
            w.grad.zero_()
        return grad, w.detach().numpy().copy()

    replayed = run_twice(step, steps=10)
    assert replayed["calls"] >= 10, replayed


def test_a_grad_reference_taken_before_backward_sees_the_accumulation():
    def step(k):
        w = symgrad.tensor([1.0, 2.0], requires_grad=True)
        (w * w).sum().backward()
        first = w.grad
        (w * 2.5).sum().backward()
        return first.numpy().copy(), w.grad.numpy().copy(), np.array(first is w.grad)

    replayed = run_twice(step, steps=6)
    assert replayed["calls"] >= 6, replayed


def test_no_grad_and_requires_grad_changes_midway():
    # the step's last calls run under no_grad on some steps, and b stops requiring grad at step 6
    def body(k, state):
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        if k == 6:
            b.requires_grad_(False)
        pred = b + w * x
        loss = (y - pred).pow(2).mean()
        loss.backward()
        with symgrad.no_grad():
            w -= 0.1 * w.grad
            if b.grad is not None:
                b -= 0.1 * b.grad
                b.grad.zero_()
        w.grad.zero_()
        with symgrad.no_grad() if k % 3 == 0 else contextlib.nullcontext():
            extra = (w * 2.0).sum()
        assert extra.requires_grad == (k % 3 != 0)
        return loss

    replayed = run_twice(linreg_loop(body), steps=10)
    assert replayed["calls"] >= 20, replayed


def test_retain_graph_backward_twice_per_step():
    def step(k):
        w = symgrad.tensor([1.0, -1.0, 0.5], requires_grad=True)
        loss = (w * w * 1.5).sum()
        loss.backward(retain_graph=True)
        loss.backward()
        return w.grad.numpy().copy(), np.array(loss.item())

    replayed = run_twice(step, steps=6)
    assert replayed["calls"] >= 6, replayed


def test_grad_fn_and_autograd_state_of_replayed_results_are_those_of_eager():
    names = []
    for _ in range(5):
        w = symgrad.tensor([1.0, 2.0], requires_grad=True)
        h = w * 2.0 + 1.0
        loss = h.pow(2).sum()
        names.append((loss.grad_fn.name(), h.grad_fn.name(), h.grad_fn.next_functions[0][0].name(),
                      h.is_leaf, h.requires_grad))
        loss.backward()
        assert w.grad.tolist() == [12.0, 20.0]
    assert len(set(names)) == 1, names


def verify_generated_checks(monkeypatch):
    """Run every generated check beside the general guard, on a copy of the segment's registries: True
    exactly when the general guard gives the key it checks, with the same registrations; or False
    where it left a pending value from before the segment to the general guard (a structure not cached
    for that value, or a leaf under it new to the segment). The verdicts are listed as (key, whether it
    matched)."""
    from symgrad import replay

    declined = []
    pending_known = replay._pending_known

    def noted_pending_known(segment, root, structure):
        known = pending_known(segment, root, structure)
        declined.append(not known)
        return known

    monkeypatch.setattr(replay, "_pending_known", noted_pending_known)

    def copy_of(segment):
        twin = replay._Segment(segment.step)
        for name in replay._Segment.__slots__:
            value = getattr(segment, name)
            setattr(twin, name, value.copy() if isinstance(value, (dict, list)) else value)
        return twin

    def registries(segment):
        return (segment.outputs, segment.external_index, segment.acc_index, segment.accs, segment.floats,
                [id(node) for node in segment.flat])

    verdicts = []
    make = replay._guard_function

    def verified(key):
        check = make(key)
        if check is None:
            return None

        def both(segment, op, operands, arg, name, positions):
            twin = copy_of(segment)
            # NOTE: the generated check first: the general guard updates the cache of pending structures
            declined.clear()
            passed = check(segment, op, operands, arg, name, positions)
            general = twin.guard(op, operands, arg, name, positions, None)
            verdicts.append((key, passed))
            assert passed == (general == key) or (not passed and any(declined)), (key, general)
            if passed:
                assert registries(segment) == registries(twin)
            return passed

        return both

    make_fast = replay._fast_function

    def verified_fast(step):
        # the check fused with the template's replay: False exactly when the general guard gives
        # another key; otherwise the same registrations, plus what replaying the call adds
        fast = make_fast(step)
        if fast is replay._no_fast:  # a guard the generated code leaves to the general one
            return fast

        def both(segment, op, operands, arg, name, positions, parent, child):
            twin = copy_of(segment)
            number = segment.count
            declined.clear()
            out = fast(segment, op, operands, arg, name, positions, parent, child)
            general = twin.guard(op, operands, arg, name, positions, None)
            verdicts.append((step.key, out is not False))
            assert (out is not False) == (general == step.key) or (out is False and any(declined)), \
                (step.key, general)
            if out is None:
                assert registries(segment) == registries(twin)
            elif out is not False:
                (outputs, *mine, flat), (their_outputs, *theirs, their_flat) = registries(segment), registries(twin)
                assert {k: v for k, v in outputs.items() if v != number} == their_outputs  # but the result
                assert mine == theirs and flat[:len(their_flat)] == their_flat  # then the nodes it built
                assert segment.count == number + 1
            return out

        step.fast = both
        return both

    monkeypatch.setattr(replay, "_guard_function", verified)
    monkeypatch.setattr(replay, "_fast_function", verified_fast)
    # a fresh trie, so that no step keeps a check made by an earlier test
    monkeypatch.setattr(Replay, "root", None)
    monkeypatch.setattr(Replay, "segment", None)
    return verdicts


def test_generated_guard_checks_agree_with_the_general_guard(monkeypatch):
    verdicts_of = verify_generated_checks(monkeypatch)
    run_twice(two_layer_loop(lambda k: (1e-3, 1e-3), lambda k: "relu" if k % 3 else "tanh"), steps=9)
    run_twice(linreg_loop(lambda k, state: _linreg_body(k, state)), steps=9)
    verdicts = [passed for _, passed in verdicts_of]
    assert verdicts.count(True) >= 20 and False in verdicts, verdicts


def test_generated_checks_of_a_pending_value_from_before_the_loop(monkeypatch):
    # the generated check of `y - ...` with y = 2 * x + 3 pending since before the loop: it passes while
    # y is the value it described (steps 3-4), fails (the general guard then describes the call) when a
    # node under y was computed (step 5 on) and at the first call on a new y of the same structure (step
    # 10; passing again from step 12), and when x, under y, is first used through y (step 15 on)
    verdicts = verify_generated_checks(monkeypatch)
    state = {}

    def step(k):
        if k == 0:
            symgrad.manual_seed(42)
            x = symgrad.randn(120, 1)
            doubled = 2 * x
            state.update(x=x, doubled=doubled, y=doubled + 3, b=symgrad.randn(1, requires_grad=True),
                         w=symgrad.randn(1, requires_grad=True))
        if k == 5:
            state["doubled"].numpy()
        if k == 10:
            state["y"] = 2 * state["x"] + 3
        x, y, b, w = state["x"], state["y"], state["b"], state["w"]
        if k < 15:
            loss = ((y - (b + w * x)) ** 2).mean()
        else:
            loss = ((y - b - w * x) ** 2).mean()
        loss.backward()
        sgd(state, 0.1)
        return loss.item(), w.detach().numpy().copy(), b.detach().numpy().copy()

    run_twice(step, steps=20)
    pending = [passed for key, passed in verdicts if "pending" in repr(key)]
    assert pending.count(True) >= 4 and pending.count(False) >= 3, pending


def _linreg_body(k, state):
    x, y, b, w = state["x"], state["y"], state["b"], state["w"]
    loss = ((y - (b + w * x)) * (2 if k % 4 == 3 else 2.0)).pow(2).mean()
    loss.backward()
    sgd(state, 0.05)
    return loss


def test_a_pending_value_described_by_replay_can_die():
    # replay caches the structure of pending values from before a segment; the cache must not keep them
    import gc
    import weakref

    w = symgrad.ones(3, requires_grad=True)
    x = symgrad.randn(3)
    y = 2 * x + 1  # pending, used by every step
    for _ in range(4):
        (w * y).sum().backward()
        w.grad = None
    alive = weakref.ref(y._node)
    del y
    gc.collect()
    assert alive() is None
    # and what was under it (x's buffer) with it
    x_node = weakref.ref(x._node)
    del x
    gc.collect()
    assert x_node() is None


def test_calls_after_a_batch_norm_realized_its_input_midway_are_replayed():
    # a training batch norm computes its running statistics (and its input) at the call, ending the
    # segment midway through the forward: the calls after it see a value whose autograd history was
    # recorded before that flush, and are replayed all the same, with the gradients of eager calls
    def step(k):
        if k == 0:
            symgrad.manual_seed(2)
            model = symgrad.nn.Sequential(symgrad.nn.Linear(6, 5), symgrad.nn.BatchNorm1d(5), symgrad.nn.ReLU(),
                                          symgrad.nn.Linear(5, 2))
            step.state = model, symgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), symgrad.randn(8, 6)
        model, optim, x = step.state
        optim.zero_grad()
        loss = model(x).pow(2).sum()
        loss.backward()
        optim.step()
        return [loss.detach().numpy().copy(), *(p.detach().numpy().copy() for p in model.parameters()),
                *(b.numpy().copy() for b in model.buffers())]

    replayed = run_twice(step, steps=8)
    # NOTE: 175 when the calls after the batch norm ran normally (their operand's history from before
    # the flush made the guard give up)
    assert replayed["calls"] >= 200, replayed
