"""symgrad.compile: run a whole Python function of tensors as one cached native program.

`compile(fn)` returns a function that behaves like `fn`. Its first call runs `fn` eagerly (that is
when a training step creates its `.grad` tensors and optimizer state). The next two calls run `fn`
while *tracing* it: every tensor operation, the backward walk and the in-place updates build one
pending graph, nothing is computed midway, and at the end the whole graph becomes one program. When
the two traces agree (same program, same inputs, same effects, same constants), later calls skip
Python entirely: they check the guards, bind the input buffers and runtime scalars, run the program
and apply its effects.

What a compiled call does, exactly as the traced call did:
- computes the values of the tensors `fn` returns (new tensors every call, like eager calls);
- updates in place the tensors `fn` updated (`w -= lr * w.grad`, `grad.zero_()`, optimizer state);
- sets the `.grad` of the tensors whose gradient `fn` replaced (created by backward, set to None).

Guards (a failing guard traces again; a function whose traces keep differing runs eagerly):
- the arguments: tensors by shape, dtype, strides and `requires_grad`; integers, booleans, strings and
  None by value; Python floats are runtime values, except where Python itself looked at one (`lr > 0`,
  `2 * lr` computed in Python, a float equal to a constant of the program): those are guarded by value;
- the tensors `fn` reads from elsewhere (parameters, closures): the same objects, by shape, dtype,
  strides, whether they require grad and whether their `.grad` is set;
- grad mode.

Like `jax.jit`, Python code inside `fn` runs only while tracing: Python state it reads other than its
arguments (a global step counter, a list it appends to) is frozen at the trace, and its side effects
(prints) happen only then. Pass values that change as arguments. Functions that cannot be one program
run eagerly every call (still correct, at eager speed): those that read tensor values (`item()`,
`print(tensor)`, boolean masks), make data that differs between calls (`randn`, dropout), keep autograd
history past the call (return a loss without calling backward on it), or call `backward(retain_graph=True)`.
`compiled.explain()` says which case a function is in.

>>> import symgrad
>>> w = symgrad.ones(3, requires_grad=True)
>>> @symgrad.compile
... def step(x, lr):
...     loss = ((w * x).sum() - 1) ** 2
...     loss.backward()
...     with symgrad.no_grad():
...         w.sub_(lr * w.grad)
...         w.grad.zero_()
...     return loss
>>> x = symgrad.tensor([1.0, 2.0, 3.0])
>>> losses = [step(x, 0.01).item() for _ in range(5)]
>>> [round(v, 4) for v in losses]
[25.0, 12.96, 6.7185, 3.4829, 1.8055]
>>> step.explain()
'compiled: 2 calls replayed as one native program, 3 traced or eager'
"""
from __future__ import annotations

import builtins
import functools
import re
import weakref

from . import tensor as _tensor
from .autograd import AccumulateGrad, GradMode
from .graph import ITEMSIZE, Node
from .replay import Replay, _constant_structure, value_read
from .schedule import plan_for

# A guard that fails right after tracing this often means the traces do not describe the function.
MAX_RETRACES = 8
# Traces that keep differing mean the function reads Python state that changes (Adam's step count).
MAX_TRACES = 6


class _Tracing:
    """The trace being recorded (like GradMode: process-wide state that tensor.py consults)."""

    __slots__ = ("active",)

    def __init__(self):
        self.active = None


# NOTE: one instance, as GradMode: every op reads `active`, and 3.11 specializes a slot read on an
# instance but reads a class attribute the slow way
Tracing = _Tracing()


# -- floats that remember where they came from ------------------------------------------------------
# While tracing, float arguments and the floats `runtime_value` reads (an optimizer's learning rate and
# step count) are _TracedFloats. Python arithmetic on them gives _TracedFloats carrying the *formula*
# of their value: ("arg", path), ("slot", j), ("const", v), or (operator, formula, ...). A runtime
# scalar of the program made from one is recomputed by that formula at every compiled call, with
# Python's own operators in Python's order, so it rounds exactly as the eager code did.
class _TracedFloat(float):
    """A float whose formula the trace keeps (see above)."""

    __slots__ = ("formula",)

    def _looked_at(self):
        """Python used the value itself (compared it, hashed it): the call depends on it exactly."""
        trace = Tracing.active
        if trace is not None:
            trace.specialized.update(_leaves(self.formula))


def _traced(value, formula):
    result = _TracedFloat(value)
    result.formula = formula
    return result


def _formula_of(value):
    return value.formula if isinstance(value, _TracedFloat) else ("const", value)


