"""Cut a pending graph into fused kernels, compile it once per structure, run it.

`realize(nodes)` computes the given nodes. The pending graph below them is cut at reductions (and at
the requested nodes); everything else fuses: each cut point becomes one store of a kernel whose body
is the SymPy formula of the elementwise chain feeding it, with broadcasting and reshapes folded into
the strides of its loads. Stores over the same index space that do not depend on each other share one
loop nest, so a forward reduction and the elementwise gradient beside it read memory once.

Programs are cached by structure: ops, shapes, dtypes, integer constants and the layout of input
buffers. Buffer contents and Python floats (runtime scalars) are bound at each call, so a training
loop compiles in its first steps and then only runs.

>>> import symgrad
>>> x = symgrad.ones(3)
>>> y = (x * 2).sum()
>>> realize([y._node]); y._node.numpy()
array(6., dtype=float32)
"""
from __future__ import annotations

import math
import sys

import sympy

import codegen
from codegen import CASTS, Gemm, Kernel, Load, Program, Store

from .graph import ITEMSIZE, NUMPY_DTYPE, Buffer, Node, contiguous_strides, pending_postorder, row_major_strides
from . import plan_cache
from .ops import OPS

import numpy as np

REDUCTIONS = {"SUM": "sum", "PROD": "prod", "MAX": "max", "MIN": "min"}
MOVEMENT = ("RESHAPE", "EXPAND", "PERMUTE", "SLICE", "WINDOW")
# nodes whose value is always stored, and read from memory by their consumers
STORED_OPS = frozenset({*REDUCTIONS, "MATMUL", "ASSEMBLE", "SCATTER_ADD", "UNWINDOW"})
PROGRAM_CACHE_LIMIT = 512
# NOTE: a fused body grows with every op it inlines, and SymPy's work on it grows faster than that;
# past this many inlined nodes an intermediate value is stored and loaded instead.
MAX_FUSED_NODES = 40
# A plan keeps this many result blocks of earlier runs for reuse (a training loop cycles through ~3).
BLOCKS_KEPT = 4


class _ProgramCache:
    """Compiled plans by structural key (bounded: the least recently used entries go first)."""

    plans: dict = {}


def program_cache_size() -> int:
    return len(_ProgramCache.plans)


def realize(nodes, store_if_computed=()) -> None:
    """Compute every node in `nodes` (and nothing already computed).

    Nodes in `store_if_computed` (pending in-place updates of live tensors) are stored too when the
    program computes them anyway, so that their history is cut without running anything extra.
    """
    found = plan_for(nodes, store_if_computed)
    if found is not None:
        plan, targets, leaves, scalars = found
        plan.run(targets, leaves, scalars)


def plan_for(nodes, store_if_computed=(), need_program=False):
    """The compiled plan computing `nodes` (from the cache when the structure was seen before, in this
    process or, through plan_cache, an earlier one), with this call's targets, input leaves and runtime
    scalars; None when everything is computed. `need_program`: the plan must hold its kernel bodies
    (`plan.program`, for inspecting them), which a plan rebuilt from disk does not."""
    targets = _unique(n for n in nodes if not n.realized)
    if not targets:
        return None
    order = pending_postorder(targets)
    if resolve_views(order):
        # NOTE: a resolved view's input was already computed, so dropping the newly computed nodes
        # leaves exactly the pending graph (no second walk needed)
        order = [n for n in order if not n.realized]
        targets = [n for n in targets if not n.realized]
        if not targets:
            return None
    in_order = {id(n): k for k, n in enumerate(order)}
    # NOTE: ordered by graph position, not by the caller's (a WeakSet's, arbitrary) order, so that
    # the same step always has the same structural key
    extra = sorted((n for n in _unique(store_if_computed) if id(n) in in_order and not n.realized),
                   key=lambda n: in_order[id(n)])
    targets = _unique([*targets, *extra])
    key, leaves, scalars = _structure(order, targets)
    plans = _ProgramCache.plans
    plan = plans.pop(key, None)
    if plan is not None and need_program and plan.program is None:
        plan = None
    if plan is None:
        record = None if need_program else plan_cache.load(key)
        if record is not None:
            plan = _Plan.from_record(record)
        else:
            plan = _Plan(order, targets, leaves, scalars)
            plan_cache.store(key, plan.record())
        if len(plans) >= PROGRAM_CACHE_LIMIT:
            plans.pop(next(iter(plans)))  # least recently used: hits move to the end below
    plans[key] = plan
    plan.key = key
    return plan, targets, leaves, scalars


def cached_plan(key, last=None):
    """The cached plan of structural `key`, counted as a use (None once the cache let it go): how a
    replayed flush, which skips `plan_for`, finds its plan without holding it past the cache's bound.
    `last`: the plan the caller found for `key` last time, if still alive."""
    plans = _ProgramCache.plans
    # NOTE: a loop with one flush a step asks for the most recently used plan: found without hashing
    # its key (a structural key is long, and hashing it costs microseconds)
    if next(reversed(plans), None) is key:
        return last if last is not None and last.key is key else plans[key]
    plan = plans.pop(key, None)
    if plan is not None:
        plans[key] = plan
    return plan


