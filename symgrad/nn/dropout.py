"""Dropout."""
from __future__ import annotations

from . import functional as F
from .module import Module


class Dropout(Module):
    """In training, zero elements with probability p and scale the rest by 1/(1-p); in eval, identity.

    >>> import symgrad
    >>> drop = symgrad.nn.Dropout(0.5).eval()
    >>> drop(symgrad.ones(3))
    tensor([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