def _arithmetic(name, symbol, swapped):
    base = getattr(float, name)

    def method(self, *others):
        result = base(self, *others)
        if result is NotImplemented or not isinstance(result, float) or any(
                not isinstance(o, (int, float)) for o in others):
            return result
        operands = [self.formula, *map(_formula_of, others)]
        if swapped:
            operands.reverse()
        return _traced(result, (symbol, *operands))

    method.__name__ = name
    return method


def _inspection(name):
    base = getattr(float, name)

    def method(self, *others):
        self._looked_at()
        for other in others:
            if isinstance(other, _TracedFloat):
                other._looked_at()
        return base(self, *others)

    method.__name__ = name
    return method


for _symbol, _name in (("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "truediv"), ("//", "floordiv"),
                       ("%", "mod"), ("**", "pow")):
    setattr(_TracedFloat, f"__{_name}__", _arithmetic(f"__{_name}__", _symbol, False))
    setattr(_TracedFloat, f"__r{_name}__", _arithmetic(f"__r{_name}__", _symbol, True))
for _symbol, _name in (("-", "__neg__"), ("+", "__pos__"), ("abs", "__abs__")):
    setattr(_TracedFloat, _name, _arithmetic(_name, _symbol, False))
# NOTE: float() is not here: our own code converts operands with it, and a float equal to an argument
# or a runtime value is guarded by value anyway (see _bind_scalars)
for _name in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__bool__", "__int__", "__round__",
              "__trunc__", "__floor__", "__ceil__", "__format__", "__repr__", "__str__", "__divmod__",
              "__rdivmod__", "as_integer_ratio", "is_integer", "hex"):
    setattr(_TracedFloat, _name, _inspection(_name))
_TracedFloat.__hash__ = lambda self: (self._looked_at(), float.__hash__(self))[1]


def _leaves(formula):
    """The ("arg", path) and ("slot", j) leaves of a formula."""
    found, stack = set(), [formula]
    while stack:
        f = stack.pop()
        if f[0] in ("arg", "slot"):
            found.add(f)
        elif f[0] != "const":
            stack.extend(f[1:])
    return found


def _traced_arguments(value, path):
    """`value` with its floats replaced by _TracedFloats that remember where they came from."""
    if type(value) is float:
        return _traced(value, ("arg", path))
    items = _children(value)
    if items is None:
        return value
    return _rebuild(type(value), [(k, _traced_arguments(v, (*path, k))) for k, v in items])


def _children(value):
    """The (key, element) pairs of a tuple, list or dict (the containers arguments and results may
    nest tensors and floats in); None for anything else."""
    kind = type(value)
    if kind is tuple or kind is list:
        return list(enumerate(value))
    if kind is dict:
        return list(value.items())
    return None


def _rebuild(kind, items):
    return dict(items) if kind is dict else kind(v for _, v in items)


def runtime_value(container, key):
    """`container[key]`, a float (or a tuple of floats) that a compiled call reads afresh every time.

    What optimizers read their hyperparameters and step counts with: a scheduler's new learning rate
    or Adam's next step count is a runtime value of the compiled program, not a constant of its trace.
    Writing a value computed from it back to `container[key]` is an effect the compiled call repeats.

    >>> group = {"lr": 0.1}
    >>> runtime_value(group, "lr")
    0.1
    """
    value = container[key]
    trace = Tracing.active
    if trace is None:
        return tuple(float(v) for v in value) if isinstance(value, (tuple, list)) else float(value)
    if isinstance(value, (tuple, list)):
        return tuple(trace.slot(container, key, k, v) for k, v in enumerate(value))
    return trace.slot(container, key, None, value)


def _argument_key(value):
    """What a call depends on of one argument (floats are runtime values, not part of the key)."""
    kind = type(value)
    if kind is float:
        return float
    if isinstance(value, _tensor.Tensor):
        node = value._cell.node
        return node.shape, node.dtype, value._grad_node is not None
    if kind in (int, bool, str) or value is None:
        return kind, value
    items = _children(value)
    if items is not None:
        return kind, tuple((k, _argument_key(v)) for k, v in items)
    return kind, id(value)


def _plain(descriptor):
    """A source descriptor as a comparable value (a weak reference by the identity of its object)."""
    kind, where = descriptor
    return (kind, where) if kind == "arg" else (kind, id(where()))


def _at(args, path):
    for k in path:
        args = args[k]
    return args


# -- recording one call --------------------------------------------------------------------------
class _Unsupported(Exception):
    """Why a trace cannot become a program."""


