"""Linear, Identity, Flatten."""
from __future__ import annotations

import math

from .._tensor_module import _t
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class Identity(Module):
    """Returns its input unchanged (arguments are accepted and ignored, as in torch).

    >>> import symgrad
    >>> symgrad.nn.Identity()(symgrad.ones(1))
    tensor([1.])
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x @ weight.T + bias, initialized as torch does: weight ~ kaiming_uniform(a=sqrt(5)), so
    U(-1/sqrt(in), 1/sqrt(in)), and bias ~ U(-1/sqrt(in), 1/sqrt(in)).

    >>> import symgrad
    >>> fc = symgrad.nn.Linear(3, 2)
    >>> fc, fc.weight.shape
    (Linear(in_features=3, out_features=2, bias=True), torch.Size([2, 3]))
    >>> fc(symgrad.ones(4, 3)).grad_fn
    <AddmmBackward0 object at 0x...>
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        dtype = dtype or _t.get_default_dtype()
        self.weight = Parameter(_t.zeros(out_features, in_features, dtype=dtype))
        if bias:
            self.bias = Parameter(_t.zeros(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Flattens dimensions start_dim..end_dim into one.

    >>> import symgrad
    >>> symgrad.nn.Flatten()(symgrad.zeros(2, 3, 4)).shape
    torch.Size([2, 12])
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
