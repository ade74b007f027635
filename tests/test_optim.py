"""symgrad.optim step for step against torch.optim (the oracle), plus what needs no torch.

Every optimizer runs 20 steps with each combination of its options from identical weights (copied
through state_dict) on the same data; the parameters must agree within 1e-5 relative (float32) or
1e-10 (float64). Schedulers must produce torch's learning rates, and changing lr every step must not
compile anything new.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import codegen
import symgrad
from oracle import assert_raises_like_torch

try:
    import torch
except ImportError:  # the oracle tests skip; the rest run
    torch = None

oracle = pytest.mark.skipif(torch is None, reason="torch (the oracle) is not installed")

STEPS = 20
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}


def _grid(**options):
    names = list(options)
    return [dict(zip(names, values)) for values in itertools.product(*options.values())]




def _sgd_grid():
    out = []
    for o in _grid(momentum=[0, 0.9], dampening=[0, 0.3], nesterov=[False, True], weight_decay=[0, 0.01],
                   maximize=[False, True]):
        if o["nesterov"] and (o["momentum"] == 0 or o["dampening"] != 0):
            continue
        if o["momentum"] == 0 and o["dampening"] != 0:
            continue
        out.append(dict(lr=0.05, **o))
    return out


CONFIGS = [
    *[("SGD", o) for o in _sgd_grid()],
    # betas=(0.5, 0.9): lerp's weight 1 - beta1 = 0.5 takes torch's other lerp formula
    *[("Adam", dict(lr=0.01, **o)) for o in _grid(betas=[(0.9, 0.999), (0.5, 0.9)], weight_decay=[0, 0.1],
                                                   amsgrad=[False, True], maximize=[False, True])],
    ("Adam", dict(lr=0.01, eps=1e-3)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    *[("AdamW", dict(lr=0.01, **o)) for o in _grid(weight_decay=[0.01, 0.3], amsgrad=[False, True],
                                                    maximize=[False, True])],
    *[("RMSprop", dict(lr=0.01, **o)) for o in _grid(centered=[False, True], momentum=[0, 0.5],
                                                      weight_decay=[0, 0.01], maximize=[False, True])],
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-4)),
    *[("Adagrad", dict(lr=0.1, **o)) for o in _grid(lr_decay=[0, 0.05], weight_decay=[0, 0.01],
                                                     initial_accumulator_value=[0, 0.1], maximize=[False, True])],
    ("Adagrad", dict(lr=0.1, eps=1e-3)),
]


# float32 runs each option alone and everything together (compiles dominate the run time: every
# combination is a different program); float64, the tighter check, runs every combination.
_FIRST = dict(momentum=0, dampening=0, nesterov=False, weight_decay=0, maximize=False, betas=(0.9, 0.999),
              amsgrad=False, centered=False, lr_decay=0, initial_accumulator_value=0)


def _light(config):
    name, options = config
    changed = [k for k, v in options.items() if k in _FIRST and v != _FIRST[k]]
    grid_keys = [k for k in options if k in _FIRST]
    return len(changed) <= 1 or len(changed) == len(grid_keys)


def _config_id(config):
    name, options = config
    return name + "-" + "-".join(f"{k}={v}" for k, v in options.items() if k != "lr")


def _pair(dtype):
    """The same small network in torch and in symgrad, with torch's weights copied over."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    ours = symgrad.nn.Sequential(symgrad.nn.Linear(5, 4), symgrad.nn.Tanh(), symgrad.nn.Linear(4, 3))
    if dtype == "float64":
        theirs.double()
        ours.double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5)).astype(dtype)
    y = rng.standard_normal((8, 3)).astype(dtype)
    return theirs, ours, x, y


def _train(lib, model, optimizer, x, y, steps=STEPS, scheduler=None):
    x, y = lib.tensor(x), lib.tensor(y)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = lib.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def _assert_same_parameters(ours, theirs, dtype, context=""):
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), **TOL[dtype],
                                   err_msg=f"{context} parameter {name}")