class _Trace:
    """What one traced call touched: the tensors from outside, the cells it changed, the scalars."""

    def __init__(self, args):
        self.failure = None
        self.inner_cells, self.inner_tensors = set(), set()
        self.keep = []  # inner objects stay alive while their ids mean something
        self.sources, self.source_index = [], {}  # outside cells: (descriptor, cell, node at first sight)
        self.seen, self.seen_index = [], {}  # outside tensors: (descriptor, tensor, grad, grad function)
        self.assigned = {}
        self.walked = set()
        self.scalar_formulas, self.scalar_plain = {}, set()
        self.specialized = set()  # formula leaves the call depends on exactly
        self.slots, self.slot_index, self.containers = [], {}, {}  # what runtime_value read
        self.leaf_values = {}  # the value of every formula leaf at this call
        self.arg_tensors = {}
        stack = [(a, (k,)) for k, a in enumerate(args)]
        while stack:
            value, path = stack.pop()
            if isinstance(value, _tensor.Tensor):
                self.arg_tensors.setdefault(id(value), path)
            elif _children(value) is not None:
                stack.extend((v, (*path, k)) for k, v in _children(value))
            elif isinstance(value, float):
                self.leaf_values[("arg", path)] = float.__float__(value)

    def fail(self, reason):
        if self.failure is None:
            self.failure = reason

    # hooks called by tensor.py and autograd.py ---------------------------------------------------
    def created(self, t):
        self.inner_tensors.add(id(t))
        self.inner_cells.add(id(t._cell))
        self.keep.append(t)

    def see(self, t):
        """First sight of a tensor: remember how it was if it comes from outside the call."""
        if id(t) in self.seen_index or id(t) in self.inner_tensors:
            return
        self.seen_index[id(t)] = len(self.seen)
        path = self.arg_tensors.get(id(t))
        descriptor = ("arg", path) if path is not None else ("ref", weakref.ref(t))
        self.seen.append((descriptor, t, t._grad, t._grad_node))
        fn = t._grad_node
        if fn is not None and type(fn) is not AccumulateGrad:
            self.fail("it uses a tensor with autograd history from before the call")
        cell = t._cell
        if id(cell) in self.source_index or id(cell) in self.inner_cells:
            return
        node = cell.node
        if not node.realized and _constant_structure(node, 0) is None:
            # NOTE: a pending value from before the call (`y = 2 * x + 3`) is computed once, now,
            # rather than by every run of the program; a pending constant (a zeroed gradient) stays
            # part of the program's formulas
            _tensor._realize_now([node], [])
        self.source_index[id(cell)] = len(self.sources)
        self.sources.append((descriptor, cell, cell.node))

    def operands(self, operands):
        Tensor = _tensor.Tensor
        for o in operands:
            if isinstance(o, Tensor):
                self.see(o)

    def assigning(self, t):
        self.see(t)
        self.assigned[id(t._cell)] = t._cell

    def scalar(self, value, node):
        if isinstance(value, _TracedFloat):
            self.scalar_formulas.setdefault(id(node), []).append(value.formula)
        else:
            self.scalar_plain.add(id(node))
        self.keep.append(node)

    def slot(self, container, key, index, value):
        """A _TracedFloat for `container[key]` (its element `index`), read by runtime_value."""
        if isinstance(value, _TracedFloat):
            return value  # written back earlier in this call: its formula already says where it comes from
        place = (id(container), key, index)
        j = self.slot_index.get(place)
        if j is None:
            j = self.slot_index[place] = len(self.slots)
            self.slots.append((container, key, index))
            self.containers.setdefault((id(container), key), (container, key, container[key]))
            self.leaf_values[("slot", j)] = float(value)
        return _traced(float(value), ("slot", j))

    def restore_slots(self):
        """Put plain floats back where the call wrote _TracedFloats (they must not outlive the trace);
        the writes a compiled call repeats: ((container, key), formula)."""
        writes = []
        for container, key, before in self.containers.values():
            now = container[key]
            if isinstance(now, (tuple, list)) and any(isinstance(v, _TracedFloat) for v in now):
                container[key] = type(now)(float(v) for v in now)
                self.fail("it writes a traced tuple back")
            elif isinstance(now, _TracedFloat):
                container[key] = float.__float__(now)
                writes.append(((container, key), now.formula))
            elif now is not before and isinstance(now, float):
                writes.append(((container, key), ("const", now)))
        return writes

    # the end of the call ------------------------------------------------------------------------
    def program(self, result, writes):
        """The replayable program of this call (computing its values now), or raise _Unsupported."""
        if self.failure is not None:
            raise _Unsupported(self.failure)
        targets, target_index = [], {}

        def target(cell):
            node = cell.node
            if id(cell) in self.source_index and node is self.sources[self.source_index[id(cell)]][2]:
                return "source", self.source_index[id(cell)]
            if not node.realized and _constant_structure(node, 0) is not None:
                return "const", node  # NOTE: a zeroed gradient stays a pending constant, as in eager mode
            if node.realized:
                raise _Unsupported("a value it returns or stores was computed before the call ended")
            if id(node) not in target_index:
                target_index[id(node)] = len(targets)
                targets.append(node)
            return "target", target_index[id(node)]

        cells, cell_index = [], {}

        def cell_of(t):
            """('source', k) for an outside cell, ('inner', j) for a cell the call made."""
            cell = t._cell
            k = self.source_index.get(id(cell))
            if k is not None:
                return "source", k
            j = cell_index.get(id(cell))
            if j is None:
                j = cell_index[id(cell)] = len(cells)
                cells.append(target(cell))
            return "inner", j

        updates = [(self.source_index[i], target(cell)) for i, cell in self.assigned.items() if i in self.source_index]
        tensors, tensor_index = [], {}

        def inner_tensor(t):
            j = tensor_index.get(id(t))
            if j is None:
                fn = t._grad_node
                if fn is not None and (type(fn) is AccumulateGrad or id(fn) not in self.walked):
                    raise _Unsupported("it returns a tensor with autograd history (call backward inside)")
                j = tensor_index[id(t)] = len(tensors)
                tensors.append((cell_of(t), fn, t._output_nr))
            return j

        grads, guards = [], []
        for s, (descriptor, t, grad, fn) in enumerate(self.seen):
            if t._grad_node is not fn:
                raise _Unsupported("it changes whether a tensor from outside requires grad")
            guard = None
            if grad is not None:
                k = self.source_index.get(id(grad._cell))
                guard = ("cell", k) if k is not None else ("any",)
            guards.append((s, fn is not None, guard))
            if t._grad is not grad:
                new = t._grad
                if new is None:
                    grads.append((s, None))
                elif id(new) in self.inner_tensors:
                    grads.append((s, inner_tensor(new)))
                else:
                    raise _Unsupported("it sets a .grad to a tensor from outside the call")
        returns = self._returns(result, inner_tensor)
        if not targets:
            raise _Unsupported("it computes nothing")
        found = plan_for(targets)
        if found is None or found[1] != targets:
            raise _Unsupported("its results are views of its inputs")
        plan, _, leaves, scalars = found
        leaf_sources = self._bind_leaves(leaves)
        scalar_sources, same = self._bind_scalars(scalars)
        specialized = tuple(sorted((leaf, self.leaf_values[leaf]) for leaf in self.specialized))
        scalar_program = _ScalarProgram(scalar_sources, same, specialized, writes, self.slots)
        plan.run(targets, leaves, scalars)
        return _Program(plan, [(d, node if node.buffer is None else (node.shape, node.dtype, node.strides))
                               for d, _, node in self.sources],
                        [(d, has_fn, guard) for (d, *_), (_, has_fn, guard) in zip(self.seen, guards)],
                        leaf_sources, scalar_program,
                        updates, cells, tensors, grads, returns)

    def _returns(self, value, inner_tensor):
        Tensor = _tensor.Tensor
        if isinstance(value, Tensor):
            if id(value) in self.inner_tensors:
                return "new", inner_tensor(value)
            self.see(value)
            return "same", self.seen[self.seen_index[id(value)]][0]
        items = _children(value)
        if items is not None:
            return type(value), tuple((k, self._returns(v, inner_tensor)) for k, v in items)
        if isinstance(value, _TracedFloat):
            Tracing.active = self  # NOTE: handing a float back is looking at it
            value._looked_at()
            Tracing.active = None
            return "value", float.__float__(value)
        if isinstance(value, (int, float, str, bool)) or value is None:
            return "value", value
        raise _Unsupported(f"it returns a {type(value).__name__}")

    def _bind_leaves(self, leaves):
        by_node = {id(node): k for k, (_, _, node) in enumerate(self.sources)}
        by_buffer = {}
        for k, (_, _, node) in enumerate(self.sources):
            by_buffer.setdefault(id(node.buffer), []).append(k)
        bound = []
        for leaf in leaves:
            k = by_node.get(id(leaf))
            if k is None:
                owners = by_buffer.get(id(leaf.buffer), ())
                if len(owners) > 1:
                    raise _Unsupported("it reads one buffer through two tensors from outside")
                if not owners:
                    # NOTE: data made inside the call (a pooling matrix built with tensor(...), or randn):
                    # a constant of the program when both traces made the same values (see signature)
                    bound.append((None, leaf, ITEMSIZE[leaf.dtype]))
                    continue
                k = owners[0]
            entry = self.sources[k][2]
            bound.append((k, leaf.offset - entry.offset, ITEMSIZE[leaf.dtype]))
        return tuple(bound)

    def _bind_scalars(self, scalars):
        """Each runtime scalar as a formula, and the formulas that must agree with it (hash-consing
        made one node of equal values, such as the step sizes of several parameters)."""
        bound, same = [], []
        for node in scalars:
            formulas = self.scalar_formulas.get(id(node), [])
            if formulas and id(node) not in self.scalar_plain:
                bound.append(formulas[0])
                same.extend((formulas[0], f) for f in formulas[1:] if f != formulas[0])
                continue
            # NOTE: a plain float equal to an argument or runtime value may have been computed from it
            # where we could not see (math.sqrt(lr)), so those are guarded by value
            for f in formulas:
                self.specialized.update(_leaves(f))
            self.specialized.update(leaf for leaf, value in self.leaf_values.items() if value == node.arg)
            bound.append(("const", node.arg))
        return tuple(bound), tuple(same)


