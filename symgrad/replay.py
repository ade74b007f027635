"""Replay: a loop that repeats the same calls skips the Python work of building their graph.

What user code does between two realizations is a *segment*: a sequence of recorded calls (`_apply`,
including the ones the backward walk makes) ended by a flush (`_realize`). Each call is described by a
*guard*: the op, its Python arguments, and for every operand what the graph depends on (shape, dtype
and strides of a buffer, or which earlier call of the segment made it, and its autograd state). The
guards of successive calls are a path in a trie.

- The first time a path is walked its calls run normally and the trie remembers their guards.
- The second time the calls still run normally, and the new graph of each is captured as a *template*:
  nodes described relative to the call's operands and to the nodes of earlier calls. The flush captures
  the compiled plan, and where its input buffers, runtime scalars and results come from.
- From then on a call whose guard matches builds its nodes straight from the template (no promotion,
  broadcasting, hash-consing or composite forward code), and the flush runs the captured plan without
  walking the graph or computing its structural key. Both the guard check of a repeated call and the
  building of a template's nodes run as straight-line Python generated once per trie step
  (`_guard_function`, `_build_function`; docs/replay.md says why).

A replayed call builds an ordinary graph, node for node the one the call would have built. So a guard
that does not match just runs that call normally, and the segment goes on unreplayed until the next
flush: nothing a user can observe depends on whether a call was replayed. `SYMGRAD_REPLAY=0` turns
replay off.

>>> import symgrad
>>> w = symgrad.ones(2, requires_grad=True)
>>> for step in range(4):
...     (w * w).sum().backward()
...     with symgrad.no_grad():
...         w -= 0.25 * w.grad
...         w.grad = None
>>> w
tensor([0.0625, 0.0625], requires_grad=True)
"""
from __future__ import annotations

import os
import weakref
from bisect import bisect_left
from operator import itemgetter

import numpy as np

from . import tensor as _tensor
from .autograd import AccumulateGrad, GradMode, _topological, backward_class
from .graph import Node, pending_postorder
from .schedule import MOVEMENT, cached_plan, plan_for, resolve_views

# NOTE: a segment this long is not tracked further: its templates would hold every node it made alive.
MAX_CALLS = 4096
# A pending value from before a segment is described op by op in its guards up to this size.
MAX_OUTSIDE_NODES = 64
# The structures of pending values from before a segment (described anew by every segment that uses
# them), by id of the value: (a weak reference to it, the pending nodes under it, the leaves under it,
# their descriptions, the structure). A plain dict: a WeakKeyDictionary lookup costs microseconds.
# NOTE: an entry keeps the nodes under its value until the value dies, is described again after being
# computed, or the table is full and starts over
_PENDING_STRUCTURES: dict[int, tuple] = {}
MAX_PENDING_STRUCTURES = 256
# NOTE: a program that never repeats itself grows the trie without end; past this size it starts over.
MAX_STEPS = 20_000
# How many times a path is walked before its templates are captured (the third walk replays).
CAPTURE_ON_VISIT = 2


class _Replay:
    """Process-wide replay state (like GradMode): the trie of guards and the segment in progress."""

    __slots__ = ("enabled", "busy", "root", "steps", "segment")

    def __init__(self):
        self.enabled = os.environ.get("SYMGRAD_REPLAY", "1") != "0"
        self.busy = False  # a call is running normally: the calls it makes are part of it
        self.root = None
        self.steps = 0
        self.segment = None


# NOTE: one instance rather than class attributes (as GradMode): every call reads it, and 3.11's
# interpreter specializes a slot read on an instance but reads a class attribute the slow way
Replay = _Replay()

# How many calls and flushes were replayed so far (stats()).
_REPLAYED = [0, 0]


class _Step:
    """A trie node: the guards that followed this point, and the template of the call that led here."""

    __slots__ = ("next", "template", "visits", "flushes", "key", "likely", "check", "fast")

    def __init__(self, key=None):
        self.key = key  # the guard that leads here
        self.likely = None  # the step taken from here last time: its guard is compared first
        self.check = None  # generated check of `key` (see _guard_function), made when first replayed
        self.fast = None  # the check and the template's replay in one (see _fast_function)
        self.next: dict = {}
        self.template = None
        self.visits = 0
        self.flushes: dict = {}


# References in templates are integers: r >= 0 is position r of the segment's node list (every node its
# calls built and every outside value they used, in order), r < 0 is operand ~r of the call itself.
class _CallTemplate:
    """The nodes one call builds, each as (op, input references, arg, shape, dtype, pending size, the
    float operand giving arg or None, the node itself if it is a constant); the reference of its
    result; and what its float operands must satisfy."""

    __slots__ = ("entries", "base", "out", "records", "exact", "links", "replay")

    def __init__(self, entries, base, out, records, exact, links):
        self.entries, self.base, self.out = entries, base, out
        self.replay = None  # the generated function replaying the call (_replay_function), made at first use
        self.records = records  # whether the call records a backward function
        self.exact = exact  # float operands whose values the template baked in: ((k, value), ...)
        self.links = links  # runtime scalars shared with earlier calls: ((reference, operand), ...)


class _BackwardTemplate:
    """A captured backward walk: its gradient graph, and per leaf reached (by its index among the
    segment's gradient sinks) how `.grad` was before and the reference of its new value."""

    __slots__ = ("entries", "base", "effects", "exact", "walked", "freed", "floats", "build", "out")

    def __init__(self, entries, base, effects, exact):
        self.entries, self.base, self.effects, self.exact = entries, base, effects, exact
        self.build, self.out = None, None
        self.walked = self.freed = self.floats = ()


class _FlushTemplate:
    """A captured flush: its plan's structural key (the plan stays in the bounded program cache) and
    where its targets, input buffers and runtime scalars come from."""

    __slots__ = ("plan_key", "plan", "targets", "leaves", "scalars", "views")

    def __init__(self, plan, targets, leaves, scalars, views):
        self.plan_key = plan.key
        self.plan = weakref.ref(plan)  # NOTE: not the plan itself: the program cache alone keeps plans
        # each a function of the segment's `flat` giving the nodes at the captured positions
        self.targets, self.leaves, self.scalars = _picker(targets), _picker(leaves), _picker(scalars)
        self.views = _picker(views)