RUNS = [pytest.param(config, dtype, id=f"{_config_id(config)}-{dtype}")
        for config in CONFIGS for dtype in ("float32", "float64") if dtype == "float64" or _light(config)]


@oracle
@pytest.mark.parametrize("config,dtype", RUNS)
def test_steps_match_torch(config, dtype):
    name, options = config
    theirs, ours, x, y = _pair(dtype)
    _train(torch, theirs, getattr(torch.optim, name)(theirs.parameters(), **options), x, y)
    _train(symgrad, ours, getattr(symgrad.optim, name)(ours.parameters(), **options), x, y)
    _assert_same_parameters(ours, theirs, dtype, _config_id(config))


@oracle
def test_param_groups_with_their_own_options_match_torch():
    theirs, ours, x, y = _pair("float64")

    def groups(model):
        return [{"params": model[0].parameters(), "lr": 0.02, "momentum": 0.5},
                {"params": model[2].parameters()}]

    _train(torch, theirs, torch.optim.SGD(groups(theirs), lr=0.1), x, y)
    _train(symgrad, ours, symgrad.optim.SGD(groups(ours), lr=0.1), x, y)
    _assert_same_parameters(ours, theirs, "float64")


SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    ("LambdaLR", dict(lr_lambda=lambda epoch: 1.0 / (1 + epoch))),
]


@oracle
@pytest.mark.parametrize("name,options", SCHEDULERS, ids=[s[0] for s in SCHEDULERS])
def test_scheduler_learning_rates_match_torch(name, options):
    def lrs(lib):
        w = lib.nn.Parameter(lib.ones(1))
        optimizer = lib.optim.SGD([w], lr=0.1)
        scheduler = getattr(lib.optim.lr_scheduler, name)(optimizer, **options)
        out = [scheduler.get_last_lr()]
        for _ in range(25):
            optimizer.step()
            scheduler.step()
            out.append(scheduler.get_last_lr())
        return out, optimizer.param_groups[0]["initial_lr"]

    assert lrs(symgrad) == lrs(torch)


@oracle
def test_reduce_lr_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.93, 0.96, 0.97, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9, 0.91]

    def lrs(lib, **options):
        optimizer = lib.optim.SGD([lib.nn.Parameter(lib.ones(1))], lr=0.1)
        scheduler = lib.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **options)
        out = []
        for metric in metrics:
            scheduler.step(metric)
            out.append((scheduler.get_last_lr(), scheduler.num_bad_epochs, scheduler.best))
        return out

    for options in (dict(patience=1), dict(patience=0, cooldown=2, factor=0.5, min_lr=0.02),
                    dict(mode="max", patience=1, threshold_mode="abs", threshold=0.01)):
        assert lrs(symgrad, **options) == lrs(torch, **options), options


@oracle
def test_training_with_a_scheduler_matches_torch():
    theirs, ours, x, y = _pair("float32")
    t_opt = torch.optim.Adam(theirs.parameters(), lr=0.05)
    o_opt = symgrad.optim.Adam(ours.parameters(), lr=0.05)
    _train(torch, theirs, t_opt, x, y, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max=10))
    _train(symgrad, ours, o_opt, x, y, scheduler=symgrad.optim.lr_scheduler.CosineAnnealingLR(o_opt, T_max=10))
    _assert_same_parameters(ours, theirs, "float32")


def test_scheduler_changing_lr_every_step_never_recompiles():
    symgrad.manual_seed(0)
    model = symgrad.nn.Sequential(symgrad.nn.Linear(6, 5), symgrad.nn.ReLU(), symgrad.nn.Linear(5, 2))
    optimizer = symgrad.optim.Adam(model.parameters(), lr=0.01)
    scheduler = symgrad.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=40)
    x, y = symgrad.randn(7, 6), symgrad.randn(7, 2)

    def step():
        optimizer.zero_grad()
        loss = symgrad.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss

    # warm-up: the first steps start from zero moments (different programs), and the replay fast
    # path records a few steps before it takes over
    for _ in range(8):
        step()
    before = codegen.compile_count()
    lrs = set()
    for _ in range(20):
        lrs.add(optimizer.param_groups[0]["lr"])
        step().item()
    assert len(lrs) == 20
    assert codegen.compile_count() == before


