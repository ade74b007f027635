"""Reverse mode over recorded operations. Gradients are tensors built from graph nodes, never numbers.

Every differentiable call records a `BackwardFunction` (named as torch names it: `MulBackward0`, ...)
holding the op, the values of its inputs at call time and `next_functions`, the functions that
produced those inputs. `backward` walks them from the output, in reverse topological order, asks each
op's `vjp` rule for its inputs' gradients and passes them on; leaves collect theirs in `.grad`.

>>> import symgrad
>>> x = symgrad.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4.])
"""
from __future__ import annotations

import functools

from .ops import Op

FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after they "
    "have already been freed). Saved intermediate values of the graph are freed when you call .backward() "
    "or autograd.grad(). Specify retain_graph=True if you need to backward through the graph a second time "
    "or if you need to access saved tensors after calling backward.")


class _GradMode:
    """Whether operations are recorded (torch.is_grad_enabled), and whether a backward walk is running
    (the walk builds a graph bounded by the forward graph, so it never realizes midway)."""

    __slots__ = ("enabled", "in_backward")

    def __init__(self):
        self.enabled = True
        self.in_backward = False


# NOTE: process-wide state held by one instance rather than class attributes: every op reads it, and
# 3.11's interpreter specializes a slot read on an instance but reads a class attribute the slow way
GradMode = _GradMode()


class BackwardFunction:
    """A recorded operation; what `tensor.grad_fn` returns.

    `saved` holds, per operand, a (node, grad_function) pair for tensors or the Python value itself.
    """

    __slots__ = ("op", "saved", "out", "arg", "next_functions", "positions", "_retained", "__weakref__")

    def __init__(self, op: Op, saved, out, arg, next_functions, positions):
        self.op, self.saved, self.out, self.arg = op, saved, out, arg
        self.next_functions = next_functions
        self.positions = positions  # which operands the next_functions entries stand for
        self._retained = None

    def name(self) -> str:
        # NOTE: torch's C++-defined functions report namespaced names (CopySlices, AccumulateGrad)
        name = type(self).__name__
        return f"torch::autograd::{name}" if name == "CopySlices" else name

    def __repr__(self):
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def __call__(self, grad, create_graph=False):
        """The gradients for `next_functions` given the gradient of this function's output."""
        from .tensor import Tensor

        if self.saved is None:
            raise RuntimeError(FREED_MESSAGE)
        inputs = [_revive(entry, create_graph) for entry in self.saved]
        out = Tensor._wrap(self.out, self if create_graph else None)
        if self.op.vjp is not None:
            grads = self.op.vjp(grad, inputs, out, self.arg)
        else:
            grads = _vjp_of_forward(self.op, grad, inputs, self.arg, create_graph)
        result = []
        for position in self.positions:
            g, operand = grads[position], inputs[position]
            if g is not None and isinstance(operand, Tensor):
                g = _reduce_to(g, operand)
            result.append(g)
        return result


class AccumulateGrad:
    """The gradient sink of a leaf tensor that requires grad."""

    __slots__ = ("variable", "next_functions", "__weakref__")

    def __init__(self, variable):
        self.variable = variable
        self.next_functions = ()

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {hex(id(self))}>"


@functools.cache
def backward_class(name: str) -> type:
    """The subclass called `name` (so `type(y.grad_fn).__name__ == "MulBackward0"`, as in torch)."""
    return type(name, (BackwardFunction,), {"__slots__": ()})


def _revive(entry, create_graph):
    from .tensor import Tensor

    if not isinstance(entry, tuple):
        return entry
    node, grad_function = entry
    return Tensor._wrap(node, grad_function if create_graph else None)


def _reduce_to(grad, operand):
    if tuple(grad.shape) != tuple(operand.shape):
        grad = grad.sum_to_size(operand.shape)
    if grad.dtype != operand.dtype and operand.dtype.is_floating_point:
        grad = grad.to(operand.dtype)
    return grad


def _vjp_of_forward(op: Op, grad, inputs, arg, create_graph):
    """The gradient of a composite op: differentiate its forward, rebuilt on the saved inputs."""
    from .tensor import Tensor, enable_grad

    leaves = [
        (x if create_graph else x.detach().requires_grad_()) if _wants_grad(x) else x
        for x in inputs
    ]
    with enable_grad():
        out = op.forward(*leaves, arg)
    wanted = [x for x in leaves if _wants_grad(x)]
    found = iter(_gradients(out, wanted, grad, create_graph=create_graph, allow_unused=True))
    return [next(found) if _wants_grad(x) else None for x in leaves]


def _wants_grad(x):
    from .tensor import Tensor

    return isinstance(x, Tensor) and x.dtype.is_floating_point


