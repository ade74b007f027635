"""symgrad: PyTorch-style tensors whose operations compile to fused, vectorized native code.

Write torch code (`import symgrad as torch`); operations build a symbolic graph, `backward` extends it
with gradient graph, and values are computed by LLVM-compiled kernels when you look at them.

>>> import symgrad as torch
>>> x = torch.ones(2, 2, requires_grad=True)
>>> (3 * (x + 2) ** 2).mean().backward()
>>> x.grad
tensor([[4.5000, 4.5000],
        [4.5000, 4.5000]])
"""
from . import autograd
from ._repr import get_printoptions, set_printoptions
from .formula import formula, inspect, to_dot
from .tensor import (
    DTYPES, DoubleTensor, FloatTensor, LongTensor, Size, Tensor, arange, bool_, broadcast_shapes, dtype,
    enable_grad, float32, float64, from_numpy, full, full_like, get_default_dtype, int64, is_grad_enabled,
    manual_seed, maximum, minimum, no_grad, ones, ones_like, rand, rand_like, randn, randn_like, result_type,
    set_grad_enabled, tensor, where, zeros, zeros_like,
)
from .compiled import compile  # noqa: E402  (after .tensor, which it extends)
from .tensor import _arg_extreme, _extreme, _logsumexp, _product, _softmax, _variance, return_types

autograd.grad = autograd.grad_of

float = float32
double = float64
long = int64
bool = bool_

__version__ = "0.1.0"


def _function(name):
    def function(input, *args, **kwargs):
        return getattr(input, name)(*args, **kwargs)

    function.__name__ = name
    function.__doc__ = f"torch.{name}(input, ...): the same as `input.{name}(...)`."
    return function


add, sub, mul, div, pow, neg, exp, log, sqrt, tanh, sigmoid, relu, abs, sin, cos = map(_function, (
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "sin", "cos"))
clamp, clip, sign, reciprocal, sum, mean, norm, reshape, clone, erf = map(_function, (
    "clamp", "clip", "sign", "reciprocal", "sum", "mean", "norm", "reshape", "clone", "erf"))
lt, le, gt, ge, eq, ne, numel, flatten, detach = map(_function, (
    "lt", "le", "gt", "ge", "eq", "ne", "numel", "flatten", "detach"))
mm, bmm, mv, dot, outer, matmul, t, transpose, permute, squeeze, unsqueeze = map(_function, (
    "mm", "bmm", "mv", "dot", "outer", "matmul", "t", "transpose", "permute", "squeeze", "unsqueeze"))
gather, index_select, scatter_add, narrow, cumsum = map(_function, (
    "gather", "index_select", "scatter_add", "narrow", "cumsum"))
subtract, multiply, divide, true_divide, negative, absolute = sub, mul, div, div, neg, abs


from .indexing import cat, chunk, split, stack, unbind  # noqa: E402
from . import nn, optim  # noqa: E402
from . import models  # noqa: E402
from .serialization import load, save  # noqa: E402

concat = concatenate = cat


def isnan(input):
    """torch.isnan: True where `input` is NaN."""
    return input.isnan()


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


# Reductions whose argument errors name the input too (torch's messages count it: "got (Tensor, float)").
def max(input, *args, **kwargs):
    """torch.max: of all elements, `max(input, dim, keepdim=False)` -> (values, indices), or `max(input, other)`."""
    return _extreme(input, "max", args, kwargs, functional=True)


def min(input, *args, **kwargs):
    """torch.min: of all elements, `min(input, dim, keepdim=False)` -> (values, indices), or `min(input, other)`."""
    return _extreme(input, "min", args, kwargs, functional=True)


def argmax(input, *args, **kwargs):
    """torch.argmax(input, dim=None, keepdim=False)."""
    return _arg_extreme(input, "argmax", args, kwargs, functional=True)


def argmin(input, *args, **kwargs):
    """torch.argmin(input, dim=None, keepdim=False)."""
    return _arg_extreme(input, "argmin", args, kwargs, functional=True)


def prod(input, *args, dtype=None, **kwargs):
    return _product(input, args, kwargs, dtype, functional=True)


def var(input, *args, **kwargs):
    return _variance(input, "var", args, kwargs, functional=True)


def std(input, *args, **kwargs):
    return _variance(input, "std", args, kwargs, functional=True)


def logsumexp(input, *args, **kwargs):
    """torch.logsumexp(input, dim, keepdim=False)."""
    return _logsumexp(input, args, kwargs, functional=True)


def softmax(input, *args, **kwargs):
    """torch.softmax(input, dim, dtype=None)."""
    return _softmax(input, "softmax", args, kwargs, functional=True)


def log_softmax(input, *args, **kwargs):
    """torch.log_softmax(input, dim, dtype=None)."""
    return _softmax(input, "log_softmax", args, kwargs, functional=True)


def set_num_threads(int):  # noqa: A002 (torch's parameter name)
    """torch.set_num_threads: threads that large kernels are split across, and OpenBLAS's too.

    The default is the cores this process may use (or OMP_NUM_THREADS). Kernels too small to gain
    from threads always run on the calling thread. Changing it recompiles nothing.
    """
    import builtins
    import operator

    import codegen

    n = int
    if isinstance(n, builtins.bool) or not hasattr(n, "__index__"):
        raise RuntimeError(f"set_num_threads expects an int, but got {type(n).__name__}")
    n = operator.index(n)
    if n < 1:
        raise RuntimeError("set_num_threads expects a positive integer")
    codegen.set_num_threads(n)


def get_num_threads():
    """torch.get_num_threads: the thread count `set_num_threads` set (or the default)."""
    import codegen

    return codegen.get_num_threads()
