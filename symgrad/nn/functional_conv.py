"""torch.nn.functional's convolution, pooling and normalization layers (the rules: symgrad/convolution.py).

>>> import symgrad
>>> import symgrad.nn.functional as F
>>> x = symgrad.ones(1, 1, 4, 4, requires_grad=True)
>>> y = F.conv2d(x, symgrad.ones(2, 1, 3, 3), padding=1)
>>> y.shape, y.grad_fn
(torch.Size([1, 2, 4, 4]), <ConvolutionBackward0 object at 0x...>)
>>> F.max_pool2d(y, 2)[0, 0]
tensor([[9., 9.],
        [9., 9.]], grad_fn=<SelectBackward0>)
"""
from __future__ import annotations

import math

from .. import convolution as _conv
from .._tensor_module import _t
from ..ops import OPS
from ..tensor import Tensor, _apply, no_grad


def _tuple(value, n, name="value"):
    if isinstance(value, (tuple, list)):
        if len(value) == 1 and n > 1:
            return tuple(value) * n
        if len(value) != n:
            raise RuntimeError(f"expected {name} to be a single integer value or a list of {n} values to match the "
                               f"convolution dimensions, but got {name}={list(value)}")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _shape_text(shape):
    return "[" + ", ".join(str(n) for n in shape) + "]"