# -- replaying ---------------------------------------------------------------------------------------
class _ScalarProgram:
    """A compiled call's runtime scalars, recomputed from their formulas by generated Python code (one
    line per operation, in the order the traced code did them, so the values round the same); the
    guards on values Python looked at; and the values written back with runtime_value's slots."""

    def __init__(self, scalars, same, specialized, writes, slots):
        self.formulas, self.same, self.specialized, self.writes = scalars, same, specialized, writes
        self.places = [place for place, _ in writes]
        namespace, lines, names = {}, [], {}

        def name_of(formula):
            """The variable holding `formula`'s value, emitting the lines that compute it (iteratively:
            a formula can be as deep as a Python loop made it)."""
            stack = [formula]
            while stack:
                f = stack[-1]
                if id(f) in names:
                    stack.pop()
                    continue
                kind = f[0]
                parts = [] if kind in ("arg", "slot", "const") else [g for g in f[1:] if id(g) not in names]
                if parts:
                    stack.extend(parts)
                    continue
                stack.pop()
                var = f"v{len(names)}"
                if kind == "const":
                    namespace[var] = f[1]
                    names[id(f)] = var
                    continue
                if kind == "arg":
                    keys = [f"{var}k{i}" for i in range(len(f[1]))]
                    namespace.update(zip(keys, f[1]))  # NOTE: dict keys of any kind, bound by name
                    expression = "args" + "".join(f"[{key}]" for key in keys)
                elif kind == "slot":
                    container, key, index = slots[f[1]]
                    holder = f"c{len(namespace)}"
                    namespace[holder], namespace[holder + "k"] = container, key
                    expression = f"{holder}[{holder}k]" + ("" if index is None else f"[{index}]")
                elif kind == "abs":
                    expression = f"abs({names[id(f[1])]})"
                elif len(f) == 2:
                    expression = f"{kind}{names[id(f[1])]}"
                else:
                    expression = f"{names[id(f[1])]} {kind} {names[id(f[2])]}"
                lines.append(f"    {var} = {expression}")
                names[id(f)] = var
            return names[id(formula)]

        for k, (leaf, value) in enumerate(specialized):
            namespace[f"want{k}"] = value
            var = name_of(leaf)
            lines.append(f"    if {var} != want{k}: return None")
        for a, b in same:
            lines.append(f"    if {name_of(a)} != {name_of(b)}: return None")
        values = ", ".join(name_of(f) for f in scalars)
        written = ", ".join(name_of(f) for _, f in writes)
        lines.append(f"    return [{values}], [{written}]")
        self.source = "def evaluate(args):\n" + "\n".join(lines) + "\n"
        exec(builtins.compile(self.source, "<symgrad.compile scalars>", "exec"), namespace)
        self.evaluate = namespace["evaluate"]

    def signature(self):
        return (self.formulas, self.same, self.specialized,
                tuple((id(container), key, f) for (container, key), f in self.writes))

    def write(self, values):
        for (container, key), value in zip(self.places, values):
            container[key] = value