class _Segment:
    """The calls since the last flush: where they are in the trie and every node they made."""

    __slots__ = ("step", "count", "tracking", "has_nodes", "flat", "_known", "_indexed", "outputs",
                 "external_index", "fns", "fn_index", "accs", "acc_index", "floats", "gradients")

    def __init__(self, root):
        self.step = root
        self.count = 0  # calls so far
        self.tracking = True  # guards are computed and the trie followed
        self.has_nodes = True  # every call so far was replayed or captured, so templates can refer to it
        self.flat: list[Node] = []  # what references >= 0 point at
        # node -> its (last) position in `flat`, up to _indexed (keyed by the nodes themselves: they
        # hash by identity, and `flat` holds them anyway)
        self._known: dict[Node, int] = {}
        self._indexed = 0
        self.outputs: dict[int, int] = {}  # id(node) -> the call whose result it is
        self.external_index: dict[int, int] = {}  # id(node) -> order of first use, for outside values
        self.fns: dict = {}  # call number -> the backward function it recorded
        self.fn_index: dict[int, int] = {}
        self.accs: list = []  # gradient sinks of leaves the calls used
        self.acc_index: dict[int, tuple] = {}  # id(sink) -> its guard part ("a", position in accs)
        self.floats: list = []  # (call, operand, value) of every float operand
        # id(node) -> ("g", backward call, sink) for the new `.grad` values of a backward (what a flush
        # key names them by)
        self.gradients: dict[int, tuple] = {}

    def positions(self) -> dict:
        """node -> its (last) position in `flat`, indexing the nodes appended since the last call:
        replayed calls only append to `flat`, and most segments never need the index."""
        known, flat, start = self._known, self.flat, self._indexed
        if start < len(flat):
            known.update(zip(flat[start:], range(start, len(flat))))
            self._indexed = len(flat)
        return known

    # -- guards -------------------------------------------------------------------------------------
    def guard(self, op, operands, arg, name, positions, likely):
        """The hashable description of this call that its template depends on, or None if unsupported.

        `likely` is the key of the call that followed here last time (or None). While this call's parts
        equal its parts nothing is allocated, and when all do `likely` itself is returned: a loop's
        repeated call builds no key and its trie lookup hashes nothing."""
        if isinstance(arg, float):
            # NOTE: a float argument (add's alpha) is a runtime scalar like a float operand
            self.floats.append((self.count, -1, arg))
            arg = "f"
        head = (op.name, arg, name, positions, GradMode.enabled, GradMode.in_backward)
        parts = None  # the key so far, once it differs from `likely`
        if likely is None or len(likely) != len(head) + len(operands) or likely[0] != op.name:
            parts = list(head)
        elif not (_same(arg, likely[1]) and likely[2] == name and likely[3] == positions
                  and likely[4] == head[4] and likely[5] == head[5]):
            parts = list(head)
        Tensor = _tensor.Tensor
        outputs, fn_index, acc_index = self.outputs, self.fn_index, self.acc_index
        position = len(head)
        for o in operands:
            if isinstance(o, Tensor):
                # the common cases inline: the result of an earlier call, with no history, the function
                # an earlier call recorded, or the gradient sink of a leaf already seen
                call = outputs.get(id(o._cell.node))
                fn = o._grad_node
                grad = None
                if fn is not None:
                    grad = fn_index.get(id(fn))
                    if grad is None:
                        grad = acc_index.get(id(fn))
                if call is not None and not o._output_nr and (fn is None or grad is not None):
                    if parts is None:
                        expected = likely[position]
                        if expected.__class__ is tuple and expected[0] == call and expected[1] == grad:
                            position += 1
                            continue
                        parts = list(likely[:position])
                    part = call, grad
                else:
                    part = self._describe(o)
                    if part is None:
                        return None
            elif o is None:
                part = None
            elif isinstance(o, (bool, np.bool_)):
                part = ("b", bool(o))
            elif isinstance(o, (int, np.integer)):
                part = ("i", int(o))
            elif isinstance(o, (float, np.floating)):
                part = "f"  # a runtime scalar: its value is not part of the guard
                self.floats.append((self.count, position, float(o)))
            else:
                return None
            if parts is None:
                if likely[position] == part:
                    position += 1
                    continue
                parts = list(likely[:position])
            parts.append(part)
            position += 1
        return likely if parts is None else tuple(parts)

    def _where(self, node):
        """Which call made `node`, or which value from before the segment it is (None: neither)."""
        call = self.outputs.get(id(node))
        if call is not None:
            return call
        q = self.external_index.get(id(node))
        if q is not None:
            return "x", q
        if node.buffer is not None:  # inline: most outside values are parameters and their gradients
            layout = "buffer", node.shape, node.dtype, node.strides
        else:
            layout = _external_layout(node)
            if layout is None:
                layout = self._pending_structure(node)
                if layout is None:
                    return None
        q = self.external_index[id(node)] = len(self.external_index)
        if self.has_nodes:
            self.flat.append(node)
        return "x", q, layout

    def _pending_structure(self, root):
        """The structure of a pending value from before the segment (`y = 2 * x + 3`, kept for a loop):
        its ops, with the buffers and runtime scalars under it described as outside values of their own
        (so a captured flush can bind them). None past MAX_OUTSIDE_NODES nodes."""
        cached = _PENDING_STRUCTURES.get(id(root))
        if cached is not None and cached[0]() is root:
            _, below, leaves, wheres, structure = cached
            # NOTE: pending nodes never change, but one under `root` may have been computed since
            for node in below:
                if node.buffer is not None:
                    break
            else:
                # the leaves are described in the order the walk below describes them, so the segment
                # numbers its outside values the same way
                found = []
                for leaf in leaves:
                    where = self._where(leaf)
                    if where is None:
                        return None
                    found.append(where)
                if found == wheres:
                    return structure
                described = iter(found)
                return self._walk_pending([*below, root], lambda node: next(described), [])[1]
            del _PENDING_STRUCTURES[id(root)]
        order = pending_postorder([root])
        if len(order) > MAX_OUTSIDE_NODES:
            return None
        leaves = []
        wheres, structure = self._walk_pending(order, self._where, leaves)
        if structure is not None:
            if len(_PENDING_STRUCTURES) >= MAX_PENDING_STRUCTURES:
                _PENDING_STRUCTURES.clear()
            # NOTE: `root` by weak reference: an entry must not keep its value alive, and goes with it
            key = id(root)
            alive = weakref.ref(root, lambda _: _PENDING_STRUCTURES.pop(key, None))
            _PENDING_STRUCTURES[key] = alive, order[:-1], leaves, wheres, structure
        return structure

    @staticmethod
    def _walk_pending(order, where, leaves):
        """(the descriptions of the leaves under `order`'s root, the root's structure): `where`
        describes each leaf in turn, and `leaves` receives them in that order."""
        root = order[-1]
        index, entries, wheres = {}, [], []
        for node in order:
            if node is not root and node.op == "SCALAR":
                leaves.append(node)
                wheres.append(where(node))
                entries.append(wheres[-1])
            else:
                refs = []
                for child in node.inputs:
                    r = index.get(id(child))
                    if r is None:
                        leaves.append(child)
                        r = where(child)  # a buffer
                        if r is None:
                            return wheres, None
                        wheres.append(r)
                    refs.append(r)
                entries.append((node.op, None if node.op == "SCALAR" else node.arg, node.shape, node.dtype,
                                tuple(refs)))
            index[id(node)] = len(entries) - 1
        return wheres, ("pending", tuple(entries))

    def _describe(self, t):
        where = self._where(t._cell.node)
        if where is None:
            return None
        fn = t._grad_node
        if fn is None:
            grad = None
        else:
            grad = self.fn_index.get(id(fn))
            if grad is None:
                if type(fn) is not AccumulateGrad:
                    # NOTE: history from before the segment (a batch norm realized its input midway
                    # through a forward). A replayed call records its function on the operand itself, so
                    # it links to that history as a normal call would; a backward that walks into it is
                    # not captured (its walk reaches functions this segment did not record)
                    return (where, "h") if t._output_nr == 0 else None
                grad = self.acc_index.get(id(fn))
                if grad is None:
                    grad = self.acc_index[id(fn)] = ("a", len(self.accs))
                    self.accs.append(fn)
        if t._output_nr:
            return None
        return where, grad

    def note_result(self, index, out):
        node = out._cell.node
        if id(node) not in self.outputs and id(node) not in self.external_index:
            self.outputs[id(node)] = index
        fn = out._grad_node
        if fn is not None and id(fn) not in self.fn_index and type(fn) is not AccumulateGrad:
            self.fn_index[id(fn)] = index
            self.fns[index] = fn

    # -- capture --------------------------------------------------------------------------------------
    def _capture(self, roots, named, scalar_source):
        """Template entries for the graph under `roots` that `named` (operands) and earlier calls do not
        name, inputs first; their nodes join `flat`. None if the graph reaches an unnamed buffer."""
        known, flat = self.positions(), self.flat
        entries, nodes, local = [], [], {}
        base = len(flat)

        def ref(node):
            r = named.get(id(node))
            if r is None:
                r = local.get(id(node))
            if r is None:
                r = known.get(node)
            return r

        for root in roots:
            stack = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if not expanded:
                    if ref(node) is None:
                        stack.append((node, True))
                        stack.extend((child, False) for child in reversed(node.inputs))
                    continue
                if id(node) in local:
                    continue
                if node.buffer is not None:
                    return None
                source = scalar_source(node) if node.op == "SCALAR" else None
                # NOTE: constants are reused, not rebuilt: hash-consing gives calls run normally these
                # same objects, so a graph mixing replayed and normal calls keeps its usual structure
                pin = node if _constant_structure(node, 0) is not None else None
                local[id(node)] = base + len(entries)
                entries.append((node.op, tuple(ref(child) for child in node.inputs), node.arg, node.shape,
                                node.dtype, node.pending_size, source, pin))
                nodes.append(node)
        flat.extend(nodes)
        return tuple(entries), base, ref

    def capture(self, operands, operand_nodes, out):
        """The template of a call from the graph it just built, or None."""
        Tensor = _tensor.Tensor
        named = {}
        for k, node in enumerate(operand_nodes):
            if node is not None:
                named.setdefault(id(node), ~k)
        floats = [(k, float(o)) for k, o in enumerate(operands)
                  if isinstance(o, (float, np.floating)) and not isinstance(o, Tensor)]
        exact = False

        def scalar_source(node):
            nonlocal exact
            matches = [k for k, v in floats if v == node.arg]
            exact = exact or len(matches) != 1
            return matches[0] if matches else None

        # NOTE: a runtime scalar hash-consing shared with an earlier call stays shared in the replayed
        # graph, so this call's value must keep equalling it
        links = {}
        for node in _scalars_below(out._cell.node, named):
            r = self.positions().get(node)
            if r is not None:
                source = next((k for k, v in floats if v == node.arg), None)
                links[r] = source
                exact = exact or source is None
        captured = self._capture([out._cell.node], named, scalar_source)
        if captured is None:
            return None
        entries, base, ref = captured
        return _CallTemplate(entries, base, ref(out._cell.node), out._grad_node is not None,
                             tuple(floats) if exact else (), tuple(links.items()))

    def capture_backward(self, touched, pre):
        """The template of a backward walk from its effects: the gradient graphs now in the leaves'
        `.grad`, whether each was created or accumulated into."""
        effects = []
        owner = {id(acc.variable._grad): a for a, acc in enumerate(self.accs)}
        for grad in touched:
            a = owner.get(id(grad))
            if a is None or a in [e[0] for e in effects]:
                return None  # a retained gradient of a non-leaf
            before_tensor, before_node = pre[a]
            before_where = None
            if before_tensor is not None:
                before_where = self._where(before_node)
                if before_where is None or grad is not before_tensor:
                    return None
            effects.append((a, before_where, grad._cell.node))
        exact = False

        def scalar_source(node):
            # NOTE: a runtime scalar a vjp made from a forward value (pow's exponent - 1) is baked in:
            # the segment's float operands are then checked to be unchanged
            nonlocal exact
            exact = True
            return None

        captured = self._capture([node for _, _, node in effects], {}, scalar_source)
        if captured is None:
            return None
        entries, base, ref = captured
        return _BackwardTemplate(entries, base, tuple((a, before, ref(node)) for a, before, node in effects), exact)

    # -- replay -----------------------------------------------------------------------------------------
    @staticmethod
    def build_function(template):
        """The function appending the nodes `template` builds to a segment's `flat` and returning its
        result node (None for a backward): made at the template's first replay."""
        template.build = _build_function(template.entries, template.base, template.out)
        return template.build

    # -- flush ------------------------------------------------------------------------------------------
    def flush_key(self, nodes, cells):
        """What a flush depends on: the requested values, and the pending in-place updates among this
        segment's values (others cannot be in its graph). Each is named by the call that made it, the
        backward that gave it as a gradient, or else its position in `flat`: all fixed by the path of
        guards, and the first two found without indexing `flat`."""
        # NOTE: _name inline for the common names (a flush names every value it computes)
        outputs, gradients = self.outputs, self.gradients
        requested = []
        for node in nodes:
            if node.buffer is None:
                name = outputs.get(id(node))
                if name is None:
                    name = gradients.get(id(node))
                    if name is None:
                        name = self._name(node)
                        if name is None:
                            return None
                requested.append(name)
        updated = []
        for cell in cells:
            node = cell.node
            if node.buffer is None:
                name = outputs.get(id(node))
                if name is None:
                    name = gradients.get(id(node))
                    if name is None:
                        name = self._name(node)
                if name is not None:
                    updated.append(name)
        return tuple(requested), frozenset(updated)

    def _name(self, node):
        name = self.outputs.get(id(node))
        if name is None:
            name = self.gradients.get(id(node))
            if name is None:
                position = self.positions().get(node)
                return None if position is None else ("p", position)
        return name

    def note_gradients(self, number, touched):
        """Name the gradients backward call `number` left in `.grad` (`touched`, in walk order)."""
        owner = {id(acc.variable._grad): a for a, acc in enumerate(self.accs)}
        for grad in touched:
            a = owner.get(id(grad))
            node = grad._cell.node
            if a is not None and id(node) not in self.outputs:
                self.gradients.setdefault(id(node), ("g", number, a))