# -- convolution -----------------------------------------------------------------------------------
def _convolve(input, weight, bias, stride, padding, dilation, groups, S):
    if not isinstance(input, Tensor):
        raise TypeError(f"conv{S}d() received an invalid combination of arguments - got ({type(input).__name__}, ...)")
    unbatched = input.dim() == S + 1
    if unbatched:
        input = input.unsqueeze(0)
    if input.dim() != S + 2 or weight.dim() != S + 2:
        raise RuntimeError(f"Expected {S + 1}D (unbatched) or {S + 2}D (batched) input to conv{S}d, but got input "
                           f"of size: {_shape_text(input.shape)}")
    stride, dilation = _tuple(stride, S, "stride"), _tuple(dilation, S, "dilation")
    kernel = tuple(weight.shape[2:])
    channels = weight.shape[1] * groups
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if input.shape[1] != channels:
        raise RuntimeError(f"Given groups={groups}, weight of size {_shape_text(weight.shape)}, expected "
                           f"input{_shape_text(input.shape)} to have {channels} channels, but got "
                           f"{input.shape[1]} channels instead")
    if weight.shape[0] % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size {_shape_text(weight.shape)} instead")
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * S
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pads = tuple((t // 2, t - t // 2) for t in totals)
            if any(lo != hi for lo, hi in pads):
                # NOTE: torch pads the odd remainder first (ConstantPadNdBackward0), then convolves
                extra = []
                for lo, hi in reversed(pads):
                    extra += [0, hi - lo]
                input = pad(input, extra)
                pads = tuple((lo, lo) for lo, _ in pads)
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")
    else:
        pads = tuple((p, p) for p in _tuple(padding, S, "padding"))
    padded = [n + lo + hi for n, (lo, hi) in zip(input.shape[2:], pads)]
    if any(p < d * (k - 1) + 1 for p, d, k in zip(padded, dilation, kernel)):
        raise RuntimeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel "
                           f"size: ({' x '.join(map(str, kernel))}). Kernel size can't be greater than actual "
                           "input size")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise RuntimeError(f"Given weight of size {_shape_text(weight.shape)}, expected bias to be 1-dimensional "
                           f"with {weight.shape[0]} elements, but got bias of size {_shape_text(bias.shape)} instead")
    out = _apply(OPS["CONVOLUTION"], (input, weight, bias), arg=(stride, pads, dilation, int(groups)))
    return out.squeeze(0) if unbatched else out


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution (cross-correlation) of (N, C, L) by (O, C/groups, K): im2col and one GEMM."""
    return _convolve(input, weight, bias, stride, padding, dilation, groups, 1)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution (cross-correlation) of (N, C, H, W) by (O, C/groups, KH, KW): im2col and one GEMM.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.conv2d(symgrad.ones(1, 2, 3, 3), symgrad.ones(1, 2, 2, 2)).flatten().tolist()
    [8.0, 8.0, 8.0, 8.0]
    """
    return _convolve(input, weight, bias, stride, padding, dilation, groups, 2)


# -- pooling ---------------------------------------------------------------------------------------
def _pool_arg(input, kernel_size, stride, padding, dilation, ceil_mode, S, name):
    kernel = _tuple(kernel_size, S, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _tuple(stride, S)
    padding, dilation = _tuple(padding, S), _tuple(dilation, S)
    if input.dim() not in (S + 1, S + 2):
        raise RuntimeError(f"{name}: Expected {S + 1}D or {S + 2}D input tensor, but got {input.dim()}D")
    for p, k, d in zip(padding, kernel, dilation):
        if p > (d * (k - 1) + 1) // 2:
            if name == "max_pool2d":
                raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={p}, "
                                   f"kernel_size={k} and dilation={d}")
            raise RuntimeError("pad should be smaller than or equal to half of kernel size, but got "
                               f"padW = {p}, padH = {p}, kW = {k}, kH = {k}")
    size = tuple(input.shape[input.dim() - S:])
    out = tuple(_conv.out_size(n, k, s, p, p, d, ceil_mode) for n, k, s, p, d in zip(size, kernel, stride, padding,
                                                                                      dilation))
    if any(o < 1 for o in out):
        channels = input.shape[-S - 1] if input.dim() == S + 2 else input.shape[0]
        raise RuntimeError(f"Given input size: ({'x'.join(map(str, (channels, *size)))}). Calculated output size: "
                           f"({'x'.join(map(str, (channels, *out)))}). Output size is too small")
    # the ceil_mode overhang is more padding on the high side, so every window lies in the padded input
    pads = tuple((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p))
                 for n, k, s, p, d, o in zip(size, kernel, stride, padding, dilation, out))
    return kernel, stride, pads, dilation, out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The maximum of each window; its gradient goes to the first maximal element (torch's rule).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.max_pool2d(symgrad.arange(16.0).reshape(1, 4, 4), 2)
    tensor([[[ 5.,  7.],
             [13., 15.]]])
    """
    arg = _pool_arg(input, kernel_size, stride, padding, dilation, ceil_mode, 2, "max_pool2d")
    out = _apply(OPS["MAX_POOL"], (input,), arg=arg)
    if return_indices:
        with no_grad():
            return out, _conv.max_pool_flat_indices(input.detach(), out.detach(), arg)
    return out


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    stride = None if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _tuple(stride, 1)[0]
    out = max_pool2d(input.unsqueeze(-2), (1, _tuple(kernel_size, 1)[0]), None if stride is None else (1, stride),
                     (0, _tuple(padding, 1)[0]), (1, _tuple(dilation, 1)[0]), ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """The mean of each window (padding counted unless count_include_pad=False).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.avg_pool2d(symgrad.arange(16.0).reshape(1, 1, 4, 4), 2).flatten().tolist()
    [2.5, 4.5, 10.5, 12.5]
    """
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    pool = _pool_arg(input, kernel_size, stride, padding, 1, ceil_mode, 2, "avg_pool2d")
    return _apply(OPS["AVG_POOL"], (input,), arg=(pool, bool(count_include_pad), divisor_override))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    stride = None if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _tuple(stride, 1)[0]
    return avg_pool2d(input.unsqueeze(-2), (1, _tuple(kernel_size, 1)[0]), None if stride is None else (1, stride),
                      (0, _tuple(padding, 1)[0]), ceil_mode, count_include_pad).squeeze(-2)


def _adaptive_size(input, output_size, S):
    size = tuple(input.shape[input.dim() - S:])
    out = _tuple(output_size, S) if not isinstance(output_size, (tuple, list)) else tuple(
        n if o is None else int(o) for o, n in zip(output_size, size))
    return size, out


def adaptive_avg_pool2d(input, output_size):
    """Averages over a grid of `output_size` windows; (1, 1) is a mean over the spatial axes, as in torch.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.adaptive_avg_pool2d(symgrad.ones(1, 3, 5, 5), 1).shape
    torch.Size([1, 3, 1, 1])
    """
    size, out = _adaptive_size(input, output_size, 2)
    if out == (1, 1):
        return input.mean(dim=(-2, -1), keepdim=True)
    if all(n % o == 0 for n, o in zip(size, out)):
        kernel = tuple(n // o for n, o in zip(size, out))
        pool = (kernel, kernel, ((0, 0), (0, 0)), (1, 1), out)
        return _apply(OPS["AVG_POOL"], (input,), arg=(pool, True, None), name="AdaptiveAvgPool2DBackward0")
    # uneven windows: averages by two constant matrices, rows @ x @ cols.T
    rows, cols = (_t.tensor(_adaptive_matrix(n, o), dtype=input.dtype) for n, o in zip(size, out))
    return _apply(OPS["ADAPTIVE_AVG_POOL"], (input, rows, cols), positions=(0,))


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """The maximum over each window of an `output_size` grid (window i of an axis of n spans
    [floor(i*n/o), ceil((i+1)*n/o)), as torch); its gradient goes to the window's first maximum.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.adaptive_max_pool2d(symgrad.arange(10.0).reshape(1, 2, 5), (1, 3))
    tensor([[[6., 8., 9.]]])
    """
    if input.dim() not in (3, 4):
        raise RuntimeError(f"adaptive_max_pool2d(): Expected 3D or 4D tensor, but got: {_shape_text(input.shape)}")
    if isinstance(output_size, (tuple, list)) and len(output_size) != 2:
        raise RuntimeError("adaptive_max_pool2d(): internal error: output_size.size() must be 2")
    for k in range(1, input.dim()) if input.dim() == 4 else range(input.dim()):
        if input.shape[k] == 0:
            raise RuntimeError("adaptive_max_pool2d(): Expected input to have non-zero size for non-batch dimensions, "
                               f"but input has sizes {_shape_text(input.shape)} with dimension {k} being empty")
    size, out = _adaptive_size(input, output_size, 2)
    if any(o < 0 for o in out):
        raise RuntimeError(f"Trying to create tensor with negative dimension {min(out)}: "
                           f"{_shape_text((*input.shape[:-2], *out))}")
    if all(o > 0 and n % o == 0 for n, o in zip(size, out)):
        # even windows: a max pool with kernel = stride = n / o (a free WINDOW view)
        kernel = tuple(n // o for n, o in zip(size, out))
        arg = (kernel, kernel, ((0, 0), (0, 0)), (1, 1), out)
        values = _apply(OPS["MAX_POOL"], (input,), arg=arg, name="AdaptiveMaxPool2DBackward0")
        if not return_indices:
            return values
        with no_grad():
            return values, _conv.max_pool_flat_indices(input.detach(), values.detach(), arg)
    table = _t.tensor(_conv.adaptive_max_table(size, out))
    values = _apply(OPS["ADAPTIVE_MAX_POOL"], (input, table), positions=(0,))
    if not return_indices:
        return values
    with no_grad():
        return values, _conv.adaptive_max_pool_indices(input.detach(), table)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=True):
    return adaptive_max_pool2d(input, output_size, return_indices=True)


def _adaptive_1d_size(name, input, output_size) -> int:
    """The one output size of a 1-d adaptive pool, checked as torch checks it (and its input's rank)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 1:
            raise RuntimeError(f"{name}() argument 'output_size' should contain one int (got {len(output_size)})")
        output_size = output_size[0]
    if input.dim() not in (2, 3):
        raise RuntimeError(f"Expected 2 to 3 dimensions, but got {input.dim()}-dimensional tensor for argument #1 "
                           f"'self' (while checking arguments for {name})")
    return output_size


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """The maximum over each of `output_size` windows of the last axis (torch's window boundaries)."""
    output_size = _adaptive_1d_size("adaptive_max_pool1d", input, output_size)
    out = adaptive_max_pool2d(input.unsqueeze(-2), (1, output_size), return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=True):
    return adaptive_max_pool1d(input, output_size, return_indices=True)


def _adaptive_matrix(n, o):
    import numpy as np

    m = np.zeros((o, n))
    for i in range(o):
        start, end = (i * n) // o, -(-((i + 1) * n) // o)
        m[i, start:end] = 1.0 / (end - start)
    return m


# -- batch norm ------------------------------------------------------------------------------------
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               _counter=None):
    """Normalize each channel over the batch (and spatial axes) in training, by the running statistics
    otherwise; in training the running statistics move by `momentum` toward the batch's (the variance's
    unbiased estimate), in place, as torch does.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> mean, var = symgrad.zeros(2), symgrad.ones(2)
    >>> y = F.batch_norm(symgrad.tensor([[1.0, 2.0], [3.0, 6.0]]), mean, var, training=True)
    >>> mean
    tensor([0.2000, 0.4000])
    """
    if training:
        per_channel = input.numel() // input.shape[1] if input.dim() > 1 else 0
        if per_channel <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.shape!r}")
    if training and running_mean is not None and running_var is not None:
        with no_grad():
            x = input.detach()
            mean, var = _conv.batch_stats(x)
            count = input.numel() // input.shape[1]
            running_mean.copy_(mean.reshape(-1) * momentum + running_mean * (1 - momentum))
            running_var.copy_(var.reshape(-1) * (momentum * count / (count - 1)) + running_var * (1 - momentum))
        # NOTE: nothing downstream needs the updated statistics, so left pending they would pile up step
        # after step (and cut the graph at a different place each step: a recompile every step). They are
        # computed now, with the input they summarize (kept, so the normalization reads it back).
        _t._realize([input._node, running_mean._node, running_var._node]
                    + ([] if _counter is None else [_counter._node]))
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
    return _apply(OPS["BATCH_NORM"], (input, weight, bias, running_mean, running_var), arg=(bool(training), eps),
                  positions=(0, 1, 2))