class _Miss(Exception):
    """A guard failed: the call is traced again."""


class _Program:
    """One traced call as data: where the plan's inputs come from and what its results become."""

    def __init__(self, plan, sources, seen, leaves, scalars, updates, cells, tensors, grads, returns):
        self.plan, self.sources, self.seen, self.leaves, self.scalars = plan, sources, seen, leaves, scalars
        self.updates, self.cells = updates, cells
        self._runner = self.source = None
        self.tensors, self.grads, self.returns = tensors, grads, returns
        # NOTE: the replay loop below runs every step, so what it needs is laid out flat once here:
        # one entry per tensor it fetches, with the source (cell) that tensor brings, if any
        source_of = {_plain(d): k for k, (d, _) in enumerate(sources)}
        self.checks = []
        for descriptor, has_fn, _ in seen:
            kind, where = descriptor
            k = source_of.pop(_plain(descriptor), -1)
            fetch = 0 if kind == "ref" else 1 if len(where) == 1 else 2
            self.checks.append((fetch, where[0] if fetch == 1 else where, has_fn, k,
                                sources[k][1] if k >= 0 else None))
        if source_of:
            raise _Unsupported("a tensor it reads was not seen as an operand")  # NOTE: cannot happen
        self.source_tensor = [0] * len(sources)
        for s, check in enumerate(self.checks):
            if check[3] >= 0:
                self.source_tensor[check[3]] = s
        self.grad_checks = []
        for s, (_, _, guard) in enumerate(seen):
            if guard is None or guard[0] == "any" or guard[1] is None:
                self.grad_checks.append((s, guard is None, None))
            else:
                self.grad_checks.append((s, False, self.source_tensor[guard[1]]))

    def signature(self, contents=True):
        """What two traces must share to be the same program (data made inside the call by its values,
        or with `contents` False by its layout only)."""

        def structure(value):
            return _constant_structure(value, 0) if type(value) is Node else value

        def effect(value):
            return (value[0], structure(value[1])) if value is not None else None

        return (self.plan.key, tuple((_plain(d), structure(layout)) for d, layout in self.sources),
                tuple((_plain(d), has_fn, guard) for d, has_fn, guard in self.seen), self.leaf_signature(contents),
                self.scalars.signature(), tuple((k, effect(v)) for k, v in self.updates), tuple(map(effect, self.cells)),
                tuple((c, type(fn).__name__, nr) for c, fn, nr in self.tensors),
                tuple(self.grads), self.returns)

    def leaf_signature(self, contents=True):
        """Where the plan's inputs come from; data made inside the call by its values (`contents`) or
        only by its layout."""
        signature = []
        for k, where, itemsize in self.leaves:
            if k is None:
                node = where
                data = node.buffer.array.tobytes() if contents else None
                signature.append(("made", node.shape, node.dtype, node.strides, node.offset, data))
            else:
                signature.append((k, where, itemsize))
        return tuple(signature)

    def run(self, args):
        """Check the guards, run the plan, apply the effects; the function's return value."""
        if self._runner is None:
            self._runner = self._generate()
            self.run = self._runner  # NOTE: later calls go straight to the generated function
        return self._runner(args)

    def _generate(self):
        """The replay of this program as one straight-line Python function (`self.source`): every loop
        over guards, bindings and effects unrolled, every constant bound by name. A compiled call is
        all Python overhead but its native program, and this is several times cheaper than a generic
        loop over the same data."""
        # NOTE: `address` holds the plan's input addresses between calls. An entry changes only when the
        # node of its source does (a computed node keeps its buffer), so it is refreshed right there and
        # not recomputed by attribute chains every call.
        address = [0] * len(self.leaves)
        names = {"checked": [None] * len(self.sources), "address": address, "Miss": _Miss, "realize": _tensor._realize, "Cell": _tensor.Cell,
                 "wrap": _tensor.Tensor._wrap, "evaluate": self.scalars.evaluate, "write": self.scalars.write,
                 "run_fresh": self.plan.run_fresh, "at": _at}
        lines = ["v = evaluate(args)", "if v is None: raise Miss", "scalars, written = v"]

        def bind(value, prefix):
            name = f"{prefix}{len(names)}"
            names[name] = value
            return name

        def fetch(kind, where):
            if kind == 0:
                return f"{bind(where, 'ref')}()"
            return f"args[{where!r}]" if kind == 1 else f"at(args, {bind(where, 'path')})"

        leaves_of = {}  # source -> [(leaf position, element delta, itemsize)]
        for i, (k, delta, itemsize) in enumerate(self.leaves):
            if k is None:  # data made inside the call: the same values every call, kept alive here
                bind(delta, "made")
                address[i] = delta.buffer.address + delta.offset * itemsize
            else:
                leaves_of.setdefault(k, []).append((i, delta, itemsize))

        def refresh(k, node, indent=""):
            return [f"{indent}address[{i}] = {node}.buffer.address + ({node}.offset + {delta}) * {itemsize}"
                    for i, delta, itemsize in leaves_of.get(k, ())]

        uncached = []  # sources checked by identity with a constant: their addresses are read every call
        for s, (kind, where, has_fn, k, layout) in enumerate(self.checks):
            lines.append(f"t{s} = {fetch(kind, where)}")
            if kind == 0:
                lines.append(f"if t{s} is None: raise Miss")
            lines.append(f"if t{s}._grad_node is {'' if has_fn else 'not '}None: raise Miss")
            if k < 0:
                continue
            lines.append(f"n = t{s}._cell.node")
            if type(layout) is Node:
                lines.append(f"if n is not {bind(layout, 'constant')}: raise Miss  # the same pending constant")
                uncached.append(k)
            else:
                # NOTE: a computed node never changes its layout, so the one that passed last time (or that
                # the last run made with the right layout) passes without looking
                lines.append(f"if n is not checked[{k}]:")
                lines.append(f"    if n.buffer is None: realize([n]); n = t{s}._cell.node")
                lines.append(f"    if (n.shape, n.dtype, n.strides) != {bind(layout, 'layout')}: raise Miss")
                lines.append(f"    checked[{k}] = n")
                lines += refresh(k, "n", "    ")
        for s, absent, owner in self.grad_checks:
            if absent:
                lines.append(f"if t{s}._grad is not None: raise Miss")
            elif owner is None:
                lines.append(f"if t{s}._grad is None: raise Miss")
            else:
                lines.append(f"if t{s}._grad is None or t{s}._grad._cell is not t{owner}._cell: raise Miss")
        lines.append("# every guard held: bind, run, then the effects (which cannot fail)")
        binding = len(lines)  # the cells used below are fetched here, once the rest is generated
        for k in uncached:
            lines += refresh(k, f"c{k}.node")
        lines.append("results = run_fresh(address, scalars)")
        lines.append("r, starts = results.nodes, results.starts")

        def node_of(value):
            kind, j = value
            return f"r[{j}]" if kind == "target" else bind(j, "constant") if kind == "const" else f"c{j}.node"

        def refresh_from_result(k, j):
            # NOTE: a result node starts at its buffer's address (offset 0), given by the result set
            return [f"address[{i}] = starts[{j}]" + (f" + {delta * itemsize}" if delta else "")
                    for i, delta, itemsize in leaves_of.get(k, ())]

        result_layouts = [(shape, dtype, strides) for shape, dtype, *_, strides in self.plan.result_specs]
        for k, value in self.updates:
            if value != ("source", k):  # NOTE: a cell the call assigned its own value again
                lines.append(f"c{k}.node = {node_of(value)}")
                known = value[0] == "target" and result_layouts[value[1]] == self.checks[self.source_tensor[k]][4]
                lines.append(f"checked[{k}] = {node_of(value) if known else 'None'}")
                if known:
                    lines += refresh_from_result(k, value[1])
        made = set()  # the new cells made so far: the first tensor holding one makes it
        for j, ((kind, cell), fn, output_nr) in enumerate(self.tensors):
            if kind == "source" or cell in made:
                lines.append(f"o{j} = wrap(None, {bind(fn, 'fn')}); "
                             f"o{j}._cell = {f'c{cell}' if kind == 'source' else f'new{cell}'}")
            else:
                lines.append(f"o{j} = wrap({node_of(self.cells[cell])}, {bind(fn, 'fn')}); new{cell} = o{j}._cell")
                made.add(cell)
            if output_nr:
                lines.append(f"o{j}._output_nr = {output_nr}")
        for s, j in self.grads:
            lines.append(f"t{s}._grad = {'None' if j is None else f'o{j}'}")
        if self.scalars.writes:
            lines.append("write(written)")
        lines.append(f"return {self._returned(self.returns, bind)}")
        used = "\n".join(lines[binding:])
        lines[binding:binding] = [f"c{k} = t{s}._cell" for k, s in enumerate(self.source_tensor)
                                  if re.search(rf"\bc{k}\b", used)]
        self.source = "def run(args):\n" + "".join(f"    {line}\n" for line in lines)
        exec(builtins.compile(self.source, "<symgrad.compile program>", "exec"), names)
        return names["run"]

    def _returned(self, spec, bind):
        """The expression of the function's return value (results nest as shallowly as the user wrote)."""
        kind, value = spec
        if kind == "new":
            return f"o{value}"
        if kind == "same":
            where_kind, where = value
            return f"at(args, {bind(where, 'path')})" if where_kind == "arg" else f"{bind(where, 'ref')}()"
        if kind == "value":
            return bind(value, "value")
        items = ", ".join(f"({bind(k, 'key')}, {self._returned(v, bind)})" for k, v in value)
        return f"{bind(_rebuild, 'rebuild')}({bind(kind, 'kind')}, [{items}])"