def _build_lines(entries, base, constant, ref, prefix="n"):
    """The lines (indented for a function body) making the nodes of template `entries`, captured at
    position `base` of a segment's `flat`, as n0, n1, ... (`prefix` names them) and appending them to
    `flat`.
    NOTE: each node is made and filled in place (what Node.raw does) rather than through a call: a
    replayed step makes a hundred nodes, and the call frames were a fifth of their cost."""
    lines = [  # NOTE: templates name earlier nodes by position; a path replayed to here has the same ones
             f"    if len(flat) != {base}:",
             f"        raise AssertionError(\"a replayed call found its segment at position %d, not {base}\" "
             f"% len(flat))"]
    for k, (op, refs, arg, shape, dtype, pending, source, pin) in enumerate(entries):
        inputs = _tuple_code([ref(r) for r in refs])
        value = f"float(operands[{source}])" if source is not None else constant(arg)
        n = f"{prefix}{k}"
        fill = [f"{n} = Node()", f"{n}.op = {op!r}", f"{n}.inputs = {inputs}", f"{n}.arg = {value}",
                f"{n}.shape = {constant(shape)}", f"{n}.dtype = {dtype!r}", f"{n}.buffer = None",
                f"{n}.strides = ()", f"{n}.offset = 0", f"{n}.pending_size = {pending}", f"{n}._key = None"]
        if pin is not None:
            # NOTE: constants are reused while pending (see _Segment._capture)
            pinned = constant(pin)
            lines += [f"    if {pinned}.buffer is None:", f"        {n} = {pinned}", "    else:"]
            lines += [f"        {line}" for line in fill]
        else:
            lines += [f"    {line}" for line in fill]
    if entries:
        lines.append(f"    flat += {_tuple_code([f'{prefix}{k}' for k in range(len(entries))])}")
    return lines


