"""Convolution, pooling and normalization modules and functions against torch: reprs, defaults,
buffers, running statistics, errors, indices. (Values and gradients: tests/opcases_conv.py.)"""
from __future__ import annotations

import numpy as np
import pytest

import symgrad

torch = pytest.importorskip("torch")

MODULES = [
    "Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)",
    "Conv2d(4, 4, 3, padding='same', groups=2, dilation=2)",
    "Conv2d(4, 8, (3, 1), stride=(2, 1), padding='valid')",
    "Conv2d(2, 2, 3, padding=1, padding_mode='reflect')",
    "Conv2d(2, 3, 3, padding=(1, 2), padding_mode='circular')",
    "Conv2d(2, 3, (2, 3), padding='same', dilation=(1, 2), padding_mode='replicate')",
    "Conv1d(2, 2, 3, padding='same', padding_mode='circular')",
    "Conv1d(4, 2, 3)",
    "BatchNorm2d(64)",
    "BatchNorm1d(3, momentum=None, affine=False)",
    "BatchNorm2d(4, bias=False, track_running_stats=False)",
    "GroupNorm(2, 4)",
    "MaxPool2d(kernel_size=3, stride=2, padding=1)",
    "MaxPool2d(2, ceil_mode=True)",
    "MaxPool1d(2)",
    "AvgPool2d(2)",
    "AvgPool1d(3, 2, 1)",
    "AdaptiveAvgPool2d((1, 1))",
    "AdaptiveAvgPool2d(7)",
    "AdaptiveMaxPool2d((3, None))",
    "AdaptiveMaxPool2d(2, return_indices=True)",
    "AdaptiveMaxPool1d(3)",
    "AdaptiveAvgPool1d(4)",
    "Dropout2d(0.3)",
]


@pytest.mark.parametrize("text", MODULES)
def test_repr_and_state_dict_match_torch(text):
    ours, theirs = eval("symgrad.nn." + text), eval("torch.nn." + text)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert tuple(a.shape) == tuple(b.shape), k
        assert repr(a.dtype) == repr(b.dtype), k


def test_conv_default_init_is_kaiming_uniform_a_sqrt5():
    conv = symgrad.nn.Conv2d(8, 16, 3, groups=2)
    bound = 1 / np.sqrt(4 * 9)  # fan_in = in_channels / groups * kernel area
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(b).max() <= bound


def test_batch_norm_running_statistics_follow_torch():
    rng = np.random.default_rng(0)
    for momentum in (0.1, None):
        ours, theirs = symgrad.nn.BatchNorm2d(3, momentum=momentum), torch.nn.BatchNorm2d(3, momentum=momentum)
        for _ in range(3):
            x = (rng.standard_normal((4, 3, 2, 2)) * 2 + 1).astype(np.float32)
            ours(symgrad.tensor(x))
            theirs(torch.tensor(x))
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(theirs, name).numpy(), rtol=1e-5)
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
        ours.eval()
        theirs.eval()
        x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
        np.testing.assert_allclose(ours(symgrad.tensor(x)).detach().numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_max_pool_indices_match_torch():
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6)).astype(np.float32)
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, dilation=2, ceil_mode=True)):
        values, index = symgrad.nn.functional.max_pool2d(symgrad.tensor(x), return_indices=True, **kw)
        t_values, t_index = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
        np.testing.assert_array_equal(values.numpy(), t_values.numpy())
        np.testing.assert_array_equal(index.numpy(), t_index.numpy())


@pytest.mark.parametrize("shape, out", [((2, 3, 5, 7), (3, 4)), ((2, 3, 6, 8), (3, 4)), ((3, 5, 7), (2, None)),
                                        ((1, 2, 4, 9), (4, 5)), ((1, 2, 3, 2), (5, 7)), ((1, 1, 5, 5), 1)])
def test_adaptive_max_pool_values_indices_and_ties_match_torch(shape, out):
    # rounded draws tie often: the value, the index and the gradient go to the first maximum of a window
    x = np.round(np.random.default_rng(2).standard_normal(shape) * 1.5)
    ours, theirs = symgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    values, index = symgrad.nn.functional.adaptive_max_pool2d(ours, out, return_indices=True)
    t_values, t_index = torch.nn.functional.adaptive_max_pool2d(theirs, out, return_indices=True)
    assert values.grad_fn.name() == t_values.grad_fn.name()
    np.testing.assert_array_equal(values.detach().numpy(), t_values.detach().numpy())
    np.testing.assert_array_equal(index.numpy(), t_index.numpy())
    assert repr(index.dtype) == repr(t_index.dtype)
    g = np.random.default_rng(3).standard_normal(t_values.shape)
    (values * symgrad.tensor(g)).sum().backward()
    (t_values * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_adaptive_max_pool1d_matches_torch():
    x = np.round(np.random.default_rng(4).standard_normal((2, 3, 7)))
    ours = symgrad.nn.AdaptiveMaxPool1d(3, return_indices=True)(symgrad.tensor(x, requires_grad=True))
    theirs = torch.nn.AdaptiveMaxPool1d(3, return_indices=True)(torch.tensor(x, requires_grad=True))
    assert ours[0].grad_fn.name() == theirs[0].grad_fn.name()
    np.testing.assert_array_equal(ours[0].detach().numpy(), theirs[0].detach().numpy())
    np.testing.assert_array_equal(ours[1].numpy(), theirs[1].numpy())


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding=(1, 2)), dict(kernel_size=3, padding=1, stride=2),
                                dict(kernel_size=(2, 3), padding="same", dilation=(1, 2)),
                                dict(kernel_size=3, padding="valid", groups=2)])
