"""RMSprop."""
from __future__ import annotations

from .._tensor_module import _t
from ..tensor import no_grad
from ..compiled import runtime_value
from .optimizer import (Optimizer, _check, _decayed_square_average, _lerp_, _params_with_grad, _set,
                        _step_by_root, _update)


class RMSprop(Optimizer):
    """RMSprop, step for step torch.optim.RMSprop (centered, momentum, weight decay, maximize).

    >>> import symgrad
    >>> w = symgrad.nn.Parameter(symgrad.tensor([1.0]))
    >>> opt = symgrad.optim.RMSprop([w], lr=0.01)
    >>> (w * w).sum().backward(); opt.step(); round(w.item(), 4)
    0.9
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        _check(0.0 <= momentum, f"Invalid momentum value: {momentum}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        _check(0.0 <= alpha, f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr, alpha, eps, weight_decay, momentum = (runtime_value(group, key) for key in (
                "lr", "alpha", "eps", "weight_decay", "momentum"))
            for p in _params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0.0
                    state["square_avg"] = _t.zeros_like(p)
                    if momentum > 0:
                        state["momentum_buffer"] = _t.zeros_like(p)
                    if group["centered"]:
                        state["grad_avg"] = _t.zeros_like(p)
                grad = -p.grad if group["maximize"] else p.grad
                state["step"] = runtime_value(state, "step") + 1
                if weight_decay != 0:
                    grad = grad.add(p, alpha=weight_decay)
                square_avg = state["square_avg"]
                _set(square_avg, _update(_decayed_square_average, square_avg, grad, alpha, 1 - alpha))
                if not group["centered"] and momentum == 0:
                    _set(p, _update(_step_by_root, p, grad, square_avg, eps, -lr))
                    continue
                if group["centered"]:
                    grad_avg = state["grad_avg"]
                    _lerp_(grad_avg, grad, 1 - alpha)
                    avg = (square_avg - grad_avg * grad_avg).sqrt()
                else:
                    avg = square_avg.sqrt()
                avg = avg + eps
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(grad / avg)
                    p.add_(buf, alpha=-lr)
                else:
                    p.add_(grad / avg, alpha=-lr)
        return loss