def _template_code(prefix="c"):
    """(constants, constant(value) -> its name in generated code, ref(r, base) -> the code of
    reference r): what the generated functions below share. `prefix` starts the constants' names."""
    constants = {}

    def constant(value):
        name = f"{prefix}{len(constants)}"
        constants[name] = value
        return name

    def ref(r, base, built="n", operand=None):
        """`built`: the prefix of the names of built nodes; `operand(k)`: the code of operand k's node."""
        if r >= base:
            return f"{built}{r - base}"
        if r >= 0:
            return f"flat[{r}]"
        return f"operands[{~r}]._cell.node" if operand is None else operand(~r)

    return constants, constant, ref


def _build_function(entries, base, out):
    """Straight-line Python building the nodes of template `entries` (captured at position `base` of a
    segment's `flat`) and returning the node of reference `out`: what a replayed backward runs,
    without interpreting the entries one field at a time.

    >>> entries = (("EXPAND", (-1,), (3,), (3,), "float32", 2, None, None),
    ...            ("MUL", (0, 5), None, (3,), "float32", 4, None, None))
    >>> print(_build_function(entries, 5, 6).source)  # doctest: +ELLIPSIS
    def build(flat, operands):
        if len(flat) != 5:
            raise AssertionError("a replayed call found its segment at position %d, not 5" % len(flat))
        n0 = Node()
        n0.op = 'EXPAND'
        n0.inputs = (operands[0]._cell.node,)
        n0.arg = c0
        ...
        n1.inputs = (flat[0], n0)
        ...
        flat += (n0, n1)
        return n1
    """
    constants, constant, code_of = _template_code()

    def ref(r):
        return code_of(r, base)

    lines = ["def build(flat, operands):", *_build_lines(entries, base, constant, ref),
             f"    return {'None' if out is None else ref(out)}"]
    source = "\n".join(lines)
    namespace = {"new": object.__new__, "Node": Node, **constants}
    exec(compile(source, "<replay template>", "exec"), namespace)
    build = namespace["build"]
    build.source = source
    return build


def _replay_function(template, key):
    """Straight-line Python replaying a call whose guard matched `key` (the key of the trie step that
    holds `template`): it checks the float operands the template depends on (returning None, having
    changed nothing, when they differ), builds the template's nodes, wraps the result, records its
    backward function as `_record` would, and registers the call with the segment as `call` does.

    One generated function per template, because a replayed call is all Python overhead: separate
    steps (build, Tensor._wrap, _record, the backward function's __init__) cost a frame each.
    """
    lines, constants = _replay_code(template, key)
    source = "\n".join(["def replay(segment, op, operands, arg, name, positions, step, child):", *lines])
    replay = _compiled(source, "replay", constants)
    template.replay = replay
    return replay


