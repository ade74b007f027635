"""symgrad.nn.utils: clip_grad_norm_ (and clip_grad_value_)."""
from __future__ import annotations

import math

from .._tensor_module import _t
from ..tensor import Tensor, no_grad


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None):
    """Scale gradients in place so that their joint norm is at most `max_norm`; returns the norm
    before clipping (a 0-d tensor). The scale is computed as graph, never read back, so a training
    loop stays one program per step.

    >>> import symgrad
    >>> w = symgrad.tensor([3.0, 4.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> symgrad.nn.utils.clip_grad_norm_([w], 1.0)
    tensor(10.)
    >>> w.grad
    tensor([0.6000, 0.8000])
    """
    grads = _grads(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return _t.tensor(0.0)
    with no_grad():
        if norm_type == math.inf:
            norms = [g.abs().max() for g in grads]
            total = norms[0]
            for n in norms[1:]:
                total = total.maximum(n)
        else:
            total = None
            for g in grads:
                part = (g.abs() ** norm_type).sum() if norm_type != 2.0 else (g * g).sum()
                total = part if total is None else total + part
            total = total.sqrt() if norm_type == 2.0 else total ** (1.0 / norm_type)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                               "so it cannot be clipped. To disable this error and scale the gradients by the "
                               "non-finite norm anyway, set `error_if_nonfinite=False`")
        # torch: clip_coef = max_norm / (total + 1e-6), clamped to at most 1
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef)
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters):
    """All parameters flattened into one vector."""
    return _t.cat([p.reshape(-1) for p in parameters])
