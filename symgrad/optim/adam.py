"""Adam (and AdamW, which is Adam with decoupled weight decay)."""
from __future__ import annotations

from .._tensor_module import _t
from ..tensor import no_grad
from ..compiled import runtime_value
from .optimizer import Optimizer, _check, _decayed_square_average, _params_with_grad, _set, _update


def _check_adam(lr, betas, eps, weight_decay):
    _check(0.0 <= lr, f"Invalid learning rate: {lr}")
    _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
    _check(0.0 <= betas[0] < 1.0, f"Invalid beta parameter at index 0: {betas[0]}")
    _check(0.0 <= betas[1] < 1.0, f"Invalid beta parameter at index 1: {betas[1]}")
    _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    """Adam, step for step torch.optim.Adam (its single-tensor algorithm), with amsgrad, maximize and
    (coupled, or with decoupled_weight_decay=True decoupled) weight decay.

    The bias corrections are Python floats computed from the step count, so every step after the
    second runs the same compiled program.

    >>> import symgrad
    >>> w = symgrad.nn.Parameter(symgrad.tensor([1.0]))
    >>> opt = symgrad.optim.Adam([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step(); round(w.item(), 4)
    0.9
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _check_adam(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    @no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = runtime_value(group, "lr")
            eps = runtime_value(group, "eps")
            weight_decay = runtime_value(group, "weight_decay")
            beta1, beta2 = runtime_value(group, "betas")
            for p in _params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0.0
                    state["exp_avg"] = _t.zeros_like(p)
                    state["exp_avg_sq"] = _t.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = _t.zeros_like(p)
                grad = -p.grad if group["maximize"] else p.grad
                state["step"] = step = runtime_value(state, "step") + 1
                if weight_decay != 0:
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * weight_decay)
                    else:
                        grad = grad.add(p, alpha=weight_decay)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                # one recorded call per updated tensor (see _update); the ops are torch's, in its order
                if 1 - beta1 < 0.5:
                    _set(exp_avg, _update(_lerp_small_weight, exp_avg, grad, 1 - beta1))
                else:
                    _set(exp_avg, _update(_lerp_large_weight, exp_avg, grad, 1.0 - (1 - beta1)))
                _set(exp_avg_sq, _update(_decayed_square_average, exp_avg_sq, grad, beta2, 1 - beta2))
                step_size = lr / (1 - beta1 ** step)
                bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
                second = exp_avg_sq
                if group["amsgrad"]:
                    second = state["max_exp_avg_sq"]
                    second.copy_(second.maximum(exp_avg_sq))
                _set(p, _update(_adam_step, p, exp_avg, second, bias_correction2_sqrt, eps, -step_size))
        return loss


# NOTE: these run inside one recorded call whose floats are runtime values, so they must not branch on a
# float's value: `t.add(x, alpha=a)` picks a plain add when a == 1, hence `t + x * a` (ADD_SCALED's own
# forward, so the same rounding).
def _lerp_small_weight(t, end, weight):
    return t + (end - t) * weight


def _lerp_large_weight(t, end, one_minus_weight):
    # NOTE: torch's CPU lerp for weight >= 0.5 computes from the end point, for its rounding
    return end - (end - t) * one_minus_weight


def _adam_step(p, exp_avg, second, bias_correction2_sqrt, eps, negative_step_size):
    return p + (exp_avg / (second.sqrt() / bias_correction2_sqrt + eps)) * negative_step_size


class AdamW(Adam):
    """Adam with decoupled weight decay (p *= 1 - lr * weight_decay before the Adam update).

    >>> import symgrad
    >>> symgrad.optim.AdamW([symgrad.nn.Parameter(symgrad.ones(1))]).defaults["weight_decay"]
    0.01
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