def _fast_function(step):
    """The generated check of `step.key` and the replay of `step.template` as one function (what a
    loop's repeated call runs: one frame, the operands read once by the check). It returns False,
    having changed nothing, when the guard differs; None when the guard matched (its registrations
    made, as `_guard_function`'s check makes them) but the template refused the float operands; else
    the replayed result."""
    guard = _guard_code(step.key)
    if guard is None:
        step.fast = _no_fast
        return _no_fast
    check_lines, check_constants = guard
    # NOTE: the replay reads each tensor operand's node and gradient function from the check's locals
    # (n0, fn0, ...: the check reads them for every tensor operand it accepts)
    replay_lines, replay_constants = _replay_code(step.template, step.key, checked=True)
    source = "\n".join(["def fast(segment, op, operands, arg, name, positions, step, child):",
                        *check_lines, *replay_lines])
    fast = _compiled(source, "fast", {**_guard_names(), **check_constants, **replay_constants})
    step.fast = fast
    return fast


def _no_fast(segment, op, operands, arg, name, positions, step, child):
    return False


def _compiled(source, name, constants):
    namespace = {"new": object.__new__, "Node": Node, "Tensor": _tensor.Tensor, "Cell": _tensor.Cell,
                 "Tracing": _tensor.Tracing, "backward_class": backward_class, "REPLAYED": _REPLAYED,
                 **constants}
    exec(compile(source, "<replay template>", "exec"), namespace)
    function = namespace[name]
    function.source = source
    return function


def _replay_code(template, key, checked=False):
    """(the body lines of `_replay_function(template, key)`, the constants they name). `checked`:
    the lines follow `_guard_code(key)`'s, whose locals n<k> and fn<k> hold tensor operand k's node and
    gradient function."""
    constants, constant, code_of = _template_code(prefix="t")
    base = template.base
    operand_count = len(key) - 6
    float_arg = key[1] == "f"

    def operand_node(k):
        return f"n{k}" if checked else f"operands[{k}]._cell.node"

    def operand_function(k):
        return f"fn{k}" if checked else f"operands[{k}]._grad_node"

    def ref(r):
        return code_of(r, base, "b", operand_node)

    lines = []
    # the values runtime scalars may come from: the operands, then a float argument (see call)
    values = "(*operands, arg)" if float_arg else "operands"
    if template.exact or template.links or float_arg:
        lines.append(f"    values = {values}")
        for k, value in template.exact:
            lines += [f"    if float(values[{k}]) != {constant(value)}:", "        return None"]
    lines.append("    flat = segment.flat")
    for r, k in template.links:
        if k is None:
            # NOTE: a shared runtime scalar no float operand gives: the value cannot be checked
            lines.append("    return None")
        else:
            lines += [f"    if float(values[{k}]) != flat[{r}].arg:", "        return None"]
    if float_arg:
        lines.append("    operands = values")  # NOTE: the build reads a float argument as an operand
    lines += _build_lines(template.entries, base, constant, ref, prefix="b")
    node = ref(template.out)
    lines += [f"    node = {node}",
              "    out = new(Tensor)",  # Tensor._wrap(node), inline
              "    cell = out._cell = Cell()",
              "    cell.node = node",
              "    out._grad_node = None",
              "    out._grad = None",
              "    out._retains = False",
              "    out._output_nr = 0",
              "    if Tracing.active is not None:",
              "        Tracing.active.created(out)",
              "    number = segment.count"]
    if template.records:
        # _record(op, operands, out, arg, name, positions), with the operand kinds `key` fixes
        parts = key[6:]
        saved, next_functions = [], []
        for k, part in enumerate(parts):
            tensor = isinstance(part, tuple) and part[0] not in ("b", "i")
            saved.append(f"({operand_node(k)}, {operand_function(k)})" if tensor else f"operands[{k}]")
        positions = key[3] if key[3] is not None else tuple(range(operand_count))
        for p in positions:
            part = parts[p]
            tensor = isinstance(part, tuple) and part[0] not in ("b", "i")
            next_functions.append(f"({operand_function(p)}, operands[{p}]._output_nr)" if tensor else "(None, 0)")
        lines += ["    fn = new(backward_class(name or op.grad_fn))",
                  "    fn.op = op",
                  f"    fn.saved = {_tuple_code(saved) if saved else '()'}",
                  "    fn.out = node",
                  "    fn.arg = arg",
                  f"    fn.next_functions = {_tuple_code(next_functions) if next_functions else '()'}",
                  f"    fn.positions = positions if positions is not None else {constant(positions)}",
                  "    fn._retained = None",
                  "    out._grad_node = fn",
                  "    segment.fn_index[id(fn)] = number",
                  "    segment.fns[number] = fn"]
    if template.out >= base:
        # NOTE: a node this call made is new to the segment: while it keeps its nodes (`has_nodes`,
        # which replay requires), `flat` holds every registered node alive, so no id can be reused
        lines.append("    segment.outputs[id(node)] = number")
    else:
        lines += ["    outputs = segment.outputs",
                  "    if id(node) not in outputs and id(node) not in segment.external_index:",
                  "        outputs[id(node)] = number"]
    lines += ["    REPLAYED[0] += 1",
              "    child.visits += 1",
              "    step.likely = segment.step = child",
              "    segment.count = number + 1",
              "    return out"]
    return lines, constants


def _make_check(step):
    step.check = _guard_function(step.key) or _no_check
    return step.check


def _no_check(segment, op, operands, arg, name, positions):
    return False


def _guard_function(key):
    """Straight-line Python deciding whether a call's guard equals `key` without building it (the
    general `_Segment.guard` is the reference), and when it does, making the registrations that guard
    makes (outside buffers, gradient sinks, float operands). It returns False, having changed nothing,
    when the guard differs or when a part is of a kind it leaves to the general guard (pending outside
    values, a value used twice before it is registered). None when `key` has such parts only.

    >>> print(_guard_function(("MUL", None, None, None, True, False, (3, None), "f")).source)
    def check(segment, op, operands, arg, name, positions):
        if op.name != 'MUL' or len(operands) != 2 or name != c0 or positions != c1:
            return False
        if GradMode.enabled is not True or GradMode.in_backward is not False:
            return False
        if arg is not c2 and (isinstance(arg, float) or not same(arg, c2)):
            return False
        outputs, external_index = segment.outputs, segment.external_index
        fn_index, acc_index = segment.fn_index, segment.acc_index
        o0 = operands[0]
        if not isinstance(o0, Tensor) or o0._output_nr:
            return False
        n0 = o0._cell.node
        if outputs.get(id(n0)) != 3:
            return False
        fn0 = o0._grad_node
        if fn0 is not None:
            return False
        o1 = operands[1]
        if not isinstance(o1, FLOATS) or isinstance(o1, Tensor):
            return False
        count = segment.count
        segment.floats.append((count, 7, float(o1)))
        return True
    """
    code = _guard_code(key)
    if code is None:
        return None
    lines, constants = code
    source = "\n".join(["def check(segment, op, operands, arg, name, positions):", *lines, "    return True"])
    namespace = {**_guard_names(), **constants}
    exec(compile(source, "<replay guard>", "exec"), namespace)
    check = namespace["check"]
    check.source = source
    return check