# -- the compiled function -----------------------------------------------------------------------------
class _Entry:
    """The state of one argument key: how many calls it saw, its traces, its program."""

    __slots__ = ("calls", "traces", "program", "previous", "previous_layouts", "misses", "eager_reason", "replayed")

    def __init__(self):
        self.calls = 0  # calls not replayed (traced or run eagerly)
        self.traces = 0
        self.program = None
        self.previous = None  # the signature of the last trace
        self.previous_layouts = None  # the same with data made inside the call by layout only
        self.misses = 0
        self.eager_reason = None
        self.replayed = 0


class CompiledFunction:
    """What `symgrad.compile(fn)` returns: call it like `fn`."""

    def __init__(self, fn):
        self.fn = fn
        self.entries: dict = {}
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        names = ()
        if kwargs:
            # keyword arguments are arguments after the positional ones, their names part of the key
            names = tuple(kwargs)
            args = (*args, *kwargs.values())
        key = (GradMode.enabled, names, *map(_argument_key, args)) if args else (GradMode.enabled, names)
        try:
            entry = self.entries.get(key)
        except TypeError:
            return self._call(args, names)
        if entry is None:
            entry = self.entries[key] = _Entry()
        elif entry.program is not None and Tracing.active is None and not GradMode.in_backward:
            try:
                result = entry.program.run(args)
            except _Miss:
                entry.program, entry.previous = None, None
                entry.misses += 1
                if entry.misses > MAX_RETRACES:
                    entry.eager_reason = "its guards kept failing after tracing"
            else:
                entry.replayed += 1
                return result
        entry.calls += 1
        if entry.eager_reason is not None or entry.calls == 1 or Tracing.active is not None:
            return self._call(args, names)
        return self._trace(entry, args, names)

    def _call(self, args, names):
        if not names:
            return self.fn(*args)
        positional = len(args) - len(names)
        return self.fn(*args[:positional], **dict(zip(names, args[positional:])))

    def _trace(self, entry, args, names):
        value_read()
        trace = _Trace(args)
        traced_args = tuple(_traced_arguments(a, (k,)) for k, a in enumerate(args))
        replay_was, Replay.enabled = Replay.enabled, False
        Tracing.active = trace
        try:
            result = self._call(traced_args, names)
        finally:
            Tracing.active = None
            Replay.enabled = replay_was
            writes = trace.restore_slots()
        try:
            program = trace.program(result, writes)
        except _Unsupported as reason:
            entry.eager_reason = str(reason)
            _finish_eagerly(trace, result)
            return _plain_float(result)
        signature = program.signature()
        if signature == entry.previous:
            entry.program = program
        entry.previous = signature
        entry.traces += 1
        if entry.program is None and entry.traces >= MAX_TRACES:
            entry.eager_reason = ("its traces differ from call to call: it reads Python state that changes "
                                  "(pass such values as arguments)")
            if entry.previous_layouts == program.signature(contents=False):
                entry.eager_reason = "it uses data made inside the call that changes from call to call (randn, dropout)"
        entry.previous_layouts = program.signature(contents=False)
        return _plain_float(result)

    def explain(self) -> str:
        """Whether calls are replayed as one program, and if not, why.

        >>> import symgrad
        >>> f = symgrad.compile(lambda x: (x * 2).sum().item())
        >>> for _ in range(3): _ = f(symgrad.ones(2))
        >>> f.explain()
        'eager: it reads tensor values'
        """
        lines = []
        for entry in self.entries.values():
            if entry.eager_reason is not None:
                lines.append(f"eager: {entry.eager_reason}")
            else:
                lines.append(f"compiled: {entry.replayed} calls replayed as one native program, "
                             f"{entry.calls} traced or eager")
        return "\n".join(lines) if lines else "not called yet"