def test_conv2d_padding_modes_match_torch(mode, kw):
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(2, 4, padding_mode=mode, **kw).double()
    ours = symgrad.nn.Conv2d(2, 4, padding_mode=mode, **kw).double()
    ours.load_state_dict({k: symgrad.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(5).standard_normal((2, 2, 5, 6))
    xs, xt = symgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ys, yt = ours(xs), theirs(xt)
    g = np.random.default_rng(6).standard_normal(yt.shape)
    (ys * symgrad.tensor(g)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(ys.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pads", [(1, 2), (2, 1, 0, 3), (-1, 2), (2, -1), (0, -1), (3, 3), (-3, 0), (1, 1, 1, 1, 1, 1)])
def test_circular_pad_matches_torch(pads):
    x = np.arange(2 * 3 * 4.0).reshape(1, 2, 3, 4) if len(pads) > 2 else np.arange(8.0).reshape(2, 4)
    ours, theirs = (lib.nn.functional.pad(lib.tensor(x, requires_grad=True), pads, mode="circular")
                    for lib in (symgrad, torch))
    assert ours.grad_fn.name() == theirs.grad_fn.name()
    np.testing.assert_array_equal(ours.detach().numpy(), theirs.detach().numpy())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_nearest_source_indices_round_as_torch(mode, dtype):
    # torch rounds the source index in float32 (nearest) or from a scale of the input's dtype (nearest-exact)
    x = np.arange(23.0, dtype=dtype).reshape(1, 1, 23)
    for kw in [dict(size=n) for n in range(1, 50)] + [dict(scale_factor=f) for f in (0.3, 0.7, 1.1, 1.3, 1.7, 2.34, 2.9, 3.7)]:
        ours = symgrad.nn.functional.interpolate(symgrad.tensor(x), mode=mode, **kw)
        theirs = torch.nn.functional.interpolate(torch.tensor(x), mode=mode, **kw)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=str(kw))


def _second_order(lib, fn, arrays):
    """Gradients of the squared norm of the gradients of sum(y**2): through the gradient rules."""
    leaves = [lib.tensor(a, requires_grad=True) for a in arrays]
    y = fn(lib, lib.nn.functional, *leaves)
    grads = lib.autograd.grad((y * y).sum(), leaves, create_graph=True)
    total = sum((g * g).sum() for g in grads)
    return [g.detach().numpy() for g in lib.autograd.grad(total, leaves)]


_RM, _RV = np.array([0.1, -0.2]), np.array([1.5, 0.5])
SECOND_ORDER = {
    "conv2d": (lambda lib, F, x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [(2, 2, 5, 5), (3, 2, 3, 3), (3,)]),
    "conv2d-groups-dilation": (lambda lib, F, x, w: F.conv2d(x, w, padding=(2, 1), dilation=(2, 1), groups=2),
                               [(1, 4, 5, 4), (2, 2, 2, 3)]),
    "conv1d": (lambda lib, F, x, w: F.conv1d(x, w, stride=2), [(2, 3, 7), (2, 3, 3)]),
    "max-pool2d": (lambda lib, F, x: F.max_pool2d(x, 3, 2, 1), [(2, 2, 5, 5)]),
    "avg-pool2d": (lambda lib, F, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [(2, 2, 5, 5)]),
    "batch-norm": (lambda lib, F, x, w, b: F.batch_norm(x, None, None, w, b, training=True), [(3, 2, 2, 2), (2,), (2,)]),
    "batch-norm-eval": (lambda lib, F, x, w, b: F.batch_norm(x, lib.tensor(_RM), lib.tensor(_RV), w, b),
                        [(3, 2, 2, 2), (2,), (2,)]),
    "adaptive-max-pool2d": (lambda lib, F, x: F.adaptive_max_pool2d(x, (3, 2)), [(1, 2, 5, 5)]),
    "conv-bn-relu-pool": (lambda lib, F, x, w: F.max_pool2d(F.relu(F.batch_norm(
        F.conv2d(x, w, padding=1), None, None, training=True)), 2), [(2, 2, 4, 4), (2, 2, 3, 3)]),
}


@pytest.mark.parametrize("name", list(SECOND_ORDER))
def test_second_derivatives_match_torch(name):
    fn, shapes = SECOND_ORDER[name]
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    for ours, theirs in zip(_second_order(symgrad, fn, arrays), _second_order(torch, fn, arrays)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9 * max(1.0, np.abs(theirs).max()))


def test_dropout2d_zeroes_whole_channels():
    y = symgrad.nn.functional.dropout2d(symgrad.ones(4, 8, 3, 3), 0.5).numpy()
    per_channel = y.reshape(4, 8, 9)
    assert set(np.unique(per_channel)) <= {0.0, 2.0}
    assert (per_channel.min(axis=2) == per_channel.max(axis=2)).all()
    assert symgrad.nn.Dropout2d().eval()(symgrad.ones(1, 2, 2, 2)).numpy().sum() == 8


ERRORS = {
    "channels": lambda lib, F: F.conv2d(lib.ones(1, 4, 5, 5), lib.ones(2, 3, 3, 3)),
    "same-strided": lambda lib, F: F.conv2d(lib.ones(1, 3, 5, 5), lib.ones(2, 3, 3, 3), stride=2, padding="same"),
    "padding-string": lambda lib, F: F.conv2d(lib.ones(1, 3, 5, 5), lib.ones(2, 3, 3, 3), padding="full"),
    "kernel-too-big": lambda lib, F: F.conv2d(lib.ones(1, 3, 2, 2), lib.ones(2, 3, 3, 3)),
    "pool-pad": lambda lib, F: F.max_pool2d(lib.ones(1, 1, 5, 5), 3, padding=2),
    "pool-too-small": lambda lib, F: F.max_pool2d(lib.ones(1, 1, 2, 2), 3),
    "amax-pool-dims": lambda lib, F: F.adaptive_max_pool2d(lib.ones(5), 2),
    "amax-pool-size": lambda lib, F: F.adaptive_max_pool2d(lib.ones(1, 2, 3, 3), (2, 2, 2)),
    "amax-pool-empty": lambda lib, F: F.adaptive_max_pool2d(lib.ones(1, 0, 3, 3), 2),
    "amax-pool1d-dims": lambda lib, F: F.adaptive_max_pool1d(lib.ones(1, 2, 3, 3), 2),
    "amax-pool1d-size": lambda lib, F: F.adaptive_max_pool1d(lib.ones(1, 3), (2, 2)),
    "circular-dims": lambda lib, F: F.pad(lib.ones(1, 1, 3, 4), (1, 1), mode="circular"),
    "circular-twice": lambda lib, F: F.pad(lib.ones(1, 2, 3), (4, 0), mode="circular"),
    "circular-empty": lambda lib, F: F.pad(lib.ones(1, 2, 3), (-2, -2), mode="circular"),
    "circular-value": lambda lib, F: F.pad(lib.ones(1, 2, 3), (1, 1), mode="circular", value=3),
    "pad-mode": lambda lib, F: F.pad(lib.ones(1, 2, 3), (1, 1), mode="foo"),
    "aavg-pool1d-dims": lambda lib, F: F.adaptive_avg_pool1d(lib.ones(1, 2, 3, 3), 2),
    "interp-linear-4d": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), size=7, mode="linear"),
    "interp-bilinear-3d": lambda lib, F: F.interpolate(lib.ones(1, 2, 5), size=7, mode="bilinear"),
    "interp-trilinear-4d": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), size=7, mode="trilinear"),
    "interp-bicubic-3d": lambda lib, F: F.interpolate(lib.ones(1, 2, 5), size=7, mode="bicubic"),
    "interp-mode": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), size=7, mode="foo"),
    "interp-2d": lambda lib, F: F.interpolate(lib.ones(2, 3), size=7),
    "interp-corners": lambda lib, F: F.interpolate(lib.ones(1, 2, 5), size=7, mode="nearest-exact", align_corners=False),
    "interp-area-corners": lambda lib, F: F.interpolate(lib.ones(1, 2, 5), size=7, mode="area", align_corners=True),
    "interp-antialias": lambda lib, F: F.interpolate(lib.ones(1, 2, 5), size=7, mode="linear", antialias=True),
    "interp-size-len": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), size=(3,)),
    "interp-scale-len": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), scale_factor=(2, 2, 2)),
    "interp-none": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5)),
    "interp-both": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), size=3, scale_factor=2),
    "interp-empty": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), scale_factor=0.1),
    "interp-empty-1d": lambda lib, F: F.interpolate(lib.ones(1, 2, 5), size=0, mode="linear"),
    "interp-empty-3d": lambda lib, F: F.interpolate(lib.ones(1, 1, 2, 3, 4), size=0),
    "interp-recompute": lambda lib, F: F.interpolate(lib.ones(1, 2, 3, 5), size=(4, 7), recompute_scale_factor=True),
    "interp-size-type": lambda lib, F: F.interpolate(lib.ones(1, 1, 3), size=(2.5,)),
    "bn-one-value": lambda lib, F: F.batch_norm(lib.ones(1, 3), None, None, training=True),
    "bn-module-dims": lambda lib, F: lib.nn.BatchNorm2d(3)(lib.ones(2, 3)),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_match_torch(name):
    with pytest.raises(Exception) as theirs:
        ERRORS[name](torch, torch.nn.functional)
    with pytest.raises(type(theirs.value)) as ours:
        ERRORS[name](symgrad, symgrad.nn.functional)
    assert str(ours.value).split("\n")[0] == str(theirs.value).split("\n")[0]
