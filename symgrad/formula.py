"""Formulas for people: what symgrad computes, written out.

`inspect(*tensors)` shows the program that would compute pending tensors: each fused kernel's SymPy
formula (with your names for the inputs), its LLVM IR, and the native assembly.

>>> import symgrad
>>> x = symgrad.tensor([1.0, 2.0], requires_grad=True)
>>> (g,) = symgrad.autograd.grad((x * x).sum(), x)
>>> print(symgrad.inspect(g, names={"x": x}).formulas()[0])
out0[i] = 2*x[i]
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .schedule import plan_for
from .tensor import Tensor


@dataclass
class Inspection:
    """The kernels of one program: formulas, LLVM IR and assembly."""

    kernels: list
    ir: str
    native: object
    names: dict

    def formulas(self) -> list[str]:
        """One line per store: `out[index] = formula`, reductions as `sum over ...`."""
        lines = []
        for kernel in self.kernels:
            rename = {load.symbol: sympy.Symbol(self._name(load)) for load in kernel.loads}
            for store in kernel.stores:
                target = self.names.get(("out", store.buffer), f"out{len(lines)}")
                index = "[i]" if any(store.strides) else ""
                body = store.expr.xreplace(rename)
                if store.reduce:
                    lines.append(f"{target}{index} = {store.reduce} over i of {body}")
                else:
                    lines.append(f"{target}{index} = {body}")
        return lines

    def _name(self, load) -> str:
        base = self.names.get(("in", load.buffer), f"in{load.buffer}")
        return f"{base}[i]" if any(load.strides) else base

    def assembly(self) -> str:
        return self.native.assembly()

    def __str__(self):
        return "\n".join(self.formulas())


def inspect(*tensors: Tensor, names: dict | None = None) -> Inspection:
    """The program that computes `tensors` (which must not be computed yet): formulas, IR, assembly."""
    found = plan_for([t._node for t in tensors])
    if found is None:
        raise ValueError("inspect(): these tensors are already computed; inspect them before observing them")
    plan, targets, leaves, scalars = found
    labels = {}
    by_node = {id(t._node): name for name, t in (names or {}).items()}
    for slot, leaf in enumerate(leaves):
        if id(leaf) in by_node:
            labels[("in", slot)] = by_node[id(leaf)]
    return Inspection(list(plan.program.kernels), plan.native.ir, plan.native, labels)
