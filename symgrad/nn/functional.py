"""symgrad.nn.functional: torch.nn.functional's layers, activations and losses as functions.

Each records the op torch records (`F.relu` -> ReluBackward0, `F.mse_loss` -> MseLossBackward0,
`F.cross_entropy` -> NllLossBackward0 over LogSoftmaxBackward0); the ops live in symgrad/ops.py.

>>> import symgrad
>>> import symgrad.nn.functional as F
>>> x = symgrad.tensor([[1.0, -2.0]], requires_grad=True)
>>> F.mse_loss(F.relu(x), symgrad.zeros(1, 2))
tensor(0.5000, grad_fn=<MseLossBackward0>)
"""
from __future__ import annotations

import warnings

import numpy as np

from .._tensor_module import _t
from ..ops import OPS
from ..tensor import Tensor, _apply, _check_product, int64

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction: str, size_average=None, reduce=None) -> str:
    if size_average is not None or reduce is not None:
        # torch's legacy arguments: reduce=False wins, then size_average picks mean or sum
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _warn_size(input, target):
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(f"Using a target size ({target.shape!r}) that is different to the input size "
                      f"({input.shape!r}). This will likely lead to incorrect results due to broadcasting. Please "
                      "ensure they have the same size.", UserWarning, stacklevel=3)


def _as_float(value, like):
    return value if isinstance(value, Tensor) else _t.tensor(value, dtype=like.dtype)


# -- layers ----------------------------------------------------------------------------------------
def linear(input, weight, bias=None):
    """input @ weight.T + bias; on a matrix with a bias, one AddmmBackward0 as in torch.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.linear(symgrad.ones(1, 2), symgrad.ones(3, 2), symgrad.zeros(3))
    tensor([[2., 2., 2.]])
    """
    wt = weight.t()
    if input.dim() == 2:
        _check_product(input, wt)
        if bias is None:
            return input.mm(wt)
        _check_bias(bias, (input.shape[0], weight.shape[0]))
        return _apply(OPS["ADDMM"], (bias, input, wt))
    if input.dim() == 0:
        raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D and 2D")
    # NOTE: torch folds leading dimensions into rows, one GEMM, and views the result back
    rows = input.reshape(-1, input.shape[-1])
    _check_product(rows, wt)
    out = rows.mm(wt) if bias is None else _apply(OPS["ADDMM"], (_checked(bias, rows, weight), rows, wt))
    return out.reshape(tuple(input.shape[:-1]) + (weight.shape[0],))


def _checked(bias, rows, weight):
    _check_bias(bias, (rows.shape[0], weight.shape[0]))
    return bias


