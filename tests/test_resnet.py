"""The seed program (issue 7): ResNet-18 on a 1x3x64x64 image, `(prediction - labels).sum().backward()`,
an SGD(lr=0.01, momentum=0.9) step, side by side with a torch ResNet-18 built here from torch.nn layers
with torchvision's module names and the same weights.
"""
from __future__ import annotations

import numpy as np
import pytest

import symgrad

torch = pytest.importorskip("torch")
tnn = torch.nn


# -- torchvision's ResNet-18, written with torch.nn (torchvision itself is not a dependency) ---------
class BasicBlock(tnn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                             tnn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(tnn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for k, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if k == 0 else 2
            setattr(self, f"layer{k + 1}", tnn.Sequential(BasicBlock(inplanes, planes, stride),
                                                          BasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _twin(model):
    theirs = ResNet(num_classes=model.fc.out_features)
    state = {k: torch.tensor(v.numpy().copy()) for k, v in model.state_dict().items()}
    theirs.load_state_dict(state)
    return theirs


def _close(ours, theirs, rtol, what):
    a, b = ours.detach().numpy(), theirs.detach().numpy()
    scale = float(np.abs(b).max()) or 1.0
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=what)


def test_state_dict_keys_are_torchvisions():
    model = symgrad.models.resnet18()
    keys = list(model.state_dict())
    assert keys == list(ResNet().state_dict())
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked"]
    assert "layer1.0.conv1.weight" in keys and "layer2.0.downsample.0.weight" in keys and keys[-1] == "fc.bias"
    assert repr(model) == repr(ResNet())


def test_weights_from_a_saved_state_dict(tmp_path):
    source = symgrad.models.resnet18(num_classes=10)
    path = tmp_path / "resnet18.npz"
    symgrad.save(source.state_dict(), path)
    loaded = symgrad.models.resnet18(weights=str(path))
    assert loaded.fc.out_features == 10
    for (k, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_resnet34_and_50_structure():
    assert sum(1 for _ in symgrad.models.resnet34().modules()) == sum(1 for _ in _count_torch(34))
    r50 = symgrad.models.resnet50(num_classes=7)
    assert tuple(r50.fc.weight.shape) == (7, 2048)
    assert tuple(r50.layer1[0].conv3.weight.shape) == (256, 64, 1, 1)


def _count_torch(depth):
    # ResNet-34: conv1 bn1 relu maxpool, 4 layers of 3/4/6/3 BasicBlocks (6 modules each, plus a
    # downsample Sequential of 2 in the first block of layers 2-4), avgpool, fc, and the model itself
    blocks = {34: (3, 4, 6, 3)}[depth]
    count = 1 + 4 + 2 + len(blocks) + 6 * sum(blocks) + 3 * 3
    return range(count)


def _close_buffers(model, theirs, rtol, steps):
    """Running statistics within `rtol` of torch's, and both counting `steps` training batches."""
    ours = dict(model.named_buffers())
    for name, b in theirs.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert int(ours[name]) == int(b) == steps, name
        else:
            _close(ours[name], b, rtol, name)


def _models_and_data(batch):
    """A symgrad ResNet-18 and its torch twin with the same weights, and the seed's input and labels."""
    symgrad.manual_seed(0)
    model = symgrad.models.resnet18()
    rng = np.random.default_rng(7)
    return (model, _twin(model), rng.random((batch, 3, 64, 64), dtype=np.float32),
            rng.random((batch, 1000), dtype=np.float32))


def test_seed_program_matches_torch(capsys):
    model, theirs, data_np, labels_np = _models_and_data(batch=1)

    before = {name: p.detach().numpy().copy() for name, p in theirs.named_parameters()}
    # the seed program, as written for torch
    data = symgrad.tensor(data_np)
    labels = symgrad.tensor(labels_np)
    prediction = model(data)
    loss = (prediction - labels).sum()
    loss.backward()
    optim = symgrad.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    print(optim)
    optim.step()

    expected = theirs(torch.tensor(data_np))
    t_loss = (expected - torch.tensor(labels_np)).sum()
    t_loss.backward()
    t_optim = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    t_optim.step()

    assert capsys.readouterr().out == str(t_optim) + "\n"
    assert prediction.grad_fn.name() == expected.grad_fn.name() == "AddmmBackward0"
    _close(prediction, expected, 1e-4, "forward")
    ours_named = dict(model.named_parameters())
    for name, p in theirs.named_parameters():
        _close(ours_named[name].grad, p.grad, 1e-3, f"gradient of {name}")
    for name, p in theirs.named_parameters():  # the step moved each parameter by the same amount
        moved = ours_named[name].detach().numpy() - before[name]
        _close(torch.tensor(moved), p.detach() - torch.tensor(before[name]), 1e-3, f"step of {name}")
    _close_buffers(model, theirs, 1e-5, steps=1)

    # eval mode on identical weights and running statistics (ours after the step, copied over)
    theirs = _twin(model)
    model.eval()
    theirs.eval()
    with symgrad.no_grad():
        ours_eval = model(data)
    with torch.no_grad():
        theirs_eval = theirs(torch.tensor(data_np))
    _close(ours_eval, theirs_eval, 1e-4, "eval forward")


def test_compiled_training_step_matches_torch_step_for_step():
    # the benchmark's fast path: a whole training step (forward, backward, SGD with momentum) as one
    # program. NOTE: a bounded loss and batch 2: the seed's unbounded sum loss with batch 1 (batch
    # norm over 4 values per channel in layer4) is chaotic after a few steps, so much that torch's
    # float32 and float64 runs part ways, and so do eager and compiled symgrad
    model, theirs, data_np, labels_np = _models_and_data(batch=2)
    data, labels = symgrad.tensor(data_np), symgrad.tensor(labels_np)
    optim = symgrad.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    t_optim = torch.optim.SGD(theirs.parameters(), lr=0.003, momentum=0.9)

    @symgrad.compile
    def step():
        optim.zero_grad()
        loss = ((model(data) - labels) ** 2).mean()
        loss.backward()
        optim.step()
        return loss

    before = {name: p.detach().numpy().copy() for name, p in theirs.named_parameters()}
    losses = []
    for _ in range(5):
        loss = step()
        t_optim.zero_grad()
        t_loss = ((theirs(torch.tensor(data_np)) - torch.tensor(labels_np)) ** 2).mean()
        t_loss.backward()
        t_optim.step()
        losses.append((loss.item(), t_loss.item()))
        assert losses[-1][0] == pytest.approx(losses[-1][1], rel=1e-3), losses
    assert "compiled: 2 calls replayed" in step.explain()
    # NOTE: each step moves the loss by far more than the tolerance, so a missed or doubled update shows
    assert all(abs(a[1] - b[1]) > 1e-2 * abs(b[1]) for a, b in zip(losses, losses[1:])), losses
    # each parameter moved as torch's did (by norm: a bias that starts at 0 is only its updates, whose
    # float32 rounding differs elementwise)
    ours_named = dict(model.named_parameters())
    for name, p in theirs.named_parameters():
        moved, t_moved = ours_named[name].detach().numpy() - before[name], p.detach().numpy() - before[name]
        assert np.linalg.norm(moved - t_moved) <= 2e-2 * np.linalg.norm(t_moved), name
    _close_buffers(model, theirs, 1e-2, steps=5)