def _guard_code(key):
    """(the body lines of `_guard_function(key)` up to its final `return True`, the constants they
    name), or None. Shared with `_fast_function`, which goes on to replay the call."""
    op_name, arg, name, positions, enabled, in_backward, *parts = key
    constants = {}

    def constant(value):
        label = f"c{len(constants)}"
        constants[label] = value
        return label

    lines = [f"    if op.name != {op_name!r} or len(operands) != {len(parts)} or name != {constant(name)} "
             f"or positions != {constant(positions)}:",
             "        return False",
             f"    if GradMode.enabled is not {enabled} or GradMode.in_backward is not {in_backward}:",
             "        return False"]
    if arg == "f":
        lines += ["    if not isinstance(arg, float):", "        return False"]
    else:
        # NOTE: the argument itself first (the common case, and no call): `key` holds no float argument
        expected = constant(arg)
        lines += [f"    if arg is not {expected} and (isinstance(arg, float) or not same(arg, {expected})):",
                  "        return False"]
    lines += ["    outputs, external_index = segment.outputs, segment.external_index",
              "    fn_index, acc_index = segment.fn_index, segment.acc_index"]
    if any(isinstance(part, tuple) and isinstance(part[1], tuple) for part in parts):
        lines.append("    fresh = 0")
    effects, new_buffers = [], 0
    if arg == "f":
        effects.append("segment.floats.append((count, -1, arg))")
    for k, part in enumerate(parts):
        o = f"o{k}"
        lines.append(f"    {o} = operands[{k}]")
        if part is None:
            lines += [f"    if {o} is not None:", "        return False"]
            continue
        if part == "f":
            lines += [f"    if not isinstance({o}, FLOATS) or isinstance({o}, Tensor):", "        return False"]
            effects.append(f"segment.floats.append((count, {6 + k}, float({o})))")
            continue
        if part[0] in ("b", "i"):
            kinds = "BOOLS" if part[0] == "b" else "INTS"
            lines += [f"    if isinstance({o}, Tensor) or not isinstance({o}, {kinds}) or {o} != {part[1]!r}:",
                      "        return False"]
            if part[0] == "i":
                lines += [f"    if isinstance({o}, BOOLS):", "        return False"]
            continue
        where, grad = part
        n = f"n{k}"
        lines += [f"    if not isinstance({o}, Tensor) or {o}._output_nr:", "        return False",
                  f"    {n} = {o}._cell.node"]
        if isinstance(where, int):
            lines += [f"    if outputs.get(id({n})) != {where}:", "        return False"]
        elif len(where) == 2:  # an outside value this segment described before
            lines += [f"    if id({n}) in outputs or external_index.get(id({n})) != {where[1]}:",
                      "        return False"]
        elif where[2][0] == "buffer":  # an outside buffer, new to the segment
            _, shape, dtype, strides = where[2]
            lines += [f"    if {n}.buffer is None or id({n}) in outputs or id({n}) in external_index:",
                      "        return False",
                      f"    if len(external_index) != {where[1] - new_buffers} or {n}.shape != {shape!r} "
                      f"or {n}.dtype != {dtype!r} or {n}.strides != {strides!r}:",
                      "        return False"]
            effects += [f"external_index[id({n})] = {where[1]}",
                        "if segment.has_nodes:", f"    segment.flat.append({n})"]
            new_buffers += 1
        elif where[2][0] == "pending":  # a pending value from before the segment, new to it (`y = 2 * x + 3`)
            lines += [f"    if {n}.buffer is not None or id({n}) in outputs or id({n}) in external_index:",
                      "        return False",
                      f"    if not pending_known(segment, {n}, {constant(where[2])}) "
                      f"or len(external_index) != {where[1] - new_buffers}:",
                      "        return False"]
            effects += [f"external_index[id({n})] = {where[1]}",
                        "if segment.has_nodes:", f"    segment.flat.append({n})"]
            new_buffers += 1
        else:
            return None  # a constant from before the segment (a zeroed gradient): the general guard's
        fn = f"fn{k}"
        lines.append(f"    {fn} = {o}._grad_node")
        if grad is None:
            lines += [f"    if {fn} is not None:", "        return False"]
        elif grad == "h":  # history from before the segment (see _Segment._describe)
            lines += [f"    if {fn} is None or type({fn}) is AccumulateGrad or id({fn}) in fn_index:",
                      "        return False"]
        elif isinstance(grad, int):
            lines += [f"    if {fn} is None or fn_index.get(id({fn})) != {grad}:", "        return False"]
        else:
            # a gradient sink: one the segment has seen, or the next one it registers (`fresh` counts
            # those this call registers before)
            sink = constant(grad)
            lines += [f"    if {fn} is None or id({fn}) in fn_index:", "        return False",
                      f"    known{k} = acc_index.get(id({fn}))",
                      f"    if known{k} is None:",
                      f"        if type({fn}) is not AccumulateGrad or len(segment.accs) + fresh != {grad[1]}:",
                      "            return False",
                      "        fresh += 1",
                      f"    elif known{k} != {sink}:",
                      "        return False"]
            effects += [f"if known{k} is None:",
                        f"    acc_index[id({fn})] = {sink}", f"    segment.accs.append({fn})"]
    lines.append("    count = segment.count")
    lines += [f"    {line}" for line in effects]
    return lines, constants


