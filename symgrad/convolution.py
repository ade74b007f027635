"""Convolution, pooling and batch norm, written in graph primitives (the rules behind ops.py's entries).

Everything spatial rests on one movement primitive, WINDOW: an affine view whose input index is an
integer-linear function of its output index. Sliding windows (im2col) are such a view of the padded
input, `cols[n, c, kh, kw, oh, ow] = xpad[n, c, s*oh + d*kh, s*ow + d*kw]`, so they cost nothing until
a GEMM wants them as a matrix, when the scheduler stores them once. Their adjoint, col2im (`fold`), is
WINDOW's adjoint UNWINDOW: every window entry added, in one pass, to the padded-input position it
came from (a zero fill, then one loop over the columns with an accumulating store), and the padding
sliced off. So

- convolution is pad -> WINDOW -> one GEMM (`W (O, C*K) @ cols (C*K, N*L)`), groups as a batched GEMM;
- its backward is two GEMMs (`dW = g @ cols.T`, `dcols = W.T @ g`) and a fold;
- pooling reduces WINDOW views (MAX, SUM) and folds the spread gradient back;
- batch norm is reductions and elementwise arithmetic, with torch's closed-form backward.

Shapes here are (N, C, *spatial) with 1 or 2 (or more) spatial axes; `S` is their count.
"""
from __future__ import annotations

import math

from .graph import Node


# -- geometry --------------------------------------------------------------------------------------
def out_size(n, k, s, lo, hi, d, ceil_mode=False):
    """Positions of a window of `k` taps (dilation d) sliding with stride s over n + lo + hi."""
    span = n + lo + hi - d * (k - 1) - 1
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + lo:  # torch: the last window must start inside the input or left padding
            out -= 1
        return out
    return span // s + 1


def _tensor():
    from ._tensor_module import _t  # the module symgrad.tensor (the package exports a function of that name)

    return _t


# -- primitives ------------------------------------------------------------------------------------
def _window_node(x, maps, shape):
    node = x._node
    return _tensor().Tensor._wrap(Node.make("WINDOW", (node,), tuple(map(tuple, maps)), tuple(shape), node.dtype))


def _recording(x):
    """Whether an op on x is being recorded: a gradient rule run with create_graph=True."""
    t = _tensor()
    return t.is_grad_enabled() and x.requires_grad


def window(x, maps, shape):
    """The WINDOW view: input axis k at output index i is `sum(maps[k][j] * i[j]) + maps[k][-1]`.
    Unrecorded (inside composites and gradient rules), except where a gradient rule runs with
    create_graph=True: then it is recorded (AS_WINDOWS), so that its gradient has a gradient."""
    if _recording(x):
        from .ops import OPS

        return _tensor()._apply(OPS["AS_WINDOWS"], (x,), arg=(tuple(map(tuple, maps)), tuple(shape)))
    return _window_node(x, maps, shape)


def _sum(x, axes, keepdim):
    """A sum over axes: unrecorded inside composites and gradient rules, recorded under create_graph."""
    if _recording(x):
        return x.sum(dim=tuple(axes), keepdim=keepdim)
    return x._reduced("SUM", tuple(axes), keepdim)


def as_windows_forward(x, arg):
    return _window_node(x, *arg)


def as_windows_vjp(g, inputs, out, arg):
    """The adjoint of a WINDOW view: g added to the input position each element reads."""
    (x,), (maps, _) = inputs, arg
    return (unwindow(g, maps, x.shape),)


def unwindow(x, maps, shape):
    """WINDOW's adjoint: a new tensor of `shape`, zero but where the view `window(., maps, x.shape)` of
    it reads, which gets the sum of the elements of x read there. Every position a map reaches must
    lie inside `shape` (true of the maps a WINDOW view of such a tensor has). Unrecorded, as window()."""
    maps, shape = tuple(map(tuple, maps)), tuple(shape)
    t = _tensor()
    if _recording(x):
        from .ops import OPS

        return t._apply(OPS["AS_UNWINDOW"], (x,), arg=(maps, shape))
    return as_unwindow_forward(x, (maps, shape))


