"""Optimizer: torch.optim.Optimizer's parameter groups, state, state_dict and repr.

Steps are tensor operations on the parameters under no_grad (in-place, like torch's), with every
hyperparameter passed as a Python float: floats are runtime values in symgrad, so the compiled update
never changes when a scheduler changes `lr`. The updates stay pending and are computed together with
the next forward pass, as one fused program.

>>> import symgrad
>>> w = symgrad.nn.Parameter(symgrad.ones(2))
>>> opt = symgrad.optim.SGD([w], lr=0.5)
>>> (w * w).sum().backward(); opt.step(); w
Parameter containing:
tensor([0., 0.], requires_grad=True)
"""
from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from itertools import chain

import numpy as np

from ..autograd import clear_grads
from .._tensor_module import _t
from ..ops import OPS
from ..tensor import Tensor, _apply, enable_grad, no_grad


class _RequiredParameter:
    """Marks a hyperparameter that every parameter group must give (torch.optim.optimizer.required)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _typename(obj):
    from ..nn.module import typename

    return typename(obj)


class Optimizer:
    """Base class: holds `param_groups` (dicts of params and options) and per-parameter `state`.

    Subclasses define `step`. See the module docstring for an example.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {_typename(params)}")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        # validate every group before adding any, so a bad group leaves nothing half-built
        for group in param_groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (missing options take the defaults).

        >>> import symgrad
        >>> a, b = symgrad.nn.Parameter(symgrad.ones(1)), symgrad.nn.Parameter(symgrad.ones(1))
        >>> opt = symgrad.optim.SGD([a], lr=0.1)
        >>> opt.add_param_group({"params": [b], "lr": 0.01})
        >>> [g["lr"] for g in opt.param_groups]
        [0.1, 0.01]
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is " + _typename(param))
            if not (param.is_leaf or param.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
        seen = set()
        for group in self.param_groups:
            seen.update(id(p) for p in group["params"])
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        param_group["params"] = params
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every gradient (or, with set_to_none=False, zero it in place)."""
        clear_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):
        raise NotImplementedError

    def _closure(self, closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{options..., 'params': [indices]}]}, as in torch;
        step counts are 0-d float32 tensors there (symgrad keeps them as Python floats while training).

        >>> import symgrad
        >>> opt = symgrad.optim.Adam([symgrad.nn.Parameter(symgrad.ones(1))])
        >>> opt.state_dict()["param_groups"][0]["params"]
        [0]
        """
        mapping, index = {}, 0
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                if id(p) not in mapping:
                    mapping[id(p)] = index
                    index += 1
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, values in self.state.items():
            key = mapping[id(p)] if isinstance(p, Tensor) else p
            state[key] = {k: (_t.tensor(float(v)) if k == "step" else v) for k, v in values.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and state saved by `state_dict` (of this optimizer class, same group sizes).

        Tensors become symgrad tensors in the parameter's dtype; numpy arrays are accepted too.
        """
        groups = self.param_groups
        saved_groups = copy.deepcopy([{k: v for k, v in g.items()} for g in state_dict["param_groups"]])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of optimizer's "
                             "group")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state = defaultdict(dict)
        for key, values in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = {k: _state_value(k, v, param) for k, v in values.items()}
            else:
                state[key] = values
        new_groups = []
        for group, saved in zip(groups, saved_groups):
            saved["params"] = group["params"]
            new_groups.append(saved)
        self.state = state
        self.param_groups = new_groups

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        text = type(self).__name__ + " ("
        for k, group in enumerate(self.param_groups):
            text += f"\nParameter Group {k}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"


def _state_value(key, value, param):
    if key == "step":
        return float(value.item() if hasattr(value, "item") else value)
    if isinstance(value, Tensor):
        value = value.detach().clone()
        return value.to(param.dtype) if value.is_floating_point() else value
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        array = np.array(value)
        dtype = param.dtype if array.dtype.kind == "f" else None
        return _t.tensor(array, dtype=dtype)
    return value


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


_UPDATE = OPS["UPDATE"]


def _update(fn, *operands):
    """`fn(*operands)` as one recorded call (the same ops, so the same rounding): a loop replays it at
    once instead of op by op."""
    return _apply(_UPDATE, operands, fn)


def _set(t, value) -> None:
    """`t` takes the value of a same-shaped, same-dtype result (what an optimizer's in-place step does)."""
    t._assign(value._cell.node)


def _add_scaled(t, x, alpha):
    """t + x * alpha, what `t.add_(x, alpha=alpha)` computes, without branching on alpha's value (so a
    learning rate stays a runtime value of a compiled step)."""
    return t + x * alpha


def _decayed_square_average(average, grad, decay, one_minus_decay):
    """average * decay + grad² * (1 - decay): Adam's second moment, RMSprop's square average."""
    return average * decay + (grad * grad) * one_minus_decay


def _step_by_root(p, numerator, second, eps, negative_lr):
    """p - lr * numerator / (sqrt(second) + eps): RMSprop's and Adagrad's step."""
    return p + (numerator / (second.sqrt() + eps)) * negative_lr


def _lerp_(t, end, weight: float):
    """t += weight * (end - t) in place, split as torch's CPU lerp is, so rounding matches."""
    if weight < 0.5:
        return t.add_(end - t, alpha=weight)
    return t.copy_(end.sub(end - t, alpha=1.0 - weight))


def _params_with_grad(group):
    return [p for p in group["params"] if p.grad is not None]
