"""symgrad.nn modules: registration, traversal, state_dict, repr, init, and torch side by side."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import symgrad
from oracle import assert_raises_like_torch
from symgrad import nn

try:
    import torch
except ImportError:
    torch = None

oracle = pytest.mark.skipif(torch is None, reason="torch (the oracle) is not installed")


def _models(lib):
    """Modules built the same way in both libraries (name -> zero-argument constructor)."""
    n = lib.nn
    return {
        "seed": lambda: n.Sequential(n.Linear(1000, 100), n.ReLU(), n.Linear(100, 10)),
        "nested": lambda: n.Sequential(n.Sequential(n.ReLU(), n.Tanh()), n.Flatten(), n.Identity(), n.Dropout(),
                                       n.LeakyReLU(), n.Sigmoid(), n.GELU(), n.GELU("tanh"), n.SiLU(), n.Softmax(1),
                                       n.LogSoftmax(dim=1), n.Embedding(10, 3), n.Embedding(10, 3, padding_idx=0),
                                       n.LayerNorm(4), n.LayerNorm((3, 4), elementwise_affine=False),
                                       n.Linear(3, 4, bias=False)),
        "list": lambda: n.ModuleList([n.Linear(2, 2) for _ in range(3)] + [n.ReLU()]),
        "dict": lambda: n.ModuleDict({"a": n.ReLU(), "b": n.Linear(1, 2)}),
        "options": lambda: n.Sequential(n.Softmax(), n.LeakyReLU(0.2, inplace=True), n.ReLU(inplace=True),
                                        n.Dropout(0.3, inplace=True), n.Flatten(0, 2), n.LayerNorm(3, eps=1e-3)),
        "losses": lambda: n.ModuleList([n.MSELoss(), n.L1Loss(reduction="sum"), n.SmoothL1Loss(beta=0.5),
                                        n.CrossEntropyLoss(label_smoothing=0.1), n.NLLLoss(), n.BCELoss(),
                                        n.BCEWithLogitsLoss(), n.HuberLoss()]),
        "empty": lambda: n.Sequential(),
    }


@oracle
@pytest.mark.parametrize("name", list(_models(symgrad)))
def test_repr_and_state_dict_keys_match_torch(name):
    ours, theirs = _models(symgrad)[name](), _models(torch)[name]()
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.scale = nn.Parameter(symgrad.ones(1))
        self.register_buffer("count", symgrad.zeros(()))
        self.register_buffer("scratch", symgrad.zeros(2), persistent=False)
        self.fc2 = self.fc1  # shared: listed once

    def forward(self, x):
        return self.act(self.fc1(x) * self.scale)


def test_registration_by_assignment_and_traversal():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "fc1.weight", "fc1.bias"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "act"]
    assert list(net.children()) == [net.fc1, net.act]
    assert [n for n, _ in net.named_buffers()] == ["count", "scratch"]
    # like torch, state_dict writes a shared module under every name it has
    assert list(net.state_dict()) == ["scale", "count", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert repr(Net().load_state_dict(net.state_dict())) == "<All keys matched successfully>"
    assert len(list(net.modules())) == 3
    net.fc1 = None
    assert net.fc1 is None and [n for n, _ in net.named_parameters()] == ["scale", "fc2.weight", "fc2.bias"]
    del net.scale
    assert not hasattr(net, "scale")


def test_train_eval_apply_requires_grad_zero_grad():
    net = Net()
    assert net.training and net.eval() is net and not net.fc1.training
    net.train()
    assert net.act.training
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    net(symgrad.ones(2, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(float(p.grad.abs().sum()) == 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip_with_numpy_values_and_buffers():
    a, b = Net(), Net()
    state = {k: v.numpy() for k, v in a.state_dict().items()}
    assert repr(b.load_state_dict(state)) == "<All keys matched successfully>"
    for (_, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # the values are copies: changing a afterwards leaves b alone
    with symgrad.no_grad():
        a.fc1.weight.add_(1.0)
    assert not bool((a.fc1.weight == b.fc1.weight).any())


def test_failed_load_state_dict_changes_nothing():
    net = nn.Linear(2, 3)
    before = net.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError):
        net.load_state_dict({"weight": np.zeros((3, 2), np.float32), "extra": np.zeros(1)})
    np.testing.assert_array_equal(net.weight.detach().numpy(), before)
    result = net.load_state_dict({"weight": np.zeros((3, 2), np.float32)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == []
    assert float(net.weight.abs().sum()) == 0


def test_parameter_shares_storage_and_prints_like_torch():
    data = symgrad.ones(2)
    p = nn.Parameter(data)
    assert repr(p) == "Parameter containing:\ntensor([1., 1.], requires_grad=True)"
    with symgrad.no_grad():
        p.mul_(3.0)
    assert data.tolist() == [3.0, 3.0]
    assert type(p * 2) is symgrad.Tensor and p.is_leaf
    assert not nn.Parameter(symgrad.ones(1), requires_grad=False).requires_grad


def test_sequential_indexing_len_append_and_iteration():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[-1], nn.ReLU) and isinstance(seq[0], nn.Linear)
    assert seq.append(nn.Linear(3, 1)) is seq and len(seq) == 3
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    assert seq(symgrad.ones(4, 2)).shape == (4, 1)
    del seq[1]
    assert list(seq._modules) == ["0", "1"]
    layers = nn.ModuleList([nn.ReLU()])
    layers.append(nn.Tanh())
    layers += [nn.Sigmoid()]
    assert len(layers) == 3 and isinstance(layers[-1], nn.Sigmoid)
    heads = nn.ModuleDict({"x": nn.ReLU()})
    heads["y"] = nn.Tanh()
    assert list(heads) == ["x", "y"] and "y" in heads and len(heads) == 2


def test_linear_default_init_bounds_and_grad_fn():
    symgrad.manual_seed(0)
    fc = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): variance bound^2 / 3
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.02
    x = symgrad.ones(5, 400, requires_grad=True)
    assert fc(x).grad_fn.name() == "AddmmBackward0"
    assert fc(symgrad.ones(2, 5, 400)).shape == (2, 5, 300)
    assert fc(symgrad.ones(400)).shape == (300,)


@pytest.mark.parametrize("fn,kwargs,check", [
    ("uniform_", dict(a=-2.0, b=3.0), lambda v: v.min() >= -2 and v.max() <= 3 and abs(v.mean() - 0.5) < 0.05),
    ("normal_", dict(mean=1.0, std=2.0), lambda v: abs(v.mean() - 1) < 0.05 and abs(v.std() - 2) < 0.05),
    ("zeros_", {}, lambda v: (v == 0).all()),
    ("ones_", {}, lambda v: (v == 1).all()),
    ("kaiming_uniform_", dict(nonlinearity="relu"), lambda v: abs(v.std() - math.sqrt(2 / 200)) < 0.003),
    ("kaiming_normal_", dict(mode="fan_out"), lambda v: abs(v.std() - math.sqrt(2 / 100)) < 0.003),
    ("xavier_uniform_", dict(gain=2.0), lambda v: abs(v.std() - 2 * math.sqrt(2 / 300)) < 0.003),
    ("xavier_normal_", {}, lambda v: abs(v.std() - math.sqrt(2 / 300)) < 0.003),
])
def test_init_distributions(fn, kwargs, check):
    symgrad.manual_seed(1)
    w = nn.Parameter(symgrad.zeros(100, 200))
    assert getattr(nn.init, fn)(w, **kwargs) is w
    assert w.requires_grad and w.is_leaf
    assert check(w.detach().numpy().astype(np.float64))


@oracle
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "linear", "leaky_relu", "selu"])
def test_calculate_gain_matches_torch(name):
    assert nn.init.calculate_gain(name) == torch.nn.init.calculate_gain(name)


def _module_errors(lib):
    n = lib.nn
    m = n.Linear(2, 3)
    return {
        "assign tensor to parameter": lambda: setattr(m, "weight", lib.zeros(3, 2)),
        "buffer name taken": lambda: m.register_buffer("weight", lib.zeros(1)),
        "buffer not a tensor": lambda: m.register_buffer("x", 1),
        "buffer dotted": lambda: m.register_buffer("a.b", lib.zeros(1)),
        "missing attribute": lambda: m.foo,
        "parameter not a Parameter": lambda: m.register_parameter("p", lib.zeros(1)),
        "add_module not a module": lambda: m.add_module("q", 1),
        "train not bool": lambda: m.train(1),
        "sequential index": lambda: n.Sequential(n.ReLU())[3],
        "dropout p": lambda: n.Dropout(1.5),
        "linear shapes": lambda: n.Linear(2, 3)(lib.zeros(4, 5)),
        "missing key": lambda: m.load_state_dict({"weight": lib.zeros(3, 2)}),
        "unexpected key": lambda: m.load_state_dict({"weight": lib.zeros(3, 2), "bias": lib.zeros(3),
                                                     "foo": lib.zeros(1)}),
        "size mismatch": lambda: m.load_state_dict({"weight": lib.zeros(2, 2), "bias": lib.zeros(3)}),
        "everything": lambda: m.load_state_dict({"weight": lib.zeros(2, 2), "foo": lib.zeros(3)}),
        "fan of a vector": lambda: n.init.xavier_uniform_(lib.zeros(3)),
        "kaiming mode": lambda: n.init.kaiming_uniform_(lib.zeros(3, 3), mode="fan"),
        "gain": lambda: n.init.calculate_gain("softplus"),
    }


@oracle
@pytest.mark.parametrize("case", list(_module_errors(symgrad)))
def test_module_errors_match_torch(case):
    assert_raises_like_torch(_module_errors(symgrad)[case], _module_errors(torch)[case], whole_message=True)


def test_dropout_is_inactive_in_eval_and_scales_in_training():
    symgrad.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = symgrad.ones(4000, requires_grad=True)
    out = drop(x)
    values = out.detach().numpy()
    assert set(np.unique(values)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((values == 0).mean() - 0.25) < 0.03
    assert out.grad_fn.name() == "MulBackward0"
    assert drop.eval()(x) is x


def test_module_to_double_keeps_parameter_objects():
    net = nn.Sequential(nn.Linear(2, 2))
    weight = net[0].weight
    net.double()
    assert net[0].weight is weight and weight.dtype is symgrad.float64 and weight.requires_grad
    assert net(symgrad.ones(1, 2, dtype=symgrad.float64)).dtype is symgrad.float64


def test_softmax_without_dim_warns_like_torch():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nn.Softmax()(symgrad.ones(2, 3))
    assert "Implicit dimension choice for softmax has been deprecated" in str(caught[0].message)


def test_clip_grad_norm_scales_in_place_and_returns_the_norm():
    a = nn.Parameter(symgrad.tensor([3.0, 0.0]))
    b = nn.Parameter(symgrad.tensor([0.0, 4.0]))
    (a * a).sum().backward()
    (b * b).sum().backward()
    total = nn.utils.clip_grad_norm_([a, b], max_norm=5.0)
    assert abs(total.item() - 10.0) < 1e-6
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 4.0], rtol=1e-5)
    # below the bound nothing changes
    assert abs(nn.utils.clip_grad_norm_([a, b], max_norm=100.0).item() - 5.0) < 1e-5
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 0.0], rtol=1e-5)


@oracle
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s) for s in ((3, 4), (5,))]

    def run(lib):
        params = [lib.nn.Parameter(lib.tensor(v)) for v in values]
        sum(((p * p * p).sum() for p in params)).backward()
        total = lib.nn.utils.clip_grad_norm_(params, 1.5, norm_type=norm_type)
        return total.item(), [p.grad.numpy() for p in params]

    (ours, our_grads), (theirs, their_grads) = run(symgrad), run(torch)
    assert abs(ours - theirs) <= 1e-10 * abs(theirs)
    for a, b in zip(our_grads, their_grads):
        np.testing.assert_allclose(a, b, rtol=1e-10)