def as_unwindow_forward(x, arg):
    maps, shape = arg
    node = x._node
    return _tensor().Tensor._wrap(Node.make("UNWINDOW", (node,), maps, shape, node.dtype))


def as_unwindow_vjp(g, inputs, out, arg):
    (x,), (maps, _) = inputs, arg
    return (window(g, maps, x.shape),)


def pad(x, pads, value=0.0):
    """x with its last len(pads) axes padded by (lo, hi) each, filled with `value` (ASSEMBLE)."""
    from .indexing import assemble, full_region

    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return x
    lead = x.dim() - len(pads)
    shape = tuple(x.shape[:lead]) + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[lead:], pads))
    fill = _tensor().full(shape, value, dtype=x.dtype)
    region = full_region(x.shape[:lead]) + tuple((lo, 1) for lo, _ in pads)
    return assemble([fill, x], [full_region(shape), region], shape)


def windows(xp, kernel, stride, dilation, out, kernel_last=False):
    """Sliding windows of a padded `xp` (*lead, *spatial): (*lead, *kernel, *out), or with
    `kernel_last` (*lead, *out, *kernel) (so that a reduction over the taps runs innermost)."""
    maps, shape = _window_maps(xp.shape, kernel, stride, dilation, out, kernel_last)
    return window(xp, maps, shape)


def _window_maps(size, kernel, stride, dilation, out, kernel_last=False):
    """The WINDOW maps and shape of `windows` over a tensor of shape `size`."""
    lead, S = len(size) - len(kernel), len(kernel)
    rank = lead + 2 * S
    k_at = [lead + S + i if kernel_last else lead + i for i in range(S)]
    o_at = [lead + i if kernel_last else lead + S + i for i in range(S)]
    maps = []
    for a in range(lead):
        maps.append([1 if j == a else 0 for j in range(rank)] + [0])
    for i in range(S):
        row = [0] * (rank + 1)
        row[k_at[i]] = dilation[i]
        row[o_at[i]] = stride[i]
        maps.append(row)
    shape = [0] * rank
    shape[:lead] = size[:lead]
    for i in range(S):
        shape[k_at[i]], shape[o_at[i]] = kernel[i], out[i]
    return maps, shape


def fold(cols, size, kernel, stride, dilation, lo):
    """The adjoint of `windows(pad(x, lo, ...))` in its (*lead, *kernel, *out) layout: for every
    position of x (of spatial `size`), the sum of the window entries that read it.

    The entries are added into a padded-input-shaped buffer (UNWINDOW) and the padding is sliced
    off: one pass over the columns. (Gathering per input position instead would need each tap's
    validity tested, or the columns copied into a zero-padded, stride-dilated buffer first: that
    cost three passes over a buffer up to 4x the columns' size.)"""
    from .indexing import slice_region

    S = len(kernel)
    lead = cols.dim() - 2 * S
    out = tuple(cols.shape[lead + S:])
    reach = [d * (k - 1) for k, d in zip(kernel, dilation)]
    extent = tuple(max(n + p, r + s * (o - 1) + 1) for n, p, r, s, o in zip(size, lo, reach, stride, out))
    padded = tuple(cols.shape[:lead]) + extent
    maps, _ = _window_maps(padded, kernel, stride, dilation, out)
    spread = unwindow(cols, maps, padded)
    if extent == tuple(size):  # no padding to drop (lo is then 0)
        return spread
    region = tuple((0, 1) for _ in range(lead)) + tuple((p, 1) for p in lo)
    return slice_region(spread, region, tuple(cols.shape[:lead]) + tuple(size))