def _plain_float(value):
    """A traced float handed back by the function, as the float it is."""
    if isinstance(value, _TracedFloat):
        return float.__float__(value)
    items = _children(value)
    return value if items is None else _rebuild(type(value), [(k, _plain_float(v)) for k, v in items])


def _finish_eagerly(trace, result):
    """A trace that cannot be a program still ran every op: compute what it left pending."""
    pending = [cell.node for cell in trace.assigned.values() if not cell.node.realized]
    stack = [result]
    while stack:
        value = stack.pop()
        if isinstance(value, _tensor.Tensor) and not value._cell.node.realized:
            pending.append(value._cell.node)
        elif _children(value) is not None:
            stack.extend(v for _, v in _children(value))
    for _, t, _, _ in trace.seen:
        if t._grad is not None and not t._grad._cell.node.realized:
            pending.append(t._grad._cell.node)
    if pending:
        _tensor._realize(pending)


def compile(fn=None):
    """Compile a Python function of tensors (a training step, say) into one cached native program.

    Use it as `step = symgrad.compile(step)` or as a decorator. See the module docstring for what is
    guarded and what runs eagerly.

    >>> import symgrad
    >>> double_sum = symgrad.compile(lambda x: (2 * x).sum())
    >>> [double_sum(symgrad.ones(3)).item() for _ in range(4)]
    [6.0, 6.0, 6.0, 6.0]
    """
    if fn is None:
        return compile
    return CompiledFunction(fn)