def _unique(nodes):
    seen, out = set(), []
    for n in nodes:
        if id(n) not in seen:
            seen.add(id(n))
            out.append(n)
    return out


# -- views: reshape/expand of a computed buffer cost nothing ---------------------------------------
def resolve_views(order) -> bool:
    """Turn movement ops over computed buffers into views (or host copies); True if any changed."""
    changed = False
    for node in order:
        if node.op in MOVEMENT and node.inputs[0].realized:
            source = node.inputs[0]
            view = _view_strides(node)
            if view is not None:
                node.set_buffer(source.buffer, *view)
            else:
                # NOTE: a reshape that strides cannot express (e.g. flattening an expanded tensor)
                # would need div/mod in kernel indexing; one host-side copy is simpler and rare.
                array = np.ascontiguousarray(source.numpy()).reshape(node.shape)
                node.set_buffer(Buffer.of(array), contiguous_strides(node.shape))
            changed = True
    return changed


def _view_strides(node):
    """(strides, offset) of a movement op over a computed buffer, or None if strides cannot say it."""
    source = node.inputs[0]
    if node.op == "PERMUTE":
        return tuple(source.strides[axis] for axis in node.arg), source.offset
    if node.op == "SLICE":
        offset = source.offset + sum(start * stride for (start, _), stride in zip(node.arg, source.strides))
        return tuple(step * stride for (_, step), stride in zip(node.arg, source.strides)), offset
    if node.op == "EXPAND":
        lead = len(node.shape) - len(source.shape)
        return tuple(0 if k < lead or source.shape[k - lead] == 1 else source.strides[k - lead]
                     for k in range(len(node.shape))), source.offset
    if node.op == "WINDOW":
        # input axis k at output index i is sum(maps[k][j] * i[j]) + maps[k][-1]: strides compose
        maps = node.arg
        return (tuple(sum(m[j] * s for m, s in zip(maps, source.strides)) for j in range(len(node.shape))),
                source.offset + sum(m[-1] * s for m, s in zip(maps, source.strides)))
    if source.strides == contiguous_strides(source.shape):
        return contiguous_strides(node.shape), source.offset
    return None


# -- structural key --------------------------------------------------------------------------------
def _structure(order, targets):
    """A hashable description of the pending graph that ignores buffer contents and float values."""
    position = {id(n): k for k, n in enumerate(order)}
    leaves, leaf_index, scalars, entries = [], {}, [], []
    for node in order:
        if node.op == "SCALAR":
            scalars.append(node)
            entries.append(("SCALAR", node.dtype))
            continue
        refs = []
        for child in node.inputs:
            if child.realized:
                k = leaf_index.get(id(child))
                if k is None:
                    k = leaf_index[id(child)] = len(leaves)
                    leaves.append(child)
                refs.append(-1 - k)
            else:
                refs.append(position[id(child)])
        entries.append((node.op, node.arg, node.shape, node.dtype, tuple(refs)))
    layout = tuple((n.shape, n.dtype, n.strides) for n in leaves)
    return (tuple(entries), layout, tuple(position[id(t)] for t in targets)), leaves, scalars


# -- the plan --------------------------------------------------------------------------------------
class _NeedsBuffer(Exception):
    """A reshape of a computed value whose layout cannot be expressed with strides."""

    def __init__(self, node):
        self.node = node