# -- repr, state_dict, errors ----------------------------------------------------------------------
@oracle
@pytest.mark.parametrize("name,options", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", {}), ("AdamW", {}),
                                          ("RMSprop", dict(centered=True)), ("Adagrad", dict(lr_decay=0.1))])
def test_repr_and_empty_state_dict_match_torch(name, options):
    def made(lib):
        a, b = lib.nn.Parameter(lib.ones(2)), lib.nn.Parameter(lib.ones(3))
        optimizer = getattr(lib.optim, name)([a], **options)
        optimizer.add_param_group({"params": [b], "lr": 0.5})
        return optimizer

    ours, theirs = made(symgrad), made(torch)
    assert repr(ours) == repr(theirs)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert ours_state["param_groups"] == theirs_state["param_groups"]
    assert {k: sorted(v) for k, v in ours_state["state"].items()} == \
        {k: sorted(v) for k, v in theirs_state["state"].items()}


def test_sgd_repr_lines():
    optimizer = symgrad.optim.SGD([symgrad.nn.Parameter(symgrad.ones(1))], lr=0.1, momentum=0.9)
    lines = repr(optimizer).splitlines()
    for line in ["SGD (", "Parameter Group 0", "    dampening: 0", "    lr: 0.1", "    momentum: 0.9",
                 "    nesterov: False", "    weight_decay: 0", ")"]:
        assert line in lines


@oracle
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_state_dict_after_steps_matches_torch(name):
    options = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    theirs, ours, x, y = _pair("float32")
    t_opt = getattr(torch.optim, name)(theirs.parameters(), **options)
    o_opt = getattr(symgrad.optim, name)(ours.parameters(), **options)
    _train(torch, theirs, t_opt, x, y, steps=3)
    _train(symgrad, ours, o_opt, x, y, steps=3)
    t_state, o_state = t_opt.state_dict(), o_opt.state_dict()
    assert o_state["param_groups"] == t_state["param_groups"]
    assert sorted(o_state["state"]) == sorted(t_state["state"])
    for index, values in t_state["state"].items():
        assert sorted(o_state["state"][index]) == sorted(values)
        for key, value in values.items():
            np.testing.assert_allclose(o_state["state"][index][key].numpy(), value.numpy(), rtol=1e-5, atol=1e-7)


def test_load_state_dict_resumes_training_exactly():
    def run(split):
        symgrad.manual_seed(3)
        model = symgrad.nn.Linear(4, 2)
        optimizer = symgrad.optim.Adam(model.parameters(), lr=0.05, amsgrad=True)
        x, y = symgrad.randn(6, 4), symgrad.randn(6, 2)
        for step in range(8):
            if step == split:
                saved_model, saved_opt = model.state_dict(), optimizer.state_dict()
                model = symgrad.nn.Linear(4, 2)
                model.load_state_dict(saved_model)
                optimizer = symgrad.optim.Adam(model.parameters(), lr=0.001)
                optimizer.load_state_dict(saved_opt)
            optimizer.zero_grad()
            symgrad.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        return [p.detach().numpy().copy() for p in model.parameters()], optimizer.param_groups[0]["lr"]

    (straight, lr_a), (resumed, lr_b) = run(split=None), run(split=4)
    assert lr_a == lr_b == 0.05
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_zero_grad_set_to_none_and_in_place():
    w = symgrad.nn.Parameter(symgrad.ones(2))
    optimizer = symgrad.optim.SGD([w], lr=0.1)
    (w * 3).sum().backward()
    grad = w.grad
    optimizer.zero_grad(set_to_none=False)
    assert w.grad is not None and w.grad.tolist() == [0.0, 0.0]
    optimizer.zero_grad()
    assert w.grad is None
    assert grad.tolist() == [0.0, 0.0]