def _pending_known(segment, root, structure) -> bool:
    """Whether `segment._pending_structure(root)` would return `structure` without describing anything
    new: what a generated check asks of a pending value from before the segment (it must change nothing
    when the guard differs). Its structure is cached, nothing under it was computed since, and the
    leaves under it are the values of this segment that they were when the structure was described.
    False also where the general guard would register new leaves (it then describes the call)."""
    cached = _PENDING_STRUCTURES.get(id(root))
    if cached is None or cached[0]() is not root:
        return False
    _, below, leaves, wheres, cached_structure = cached
    if cached_structure is not structure and cached_structure != structure:
        return False
    for node in below:
        if node.buffer is not None:
            return False
    outputs, external_index = segment.outputs, segment.external_index
    # NOTE: _where's answer for a leaf it has seen (`where` is a call number or ("x", position)),
    # which registers nothing
    for leaf, where in zip(leaves, wheres):
        if where.__class__ is int:
            if outputs.get(id(leaf)) != where:
                return False
        elif len(where) != 2 or id(leaf) in outputs or external_index.get(id(leaf)) != where[1]:
            return False
    return True


def _guard_names():
    """What generated guard checks refer to, besides their constants."""
    return {"GradMode": GradMode, "Tensor": _tensor.Tensor, "AccumulateGrad": AccumulateGrad, "same": _same,
            "pending_known": _pending_known,
            "FLOATS": (float, np.floating), "INTS": (int, np.integer), "BOOLS": (bool, np.bool_)}


def _same(value, expected) -> bool:
    """`value == expected` as a guard's lookup would decide it, False where == is not a bool: an
    argument holding a tensor or an array compares elementwise (such keys are looked up by hash,
    identity for a tensor)."""
    if value is expected:
        return True
    try:
        return (value == expected) is True
    except Exception:  # noqa: BLE001 - an argument holding tensors: bool() of their == raises
        return False


def _picker(positions):
    """The function giving the tuple of `flat[r]` for r in `positions` (C-level for two and more)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    if positions:
        single = positions[0]
        return lambda flat: (flat[single],)
    return lambda flat: ()


def _tuple_code(items):
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _scalars_below(root, named):
    """The runtime-scalar nodes in the pending graph under `root` (stopping at operands)."""
    found, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or id(node) in named or node.buffer is not None:
            continue
        seen.add(id(node))
        if node.op == "SCALAR":
            found.append(node)
        stack.extend(node.inputs)
    return found


def _external_layout(node):
    """What a value from outside the segment contributes to the graph: a buffer's layout, a runtime
    scalar's dtype, or the whole structure of a pending constant (a zeroed gradient); None otherwise."""
    if node.buffer is not None:
        return "buffer", node.shape, node.dtype, node.strides
    if node.op == "SCALAR":
        return "SCALAR", node.dtype
    return _constant_structure(node, 0)


def _constant_structure(node, depth):
    if depth > 6 or node.buffer is not None:
        return None
    if node.op == "CONST":
        return "CONST", node.arg, node.dtype
    if node.op in ("EXPAND", "RESHAPE", "CAST", "PERMUTE"):
        inner = _constant_structure(node.inputs[0], depth + 1)
        return None if inner is None else (node.op, node.arg, node.shape, node.dtype, inner)
    return None


def _new_segment():
    if Replay.root is None or Replay.steps > MAX_STEPS:
        Replay.root, Replay.steps = _Step(), 0
    Replay.segment = _Segment(Replay.root)
    return Replay.segment


# -- entry points (called by tensor.py) -------------------------------------------------------------
def call(op, operands, arg, name, positions, compute):
    """Run `compute(op, operands, arg, name, positions)`, or replay it.
    NOTE: tensor._apply tries the first case below itself (a loop's repeated call, one frame less)."""
    segment = Replay.segment or _new_segment()
    if not segment.tracking:
        return _run(segment, compute, op, operands, arg, name, positions)
    step = segment.step
    likely = step.likely
    if likely is None or likely.template is None:
        key = segment.guard(op, operands, arg, name, positions, None if likely is None else likely.key)
    elif segment.has_nodes and segment.count <= MAX_CALLS:
        # a repeated call of a loop: checked, built and registered by one generated function
        out = (likely.fast or _fast_function(likely))(segment, op, operands, arg, name, positions, step, likely)
        if out is False or out is None:
            return after_fast(out, op, operands, arg, name, positions, compute)
        return out
    elif (likely.check or _make_check(likely))(segment, op, operands, arg, name, positions):
        key = likely.key  # checked and registered by generated code
    else:
        key = segment.guard(op, operands, arg, name, positions, likely.key)
    return _described(segment, key, op, operands, arg, name, positions, compute)


def after_fast(out, op, operands, arg, name, positions, compute):
    """`call` after the fused check-and-replay of the step taken last time (`step.likely.fast` of the
    segment's step) returned `out` for this call, having replayed nothing: False, its guard differs;
    None, its guard matched (and registered) but its template refused the float operands."""
    segment = Replay.segment
    likely = segment.step.likely
    if out is False:
        key = segment.guard(op, operands, arg, name, positions, likely.key)
    else:
        key = likely.key
    return _described(segment, key, op, operands, arg, name, positions, compute)


def _described(segment, key, op, operands, arg, name, positions, compute):
    """`call` once the call's guard is known (`key`, None if unsupported): the call replayed from the
    template of the trie step its guard leads to, or run normally (and captured when due)."""
    number = segment.count
    step = segment.step
    likely = step.likely
    if key is None or number > MAX_CALLS:
        segment.tracking = False
        return _run(segment, compute, op, operands, arg, name, positions)
    if likely is not None and key is likely.key:
        child = likely
    else:
        try:
            child = step.next.get(key)
        except TypeError:  # an unhashable argument
            segment.tracking = False
            return _run(segment, compute, op, operands, arg, name, positions)
    template = child.template if child is not None else None
    if template is not None and segment.has_nodes:
        out = (template.replay or _replay_function(template, child.key))(
            segment, op, operands, arg, name, positions, step, child)
        if out is not None:
            return out
    # the values runtime scalars may come from: the operands, then a float argument
    values = (*operands, arg) if isinstance(arg, float) else operands
    Tensor = _tensor.Tensor
    operand_nodes = [o._cell.node if isinstance(o, Tensor) else None for o in operands]
    out = _run(segment, compute, op, operands, arg, name, positions)
    if Replay.segment is not segment or not segment.tracking:
        return out  # it flushed or read values midway: this segment is over
    if not isinstance(out, Tensor) or any(out is o for o in operands):
        segment.tracking = False
        return out
    if child is None:
        child = step.next[key] = _Step(key)
        Replay.steps += 1
    if segment.has_nodes and child.visits + 1 >= CAPTURE_ON_VISIT and child.template is None:
        template = segment.capture(values, operand_nodes, out)
        if template is None:
            segment.has_nodes = False
        else:
            child.template = template
    else:
        segment.has_nodes = False
    child.visits += 1
    step.likely = segment.step = child
    segment.count += 1
    segment.note_result(number, out)
    return out


