"""symgrad.nn.init: torch.nn.init's in-place initializers.

Random values come from symgrad's generator (`symgrad.manual_seed`); torch's random streams are not
reproduced, so compare distributions, or copy weights through `state_dict`, never raw draws.

>>> import symgrad
>>> w = symgrad.zeros(3, 4)
>>> _ = symgrad.nn.init.xavier_uniform_(w)
>>> bool((w.abs() <= (6 / 7) ** 0.5).all())
True
"""
from __future__ import annotations

import math

import numpy as np

from .._tensor_module import _t
from ..tensor import no_grad


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (torch's table).

    >>> calculate_gain("relu")
    1.4142135623730951
    """
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
    if nonlinearity in linear or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.dim() < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of {['fan_in', 'fan_out']}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor, values: np.ndarray):
    with no_grad():
        tensor.copy_(_t.tensor(values, dtype=tensor.dtype))
    return tensor


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with draws from U(a, b).

    >>> import symgrad
    >>> w = symgrad.nn.init.uniform_(symgrad.zeros(100), -1.0, 1.0)
    >>> bool((w.abs() <= 1).all())
    True
    """
    return _fill(tensor, _t._Generator.state.uniform(a, b, tuple(tensor.shape)))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with draws from N(mean, std^2)."""
    return _fill(tensor, _t._Generator.state.normal(mean, std, tuple(tensor.shape)))


def constant_(tensor, val: float):
    """Fill with `val`."""
    return _fill(tensor, np.full(tuple(tensor.shape), val))


def zeros_(tensor):
    """Fill with zeros.

    >>> import symgrad
    >>> symgrad.nn.init.zeros_(symgrad.ones(2))
    tensor([0., 0.])
    """
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with ones."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(2.0 / float(fan_in + fan_out)) * math.sqrt(3.0)
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)) (Glorot)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))


def kaiming_uniform_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He); Linear uses it with a = sqrt(5).

    >>> import symgrad
    >>> w = symgrad.nn.init.kaiming_uniform_(symgrad.zeros(10, 4), a=5 ** 0.5)
    >>> bool((w.abs() <= 0.5).all())
    True
    """
    if 0 in tuple(tensor.shape):
        return tensor
    fan = _fan(tensor, mode)
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """N(0, std^2) with std = gain / sqrt(fan) (He)."""
    if 0 in tuple(tensor.shape):
        return tensor
    fan = _fan(tensor, mode)
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