def test_step_skips_parameters_without_gradients_and_returns_the_closure_loss():
    a, b = symgrad.nn.Parameter(symgrad.ones(1)), symgrad.nn.Parameter(symgrad.ones(1))
    optimizer = symgrad.optim.Adam([a, b], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (a * 2).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == 2.0
    assert b.item() == 1.0 and a.item() != 1.0
    assert b not in optimizer.state


def _errors(lib):
    p = lib.nn.Parameter(lib.ones(1))
    return {
        "negative lr": lambda: lib.optim.SGD([p], lr=-1),
        "negative momentum": lambda: lib.optim.SGD([p], lr=0.1, momentum=-0.5),
        "nesterov": lambda: lib.optim.SGD([p], lr=0.1, nesterov=True),
        "empty": lambda: lib.optim.Adam([]),
        "tensor params": lambda: lib.optim.Adam(p),
        "bad beta": lambda: lib.optim.Adam([p], betas=(1.0, 0.9)),
        "bad beta2": lambda: lib.optim.Adam([p], betas=(0.9, -0.1)),
        "bad eps": lambda: lib.optim.Adam([p], eps=-1.0),
        "bad wd": lambda: lib.optim.AdamW([p], weight_decay=-1.0),
        "rmsprop alpha": lambda: lib.optim.RMSprop([p], alpha=-1.0),
        "adagrad lr_decay": lambda: lib.optim.Adagrad([p], lr_decay=-1.0),
        "adagrad init": lambda: lib.optim.Adagrad([p], initial_accumulator_value=-1.0),
        "non-leaf": lambda: lib.optim.SGD([p * 2], lr=0.1),
        "not a tensor": lambda: lib.optim.SGD([1.0], lr=0.1),
        "set": lambda: lib.optim.SGD([lib.nn.Parameter(lib.ones(1))], lr=0.1).add_param_group({"params": {p}}),
        "twice": lambda: lib.optim.SGD([p], lr=0.1).add_param_group({"params": [p]}),
        "group size": lambda: lib.optim.SGD([p], lr=0.1).load_state_dict(
            lib.optim.SGD([p, lib.nn.Parameter(lib.ones(1))], lr=0.1).state_dict()),
        "group count": lambda: lib.optim.SGD([p], lr=0.1).load_state_dict({"state": {}, "param_groups": []}),
        "plateau factor": lambda: lib.optim.lr_scheduler.ReduceLROnPlateau(lib.optim.SGD([p], lr=0.1), factor=2.0),
        "plateau mode": lambda: lib.optim.lr_scheduler.ReduceLROnPlateau(lib.optim.SGD([p], lr=0.1), mode="up"),
        "scheduler of nothing": lambda: lib.optim.lr_scheduler.StepLR(object(), 3),
    }


@oracle
@pytest.mark.parametrize("case", list(_errors(symgrad)))
def test_errors_match_torch(case):
    assert_raises_like_torch(_errors(symgrad)[case], _errors(torch)[case])


def test_a_failed_add_param_group_changes_nothing():
    p, q = symgrad.nn.Parameter(symgrad.ones(1)), symgrad.nn.Parameter(symgrad.ones(1))
    optimizer = symgrad.optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError):
        optimizer.add_param_group({"params": [q, p]})
    assert len(optimizer.param_groups) == 1


@oracle
def test_scheduler_step_before_optimizer_step_warns_like_torch():
    import warnings

    def caught(lib, optimizer_first):
        optimizer = lib.optim.SGD([lib.nn.Parameter(lib.ones(1))], lr=0.1)
        scheduler = lib.optim.lr_scheduler.StepLR(optimizer, 2)
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            if optimizer_first:
                optimizer.step()
            scheduler.step()
        return [str(r.message) for r in records]

    for optimizer_first in (False, True):
        assert caught(symgrad, optimizer_first) == caught(torch, optimizer_first)
