"""Parameter: a leaf tensor that a Module registers as a parameter when assigned to an attribute."""
from __future__ import annotations

from ..tensor import Tensor, zeros


class Parameter(Tensor):
    """torch.nn.Parameter: shares `data`'s storage and requires grad (by default).

    >>> import symgrad
    >>> p = symgrad.nn.Parameter(symgrad.ones(2))
    >>> p
    Parameter containing:
    tensor([1., 1.], requires_grad=True)
    >>> p.is_leaf, type(p * 2).__name__
    (True, 'Tensor')
    """

    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = zeros(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter.__new__(): argument 'data' (position 1) must be Tensor, not "
                            f"{type(data).__name__}")
        p = object.__new__(cls)
        # NOTE: the cell is shared, as torch shares storage: in-place changes to either are seen by both
        p._cell = data._cell
        p._grad_node = None
        p._grad = None
        p._retains = False
        p._output_nr = 0
        if requires_grad:
            p.requires_grad_()
        return p

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__