__all__ = ["conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool2d",
           "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool1d_with_indices",
           "adaptive_max_pool2d_with_indices", "batch_norm"]


_PAD_NAMES = {"reflect": "ReflectionPad{}DBackward0", "replicate": "ReplicationPad{}DBackward0",
              "circular": "CopySlices"}


def pad(input, pad, mode="constant", value=None):
    """Pad the last len(pad) // 2 axes: pad = (last_lo, last_hi, previous_lo, previous_hi, ...), with
    mode 'constant' (`value`), 'reflect', 'replicate' or 'circular' (wrapping around, at most once).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.pad(symgrad.tensor([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect")
    tensor([[3., 2., 1., 2., 3., 2.]])
    """
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.dim():
        raise RuntimeError("Padding length should be less than or equal to two times the input dimension but got "
                           f"padding length {len(pad)} and input of dimension {input.dim()}")
    pads = tuple((pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2))[::-1]
    if mode == "constant":
        if any(p < 0 for p in pad):
            raise NotImplementedError("negative padding is not supported yet")
        return _apply(OPS["PAD"], (input,), arg=(pads, "constant", 0.0 if value is None else float(value)))
    if mode not in _PAD_NAMES:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if value is not None and value != 0:
        raise RuntimeError(f'Padding mode "{mode}" doesn\'t take in value argument')
    S = len(pads)
    if S not in (1, 2, 3) or input.dim() not in (S + 1, S + 2):
        raise NotImplementedError(f"Padding size {len(pad)} is not supported for {input.dim()}D input tensor.")
    if mode == "circular":
        for (lo, hi), n in zip(pads, input.shape[input.dim() - S:]):
            if lo > n or hi > n:
                raise RuntimeError("Padding value causes wrapping around more than once.")
            kept = n - max(-lo, 0) - max(-hi, 0)
            if kept <= 0:
                raise RuntimeError("Negative padding value is resulting in an empty dimension")
            if lo > kept or hi > kept:
                # NOTE: torch's circular pad copies from its own output here
                raise RuntimeError("unsupported operation: some elements of the input tensor and the written-to "
                                   "tensor refer to a single memory location. Please clone() the tensor before "
                                   "performing the operation.")
    for (lo, hi), n in zip(pads, input.shape[input.dim() - S:]):
        if mode == "reflect" and (lo >= n or hi >= n):
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input dimension, "
                               f"but got: padding ({lo}, {hi}) at dimension {input.dim() - S} of input "
                               f"{list(input.shape)}")
    return _apply(OPS["PAD"], (input,), arg=(pads, mode, None), name=_PAD_NAMES[mode].format(S))