def _topological(roots):
    """Functions reachable from `roots`, each after every function that feeds it a gradient."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            fn, expanded = stack.pop()
            if expanded:
                order.append(fn)
                continue
            if id(fn) in seen:
                continue
            seen.add(id(fn))
            stack.append((fn, True))
            for child, _ in fn.next_functions:
                if child is not None and id(child) not in seen:
                    stack.append((child, False))
    order.reverse()
    return order


def run_backward(roots, grads, *, retain_graph=False, create_graph=False, capture=None):
    """Propagate `grads` from the tensors `roots` back to the leaves.

    With `capture` (a list of grad functions), gradients reaching those functions are returned in that
    order instead of being accumulated into `.grad` (this is `autograd.grad`).
    """
    functions = [r._grad_node for r in roots]
    pending = {}
    for fn, g in zip(functions, grads):
        _add(pending, fn, g)
    captured = {id(fn): None for fn in capture} if capture is not None else None
    touched = []
    outer = GradMode.in_backward
    try:
        _walk(functions, pending, captured, touched, retain_graph, create_graph)
    finally:
        GradMode.in_backward = outer
    if captured is not None:
        return [captured[id(fn)] for fn in capture]
    return touched


def _walk(functions, pending, captured, touched, retain_graph, create_graph):
    from .compiled import Tracing
    from .tensor import set_grad_enabled

    trace = Tracing.active
    # NOTE: a walk inside a walk is a composite op's vjp differentiating its forward: not the user's
    if trace is not None and not GradMode.in_backward and (retain_graph or create_graph or captured is not None):
        trace.fail("it calls backward with retain_graph, create_graph or autograd.grad")
    GradMode.in_backward = True

    with set_grad_enabled(create_graph):
        for fn in _topological(functions):
            grad = pending.pop(id(fn), None)
            if grad is None:
                continue
            if trace is not None:
                trace.walked.add(id(fn))
            if captured is not None and id(fn) in captured:
                captured[id(fn)] = grad
                if isinstance(fn, AccumulateGrad):
                    continue
            if isinstance(fn, AccumulateGrad):
                if captured is None:
                    touched.append(_accumulate(fn.variable, grad, create_graph))
                continue
            if fn._retained is not None and captured is None:
                for tensor in fn._retained:
                    touched.append(_accumulate(tensor, grad, create_graph))
            for (child, _), g in zip(fn.next_functions, fn(grad, create_graph)):
                if child is not None and g is not None:
                    _add(pending, child, g)
            if not retain_graph and fn.op.saves:
                fn.saved = None


def _add(pending, fn, g):
    previous = pending.get(id(fn))
    pending[id(fn)] = g if previous is None else previous + g
    # keep the function alive while its gradient is pending
    pending.setdefault(("fn", id(fn)), fn)


def _accumulate(tensor, grad, create_graph):
    from .compiled import Tracing

    if Tracing.active is not None:
        Tracing.active.see(tensor)
    if not create_graph:
        grad = grad.detach()
    if tensor._grad is None:
        tensor._grad = grad if create_graph else grad._alias()
    elif create_graph:
        tensor._grad = tensor._grad + grad
    else:
        # NOTE: in place, like torch: a reference to x.grad taken earlier sees the sum.
        tensor._grad._assign((tensor._grad + grad)._node)
    return tensor._grad


def clear_grads(tensors, set_to_none: bool = True) -> None:
    """Forget each tensor's gradient, or with set_to_none=False zero it in place (what zero_grad does)."""
    from .tensor import no_grad

    for t in tensors:
        if t.grad is None:
            continue
        if set_to_none:
            t.grad = None
        else:
            t.grad = t.grad.detach()
            with no_grad():
                t.grad.zero_()


def grad_of(outputs, inputs, grad_outputs=None, *, retain_graph=None, create_graph=False, allow_unused=False):
    """torch.autograd.grad: gradients of `outputs` with respect to `inputs`, returned, not accumulated.

    >>> import symgrad
    >>> x = symgrad.tensor(3.0, requires_grad=True)
    >>> symgrad.autograd.grad(x * x, x)
    (tensor(6.),)
    """
    # NOTE: the gradients stay lazy: they are computed when observed, and can be inspected before.
    return _gradients(outputs, inputs, grad_outputs, retain_graph=retain_graph, create_graph=create_graph,
                      allow_unused=allow_unused)


def _gradients(outputs, inputs, grad_outputs=None, *, retain_graph=None, create_graph=False, allow_unused=False):
    from .tensor import Tensor, _seed_gradients

    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    grads = _seed_gradients(outputs, grad_outputs)
    capture = [x._grad_node for x in inputs]
    for x, fn in zip(inputs, capture):
        if fn is None:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    retain = create_graph if retain_graph is None else retain_graph
    found = run_backward(outputs, grads, retain_graph=retain, create_graph=create_graph, capture=capture)
    for index, g in enumerate(found):
        if g is None and not allow_unused:
            raise RuntimeError(f"The differentiated Tensor at index {index} appears to not have been used in the "
                               "graph. Set allow_unused=True if this is the desired behavior.")
    return tuple(g if g is None or create_graph else g.detach() for g in found)
