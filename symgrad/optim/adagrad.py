"""Adagrad."""
from __future__ import annotations

from .._tensor_module import _t
from ..tensor import no_grad
from ..compiled import runtime_value
from .optimizer import Optimizer, _check, _params_with_grad, _set, _step_by_root, _update


class Adagrad(Optimizer):
    """Adagrad, step for step torch.optim.Adagrad (lr_decay, weight decay, initial accumulator, maximize).

    >>> import symgrad
    >>> w = symgrad.nn.Parameter(symgrad.tensor([1.0]))
    >>> opt = symgrad.optim.Adagrad([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step(); round(w.item(), 4)
    0.9
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= lr_decay, f"Invalid lr_decay value: {lr_decay}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        _check(0.0 <= initial_accumulator_value,
               f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        # torch creates Adagrad's state eagerly, so state_dict lists it before the first step
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = 0.0
                state["sum"] = _t.full_like(p, float(group["initial_accumulator_value"]))

    @no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr, lr_decay, eps, weight_decay = (runtime_value(group, key) for key in (
                "lr", "lr_decay", "eps", "weight_decay"))
            for p in _params_with_grad(group):
                state = self.state[p]
                state["step"] = step = runtime_value(state, "step") + 1
                grad = -p.grad if group["maximize"] else p.grad
                if weight_decay != 0:
                    grad = grad.add(p, alpha=weight_decay)
                clr = lr / (1 + (step - 1) * lr_decay)
                total = state["sum"]
                _set(total, _update(_add_square, total, grad))
                _set(p, _update(_step_by_root, p, grad, total, eps, -clr))
        return loss


def _add_square(total, grad):
    return total + grad * grad