def backward(root, retain, backward_now):
    """`root.backward()` (seeded with ones, no create_graph): the gradients that changed."""
    segment = Replay.segment or _new_segment()
    described = None
    if segment.tracking:
        # the common root inline: a loss an earlier call made, with the function that call recorded
        call = segment.outputs.get(id(root._cell.node))
        fn = segment.fn_index.get(id(root._grad_node))
        if call is not None and fn is not None and not root._output_nr:
            described = call, fn
        else:
            described = segment._describe(root)
    if described is None or not isinstance(described[1], int):
        # not a walk over this segment's calls: run it with its calls tracked one by one
        return backward_now(root, None, retain, False)
    key = ("backward", described, retain)
    step = segment.step
    child = step.next.get(key)
    template = child.template if child is not None else None
    if template is not None and segment.has_nodes and _backward_matches(segment, template):
        touched = _replay_backward(segment, template)
        _REPLAYED[0] += 1
    else:
        pre = [(g, None if g is None else g._cell.node) for g in (acc.variable._grad for acc in segment.accs)]
        fns = segment.fns
        alive = {i: fn.saved is not None for i, fn in fns.items()}
        touched = _run(segment, backward_now, root, None, retain, False)
        if Replay.segment is not segment or not segment.tracking:
            return touched
        segment.note_gradients(segment.count, touched)
        if child is None:
            child = step.next[key] = _Step(key)
            Replay.steps += 1
        template = None
        if segment.has_nodes and child.visits + 1 >= CAPTURE_ON_VISIT and child.template is None:
            template = segment.capture_backward(touched, pre)
            walked = [segment.fn_index.get(id(fn)) for fn in _topological([root._grad_node])
                      if type(fn) is not AccumulateGrad]
            if template is not None and None not in walked:
                template.walked = tuple(walked)
                template.freed = tuple(i for i, was in alive.items() if was and fns[i].saved is None)
                template.floats = _floats_of(segment, template.walked) if template.exact else ()
                if not any(fns[i]._retained is not None for i in walked):
                    child.template = template
        if child.template is not template or template is None:
            segment.has_nodes = False
    child.visits += 1
    segment.step = child
    segment.count += 1
    return touched


def _backward_matches(segment, template):
    fns = segment.fns
    for i in template.walked:
        if fns[i]._retained is not None:
            return False
    for i in template.freed:
        if fns[i].saved is None:
            return False
    for a, before, _ in template.effects:
        grad = segment.accs[a].variable._grad
        if (grad is None) != (before is None):
            return False
        if grad is not None and segment._where(grad._cell.node) != before:
            return False
    return not template.exact or template.floats == _floats_of(segment, template.walked)


def _floats_of(segment, calls):
    """The float values the calls numbered `calls` were given (what a baked vjp scalar derives from)."""
    if not calls:
        return ()
    floats = segment.floats
    # NOTE: `floats` is in call order (entries start with the call's number), so the calls before the
    # first of `calls` (an optimizer's updates, ahead of the forward a backward walks) are skipped
    start = bisect_left(floats, (min(calls),))
    calls = set(calls)
    found = []
    for entry in floats[start:]:
        if entry[0] in calls:
            found.append(entry)
    return tuple(found)


def _replay_backward(segment, template):
    (template.build or segment.build_function(template))(segment.flat, ())
    flat, outputs, gradients, number = segment.flat, segment.outputs, segment.gradients, segment.count
    touched = []
    for a, before, r in template.effects:
        leaf = segment.accs[a].variable
        node = flat[r]
        if before is None:
            leaf._grad = _tensor.Tensor._wrap(node)
        else:
            leaf._grad._assign(node)
        touched.append(leaf._grad)
        # named as note_gradients names them when the walk runs
        if id(node) not in outputs:
            gradients.setdefault(id(node), ("g", number, a))
    fns = segment.fns
    for i in template.freed:
        fns[i].saved = None
    return touched


def _run(segment, compute, *args):
    Replay.busy = True
    try:
        return compute(*args)
    except BaseException:
        segment.tracking = False
        raise
    finally:
        Replay.busy = False


def value_read():
    """A call read tensor values (its graph depends on data): the segment is not replayable."""
    if Replay.segment is not None:
        Replay.segment.tracking = False


def flush(nodes, cells, realize_now) -> None:
    """Compute `nodes` (a realization), by the captured plan when this segment was seen before."""
    segment = Replay.segment
    _new_segment()
    if Replay.busy or segment is None or not segment.tracking or not segment.has_nodes:
        if segment is not None:
            segment.tracking = False
        realize_now(nodes, cells)
        return
    key = segment.flush_key(nodes, cells)
    if key is None:
        realize_now(nodes, cells)
        return
    step = segment.step
    template = step.flushes.get(key)
    flat = segment.flat
    plan = cached_plan(template.plan_key, template.plan()) if template is not None else None
    if plan is not None:
        template.plan_key = plan.key  # NOTE: planning the same structure again stores it under a new key
        resolve_views(template.views(flat))
        leaves = template.leaves(flat)
        # NOTE: a view resolved at capture can stay pending here when its input is a shared constant
        # node whose state changed since (seen after other code realized 0-d constants); such a flush
        # is planned again rather than run with an unbound input
        for leaf in leaves:
            if leaf.buffer is None:
                del step.flushes[key]
                break
        else:
            plan.run(template.targets(flat), leaves, template.scalars(flat))
            _REPLAYED[1] += 1
            return
    moves = [(r, node) for r, node in enumerate(flat) if node.op in MOVEMENT and node.buffer is None]
    found = plan_for(nodes, [c.node for c in cells])
    if found is None:
        return
    plan, targets, leaves, scalars = found
    views = tuple(r for r, node in moves if node.buffer is not None)
    known = segment.positions()
    refs = [tuple(known.get(n) for n in group) for group in (targets, leaves, scalars)]
    if all(r is not None for group in refs for r in group):
        step.flushes[key] = _FlushTemplate(plan, *refs, views)
    plan.run(targets, leaves, scalars)


def stats() -> dict:
    """How much was replayed so far (for tests and benchmarks)."""
    return {"calls": _REPLAYED[0], "flushes": _REPLAYED[1], "trie": Replay.steps}