class _Plan:
    """Which nodes are stored, the kernels computing them, and how to bind a call's buffers."""

    def __init__(self, order, targets, leaves, scalars):
        self.leaf_count = len(leaves)
        self.leaf_bytes = [math.prod(n.shape) * ITEMSIZE[n.dtype] for n in leaves]
        position = {id(n): k for k, n in enumerate(order)}
        self.target_positions = [position[id(t)] for t in targets]
        forced: set[int] = _cut_long_chains(order, self.target_positions) | _reshaped_operands(order)
        # A requested transpose of a product used nowhere else is computed transposed by the GEMM itself
        # (C.T = B.T @ A.T): a weight gradient (x.T @ g).T costs no copy. A requested reshape of one is
        # the product's own row-major memory: a convolution's weight gradient (g @ cols.T).reshape(w.shape)
        # is written by the GEMM straight into the result (a copy of a 512x512x3x3 gradient cost 1.7 ms).
        uses: dict[int, int] = {}
        for node in order:
            for child in node.inputs:
                uses[id(child)] = uses.get(id(child), 0) + 1
        targets_at = set(self.target_positions)
        self.folded = {id(n.inputs[0]) for n in order
                       if (_transposes_a_product(n) or _reshapes_a_product(n)) and position[id(n)] in targets_at
                       and uses[id(n.inputs[0])] == 1 and position[id(n.inputs[0])] not in targets_at}
        while True:
            stored = [n for n in order if id(n) not in self.folded and (
                id(n) in forced or n.op in STORED_OPS or position[id(n)] in self.target_positions)]
            # Consumers read reductions, products and forced buffers from memory; other stored values
            # (requested elementwise results) are recomputed inside each consumer's loop instead.
            loaded = {id(n) for n in stored if id(n) in forced or n.op in STORED_OPS or (
                n.op in ("PERMUTE", "RESHAPE") and id(n.inputs[0]) in self.folded)}  # NOTE: its product is not stored
            try:
                self._build(position, stored, loaded, leaves, scalars)
                break
            except _NeedsBuffer as missing:
                if missing.node.realized or id(missing.node) in forced:
                    raise AssertionError(f"scheduler cannot lay out {missing.node}") from None
                forced.add(id(missing.node))
        self._lay_out()
        self.native = codegen.compile_program(self.program)

    def _build(self, position, stored, loaded, leaves, scalars):
        slot_of_leaf = {id(n): k for k, n in enumerate(leaves)}
        self.stored_positions = [position[id(n)] for n in stored]
        self.stored_specs = [(n.shape, n.dtype) for n in stored]
        slot_of_stored = {id(n): len(leaves) + k for k, n in enumerate(stored)}
        scalar_symbols = {id(n): sympy.Symbol(f"s{k}", real=True) for k, n in enumerate(scalars)}
        dtypes = [n.dtype for n in leaves] + [n.dtype for n in stored]
        outputs = []
        products = []
        level = {}
        for node in stored:
            if node.op == "MATMUL" or (node.op in ("PERMUTE", "RESHAPE") and id(node.inputs[0]) in self.folded):
                gemm, depends_on = _gemm(node, slot_of_leaf, slot_of_stored, loaded)
                level[id(node)] = 1 + max((level[id(d)] for d in depends_on), default=-1)
                products.append((level[id(node)], gemm))
                continue
            if node.op == "SCATTER_ADD":
                # a copy of the base, then every src element added at its computed position
                base, index, src = node.inputs
                copy = _ExpressionBuilder(slot_of_leaf, slot_of_stored, loaded, scalar_symbols, node, base.shape)
                first = copy.region_store(base, full_region(base.shape), slot_of_stored[id(node)], node.shape)
                level_copy = 1 + max((level[id(d)] for d in copy.depends_on), default=-1)
                products.append((level_copy, Kernel(base.shape, tuple(copy.loads.values()), (first,))))
                add = _ExpressionBuilder(slot_of_leaf, slot_of_stored, loaded, scalar_symbols, node, index.shape)
                second = add.scatter_store(src, index, node.arg, slot_of_stored[id(node)], node.shape)
                level[id(node)] = 1 + max([level_copy, *(level[id(d)] for d in add.depends_on)])
                products.append((level[id(node)], Kernel(index.shape, tuple(add.loads.values()), (second,))))
                continue
            if node.op == "UNWINDOW":
                # zeros, then one pass over the input adding each element where its map points (the
                # maps are affine, so the accumulating store's address is strided, never computed)
                source, maps, slot = node.inputs[0], node.arg, slot_of_stored[id(node)]
                # NOTE: the loop nest follows the source's own axis order, not a permuted view of it: a
                # convolution's dcols (a GEMM result laid out (C, K, N, L)) walked as (N, C, K, L)
                # jumps across the whole buffer (1.5x slower, measured on ResNet-18's layer1)
                while source.op == "PERMUTE" and not source.realized and id(source) not in loaded:
                    perm = source.arg
                    maps = tuple(tuple(row[perm.index(j)] for j in range(len(perm))) + (row[-1],) for row in maps)
                    source = source.inputs[0]
                fill = Store(slot, contiguous_strides(node.shape), sympy.Integer(0))
                products.append((0, Kernel(node.shape, (), (fill,))))
                add = _ExpressionBuilder(slot_of_leaf, slot_of_stored, loaded, scalar_symbols, node, source.shape)
                store = add.unwindow_store(source, maps, slot, node.shape)
                level[id(node)] = 1 + max((level[id(d)] for d in add.depends_on), default=0)
                products.append((level[id(node)], Kernel(source.shape, tuple(add.loads.values()), (store,))))
                continue
            if node.op == "ASSEMBLE":
                # one kernel per part, in order: a later part overwrites an earlier one's region
                previous = -1
                for part, region in zip(node.inputs, node.arg):
                    builder = _ExpressionBuilder(slot_of_leaf, slot_of_stored, loaded, scalar_symbols, node,
                                                 part.shape)
                    store = builder.region_store(part, region, slot_of_stored[id(node)], node.shape)
                    previous = 1 + max([previous, *(level[id(d)] for d in builder.depends_on)])
                    products.append((previous, Kernel(part.shape, tuple(builder.loads.values()), (store,))))
                level[id(node)] = previous
                continue
            builder = _ExpressionBuilder(slot_of_leaf, slot_of_stored, loaded, scalar_symbols, node)
            space, store = builder.store_for(node)
            level[id(node)] = 1 + max((level[id(d)] for d in builder.depends_on), default=-1)
            outputs.append((level[id(node)], space, builder.loads, store))
        groups: dict = {}
        for lvl, space, loads, store in outputs:
            loads_so_far, stores = groups.setdefault((lvl, space), ({}, []))
            loads_so_far.update(loads)
            stores.append(store)
        steps = [(lvl, Kernel(space, tuple(loads.values()), tuple(stores)))
                 for (lvl, space), (loads, stores) in groups.items()] + products
        kernels = [kernel for lvl, kernel in sorted(steps, key=lambda step: step[0])]
        self.program = Program(tuple(dtypes), tuple(kernels), tuple(scalar_symbols.values()))

    def _lay_out(self):
        # Stored values that are not targets live in buffers kept with the plan; targets get fresh
        # memory at every run, carved from one block (one allocation, one address lookup).
        target_set = set(self.target_positions)
        self.temporaries, self.slots, self.fresh = [], [], {}
        block_size = 0
        for pos, (shape, dtype) in zip(self.stored_positions, self.stored_specs):
            count = math.prod(shape)
            if pos not in target_set:
                array = np.empty(max(count, 1), NUMPY_DTYPE[dtype])
                self.temporaries.append(array)
                self.slots.append((array.ctypes.data, None))
                continue
            self.slots.append((None, block_size))
            self.fresh[pos] = (block_size, count * ITEMSIZE[dtype], NUMPY_DTYPE[dtype], contiguous_strides(shape))
            block_size += -(-max(count, 1) * ITEMSIZE[dtype] // 64) * 64  # 64-byte aligned
        self.block_size = block_size
        specs = dict(zip(self.stored_positions, self.stored_specs))
        self.result_specs = [(*specs[pos], *self.fresh[pos]) for pos in self.target_positions]
        self.blocks: list = []  # earlier runs' _Blocks, reused once unreferenced
        self.result_sets: list = []  # the same for run_fresh, with the result nodes made in each

    def record(self) -> dict:
        """What a later process needs to rebuild this plan without building its kernels (plan_cache)."""
        return {"leaf_bytes": self.leaf_bytes, "target_positions": self.target_positions,
                "stored_positions": self.stored_positions, "stored_specs": self.stored_specs,
                "buffers": list(self.program.buffers), "scalars": len(self.program.scalars),
                "ir": self.native.ir}

    @classmethod
    def from_record(cls, record: dict) -> "_Plan":
        """The plan a record describes; its code comes from the object cache (or is compiled from the
        recorded IR). It has no `program` (kernel bodies): `plan_for(..., need_program=True)` builds one."""
        plan = cls.__new__(cls)
        plan.leaf_count = len(record["leaf_bytes"])
        plan.leaf_bytes = record["leaf_bytes"]
        plan.target_positions = record["target_positions"]
        plan.stored_positions = record["stored_positions"]
        plan.stored_specs = [(tuple(shape), dtype) for shape, dtype in record["stored_specs"]]
        plan.program = None
        plan._lay_out()
        # NOTE: NativeProgram only needs the program's buffer and scalar counts to call it
        outline = Program(tuple(record["buffers"]), (), tuple(sympy.Symbol(f"s{k}") for k in range(record["scalars"])))
        plan.native = codegen.NativeProgram(outline, record["ir"], codegen.compile_ir(record["ir"], "program"))
        return plan

    def _block(self, addresses) -> "_Block":
        # NOTE: a block is free when nothing but this list refers to it (every result carved from it has
        # died). Reusing it avoids the page faults that fresh memory costs at every step of a loop.
        for block in self.blocks:
            if sys.getrefcount(block.array) == 2:
                return block
        block = _Block(self, *self._new_block(addresses))
        if len(self.blocks) < BLOCKS_KEPT:
            self.blocks.append(block)
        return block

    def _new_block(self, addresses):
        # NOTE: results start on a cache line and not just above an input modulo 4 KiB (see
        # codegen/memory.py: a gradient allocated right after its parameter made a step 1.6x slower)
        block = np.empty(self.block_size + codegen.memory.PAGE + codegen.memory.LINE, np.uint8)
        inputs = [(address, self.leaf_bytes[k]) for k, address in enumerate(addresses[:len(self.leaf_bytes)])]
        outputs = [(offset, nbytes) for offset, nbytes, *_ in self.fresh.values()]
        shift = codegen.memory.output_shift(block.ctypes.data, outputs, inputs)
        return block, block.ctypes.data + shift, shift

    def run(self, targets, leaves, scalars):
        addresses = [leaf.buffer.address + leaf.offset * ITEMSIZE[leaf.dtype] for leaf in leaves]
        self.run_bound(targets, addresses, [n.arg for n in scalars])

    def run_bound(self, targets, addresses, scalar_values):
        """Run with the leaves' data addresses and the runtime scalars' values given; the results land
        in `targets` (nodes shaped like this plan's targets)."""
        block = self._block(addresses)
        array = block.array  # NOTE: held while the native code runs, so no other run takes the block
        arguments = block.arguments
        if arguments is None:
            # its first run: the plain call (a cold first step makes no argument arrays to keep)
            block.arguments = False
            self.native(addresses + block.slot_addresses, scalar_values)
        else:
            if arguments is False:
                arguments = block.arguments = self.native.bound_arguments()
                arguments.addresses[self.leaf_count:] = block.slot_addresses
            # NOTE: a loop reusing this block mostly brings the same inputs as last time (the results of
            # the block before): filling a ctypes array costs more than comparing two lists
            if addresses != block.leaf_addresses:
                arguments.addresses[:len(addresses)] = addresses
                block.leaf_addresses = addresses
            if scalar_values:
                arguments.scalars[:len(scalar_values)] = scalar_values
            arguments.call()
        table = Node._table
        for node, (offset, nbytes, np_dtype, address, strides) in zip(targets, block.results):
            # NOTE: node.set_buffer(Buffer.carved(array, offset, nbytes, np_dtype, address), strides)
            # inline, without their two frames per result: an Adam step's flush stores 17
            key = node._key
            if key is not None:
                if table.get(key) is node:
                    del table[key]
                node._key = None
            buffer = Buffer()
            buffer._array = None
            buffer.address = address
            buffer._carve = (array, offset, nbytes, np_dtype)
            node.op = "BUFFER"
            node.inputs = ()
            node.arg = None
            node.buffer = buffer
            node.strides = strides
            node.offset = 0
            node.pending_size = 0

    def run_fresh(self, addresses, scalar_values) -> "_ResultSet":
        """`run_bound` for a caller that wants its results as computed nodes (a compiled call: no pending
        nodes to make first): the set holding them (`.nodes`, and their data addresses `.starts`). The
        nodes of a run whose results have all died are handed out again, holding the new values: making
        nodes and buffers is most of what a tiny step costs."""
        sets = self.result_sets
        getrefcount = sys.getrefcount
        # NOTE: looked for from the oldest: a loop that keeps one step's results alternates two sets. The
        # idle case of `unreferenced` is tested first, in one sum (a tiny compiled step is all such
        # overhead): no count is ever below its idle value, so an idle total means each is idle.
        for k, results in enumerate(sets):
            if sum(map(getrefcount, results.members)) == results.idle_total or results.unreferenced():
                if k != len(sets) - 1:
                    sets.append(sets.pop(k))
                break
        else:
            results = _ResultSet.made_for(self, addresses)
            if len(sets) < BLOCKS_KEPT:
                sets.append(results)
        block = results.block  # NOTE: held while the native code runs, so the set is not free meanwhile
        arguments = results.arguments
        # NOTE: a loop alternating two sets gives each the same input addresses every time it comes back
        # (the other set's results): filling a ctypes array costs more than comparing two lists
        if addresses != results.last_addresses:
            arguments.addresses[:len(addresses)] = addresses
            results.last_addresses = list(addresses)
        if scalar_values:  # NOTE: always: equal lists can differ in the sign of a zero
            arguments.scalars[:len(scalar_values)] = scalar_values
        arguments.call()
        del block
        return results


class _Block:
    """Memory for one run's results, with what a run there needs: the addresses of the plan's stored
    values in it, each target's place, and (from its second run) argument arrays of its own."""

    __slots__ = ("array", "slot_addresses", "results", "arguments", "leaf_addresses")

    def __init__(self, plan, array, base, shift):
        self.array = array
        self.slot_addresses = [fixed if fixed is not None else base + offset for fixed, offset in plan.slots]
        self.results = []  # per target: (offset in `array`, bytes, numpy dtype, address, strides)
        for pos in plan.target_positions:
            offset, nbytes, np_dtype, strides = plan.fresh[pos]
            self.results.append((shift + offset, nbytes, np_dtype, base + offset, strides))
        self.arguments = None  # None before the first run, False before the second, then kept arrays
        self.leaf_addresses = None  # the input addresses `arguments` holds


class _ResultSet:
    """A block of memory and the computed nodes of one run's results, carved from it. Once nothing
    else refers to the nodes, their buffers or the block, a later run writes there and returns them
    again: nobody can tell them from new nodes, since nobody holds the old ones."""

    __slots__ = ("block", "arguments", "nodes", "buffers", "starts", "members", "idle", "idle_total",
                 "last_addresses")

    def __init__(self, plan, block, base, shift):
        self.block = block
        # NOTE: argument arrays of its own, with the addresses of the plan's stored values filled in once
        # (only the inputs' change from run to run); a run holding the set holds these too
        self.arguments = plan.native.bound_arguments()
        self.arguments.addresses[plan.leaf_count:] = [fixed if fixed is not None else base + offset
                                                      for fixed, offset in plan.slots]
        nodes, buffers = [], []
        for shape, dtype, offset, nbytes, np_dtype, strides in plan.result_specs:
            node = Node.raw("BUFFER", (), None, shape, dtype, 0)
            node.buffer = Buffer.carved(block, shift + offset, nbytes, np_dtype, base + offset)
            node.strides = strides
            nodes.append(node)
            buffers.append(node.buffer)
        self.nodes, self.buffers = nodes, tuple(buffers)
        self.starts = tuple(buffer.address for buffer in buffers)
        self.members = (*nodes, *buffers, block)  # NOTE: a tuple: counted alike wherever it is read
        self.idle, self.idle_total = None, None
        self.last_addresses = None  # the input addresses `arguments` holds

    @staticmethod
    def made_for(plan, addresses) -> "_ResultSet":
        results = _ResultSet(plan, *plan._new_block(addresses))
        # NOTE: what the reference counts are while nothing outside refers to the set: measured now,
        # when that is so by construction
        results.idle = results._holders()
        results.idle_total = sum(map(sys.getrefcount, results.members))
        return results

    def _holders(self):
        """Reference counts of the nodes (summed), of their buffers (summed) and of the block. No count
        is ever below its idle value, so equal sums mean that each one is idle."""
        getrefcount = sys.getrefcount
        return sum(map(getrefcount, self.nodes)), sum(map(getrefcount, self.buffers)), getrefcount(self.block)

    def unreferenced(self) -> bool:
        """Whether only this set refers to its nodes, their buffers and its block."""
        holders, idle = self._holders(), self.idle
        if holders == idle:
            return True
        if holders[:2] != idle[:2]:
            return False  # a node or a buffer is held
        # NOTE: a numpy view a buffer cached when its value was read refers to the block too: one only
        # the buffer holds is dropped (it is made again if needed), one that anybody else holds (or a
        # view derived from it) keeps the set
        for buffer in self.buffers:
            if buffer._array is not None and sys.getrefcount(buffer._array) == 2:
                buffer._array = None
        return self._holders() == self.idle


class _ExpressionBuilder:
    """The SymPy body of one stored node, with loads over its kernel's index space."""

    def __init__(self, slot_of_leaf, slot_of_stored, loaded, scalar_symbols, root, space=None):
        self.slot_of_leaf, self.slot_of_stored, self.loaded = slot_of_leaf, slot_of_stored, loaded
        self.scalar_symbols, self.root = scalar_symbols, root
        if space is None:
            space = root.inputs[0].shape if root.op in REDUCTIONS else root.shape
        self.space = tuple(space)
        self.loads: dict = {}
        self.depends_on: list = []
        self.memo: dict = {}

    def store_for(self, node):
        if node.op in REDUCTIONS:
            source = node.inputs[0]
            space = source.shape
            expr = self.expr(source, _identity_map(len(space)))
            strides = tuple(0 if k in node.arg else s for k, s in enumerate(row_major_strides(node.shape)))
            return space, Store(self.slot_of_stored[id(node)], strides, expr, REDUCTIONS[node.op])
        space = node.shape
        expr = self._compute(node, _identity_map(len(space)))
        return space, Store(self.slot_of_stored[id(node)], contiguous_strides(space), expr)

    def region_store(self, part, region, slot, shape):
        """Store `part` into the region ((start, step) per axis) of a buffer of `shape`."""
        row_major = row_major_strides(shape)
        strides = tuple(0 if n == 1 else step * stride for n, (_, step), stride in zip(part.shape, region, row_major))
        offset = sum(start * stride for (start, _), stride in zip(region, row_major))
        value = self.expr(part, _identity_map(len(part.shape)))
        return Store(slot, strides, value, offset=offset)

    def unwindow_store(self, source, maps, slot, shape):
        """Add `source` (over this kernel's space, its shape) into a buffer of `shape` at each
        element's mapped position: buffer axis k at index i is sum(maps[k][j] * i[j]) + maps[k][-1]."""
        row_major = row_major_strides(shape)
        width = len(source.shape)
        strides = tuple(0 if source.shape[j] == 1 else sum(m[j] * s for m, s in zip(maps, row_major))
                        for j in range(width))
        offset = sum(m[-1] * s for m, s in zip(maps, row_major))
        value = self.expr(source, _identity_map(width))
        return Store(slot, strides, value, reduce="add", offset=offset)

    def scatter_store(self, src, index, dim, slot, shape):
        """Add src into a buffer of `shape` at (..., index, ...) along dim, over index's shape."""
        identity = _identity_map(len(index.shape))
        row_major = row_major_strides(shape)
        strides = tuple(0 if k == dim or n == 1 else s for k, (n, s) in enumerate(zip(index.shape, row_major)))
        return Store(slot, strides, self.expr(src, identity), reduce="add", index=self.expr(index, identity),
                     index_stride=row_major[dim])

    def expr(self, node, coeffs):
        """`node`'s value at the kernel's index, where node index[k] = sum(coeffs[k][i] * index[i]) +
        coeffs[k][-1]: one affine map per node axis (the last entry is a constant offset)."""
        key = (id(node), coeffs)
        if key not in self.memo:
            if node.realized:
                self.memo[key] = self._load(self.slot_of_leaf[id(node)], node.strides, coeffs, node.dtype)
            elif id(node) in self.loaded and node is not self.root:
                self.depends_on.append(node)
                self.memo[key] = self._load(self.slot_of_stored[id(node)], row_major_strides(node.shape), coeffs, node.dtype)
            else:
                self.memo[key] = self._compute(node, coeffs)
        return self.memo[key]

    def _load(self, slot, strides, coeffs, dtype, index=None, index_stride=0):
        width = self._space_rank()
        flat = tuple(sum(strides[k] * coeffs[k][i] for k in range(len(strides))) for i in range(width))
        offset = sum(strides[k] * coeffs[k][width] for k in range(len(strides)))
        key = (slot, flat, offset, index, index_stride)
        load = self.loads.get(key)
        if load is None:
            assumptions = {"real": True} if dtype in ("float32", "float64") else (
                {"integer": True} if dtype == "int64" else {})
            # NOTE: named by content, so equal loads of different stores in one kernel are one symbol
            name = f"b{slot}_" + "_".join(str(s).replace("-", "m") for s in flat) + (f"_o{offset}" if offset else "")
            if index is not None:
                name += f"_at{len(self.loads)}"  # computed positions: one symbol per distinct index
            symbol = sympy.Symbol(name, **assumptions)
            load = self.loads[key] = Load(symbol, slot, flat, offset, index, index_stride)
        return sympy.Ne(load.symbol, 0) if dtype == "bool" else load.symbol

    def _space_rank(self):
        return len(self.space)

    def _compute(self, node, coeffs):
        op = node.op
        if op == "CONST":
            return sympy.true if node.arg is True else sympy.false if node.arg is False else sympy.Integer(node.arg)
        if op == "SCALAR":
            return self.scalar_symbols[id(node)]
        if op == "EXPAND":
            source = node.inputs[0]
            lead = len(node.shape) - len(source.shape)
            zero = (0,) * (self._space_rank() + 1)
            inner = tuple(zero if source.shape[j] == 1 else coeffs[j + lead] for j in range(len(source.shape)))
            return self.expr(source, inner)
        if op == "RESHAPE":
            return self._reshape(node, coeffs)
        if op == "GATHER":
            source, index = node.inputs
            found = _strided_buffer(source, self.slot_of_leaf, self.slot_of_stored, self.loaded)
            if found is None:
                raise _NeedsBuffer(source)
            slot, strides, base = found
            if base is not None:
                self.depends_on.append(base)
            dim = node.arg
            zero = (0,) * (self._space_rank() + 1)
            static = tuple(zero if k == dim else axis_map for k, axis_map in enumerate(coeffs))
            return self._load(slot, strides, static, source.dtype, index=self.expr(index, coeffs),
                              index_stride=strides[dim])
        if op == "PERMUTE":
            inner = [None] * len(node.arg)
            for k, axis in enumerate(node.arg):
                inner[axis] = coeffs[k]
            return self.expr(node.inputs[0], tuple(inner))
        if op == "SLICE":
            inner = tuple(tuple(step * c for c in axis_map[:-1]) + (start + step * axis_map[-1],)
                          for (start, step), axis_map in zip(node.arg, coeffs))
            return self.expr(node.inputs[0], inner)
        if op == "WINDOW":
            # an affine view (sliding windows, im2col): compose its map with the kernel's
            width = self._space_rank()
            inner = tuple(tuple(sum(m[j] * coeffs[j][i] for j in range(len(coeffs))) for i in range(width))
                          + (sum(m[j] * coeffs[j][width] for j in range(len(coeffs))) + m[-1],)
                          for m in node.arg)
            return self.expr(node.inputs[0], inner)
        if op == "CAST":
            value = self.expr(node.inputs[0], coeffs)
            if node.dtype == "bool":
                return sympy.Ne(value, 0)
            return CASTS[node.dtype](value)
        if op in STORED_OPS:
            raise AssertionError(f"{op} results are always stored")
        values = [self.expr(child, coeffs) for child in node.inputs]
        return OPS[op].formula(*values)

    def _reshape(self, node, coeffs):
        source = node.inputs[0]
        width = self._space_rank()
        # the flat (row-major) position in the reshaped value is one affine map of the index
        flat = tuple(sum(s * coeffs[k][i] for k, s in enumerate(row_major_strides(node.shape))) for i in range(width + 1))
        if source.realized and source.strides == contiguous_strides(source.shape):
            return self._load(self.slot_of_leaf[id(source)], (1,), (flat,), source.dtype)
        if id(source) in self.loaded:
            self.depends_on.append(source)
            return self._load(self.slot_of_stored[id(source)], (1,), (flat,), source.dtype)
        inner = _split_linear(flat, source.shape, self._space_extent())
        if inner is None:
            raise _NeedsBuffer(source)
        return self.expr(source, inner)

    def _space_extent(self):
        return self.space


def _cut_long_chains(order, target_positions):
    """Nodes to store so that no kernel body inlines more than MAX_FUSED_NODES distinct graph nodes."""
    inlined: dict[int, frozenset] = {}
    cut: set[int] = set()
    targets = set(target_positions)
    for k, node in enumerate(order):
        inside = frozenset({id(node)}).union(*(inlined[id(c)] for c in node.inputs if not c.realized))
        if len(inside) > MAX_FUSED_NODES and node.op not in MOVEMENT and node.inputs:
            cut.add(id(node))
            inside = frozenset()
        # reductions and requested values are cut points already: consumers load them
        inlined[id(node)] = frozenset() if (node.op in STORED_OPS or id(node) in cut) else inside
        if k in targets and node.op not in STORED_OPS:
            inlined[id(node)] = inside
    return cut


def _reshaped_operands(order):
    """Sources of reshaped GEMM operands that strides cannot express (im2col windows, a permuted
    gradient): stored up front in their own shape, read through the reshape, instead of being found
    one per failed build."""
    found = set()
    for node in order:
        if node.op != "MATMUL":
            continue
        for operand in node.inputs:
            while operand.op == "PERMUTE" and not operand.realized:
                operand = operand.inputs[0]
            if operand.op == "RESHAPE" and not operand.realized:
                source = operand.inputs[0]
                if not source.realized and source.op not in STORED_OPS and source.op != "RESHAPE":
                    found.add(id(source))
    return found


def _transposes_a_product(node):
    return (node.op == "PERMUTE" and node.arg == (1, 0) and node.inputs[0].op == "MATMUL"
            and not node.inputs[0].realized)


def _reshapes_a_product(node):
    return node.op == "RESHAPE" and node.inputs[0].op == "MATMUL" and not node.inputs[0].realized


def _gemm(node, slot_of_leaf, slot_of_stored, loaded):
    """The Gemm computing a MATMUL node (or the transpose of a 2-D one, or a reshape of one), and the
    stored nodes it reads."""
    transposed = node.op == "PERMUTE"
    product = node.inputs[0] if node.op in ("PERMUTE", "RESHAPE") else node
    sources = product.inputs[::-1] if transposed else product.inputs
    shape = node.shape if transposed else product.shape  # the layout C is written in
    operands, depends_on = [], []
    for source in sources:
        found = _strided_buffer(source, slot_of_leaf, slot_of_stored, loaded)
        if found is None and source.op == "RESHAPE" and not source.inputs[0].realized \
                and id(source.inputs[0]) not in slot_of_stored:
            # NOTE: a reshaped operand (im2col windows, a permuted gradient) is stored once in its
            # source's shape and read through the reshape, rather than stored twice
            raise _NeedsBuffer(source.inputs[0])
        if found is None or not _is_matrix_layout(found[1][-2:], source.shape[-2:]):
            raise _NeedsBuffer(source)
        slot, strides, base = found
        if base is not None:
            depends_on.append(base)
        operands.append((slot, strides[::-1] if transposed else strides))
    (a_slot, a_strides), (b_slot, b_strides) = operands
    m, n = shape[-2:]
    k = sources[0].shape[-2] if transposed else sources[0].shape[-1]
    c_strides = row_major_strides(shape)
    gemm = Gemm(a_slot, b_slot, slot_of_stored[id(node)], m, n, k, tuple(a_strides[-2:]), tuple(b_strides[-2:]),
                tuple(shape[:-2]), tuple(a_strides[:-2]), tuple(b_strides[:-2]), tuple(c_strides[:-2]))
    return gemm, depends_on


def _strided_buffer(node, slot_of_leaf, slot_of_stored, loaded):
    """(slot, element strides, stored node or None) if `node` is a buffer seen through movement ops."""
    if node.realized:
        return slot_of_leaf[id(node)], node.strides, None
    if id(node) in slot_of_stored:
        # NOTE: a stored value (a product, or a requested result such as updated weights) is read back
        # from memory, so `w.t()` of freshly updated weights costs the GEMM a transpose flag, not a copy
        return slot_of_stored[id(node)], row_major_strides(node.shape), node
    if node.op == "RESHAPE" and id(node.inputs[0]) in slot_of_stored:
        return slot_of_stored[id(node.inputs[0])], row_major_strides(node.shape), node.inputs[0]
    if node.op in ("PERMUTE", "EXPAND"):
        inner = _strided_buffer(node.inputs[0], slot_of_leaf, slot_of_stored, loaded)
        if inner is None:
            return None
        slot, strides, base = inner
        source = node.inputs[0]
        if node.op == "PERMUTE":
            return slot, tuple(strides[axis] for axis in node.arg), base
        lead = len(node.shape) - len(source.shape)
        return slot, tuple(0 if k < lead or source.shape[k - lead] == 1 else strides[k - lead]
                           for k in range(len(node.shape))), base
    return None


def _is_matrix_layout(strides, shape):
    """BLAS reads a matrix whose rows or columns are contiguous."""
    rows, cols = shape
    row_stride, col_stride = strides
    return col_stride == 1 or row_stride == 1 or cols == 1 or rows == 1


def full_region(shape):
    return tuple((0, 1) for _ in shape)


def _identity_map(rank):
    """Node index k = kernel index k, offset 0."""
    return tuple(tuple(1 if i == k else 0 for i in range(rank + 1)) for k in range(rank))


def _split_linear(flat, shape, extent):
    """Affine maps per axis of `shape` for a flat position `sum(flat[i] * index[i]) + flat[-1]`, or
    None if an index axis would carry from one axis into the next (that needs div/mod, so we store
    instead)."""
    if 0 in shape or 0 in extent:
        return tuple(tuple(0 for _ in flat) for _ in shape)  # nothing is read from an empty tensor
    strides = row_major_strides(shape)
    linear, offset = flat[:-1], flat[-1]
    coeffs = [[0] * len(flat) for _ in shape]
    reach = [0] * len(shape)
    for axis, (n, stride) in enumerate(zip(shape, strides)):
        coeffs[axis][-1] = (offset // stride) % n
        reach[axis] = coeffs[axis][-1]
    for i, step in enumerate(linear):
        if step == 0 or extent[i] == 1:
            continue
        axis = next((k for k in range(len(shape)) if shape[k] > 1 and strides[k] <= step < strides[k] * shape[k]),
                    None)
        if axis is None or step % strides[axis]:
            return None
        coeffs[axis][i] = step // strides[axis]
        reach[axis] += coeffs[axis][i] * (extent[i] - 1)
    if any(r >= n for r, n in zip(reach, shape)):
        return None
    return tuple(tuple(c) for c in coeffs)
