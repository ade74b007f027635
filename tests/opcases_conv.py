"""Gradient cases for convolution, pooling, batch norm and padding (appended to opcases.CASES).

Stride, padding (including 'same'/'valid' and asymmetric), dilation and groups are combined across
cases rather than crossed, to keep the number of compiled programs small; outputs stay within 64
elements (tests/test_replay.py weights every case's output with 64 numbers), and a bias gradient's
batch axis is longer than 1 (formula() drops a sum over a size-1 axis, and its (1, C) would not be (C,)).
"""
from __future__ import annotations

from opcases import Case, In


def _F(T):
    return T.nn.functional


def _bn_eval(T, x, w, b):
    mean = T.tensor([0.5, -0.25, 0.0], dtype=x.dtype)
    var = T.tensor([1.5, 0.5, 2.0], dtype=x.dtype)
    return _F(T).batch_norm(x, mean, var, w, b, training=False, eps=1e-3)


# every case is float32-looser (`transcendental`): sums of products in another order than torch's
CONV_CASES: list[Case] = [
    Case("conv2d", "CONVOLUTION", lambda T, x, w, b: _F(T).conv2d(x, w, b, padding=1),
         (In((2, 3, 3, 3)), In((2, 3, 3, 3)), In((2,))), transcendental=True),
    Case("conv2d-stride-dilation", "CONVOLUTION",
         lambda T, x, w: _F(T).conv2d(x, w, stride=2, padding=(2, 1), dilation=(2, 1)),
         (In((1, 2, 7, 6)), In((3, 2, 2, 3))), transcendental=True),
    Case("conv2d-groups", "CONVOLUTION", lambda T, x, w, b: _F(T).conv2d(x, w, b, stride=(1, 2), groups=2),
         (In((2, 4, 3, 4)), In((4, 2, 3, 2)), In((4,))), transcendental=True),
    Case("conv2d-depthwise-same", "CONVOLUTION",
         lambda T, x, w: _F(T).conv2d(x, w, padding="same", dilation=2, groups=3),
         (In((1, 3, 4, 4)), In((3, 1, 3, 3))), transcendental=True),
    Case("conv2d-valid-x-const", "CONVOLUTION", lambda T, x, w: _F(T).conv2d(x, w, padding="valid"),
         (In((1, 2, 4, 4), grad=False), In((2, 2, 2, 2))), transcendental=True),
    Case("conv1d", "CONVOLUTION", lambda T, x, w, b: _F(T).conv1d(x, w, b, stride=2, padding=1, dilation=2),
         (In((2, 3, 9)), In((4, 3, 3)), In((4,))), transcendental=True),
    Case("conv1d-groups", "CONVOLUTION", lambda T, x, w: _F(T).conv1d(x, w, groups=3),
         (In((1, 3, 6)), In((6, 1, 2))), transcendental=True),
    Case("max-pool2d", "MAX_POOL", lambda T, x: _F(T).max_pool2d(x, 3, 2, 1), (In((2, 2, 7, 7)),)),
    Case("max-pool2d-dilation-ceil", "MAX_POOL",
         lambda T, x: _F(T).max_pool2d(x, 2, 1, 1, dilation=2, ceil_mode=True), (In((1, 2, 6, 5)),)),
    Case("max-pool2d-ceil", "MAX_POOL", lambda T, x: _F(T).max_pool2d(x, 2, ceil_mode=True), (In((1, 2, 5, 5)),)),
    Case("avg-pool2d", "AVG_POOL", lambda T, x: _F(T).avg_pool2d(x, 3, 2, 1), (In((2, 2, 7, 7)),),
         transcendental=True),
    Case("avg-pool2d-exclude-pad-ceil", "AVG_POOL",
         lambda T, x: _F(T).avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), (In((1, 2, 6, 6)),),
         transcendental=True),
    Case("avg-pool2d-divisor", "AVG_POOL", lambda T, x: _F(T).avg_pool2d(x, 2, divisor_override=3),
         (In((1, 2, 4, 4)),), transcendental=True),
    Case("adaptive-avg-pool2d", "AVG_POOL", lambda T, x: _F(T).adaptive_avg_pool2d(x, (2, 3)),
         (In((1, 2, 4, 6)),), transcendental=True),
    Case("adaptive-avg-pool2d-uneven", "ADAPTIVE_AVG_POOL", lambda T, x: _F(T).adaptive_avg_pool2d(x, (3, 4)),
         (In((1, 2, 5, 7)),), transcendental=True),
    Case("adaptive-max-pool2d", "MAX_POOL", lambda T, x: _F(T).adaptive_max_pool2d(x, (2, 3)), (In((1, 2, 4, 6)),)),
    Case("adaptive-max-pool2d-uneven", "ADAPTIVE_MAX_POOL", lambda T, x: _F(T).adaptive_max_pool2d(x, (3, 4)),
         (In((1, 2, 5, 7)),)),
    Case("adaptive-max-pool2d-upsample", "ADAPTIVE_MAX_POOL", lambda T, x: _F(T).adaptive_max_pool2d(x, (4, None)),
         (In((2, 3, 3)),)),
    Case("adaptive-max-pool1d", "ADAPTIVE_MAX_POOL", lambda T, x: _F(T).adaptive_max_pool1d(x, 3), (In((2, 3, 7)),)),
    Case("batch-norm", "BATCH_NORM", lambda T, x, w, b: _F(T).batch_norm(x, None, None, w, b, training=True),
         (In((3, 3, 2, 2)), In((3,)), In((3,))), transcendental=True),
    Case("batch-norm-1d", "BATCH_NORM", lambda T, x: _F(T).batch_norm(x, None, None, training=True, eps=0.1),
         (In((5, 3)),), transcendental=True),
    Case("batch-norm-eval", "BATCH_NORM", _bn_eval, (In((3, 3, 2, 2)), In((3,)), In((3,))), transcendental=True),
    Case("pad-constant", "PAD", lambda T, x: _F(T).pad(x, (1, 2, 0, 1), value=0.5), (In((1, 2, 3, 3)),)),
    Case("pad-reflect", "PAD", lambda T, x: _F(T).pad(x, (1, 1, 2, 0), mode="reflect"), (In((1, 2, 3, 4)),)),
    Case("pad-replicate", "PAD", lambda T, x: _F(T).pad(x, (2, 1), mode="replicate"), (In((2, 3)),)),
    Case("pad-circular", "PAD", lambda T, x: _F(T).pad(x, (2, 1, 1, 2), mode="circular"), (In((1, 1, 3, 4)),)),
    Case("pad-circular-crop-1d", "PAD", lambda T, x: _F(T).pad(x, (-1, 2), mode="circular"), (In((2, 5)),)),
    # Conv2d(padding_mode=...): the mode's pad, then a convolution without padding
    Case("conv2d-circular", "CONVOLUTION",
         lambda T, x, w: _F(T).conv2d(_F(T).pad(x, (1, 1, 2, 2), mode="circular"), w, dilation=(2, 1)),
         (In((1, 2, 3, 4)), In((2, 2, 3, 3))), transcendental=True),
    Case("conv1d-reflect", "CONVOLUTION",
         lambda T, x, w, b: _F(T).conv1d(_F(T).pad(x, (2, 2), mode="reflect"), w, b, stride=2),
         (In((2, 3, 6)), In((2, 3, 3)), In((2,))), transcendental=True),
    Case("interpolate-nearest-exact", "RESAMPLE",
         lambda T, x: _F(T).interpolate(x, size=(3, 5), mode="nearest-exact"), (In((2, 1, 4, 3)),), transcendental=True),
    Case("interpolate-linear", "RESAMPLE", lambda T, x: _F(T).interpolate(x, scale_factor=1.7, mode="linear"),
         (In((2, 2, 5)),), transcendental=True),
    Case("interpolate-linear-corners", "RESAMPLE",
         lambda T, x: _F(T).interpolate(x, size=4, mode="linear", align_corners=True), (In((2, 3, 6)),),
         transcendental=True),
    Case("interpolate-area", "ADAPTIVE_AVG_POOL", lambda T, x: _F(T).interpolate(x, size=(2, 3), mode="area"),
         (In((1, 2, 3, 5)),), transcendental=True),
    Case("interpolate-area-1d", "ADAPTIVE_AVG_POOL", lambda T, x: _F(T).interpolate(x, size=3, mode="area"),
         (In((2, 2, 7)),), transcendental=True),
    Case("interpolate-bicubic", "RESAMPLE", lambda T, x: _F(T).interpolate(x, size=(4, 5), mode="bicubic"),
         (In((1, 2, 3, 4)),), transcendental=True),
    Case("interpolate-bicubic-corners", "RESAMPLE",
         lambda T, x: _F(T).interpolate(x, scale_factor=0.6, mode="bicubic", align_corners=True),
         (In((2, 1, 6, 5)),), transcendental=True),
    Case("interpolate-trilinear", "RESAMPLE", lambda T, x: _F(T).interpolate(x, size=(3, 2, 5), mode="trilinear"),
         (In((1, 2, 2, 3, 4)),), transcendental=True),
    Case("interpolate-nearest-3d", "RESAMPLE", lambda T, x: _F(T).interpolate(x, scale_factor=(1.5, 1, 0.5)),
         (In((1, 2, 2, 3, 4)),), transcendental=True),
    Case("group-norm", "GROUP_NORM", lambda T, x, w, b: _F(T).group_norm(x, 2, w, b),
         (In((2, 4, 2, 2)), In((4,)), In((4,))), transcendental=True),
    Case("group-norm-plain", "GROUP_NORM", lambda T, x: _F(T).group_norm(x, 1, eps=0.1), (In((2, 3, 4)),),
         transcendental=True),
    Case("interpolate-nearest", "RESAMPLE", lambda T, x: _F(T).interpolate(x, scale_factor=2), (In((2, 1, 2, 3)),),
         transcendental=True),
    Case("interpolate-nearest-1d", "RESAMPLE", lambda T, x: _F(T).interpolate(x, scale_factor=1.5),
         (In((2, 2, 3)),), transcendental=True),
    Case("interpolate-bilinear", "RESAMPLE", lambda T, x: _F(T).interpolate(x, size=(3, 5), mode="bilinear"),
         (In((2, 1, 2, 3)),), transcendental=True),
    Case("interpolate-bilinear-corners", "RESAMPLE",
         lambda T, x: _F(T).interpolate(x, scale_factor=2, mode="bilinear", align_corners=True),
         (In((2, 1, 2, 3)),), transcendental=True),
]

CONV_UNREACHABLE = {
    "WINDOW": "graph primitive behind CONVOLUTION / MAX_POOL / AVG_POOL; never recorded by autograd",
    "AS_WINDOWS": "recorded only by gradient rules under create_graph=True: tests/test_nn_conv.py's double "
                  "backward tests",
    "UNWINDOW": "graph primitive behind the gradients of CONVOLUTION / MAX_POOL / AVG_POOL; never recorded",
    "AS_UNWINDOW": "recorded only by gradient rules under create_graph=True: tests/test_nn_conv.py's double "
                   "backward tests",
}