__all__ += ["pad"]


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize each group of num_groups channels (and the spatial axes) of every sample.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.group_norm(symgrad.tensor([[[1.0], [3.0]]]), 1).flatten().tolist()
    [-0.9999950528144836, 0.9999950528144836]
    """
    if input.dim() < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.dim()}")
    if input.shape[1] % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input of "
                           f"shape {input.shape!r} and num_groups={num_groups}")
    return _apply(OPS["GROUP_NORM"], (input, weight, bias), arg=(int(num_groups), eps))


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero whole channels with probability p (scaling the rest by 1/(1-p)) in training."""
    import numpy as np

    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    shape = tuple(input.shape[:2]) + (1,) * (input.dim() - 2) if input.dim() == 4 else \
        (input.shape[0],) + (1,) * (input.dim() - 1)
    if p == 1.0:
        keep = _t.zeros(shape, dtype=input.dtype)
    else:
        draws = _t._Generator.state.random(shape)
        keep = _t.tensor((draws >= p).astype(np.float64) / (1.0 - p), dtype=input.dtype)
    return input.mul_(keep) if inplace else input * keep


def _source_scale(n_in, n_out, align_corners, scale):
    """torch's area_pixel_compute_scale: output step in input pixels."""
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale if scale and scale > 0 else n_in / n_out