def _check_bias(bias, shape):
    bias_shape = bias._cell.node.shape
    if bias_shape == shape[-len(bias_shape):] and len(bias_shape) <= 2:
        return  # the common case (a bias of the output's width), without broadcasting shapes
    try:
        ok = len(bias.shape) <= 2 and _t.broadcast_shapes(tuple(bias.shape), shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        mismatch = next((k for k in range(1, len(bias.shape) + 1)
                         if bias.shape[-k] not in (1, shape[-k])), 1)
        raise RuntimeError(f"The expanded size of the tensor ({shape[-mismatch]}) must match the existing size "
                           f"({bias.shape[-mismatch]}) at non-singleton dimension {len(shape) - mismatch}.  "
                           f"Target sizes: [{', '.join(map(str, shape))}].  Tensor sizes: "
                           f"[{', '.join(map(str, bias.shape))}]")


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of `weight` picked by the int64 `input` (EmbeddingBackward0; no gradient at padding_idx).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.embedding(symgrad.tensor([1, 1]), symgrad.tensor([[0.0, 1.0], [2.0, 3.0]]))
    tensor([[2., 3.],
            [2., 3.]])
    """
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: max_norm, scale_grad_by_freq and sparse are not supported")
    if input.dtype is not int64:
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {_typename(input)} instead (while checking arguments for embedding)")
    if padding_idx is not None:
        padding_idx = _padding_index(padding_idx, weight.shape[0])
    values = input.detach().numpy()
    if values.size and (values.min() < 0 or values.max() >= weight.shape[0]):
        raise IndexError("index out of range in self")
    return _apply(OPS["EMBEDDING"], (weight, input), arg=padding_idx, positions=(0,))


def _padding_index(padding_idx, rows):
    if padding_idx > 0 and padding_idx >= rows:
        raise AssertionError("Padding_idx must be within num_embeddings")
    if padding_idx < 0:
        if padding_idx < -rows:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx += rows
    return padding_idx


def _typename(t):
    from .module import typename

    return typename(t)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the last dimensions `normalized_shape` (NativeLayerNormBackward0).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.layer_norm(symgrad.tensor([[1.0, 3.0]]), (2,))
    tensor([[-1.0000,  1.0000]])
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    n = len(shape)
    if n == 0 or tuple(input.shape[input.dim() - n:]) != shape or input.dim() < n:
        raise RuntimeError(f"Given normalized_shape=[{', '.join(map(str, shape))}], expected input with shape "
                           f"[*, {', '.join(map(str, shape))}], but got input of size{list(input.shape)}")
    axes = tuple(range(input.dim() - n, input.dim()))
    return _apply(OPS["LAYER_NORM"], (input, weight, bias), arg=(axes, float(eps)))


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero each element with probability `p` and scale the rest by 1/(1-p); the identity when not training."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        keep = _t.zeros(input.shape, dtype=input.dtype)
    else:
        draws = _t._Generator.state.random(tuple(input.shape))
        keep = _t.tensor((draws >= p).astype(np.float64) / (1.0 - p), dtype=input.dtype)
    if inplace:
        return input.mul_(keep)
    return input * keep


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    return input.flatten(start_dim, end_dim)


# -- activations -----------------------------------------------------------------------------------
def relu(input, inplace: bool = False):
    """max(x, 0) (ReluBackward0)."""
    return input.clamp_(min=0) if inplace else input.relu()


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    """x where x > 0, else negative_slope * x (LeakyReluBackward0).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.leaky_relu(symgrad.tensor([-2.0, 3.0]), 0.5)
    tensor([-1.,  3.])
    """
    out = _apply(OPS["LEAKY_RELU"], (input,), arg=float(negative_slope))
    return input.copy_(out) if inplace else out


def gelu(input, approximate: str = "none"):
    """x * Phi(x), exactly with erf or with torch's tanh approximation (GeluBackward0).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.gelu(symgrad.tensor([0.0, 1.0]))
    tensor([0.0000, 0.8413])
    """
    if approximate not in ("none", "tanh"):
        raise RuntimeError(f"approximate argument must be either none or tanh.")
    return _apply(OPS["GELU"], (input,), arg=approximate)


def silu(input, inplace: bool = False):
    """x * sigmoid(x) (SiluBackward0)."""
    out = _apply(OPS["SILU"], (input,))
    return input.copy_(out) if inplace else out


def tanh(input):
    return input.tanh()


def sigmoid(input):
    return input.sigmoid()


def _softmax_dim(name, ndim):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X "
                  "as an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along `dim` (SoftmaxBackward0)."""
    if dim is None:
        dim = _softmax_dim("softmax", input.dim())
    return input.softmax(dim, dtype=dtype) if dtype is not None else input.softmax(dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """x - logsumexp(x) along `dim` (LogSoftmaxBackward0)."""
    if dim is None:
        dim = _softmax_dim("log_softmax", input.dim())
    return input.log_softmax(dim, dtype=dtype) if dtype is not None else input.log_softmax(dim)


# -- losses ----------------------------------------------------------------------------------------
def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    """Mean (or sum, or each) of (input - target)^2 (MseLossBackward0).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.mse_loss(symgrad.tensor([1.0, 2.0]), symgrad.tensor([0.0, 0.0]), reduction="sum")
    tensor(5.)
    """
    reduction = _reduction(reduction, size_average, reduce)
    _warn_size(input, target)
    if weight is not None:
        # torch's weighted form is no longer one MseLossBackward0: the squares are weighted, then reduced
        losses = _apply(OPS["MSE_LOSS"], (input, target), arg="none") * weight
        return losses if reduction == "none" else _weighted(losses, reduction)
    return _apply(OPS["MSE_LOSS"], (input, target), arg=reduction)


def _weighted(losses, reduction):
    return losses.mean() if reduction == "mean" else losses.sum()


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    """Mean (or sum, or each) of |input - target|; torch records it as abs then mean/sum."""
    reduction = _reduction(reduction, size_average, reduce)
    _warn_size(input, target)
    losses = (input - target).abs()
    if weight is not None:
        losses = losses * weight
    return losses if reduction == "none" else _weighted(losses, reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - beta / 2, for d = input - target."""
    reduction = _reduction(reduction, size_average, reduce)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0.0:
        # torch: with beta 0 the loss is exactly l1_loss, and it is computed (and recorded) as such
        return l1_loss(input, target, reduction=reduction)
    _warn_size(input, target)
    return _apply(OPS["SMOOTH_L1_LOSS"], (input, target), arg=(reduction, float(beta)))


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2)."""
    reduction = _reduction(reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    _warn_size(input, target)
    if weight is not None:
        losses = _apply(OPS["HUBER_LOSS"], (input, target), arg=("none", float(delta))) * weight
        return losses if reduction == "none" else _weighted(losses, reduction)
    return _apply(OPS["HUBER_LOSS"], (input, target), arg=(reduction, float(delta)))


def _check_targets(input, target, ignore_index, classes):
    """torch's eager checks on class-index targets: batch size, dtype and range (before any op runs)."""
    if target.dtype is not int64:
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got "
                           f"{_t._TORCH_NAMES[target.dtype.name]}")
    batch = input.shape[0] if input.dim() > 1 else None
    target_batch = (target.shape[0] if target.dim() else 1) if batch is not None else None
    if input.dim() == 1:
        if target.dim() != 0:
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    elif batch != target_batch:
        raise ValueError(f"Expected input batch_size ({batch}) to match target batch_size ({target_batch}).")
    elif input.dim() == 2 and target.dim() != 1:
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    elif input.dim() > 2 and tuple(target.shape) != (input.shape[0],) + tuple(input.shape[2:]):
        raise RuntimeError(f"size mismatch (got input: {list(input.shape)}, target: {list(target.shape)})")
    values = target.detach().numpy()
    bad = (values != ignore_index) & ((values < 0) | (values >= classes))
    if bad.any():
        raise IndexError(f"Target {int(values[bad].reshape(-1)[0])} is out of bounds.")


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean"):
    """-input[n, target[n]] (weighted), averaged over the weights of the non-ignored targets.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.nll_loss(symgrad.tensor([[-1.0, -2.0], [-3.0, -4.0]]), symgrad.tensor([1, 0]))
    tensor(2.5000)
    """
    reduction = _reduction(reduction, size_average, reduce)
    classes = input.shape[0] if input.dim() == 1 else input.shape[1]
    _check_targets(input, target, ignore_index, classes)
    _check_weight(weight, classes)
    return _nll(input, target, reduction, ignore_index, weight)


def _nll(logp, target, reduction, ignore_index, weight):
    arg = (reduction, int(ignore_index), weight)
    if logp.dim() <= 2:
        return _apply(OPS["NLL_LOSS"], (logp, target), arg=arg, positions=(0,))
    if logp.dim() == 4:
        return _apply(OPS["NLL_LOSS"], (logp, target), arg=arg, name="NllLoss2DBackward0", positions=(0,))
    # torch views other spatial ranks as (N, C, d, 1), runs NllLoss2d, and views the result back
    n, c = logp.shape[:2]
    out = _apply(OPS["NLL_LOSS"], (logp.reshape(n, c, -1, 1), target.reshape(n, -1, 1)), arg=arg,
                 name="NllLoss2DBackward0", positions=(0,))
    return out.reshape(tuple(target.shape)) if reduction == "none" else out


def _check_weight(weight, classes):
    if weight is not None and (weight.dim() != 1 or weight.shape[0] != classes):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no classes but got "
                           f"weight tensor of shape: {list(weight.shape)}")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0):
    """log_softmax then nll_loss for class indices; -(target * log_softmax).sum(class dim) for
    class probabilities; with label smoothing mixed towards the uniform distribution, as in torch.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> x = symgrad.tensor([[0.0, 0.0]], requires_grad=True)
    >>> F.cross_entropy(x, symgrad.tensor([1]))
    tensor(0.6931, grad_fn=<NllLossBackward0>)
    """
    reduction = _reduction(reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.dim() == 1 else 1
    classes = input.shape[class_dim]
    _check_weight(weight, classes)
    logp = input.log_softmax(class_dim)
    if target.dtype.is_floating_point:
        if tuple(target.shape) != tuple(input.shape):
            raise RuntimeError("0D or 1D target tensor expected, multi-target not supported" if input.dim() == 2
                               else f"size mismatch (got input: {list(input.shape)}, target: {list(target.shape)})")
        return _probability_cross_entropy(logp, target, weight, reduction, label_smoothing, class_dim)
    _check_targets(input, target, ignore_index, classes)
    nll = _nll(logp, target, reduction, ignore_index, weight)
    if label_smoothing <= 0.0:
        return nll
    # torch: (1 - eps) * nll + eps / C * (the loss against the uniform distribution)
    shape = [1] * input.dim()
    shape[class_dim] = classes
    weighted = logp if weight is None else logp * weight.reshape(shape)
    smooth = -weighted.sum(class_dim)
    ignored = target == ignore_index
    smooth = _t.where(ignored, 0.0, smooth)
    if reduction == "mean":
        if weight is None:
            smooth = smooth.sum() / (~ignored).sum()
        else:
            # the weights of the targets (an ignored target matches no class), as torch divides by
            chosen = (target.unsqueeze(class_dim) == _t.arange(classes).reshape(shape)) & ~ignored.unsqueeze(
                class_dim)
            smooth = smooth.sum() / _t.where(chosen, weight.reshape(shape), 0.0).sum()
    elif reduction == "sum":
        smooth = smooth.sum()
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def _probability_cross_entropy(logp, target, weight, reduction, label_smoothing, class_dim):
    classes = logp.shape[class_dim]
    if label_smoothing > 0.0:
        target = target * (1 - label_smoothing) + label_smoothing / classes
    terms = logp * target
    if weight is not None:
        shape = [1] * logp.dim()
        shape[class_dim] = classes
        terms = terms * weight.reshape(shape)
    if reduction == "mean":
        count = logp.numel() // classes if classes else 0
        # torch divides by a C++ scalar here, which it records as DivBackward1 with one input
        return _apply(OPS["DIV"], (-terms.sum(), count), name="DivBackward1", positions=(0,))
    if reduction == "sum":
        return -terms.sum()
    return -terms.sum(class_dim)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
    """-(t log x + (1 - t) log(1 - x)) for probabilities x, logs clamped at -100 (BinaryCrossEntropyBackward0).

    Unlike torch, values of `input` outside [0, 1] are not checked eagerly (that would compute the
    forward midway); they give nan.

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.binary_cross_entropy(symgrad.tensor([0.5]), symgrad.tensor([1.0]))
    tensor(0.6931)
    """
    reduction = _reduction(reduction, size_average, reduce)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Using a target size ({target.shape!r}) that is different to the input size "
                         f"({input.shape!r}) is deprecated. Please ensure they have the same size.")
    if weight is not None:
        weight = weight.expand(input.shape)
    return _apply(OPS["BINARY_CROSS_ENTROPY"], (input, _as_float(target, input)), arg=(reduction, weight))


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None):
    """binary_cross_entropy(sigmoid(x), t) computed stably from the logits x (finite for any x).

    >>> import symgrad
    >>> import symgrad.nn.functional as F
    >>> F.binary_cross_entropy_with_logits(symgrad.tensor([200.0, -200.0]), symgrad.tensor([0.0, 1.0]))
    tensor(200.)
    """
    reduction = _reduction(reduction, size_average, reduce)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Target size ({target.shape!r}) must be the same as input size ({input.shape!r})")
    return _apply(OPS["BCE_WITH_LOGITS"], (input, _as_float(target, input)), arg=(reduction, weight, pos_weight))


def one_hot(tensor, num_classes: int = -1):
    """int64 rows with a 1 at each index."""
    values = tensor.detach().numpy()
    if values.size and values.min() < 0:
        raise RuntimeError("Class values must be non-negative.")
    classes = int(values.max()) + 1 if num_classes == -1 else num_classes
    if values.size and values.max() >= classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    return _t.tensor(np.eye(classes, dtype=np.int64)[values])


__all__ = [
    "linear", "embedding", "layer_norm", "dropout", "flatten", "relu", "leaky_relu", "gelu", "silu", "tanh",
    "sigmoid", "softmax", "log_softmax", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "nll_loss",
    "cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "one_hot",
]


def _erf(input):
    """erf(x) (ErfBackward0); torch's `torch.erf`, which symgrad's Tensor does not expose yet."""
    return _apply(OPS["ERF"], (input,))

from .functional_conv import *  # noqa: E402,F401,F403  (convolution, pooling, batch norm, pad)
from .functional_conv import __all__ as _conv_all  # noqa: E402

__all__ += _conv_all