# -- convolution -----------------------------------------------------------------------------------
# arg = (stride, pads ((lo, hi) per axis), dilation, groups)
def _columns(x, weight, arg):
    """im2col as a (groups, C/groups * K, N * L) matrix, and the output's spatial size."""
    stride, pads, dilation, groups = arg
    S = len(stride)
    n, c = x.shape[:2]
    kernel = tuple(weight.shape[2:])
    out = tuple(out_size(m, k, s, lo, hi, d) for m, k, s, (lo, hi), d in
                zip(x.shape[2:], kernel, stride, pads, dilation))
    cols = windows(pad(x, pads), kernel, stride, dilation, out)  # (N, C, *K, *O)
    rows = c * math.prod(kernel)
    if groups == 1:
        order = (1, *range(2, 2 + S), 0, *range(2 + S, 2 + 2 * S))
        return cols.permute(order).reshape(rows, n * math.prod(out)), out
    cols = cols.reshape(n, groups, c // groups, *kernel, *out)
    order = (1, 2, *range(3, 3 + S), 0, *range(3 + S, 3 + 2 * S))
    return cols.permute(order).reshape(groups, rows // groups, n * math.prod(out)), out


def conv_forward(x, weight, bias, arg):
    groups = arg[3]
    n, o = x.shape[0], weight.shape[0]
    cols, out = _columns(x, weight, arg)
    S = len(out)
    if groups == 1:
        y = weight.reshape(o, -1).matmul(cols).reshape(o, n, *out).permute(1, 0, *range(2, 2 + S))
    else:
        w = weight.reshape(groups, o // groups, -1)
        y = w.matmul(cols).reshape(groups, o // groups, n, *out)
        y = y.permute(2, 0, 1, *range(3, 3 + S)).reshape(n, o, *out)
    if bias is not None:
        y = y + bias.reshape(o, *(1,) * S)
    return y


def conv_vjp(g, inputs, out, arg):
    x, weight, bias = inputs
    stride, pads, dilation, groups = arg
    n, c = x.shape[:2]
    o = weight.shape[0]
    kernel = tuple(weight.shape[2:])
    S = len(kernel)
    osz = tuple(g.shape[2:])
    cols, _ = _columns(x, weight, arg)
    if groups == 1:
        g2 = g.permute(1, 0, *range(2, 2 + S)).reshape(o, -1)
        dw = g2.matmul(cols.mT).reshape(weight.shape)
        dcols = weight.reshape(o, -1).mT.matmul(g2).reshape(c, *kernel, n, *osz)
        dcols = dcols.permute(1 + S, 0, *range(1, 1 + S), *range(2 + S, 2 + 2 * S))
    else:
        og, cg = o // groups, c // groups
        g2 = g.reshape(n, groups, og, -1).permute(1, 2, 0, 3).reshape(groups, og, -1)
        dw = g2.matmul(cols.mT).reshape(weight.shape)
        w = weight.reshape(groups, og, -1)
        dcols = w.mT.matmul(g2).reshape(groups, cg, *kernel, n, *osz)
        dcols = dcols.permute(2 + S, 0, 1, *range(2, 2 + S), *range(3 + S, 3 + 2 * S)).reshape(n, c, *kernel, *osz)
    dx = fold(dcols, tuple(x.shape[2:]), kernel, stride, dilation, tuple(lo for lo, _ in pads))
    db = None if bias is None else g.sum(dim=(0, *range(2, 2 + S)))
    return dx, dw, db


# -- pooling ---------------------------------------------------------------------------------------
# arg = (kernel, stride, pads ((lo, hi) per axis, hi including the ceil_mode overhang), dilation, out)
def _taps(x, arg, value):
    kernel, stride, pads, dilation, out = arg
    return windows(pad(x, pads, value), kernel, stride, dilation, out, kernel_last=True)


def _tap_axes(x, arg):
    S = len(arg[0])
    return tuple(range(x.dim(), x.dim() + S))


def _spread(g, x, arg, taps_value):
    """Fold a per-tap gradient (*lead, *out, *kernel) back onto x."""
    kernel, stride, pads, dilation, out = arg
    S = len(kernel)
    lead = x.dim() - S
    order = (*range(lead), *range(lead + S, lead + 2 * S), *range(lead, lead + S))
    return fold(taps_value.permute(order), tuple(x.shape[lead:]), kernel, stride, dilation, tuple(lo for lo, _ in pads))


def max_pool_forward(x, arg):
    return _taps(x, arg, -math.inf)._reduced("MAX", _tap_axes(x, arg), False)


def max_pool_indices(x, out, arg):
    """The tap each output took (the first of tied maxima, as torch), as a position within the window,
    and the window (for the gradient)."""
    t = _tensor()
    taps = _taps(x, arg, -math.inf)
    axes = _tap_axes(x, arg)
    expanded = out.reshape(*out.shape, *(1,) * len(axes))
    position = taps._positions(axes)
    first = t.where(taps == expanded, position, math.prod(arg[0]))._reduced("MIN", axes, True)
    return position == first


def max_pool_vjp(g, inputs, out, arg):
    (x,) = inputs
    chosen = max_pool_indices(x, out, arg)
    S = len(arg[0])
    spread = chosen._select(g.reshape(*g.shape, *(1,) * S), 0.0)
    return (_spread(g, x, arg, spread),)


def max_pool_flat_indices(x, out, arg):
    """torch's `return_indices`: the flat spatial position of each maximum in the unpadded input."""
    t = _tensor()
    kernel, stride, pads, dilation, osz = arg
    S = len(kernel)
    chosen = max_pool_indices(x, out, arg)
    lead = x.dim() - S
    index = None
    size = tuple(x.shape[lead:])
    # per spatial axis: position = o * s - lo + k * d, row-major over the input's spatial axes
    scale = 1
    for i in reversed(range(S)):
        view_o = [1] * (lead + 2 * S)
        view_o[lead + i] = osz[i]
        view_k = [1] * (lead + 2 * S)
        view_k[lead + S + i] = kernel[i]
        pos = t.arange(osz[i]).reshape(view_o) * stride[i] - pads[i][0] + t.arange(kernel[i]).reshape(view_k) * dilation[i]
        term = pos * scale
        index = term if index is None else index + term
        scale *= size[i]
    picked = t.where(chosen, index, 0)
    return picked._reduced("SUM", _tap_axes(x, arg), False)


def _pool_counts(x, arg, count_include_pad, divisor_override):
    """What each average divides by: torch's pool size (windows clipped to the padded input, and with
    count_include_pad=False to the input itself), or divisor_override."""
    if divisor_override:
        return divisor_override
    t = _tensor()
    kernel, stride, pads, dilation, out = arg
    S = len(kernel)
    counts = 1
    for i in range(S):
        n, (lo, hi) = x.shape[x.dim() - S + i], pads[i]
        start = t.arange(out[i]) * stride[i] - lo
        end = t.minimum(start + kernel[i], t.full((out[i],), n + lo, dtype=t.int64))
        if not count_include_pad:
            start = t.maximum(start, t.zeros(out[i], dtype=t.int64))
            end = t.minimum(end, t.full((out[i],), n, dtype=t.int64))
        size = (end - start).reshape(*(out[i] if j == i else 1 for j in range(S)))
        counts = size if isinstance(counts, int) else counts * size
    return counts.to(x.dtype)


def avg_pool_forward(x, arg):
    pool, count_include_pad, divisor_override = arg
    total = _taps(x, pool, 0.0)._reduced("SUM", _tap_axes(x, pool), False)
    return total / _pool_counts(x, pool, count_include_pad, divisor_override)


def avg_pool_vjp(g, inputs, out, arg):
    (x,) = inputs
    pool, count_include_pad, divisor_override = arg
    S = len(pool[0])
    share = g / _pool_counts(x, pool, count_include_pad, divisor_override)
    spread = share.reshape(*share.shape, *(1,) * S).expand(*share.shape, *pool[0])
    return (_spread(g, x, pool, spread),)


def adaptive_windows(n, o):
    """torch's adaptive windows along an axis of n for o outputs: window i is [floor(i*n/o), ceil((i+1)*n/o)).
    As (o, k) positions, k the longest window; a shorter window repeats its last position (a max is not
    changed by a repeat, and the first maximal tap is never a repeat)."""
    starts = [(i * n) // o for i in range(o)]
    ends = [-(-((i + 1) * n) // o) for i in range(o)]
    k = max((e - s for s, e in zip(starts, ends)), default=1)
    return [[min(s + j, e - 1) for j in range(k)] for s, e in zip(starts, ends)], k


def adaptive_max_table(size, out):
    """(OH, OW, KH*KW) int64 flat positions (h * W + w) of each output's window taps, row-major in the
    window like torch's scan (so the first maximal tap is torch's index)."""
    import numpy as np

    (h, w), (oh, ow) = size, out
    rows, kh = adaptive_windows(h, oh)
    cols, kw = adaptive_windows(w, ow)
    r = np.asarray(rows, dtype=np.int64).reshape(oh, 1, kh, 1)
    c = np.asarray(cols, dtype=np.int64).reshape(1, ow, 1, kw)
    return (r * w + c).reshape(oh, ow, kh * kw)


def _adaptive_taps(x, table):
    lead = tuple(x.shape[:-2])
    flat = x.reshape(*lead, x.shape[-2] * x.shape[-1])
    index = table.reshape(-1).expand(*lead, table.numel())
    return flat.gather(-1, index).reshape(*lead, *table.shape)


# inputs (x, table (OH, OW, K) of flat window positions): a gather of the taps and max over them; the
# gradient goes to the first maximal tap (torch's index), scatter-added
def adaptive_max_pool_forward(x, table, arg):
    return _adaptive_taps(x, table).max(dim=-1).values


def adaptive_max_pool_vjp(g, inputs, out, arg):
    """g scatter-added to each window's first maximum (recorded ops, so it has a gradient itself)."""
    x, table = inputs
    lead = tuple(x.shape[:-2])
    position = adaptive_max_pool_indices(x.detach(), table).reshape(*lead, -1)
    dx = _tensor().zeros(*lead, x.shape[-2] * x.shape[-1], dtype=g.dtype)
    return dx.scatter_add(-1, position, g.reshape(*lead, -1)).reshape(x.shape), None


def adaptive_max_pool_indices(x, table):
    """torch's `return_indices`: the flat spatial position (h * W + w) of each window's first maximum."""
    taps = _adaptive_taps(x, table)
    first = taps.max(dim=-1).indices
    return table.expand(*taps.shape).gather(-1, first.unsqueeze(-1)).squeeze(-1)


# -- batch norm ------------------------------------------------------------------------------------
# inputs (x, weight, bias, running_mean, running_var); arg = (training, eps)
def batch_axes(x):
    return (0, *range(2, x.dim()))


def _channel(v, x):
    return v.reshape(-1, *(1,) * (x.dim() - 2))


def batch_stats(x):
    """The batch mean and biased variance per channel (keepdim), as the forward computes them."""
    axes = batch_axes(x)
    count = x.numel() // x.shape[1]
    mean = _sum(x, axes, True) / count
    centered = x - mean
    var = _sum(centered * centered, axes, True) / count
    return mean, var


def _normalized(x, running_mean, running_var, arg):
    training, eps = arg
    if training:
        mean, var = batch_stats(x)
    else:
        mean, var = _channel(running_mean, x), _channel(running_var, x)
    invstd = (var + eps).sqrt().reciprocal()
    return (x - mean) * invstd, invstd


def batch_norm_forward(x, weight, bias, running_mean, running_var, arg):
    y, _ = _normalized(x, running_mean, running_var, arg)
    if weight is not None:
        y = y * _channel(weight, x)
    if bias is not None:
        y = y + _channel(bias, x)
    return y


def batch_norm_vjp(g, inputs, out, arg):
    x, weight, bias, running_mean, running_var = inputs
    training = arg[0]
    axes = batch_axes(x)
    xhat, invstd = _normalized(x, running_mean, running_var, arg)
    scale = invstd if weight is None else invstd * _channel(weight, x)
    if training:
        count = x.numel() // x.shape[1]
        g_mean = _sum(g, axes, True) / count
        gx_mean = _sum(g * xhat, axes, True) / count
        dx = (g - g_mean - xhat * gx_mean) * scale
    else:
        dx = g * scale
    dw = None if weight is None else _sum(g * xhat, axes, False)
    db = None if bias is None else _sum(g, axes, False)
    return dx, dw, db, None, None


# -- padding ---------------------------------------------------------------------------------------
# arg = (pads ((lo, hi) per trailing axis), mode, value)
def _edge_index(n, lo, hi, mode):
    """int64 positions into an axis of n elements for each of n + lo + hi padded positions."""
    t = _tensor()
    i = t.arange(n + lo + hi) - lo
    if mode == "replicate":
        return i.clamp(0, n - 1)
    # reflect: mirror about the first and the last element (no repeat of the edge)
    return (n - 1) - ((n - 1) - i.abs()).abs()


def _circular_index(n, lo, hi):
    """int64 positions for circular padding: negative pads crop first, then positions wrap around what
    is left (torch's order), at most once."""
    t = _tensor()
    start = max(-lo, 0)
    m = n - start - max(-hi, 0)
    k = t.arange(max(lo, 0) + m + max(hi, 0)) - max(lo, 0)
    return t.where(k < 0, k + m, t.where(k >= m, k - m, k)) + start


def pad_forward(x, arg):
    pads, mode, value = arg
    if mode == "constant":
        return pad(x, pads, value)
    lead = x.dim() - len(pads)
    for i, (lo, hi) in enumerate(pads):
        axis = lead + i
        if lo == 0 and hi == 0:
            continue
        if mode == "circular":
            index = _circular_index(x.shape[axis], lo, hi)
        else:
            index = _edge_index(x.shape[axis], lo, hi, mode)
        view = [1] * x.dim()
        view[axis] = index.shape[0]
        shape = list(x.shape)
        shape[axis] = index.shape[0]
        x = x.gather(axis, index.reshape(view).expand(*shape))
    return x


def adaptive_avg_pool_forward(x, rows, cols, arg):
    return rows.matmul(x).matmul(cols.mT)


# -- group norm, resampling ------------------------------------------------------------------------
# group_norm: inputs (x, weight, bias), arg = (groups, eps)
def group_norm_forward(x, weight, bias, arg):
    groups, eps = arg
    n, c = x.shape[:2]
    # NOTE: recorded reductions (mean), since the gradient is that of this forward
    rows = x.reshape(n, groups, -1)
    centered = rows - rows.mean(dim=2, keepdim=True)
    var = (centered * centered).mean(dim=2, keepdim=True)
    y = (centered * (var + eps).sqrt().reciprocal()).reshape(x.shape)
    if weight is not None:
        y = y * _channel(weight, x)
    if bias is not None:
        y = y + _channel(bias, x)
    return y


def resample_forward(x, *operands):
    """x (N, C, *spatial) resampled by one constant (out, in) matrix per spatial axis (operands: the
    matrices, then arg): the last axis as x @ m.T, the one before as m @ x, a third as m @ x viewed
    (..., D, H * W)."""
    *mats, _ = operands
    S = len(mats)
    y = x.matmul(mats[-1].mT)
    if S >= 2:
        y = mats[-2].matmul(y)
    if S == 3:
        lead, (d, h, w) = tuple(y.shape[:-3]), tuple(y.shape[-3:])
        y = mats[0].matmul(y.reshape(*lead, d, h * w)).reshape(*lead, mats[0].shape[0], h, w)
    return y