def _cubic_weights(t, a=-0.75):
    """The cubic convolution weights of taps -1, 0, 1, 2 at fraction t (torch's A = -0.75)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)


def _resample_matrix(n_in, n_out, mode, align_corners, scale, double=False):
    """The (n_out, n_in) matrix of one axis's resampling, with torch's source positions and rounding."""
    import numpy as np

    m = np.zeros((n_out, n_in))
    if mode in ("nearest", "nearest-exact"):
        # NOTE: torch computes the nearest source index in float32 (floorf(i * scale)); the exact
        # variant multiplies (i + 0.5) * scale in double and floors it as a float32 (floorf)
        if mode == "nearest" and n_out == n_in:
            index = np.arange(n_out)
        elif mode == "nearest" and n_out == 2 * n_in:
            index = np.arange(n_out) >> 1
        else:
            # the scale in float32 (nearest) or in the input's dtype (nearest-exact)
            f = np.float32(1.0 / scale) if scale and scale > 0 else np.float32(n_in) / np.float32(n_out)
            if mode == "nearest":
                index = np.floor(np.arange(n_out, dtype=np.float32) * f).astype(np.int64)
            else:
                if double:
                    f = 1.0 / scale if scale and scale > 0 else n_in / n_out
                index = np.floor(((np.arange(n_out) + 0.5) * np.float64(f)).astype(np.float32)).astype(np.int64)
        m[np.arange(n_out), np.minimum(index, n_in - 1)] = 1.0
        return m
    ratio = _source_scale(n_in, n_out, align_corners, scale)
    for i in range(n_out):
        if mode == "bicubic":
            src = ratio * i if align_corners else ratio * (i + 0.5) - 0.5
            low = int(math.floor(src))
            for k, w in zip(range(low - 1, low + 3), _cubic_weights(src - low)):
                m[i, min(max(k, 0), n_in - 1)] += w
            continue
        src = ratio * i if align_corners else max(ratio * (i + 0.5) - 0.5, 0.0)
        low = min(int(math.floor(src)), n_in - 1)
        high = min(low + 1, n_in - 1)
        weight = src - low
        m[i, low] += 1.0 - weight
        m[i, high] += weight
    return m


_INTERPOLATE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_RESAMPLE_NAMES = {"nearest": "Nearest", "nearest-exact": "NearestExact", "linear": "Linear",
                   "bilinear": "Bilinear", "bicubic": "Bicubic", "trilinear": "Trilinear"}


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial axes like torch: modes 'nearest' and 'nearest-exact' (1-3 spatial axes),
    'linear' (1), 'bilinear' and 'bicubic' (2), 'trilinear' (3) and 'area' (1-2, adaptive average
    pooling). Each axis is a product with a constant resampling matrix.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.interpolate(symgrad.tensor([[[1.0, 2.0]]]), scale_factor=2).tolist()
    [[[1.0, 1.0, 2.0, 2.0]]]
    >>> F.interpolate(symgrad.tensor([[[1.0, 2.0]]]), size=3, mode="linear", align_corners=True).tolist()
    [[[1.0, 1.5, 2.0]]]
    """
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating modes: linear | bilinear | "
                             "bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    S = input.dim() - 2
    spatial = tuple(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        scales = None
        if isinstance(size, (list, tuple)):
            if len(size) != S:
                raise ValueError("Input and output must have the same number of spatial dimensions, but got input "
                                 f"with spatial dimensions of {list(spatial)} and output size of {size}. Please "
                                 "provide input tensor in (N, C, d1, d2, ...,dK) format and output size in (o1, o2, "
                                 "...,oK) format.")
            if not all(isinstance(n, int) or (isinstance(n, Tensor) and not n.dtype.is_floating_point)
                       for n in size):
                raise TypeError("expected size to be one of int or Tuple[int] or Tuple[int, int] or Tuple[int, int, "
                                f"int], but got size with types {[type(n) for n in size]}")
            out = [int(n) for n in size]
        else:
            if not isinstance(size, int):
                raise TypeError(f"upsample_{mode}{S}d() received an invalid combination of arguments - got (Tensor, "
                                "list, NoneType)")
            out = [int(size)] * S
    elif scale_factor is not None:
        out = None
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != S:
                raise ValueError("Input and scale_factor must have the same number of spatial dimensions, but got "
                                 f"input with spatial dimensions of {list(spatial)} and scale_factor of shape "
                                 f"{scale_factor}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                                 "scale_factor in (s1, s2, ...,sK) format.")
            scales = [float(f) for f in scale_factor]
        else:
            scales = [float(scale_factor)] * S
    else:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if mode == "area" and out is None:
        recompute_scale_factor = True
    if out is None:
        out = [int(math.floor(float(n) * f)) for n, f in zip(spatial, scales)]
    if recompute_scale_factor:
        scales = None
    if antialias and not (mode in ("bilinear", "bicubic", "lanczos") and input.dim() == 4):
        raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos modes and requires a 4-D "
                         "tensor as input")
    needs = _INTERPOLATE_DIMS.get(mode)
    if needs is not None and S != needs and S in (1, 2, 3) and mode != "bicubic":
        raise NotImplementedError(f"Got {input.dim()}D input, but {mode} mode needs {needs + 2}D input")
    if S not in (1, 2, 3) or (mode not in _RESAMPLE_NAMES and mode != "area") or (needs is not None and S != needs):
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.dim()}D) for "
                                  "the modes: nearest | linear | bilinear | bicubic | trilinear | lanczos | area | "
                                  f"nearest-exact (got {mode})")
    if antialias:
        raise NotImplementedError("antialias=True is not supported yet")
    if mode == "area":
        if S == 1:
            return adaptive_avg_pool1d(input, out[0])
        if S == 2:
            return adaptive_avg_pool2d(input, tuple(out))
        raise NotImplementedError("interpolate mode 'area' of 5D input (adaptive_avg_pool3d) is not supported yet")
    if any(n <= 0 for n in (*spatial, *out)):
        axes = "DHW"[3 - S:]
        given = ", ".join(f"{a}: {n}" for a, n in zip(axes, spatial))
        wanted = ", ".join(f"{a}: {n}" for a, n in zip(axes, out))
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input ({given})"
                           f"{' and' if S == 1 else ''} output ({wanted})")
    scales = scales or (None,) * S
    double = input.dtype is _t.float64
    mats = [_t.tensor(_resample_matrix(n, o, mode, bool(align_corners), s, double), dtype=input.dtype)
            for n, o, s in zip(spatial, out, scales)]
    name = f"Upsample{_RESAMPLE_NAMES[mode]}{S}DBackward0"
    return _apply(OPS["RESAMPLE"], (input, *mats), arg=(mode, S), name=name, positions=(0,))


def adaptive_avg_pool1d(input, output_size):
    """Averages over `output_size` windows of the last axis (adaptive_avg_pool2d of a height-1 view)."""
    output_size = _adaptive_1d_size("adaptive_avg_pool1d", input, output_size)
    return adaptive_avg_pool2d(input.unsqueeze(-2), (1, output_size)).squeeze(-2)


__all__ += ["group_norm", "dropout2d", "interpolate", "adaptive_avg_pool1d"]
