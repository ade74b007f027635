"""Lower a `Program` to LLVM IR with llvmlite.ir.

Each kernel becomes an internal function with one `noalias` pointer per buffer it touches; the
program is one exported function `void program(ptr buffers, ptr scalars)` that loads the buffer
addresses and runtime scalars (float64) from two arrays and calls the kernels in order, so running a
whole program is a single native call. `Gemm` entries become functions of the same shape that call
BLAS (see `blas.lower_gemm`).

Kernel bodies are scalar code in canonical counted loops; LLVM's loop vectorizer turns them into SIMD
code. Everything in a body must therefore be vectorizable: transcendentals come from `mathlib`
(branch-free polynomials) rather than libm calls, which LLVM would scalarize.

>>> import sympy
>>> from codegen.kernel import Kernel, Load, Program, Store
>>> x = sympy.Symbol("x", real=True)
>>> k = Kernel((8,), (Load(x, 0, (1,)),), (Store(1, (1,), sympy.exp(x) + 1),))
>>> "define void @\\"program\\"" in lower_program(Program(("float32", "float32"), (k,)))
True
"""
from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

import llvmlite.ir as ir
import numpy as np
import sympy
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanAtom, BooleanFunction

from . import blas, mathlib, memory, parallel, rewrite
from .kernel import Cast, Gemm, Kernel, Program, Store

I1, I8, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
REGISTER_TYPE = {"float32": F32, "float64": F64, "int64": I64, "bool": I1}
MEMORY_TYPE = {"float32": F32, "float64": F64, "int64": I64, "bool": I8}
FLOATS = ("float32", "float64")

# NOTE: only `contract` on elementwise arithmetic: it lets LLVM form FMAs, while `nnan`/`ninf`
# (part of `fast`) would let it delete the NaN checks of maximum/minimum and break overflow paths.
ARITH = ("contract",)
# Reductions need `reassoc` or the loop vectorizer keeps a serial scalar chain (see shared/notes).
REDUCE_FLAGS = ("reassoc", "contract")
SUM_BLOCK = 4096
# The alias-scope domain that marks stores for non-temporal hints (see _streamed_stores).
STREAM_DOMAIN = "codegen.stream"
ITEMSIZE = {"float32": 4, "float64": 8, "int64": 8, "bool": 1}
REGISTER_REDUCTIONS = ("sum", "prod", "max", "min")
# Programs with more kernels than this keep each kernel a function of its own (see _KernelLowering).
INLINED_KERNELS = 16


def lower_program(program: Program, entry: str = "program") -> str:
    """Return the LLVM IR text of `program`, with `entry` as the exported function's name."""
    module = ir.Module(name=entry)
    kernel_fns = [
        blas.lower_gemm(module, program, i, k) if isinstance(k, Gemm)
        else _KernelLowering(module, program, i, k, _read_after(program, i)).function
        for i, k in enumerate(program.kernels)
    ]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR]), name=entry)
    buffers_arg, scalars_arg = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    addresses = [b.load(b.gep(buffers_arg, [ir.Constant(I64, i)], source_etype=PTR), typ=PTR) for i in range(len(program.buffers))]
    scalars = [b.load(b.gep(scalars_arg, [ir.Constant(I64, i)], source_etype=F64), typ=F64) for i in range(len(program.scalars))]
    for kernel, kernel_fn in zip(program.kernels, kernel_fns):
        buffers, symbols = _kernel_arguments(program, kernel)
        args = [addresses[i] for i in buffers] + [scalars[program.scalars.index(s)] for s in symbols]
        b.call(kernel_fn, args)
    b.ret_void()
    return mathlib.finish_ir(_alignment_assumptions(_distinct_loop_ids(str(module))))


# Loops whose bodies evaluate transcendental functions run 4 vectors per trip: the polynomial chains are
# long, and LLVM's default of 2 leaves the vector units waiting on them (~10% slower, measured on the
# elementwise benchmark's kernel). A marker node per loop becomes its distinct loop ID in the text.
INTERLEAVE_HEAVY = 4
HEAVY_ELEMENTS = 1 << 16
_LOOP_MARK = "codegen.loop."
_MARKED_LOOP = re.compile(r'^(!\d+) = !{ ?!"codegen\.loop\.\d+"((?:, !\d+)*) ?}$', re.MULTILINE)


def _loop_id(module: ir.Module, *properties):
    """The `!llvm.loop` node of one more loop with `properties` (operand lists such as
    ["llvm.loop.interleave.count", 4]); `_distinct_loop_ids` makes it distinct and self-referencing,
    which llvmlite cannot write."""
    count = getattr(module, "_codegen_loops", 0)
    module._codegen_loops = count + 1
    nodes = [module.add_metadata([ir.MetaDataString(module, p[0]), *p[1:]]) for p in properties]
    return module.add_metadata([ir.MetaDataString(module, f"{_LOOP_MARK}{count}"), *nodes])


def _distinct_loop_ids(text: str) -> str:
    if _LOOP_MARK not in text:
        return text
    return _MARKED_LOOP.sub(lambda m: f"{m.group(1)} = distinct !{{{m.group(1)}{m.group(2)}}}", text)


# A call marking a pointer known to be 64-byte aligned; written out as `llvm.assume` with an "align"
# operand bundle (which llvmlite cannot write), the form from which LLVM derives the alignment of the
# vector stores through that pointer (an assumed `ptrtoint(p) & 63 == 0` was not used for them).
_ALIGNED_MARK = "codegen.aligned64"
_ALIGNED_CALL = re.compile(r'call void @"codegen\.aligned64"\(ptr (%"?[\w.]+"?)\)')
_ALIGNED_DECLARATION = re.compile(r'^declare void @"codegen\.aligned64"\(ptr[^)]*\)\s*$', re.MULTILINE)


def _alignment_assumptions(text: str) -> str:
    if _ALIGNED_MARK not in text:
        return text
    text = _ALIGNED_CALL.sub(lambda m: f'call void @llvm.assume(i1 true) [ "align"(ptr {m.group(1)}, i64 64) ]', text)
    return _ALIGNED_DECLARATION.sub("declare void @llvm.assume(i1)", text)


def _read_after(program: Program, index: int) -> set:
    """Buffers that a kernel after `index` in the program reads (its outputs feeding them stay cached)."""
    read = set()
    for kernel in program.kernels[index + 1:]:
        if isinstance(kernel, Gemm):
            read.update((kernel.a, kernel.b) + ((kernel.c,) if kernel.accumulate else ()))
        else:
            read.update(a.buffer for a in kernel.loads)
            read.update(s.buffer for s in kernel.stores if s.reduce == "add")
    return read


def _kernel_arguments(program: Program, kernel: Kernel | Gemm):
    """(buffers, runtime scalars) a kernel's function takes, in argument order."""
    if isinstance(kernel, Gemm):
        return blas.gemm_buffers(kernel), []
    buffers = sorted({a.buffer for a in (*kernel.loads, *kernel.stores)})
    used = set().union(*(s.expr.free_symbols for s in kernel.stores)) if kernel.stores else set()
    symbols = [s for s in program.scalars if s in used]
    return buffers, symbols


def canonical_loops(kernel: Kernel):
    """Drop size-1 axes and merge neighbours that every access walks contiguously.

    Returns (shape, strides per load, strides per store). `(N, M)` with row-major buffers becomes a
    single loop of N*M; a reduction over the last axes stays a 2-level nest with a register
    accumulator inside.
    """
    accesses = [*kernel.loads, *kernel.stores]
    axes = [k for k, n in enumerate(kernel.shape) if n != 1]
    shape = [kernel.shape[k] for k in axes]
    strides = [[a.strides[k] for k in axes] for a in accesses]
    k = len(shape) - 2
    while k >= 0:
        if all(s[k] == s[k + 1] * shape[k + 1] for s in strides):
            shape[k:k + 2] = [shape[k] * shape[k + 1]]
            for s in strides:
                s[k:k + 2] = [s[k + 1]]
        k -= 1
    n_loads = len(kernel.loads)
    return tuple(shape), strides[:n_loads], strides[n_loads:]


def _identity(reduce: str, dtype: str):
    if reduce == "sum":
        return 0
    if reduce == "prod":
        return 1
    if dtype == "bool":
        return reduce == "min"
    if dtype == "int64":
        return -(2**63) if reduce == "max" else 2**63 - 1
    return -math.inf if reduce == "max" else math.inf


def declare_intrinsic(module: ir.Module, name: str, ty, n_args: int):
    """Declare `name.<type>` taking `n_args` values of `ty` (llvmlite's own helper knows few intrinsics)."""
    suffix = {F32: "f32", F64: "f64", I64: "i64", I1: "i1"}[ty]
    full = f"{name}.{suffix}"
    if full in module.globals:
        return module.globals[full]
    return ir.Function(module, ir.FunctionType(ty, [ty] * n_args), name=full)


def _const(ty, value):
    if isinstance(ty, ir.IntType):
        return ir.Constant(ty, int(value))
    return ir.Constant(ty, float(value))


def _splat_zero_like(value):
    return ir.Constant(value.type, 0.0 if isinstance(value.type, (ir.FloatType, ir.DoubleType)) else 0)


class _KernelLowering:
    """Builds one kernel function: output initialisation, then the loop nest around the body."""

    def __init__(self, module: ir.Module, program: Program, index: int, kernel: Kernel, read_after=frozenset()):
        self.module, self.program, self.kernel = module, program, kernel
        buffers, symbols = _kernel_arguments(program, kernel)
        arg_types = [PTR] * len(buffers) + [F64] * len(symbols)
        self.function = fn = ir.Function(module, ir.FunctionType(ir.VoidType(), arg_types), name=f"kernel{index}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        # NOTE: each kernel is called once, so LLVM inlines every one into the program function and
        # optimizes one huge function: ResNet-18's backward (160 kernels) took 15.5 s in the O3 pipeline
        # that way, 7.5 s kept apart. Small programs stay inlined: a value two of their kernels compute
        # (a gradient rule that rebuilds a forward value which replay did not share) then comes out
        # bit for bit as in the program without the copy, as tests/test_replay.py checks; kept
        # apart, batch norm's gradient was an ulp off.
        if len(program.kernels) > INLINED_KERNELS:
            fn.attributes.add("noinline")
        for arg in fn.args[: len(buffers)]:
            arg.add_attribute("noalias")
        self.pointer = dict(zip(buffers, fn.args))
        self.scalar_args = dict(zip(symbols, fn.args[len(buffers):]))
        self.builder = ir.IRBuilder(fn.append_basic_block("entry"))
        self.shape, self.load_strides, self.store_strides = canonical_loops(kernel)
        self.exprs = rewrite.prepare([store.expr for store in kernel.stores])
        self.tanh_sigmoid = rewrite.tanh_sigmoid_pairs(self.exprs)
        # (only large kernels: a 4-way interleaved polynomial body takes ~1.7x longer to compile)
        self.heavy = math.prod(kernel.shape) >= HEAVY_ELEMENTS and _functions(self.exprs) > 0
        depth = len(self.shape)
        # Reductions whose innermost axis is reduced keep a register accumulator over that loop.
        self.in_register = [
            s.reduce in REGISTER_REDUCTIONS and s.index is None and depth > 0 and strides[-1] == 0
            for s, strides in zip(kernel.stores, self.store_strides)
        ]
        self.streamed = self._streamed_stores(read_after)
        self.streaming = False  # while the copy of the loop nest with streaming stores is emitted
        self._initialise_reductions()
        split = self._split() if 0 not in kernel.shape else None
        if split is not None:
            self._emit_parallel(index, buffers, symbols, *split)
        elif 0 not in kernel.shape:
            self._emit_nest()
        self.builder.ret_void()

    # -- streaming stores ----------------------------------------------------------------------------
    def _streamed_stores(self, read_after):
        """The stores this kernel writes with non-temporal hints: those of a one-axis kernel that moves
        more than `memory.stream_bytes()` (its outputs would not stay cached for long anyway), that
        write contiguous floats, element by element, to a buffer no later kernel of the program reads
        (which would then fetch it from memory instead of the cache).

        A non-temporal store skips reading the line it writes (a plain store to a line not in cache
        fetches it first) and keeps the kernel's inputs in cache: the 4M-element fused forward+backward
        kernel of benchmarks/elementwise.py ran ~12% faster, a 4M-element 1-in-1-out one ~30%. The hint is added to the vectorized stores after
        LLVM's pipeline (`jit.stream_stores`): the loop vectorizer refuses to vectorize a loop whose
        scalar stores carry it. The stores are marked for that with an alias scope of their own
        domain (a hint that says nothing about aliasing: no access carries a `noalias` list)."""
        if len(self.shape) != 1:
            return ()
        moved = sum(ITEMSIZE[self.program.buffers[a.buffer]]
                    for a, strides in zip((*self.kernel.loads, *self.kernel.stores),
                                          (*self.load_strides, *self.store_strides)) if any(strides))
        if moved * self.shape[0] <= memory.stream_bytes():
            return ()
        return tuple(s for s, strides in zip(self.kernel.stores, self.store_strides)
                     if s.reduce is None and s.index is None and strides == [1]
                     and self.program.buffers[s.buffer] in FLOATS and s.buffer not in read_after)

    def _stream_scope(self):
        module = self.module
        domain = module.add_metadata([ir.MetaDataString(module, STREAM_DOMAIN)])
        scope = module.add_metadata([ir.MetaDataString(module, f"{STREAM_DOMAIN}.store"), domain])
        return module.add_metadata([scope])

    # -- threads -----------------------------------------------------------------------------------
    def _split(self):
        """(row alignment, most threads worth using) when the outermost loop can be cut into chunks
        run by different threads and the kernel is large enough to gain from it; else None.

        Rows may go to different threads when no two rows write the same place: each store either
        moves along axis 0 with rows that do not overlap, or (one-axis kernels) is a register
        reduction along it, whose per-chunk partial results are combined in chunk order.
        """
        shape, depth = self.shape, len(self.shape)
        if depth == 0 or shape[0] < 2:
            return None
        for store, strides, reg in zip(self.kernel.stores, self.store_strides, self.in_register):
            if store.index is not None:
                return None  # scatter: rows may collide
            if strides[0] == 0:
                if not (reg and depth == 1):
                    return None
            elif abs(strides[0]) <= sum(abs(s) * (n - 1) for s, n in zip(strides[1:], shape[1:])):
                return None  # rows overlap
        work = math.prod(shape) * _cost_per_element(self.kernel, self.exprs)
        limit = int(work // parallel.MIN_WORK_NS)
        if limit < 2:
            return None
        if depth == 1:
            # whole SUM_BLOCKs per chunk keep each block's float32 partial sum what one thread computes;
            # otherwise whole vectors (16 floats x 4 interleaved)
            align = SUM_BLOCK if any(self.in_register) else 64
        else:
            align = 1
        limit = min(limit, -(-shape[0] // align))
        return (align, limit) if limit >= 2 else None

    def _emit_parallel(self, index, buffers, symbols, align, limit):
        """The kernel as a range function over rows [start, start + count), and this function
        dispatching chunks of rows to threads, then folding the chunks' partial reductions."""
        module, main = self.module, self.function
        arg_types = [PTR] * len(buffers) + [F64] * len(symbols) + [I64, I64, PTR]
        range_fn = ir.Function(module, ir.FunctionType(ir.VoidType(), arg_types), name=f"kernel{index}_range")
        range_fn.linkage = "internal"
        range_fn.attributes.add("nounwind")
        range_fn.attributes.add("noinline")  # called by the dispatcher and the thread entry: one copy
        for arg in range_fn.args[: len(buffers)]:
            arg.add_attribute("noalias")
        start, count, partials = range_fn.args[-3:]
        self.unit = align  # chunks are whole multiples of it, but for the kernel's ragged end
        saved = self.builder, self.pointer, self.scalar_args
        self.builder = ir.IRBuilder(range_fn.append_basic_block("entry"))
        self.pointer = dict(zip(buffers, range_fn.args))
        self.scalar_args = dict(zip(symbols, range_fn.args[len(buffers):len(buffers) + len(symbols)]))
        self._emit_nest(start, count, partials)
        self.builder.ret_void()
        self.builder, self.pointer, self.scalar_args = saved
        task = parallel.task_function(module, f"kernel{index}_task", range_fn, len(buffers), len(symbols))
        arguments = list(main.args)
        # register reductions along the split axis (one-axis kernels) leave one partial per chunk
        reducing = [(st, d) for st, d, r in zip(self.kernel.stores, self._store_dtypes(), self.in_register)
                    if r and len(self.shape) == 1]
        threads, slots = parallel.dispatch(module, self.builder, functools.partial(self._loop, plain=True),
                                           range_fn, task, arguments, self.shape[0], align, limit, len(reducing))
        if not reducing:
            return
        b = self.builder
        wide = [_accumulator_dtype(st.reduce, d) for st, d in reducing]

        def partial(t, j):
            ty = REGISTER_TYPE[wide[j]]  # every slot is 8 bytes wide
            slot = b.gep(slots, [b.add(b.mul(t, ir.Constant(I64, len(reducing))), ir.Constant(I64, j))],
                         source_etype=I64)
            return b.load(slot, typ=ty)

        firsts = [partial(ir.Constant(I64, 0), j) for j in range(len(reducing))]
        totals = self._loop(b.sub(threads, ir.Constant(I64, 1)), lambda i, acc: [
            self._combine(st.reduce, w, a, partial(b.add(i, ir.Constant(I64, 1)), j))
            for j, ((st, _), w, a) in enumerate(zip(reducing, wide, acc))], firsts, plain=True)
        stores = self._base_pointers(self.kernel.stores)
        finals = iter(zip(totals, wide))
        for store, ptr, dtype, reg in zip(self.kernel.stores, stores, self._store_dtypes(), self.in_register):
            if reg:  # (all register reductions reduce the one axis here)
                total, w = next(finals)
                self._store(store, ptr, dtype, self._convert(total, w, dtype))

    def _store_dtypes(self):
        return [self.program.buffers[s.buffer] for s in self.kernel.stores]

    # -- loops -------------------------------------------------------------------------------------
    def _loop(self, count, body, carried=(), innermost=False, plain=False):
        """Emit `for i in range(count)`; `body(i, carried)` returns the next carried values. `count` is
        an int >= 1 or an i64 value (then the loop is skipped when it is not positive). An `innermost`
        loop of a large kernel with transcendental functions gets an interleave hint; a `plain` one
        (over threads) is neither vectorized nor unrolled."""
        b = self.builder
        before = b.block
        header = b.append_basic_block("loop")
        done = b.append_basic_block("done")
        dynamic = not isinstance(count, int)
        if dynamic:
            b.cbranch(b.icmp_signed(">", count, ir.Constant(I64, 0)), header, done)
        else:
            b.branch(header)
            count = ir.Constant(I64, count)
        b.position_at_end(header)
        i = b.phi(I64, name="i")
        i.add_incoming(ir.Constant(I64, 0), before)
        phis = []
        for value in carried:
            phi = b.phi(value.type)
            phi.add_incoming(value, before)
            phis.append(phi)
        updated = body(i, phis)
        latch = b.block
        following = b.add(i, ir.Constant(I64, 1), flags=("nuw", "nsw"))
        i.add_incoming(following, latch)
        for phi, value in zip(phis, updated):
            phi.add_incoming(value, latch)
        branch = b.cbranch(b.icmp_unsigned("<", following, count), header, done)
        if innermost and self.heavy:
            branch.set_metadata("llvm.loop", _loop_id(
                self.module, ["llvm.loop.interleave.count", ir.Constant(ir.IntType(32), INTERLEAVE_HEAVY)]))
        elif plain:
            branch.set_metadata("llvm.loop", _loop_id(
                self.module, ["llvm.loop.vectorize.enable", ir.Constant(ir.IntType(1), 0)],
                ["llvm.loop.unroll.disable"]))
        b.position_at_end(done)
        if dynamic and carried:
            results = []
            for value, new in zip(carried, updated):
                phi = b.phi(value.type)
                phi.add_incoming(value, before)
                phi.add_incoming(new, latch)
                results.append(phi)
            return results
        return updated

    def _advance(self, pointers, strides, axis, index, dtypes):
        b = self.builder
        moved = []
        for ptr, s, dtype in zip(pointers, strides, dtypes):
            if s[axis] == 0:
                moved.append(ptr)
            else:
                offset = b.mul(index, ir.Constant(I64, s[axis]), flags=("nsw",))
                moved.append(b.gep(ptr, [offset], source_etype=MEMORY_TYPE[dtype]))
        return moved

    def _base_pointers(self, accesses):
        b = self.builder
        out = []
        for access in accesses:
            dtype = self.program.buffers[access.buffer]
            ptr = self.pointer[access.buffer]
            if access.offset:
                ptr = b.gep(ptr, [ir.Constant(I64, access.offset)], source_etype=MEMORY_TYPE[dtype])
            out.append(ptr)
        return out

    def _initialise_reductions(self):
        for store, strides in zip(self.kernel.stores, self.store_strides):
            if store.reduce is None or store.reduce == "add":
                continue
            dtype = self.program.buffers[store.buffer]
            axes = [k for k, s in enumerate(strides) if s != 0]
            sizes = [self.shape[k] for k in axes]
            if 0 in sizes:
                continue
            identity = _const(MEMORY_TYPE[dtype], _identity(store.reduce, dtype))
            (base,) = self._base_pointers([store])
            self._fill(base, [strides[k] for k in axes], sizes, identity, dtype)

    def _fill(self, ptr, strides, sizes, value, dtype):
        if not sizes:
            self.builder.store(value, ptr)
            return

        def body(i, _):
            offset = self.builder.mul(i, ir.Constant(I64, strides[0]), flags=("nsw",))
            moved = self.builder.gep(ptr, [offset], source_etype=MEMORY_TYPE[dtype])
            self._fill(moved, strides[1:], sizes[1:], value, dtype)
            return []

        self._loop(sizes[0], body)

    def _emit_nest(self, start=None, rows=None, partials=None):
        """The loop nest; with `start`/`rows` (i64 values) only rows [start, start + rows) of the
        outermost axis, and register reductions along it written to the 8-byte slots `partials`."""
        kernel = self.kernel
        load_dtypes = [self.program.buffers[a.buffer] for a in kernel.loads]
        store_dtypes = self._store_dtypes()
        loads = self._base_pointers(kernel.loads)
        stores = self._base_pointers(kernel.stores)
        if start is not None:
            loads = self._advance(loads, self.load_strides, 0, start, load_dtypes)
            stores = self._advance(stores, self.store_strides, 0, start, store_dtypes)
        depth = len(self.shape)
        in_register = self.in_register

        def descend(axis, loads, stores):
            count = rows if axis == 0 and rows is not None else (self.shape[axis] if axis < depth else None)
            if axis == depth - 1 and any(in_register):
                self._innermost_with_accumulators(loads, stores, load_dtypes, store_dtypes, in_register, count,
                                                  partials if axis == 0 else None)
                return
            if axis == depth:
                body = _Body(self, loads, load_dtypes)
                for store, expr, ptr, dtype in zip(kernel.stores, self.exprs, stores, store_dtypes):
                    self._store(store, ptr, dtype, body.value(expr, dtype), body)
                return

            def body(i, _):
                descend(axis + 1, self._advance(loads, self.load_strides, axis, i, load_dtypes),
                        self._advance(stores, self.store_strides, axis, i, store_dtypes))
                return []

            if isinstance(count, int) or depth > 1:
                self._loop(count, body, (), innermost=axis == depth - 1)
                return
            # a thread's chunk of a one-axis kernel: whole units of constant length (vectorized
            # without a remainder loop), then the kernel's ragged end if this chunk has it
            unit, b = ir.Constant(I64, self.unit), self.builder
            self._loop(b.udiv(count, unit), lambda k, _: self._loop(
                self.unit, lambda i, __: body(b.add(b.mul(k, unit), i), __), (), innermost=True) and [], ())
            self._ragged_end(count, lambda first: self._loop(
                self.shape[0] % self.unit, lambda i, _: body(b.add(first, i), _), (), innermost=True), ())

        if self.streamed:
            self._with_streaming([stores[self.kernel.stores.index(s)] for s in self.streamed],
                                 lambda: descend(0, loads, stores))
        else:
            descend(0, loads, stores)

    def _with_streaming(self, pointers, emit):
        """`emit()` the loop nest twice: with streaming stores when every streamed output starts on a
        64-byte line (x86 has non-temporal vector stores only for aligned addresses; LLVM is told so
        by an assumption and proves it for each vector store), else plain. Both copies compute the
        same values. A streaming copy ends with a fence: non-temporal stores are weakly ordered, and
        another thread (the dispatcher joining a worker) may read the results next."""
        b = self.builder
        aligned = None
        for ptr in pointers:
            low = b.and_(b.ptrtoint(ptr, I64), ir.Constant(I64, 63))
            test = b.icmp_unsigned("==", low, ir.Constant(I64, 0))
            aligned = test if aligned is None else b.and_(aligned, test)
        stream, plain, after = (b.append_basic_block(name) for name in ("stream", "plain", "streamed"))
        b.cbranch(aligned, stream, plain)
        b.position_at_end(stream)
        marker = self.module.globals.get(_ALIGNED_MARK) or ir.Function(
            self.module, ir.FunctionType(ir.VoidType(), [PTR]), name=_ALIGNED_MARK)
        for ptr in pointers:
            b.call(marker, [ptr])  # becomes an alignment assumption (_alignment_assumptions)
        self.streaming = True
        emit()
        self.streaming = False
        b.fence("seq_cst")
        b.branch(after)
        b.position_at_end(plain)
        emit()
        b.branch(after)
        b.position_at_end(after)

    def _ragged_end(self, count, emit, carried):
        """`emit(first index)` for the last `shape[0] % unit` rows of a chunk of `count` rows, run only
        when the chunk has them (only the last chunk can); returns the carried values after it."""
        ragged = self.shape[0] % self.unit
        if not ragged:
            return carried
        b, unit = self.builder, ir.Constant(I64, self.unit)
        before = b.block
        has = b.icmp_unsigned("!=", b.urem(count, unit), ir.Constant(I64, 0))
        then, after = b.append_basic_block("ragged"), b.append_basic_block("ragged.done")
        b.cbranch(has, then, after)
        b.position_at_end(then)
        updated = emit(b.mul(b.udiv(count, unit), unit)) or []
        last = b.block
        b.branch(after)
        b.position_at_end(after)
        results = []
        for value, new in zip(carried, updated):
            phi = b.phi(value.type)
            phi.add_incoming(value, before)
            phi.add_incoming(new, last)
            results.append(phi)
        return results

    def _innermost_with_accumulators(self, loads, stores, load_dtypes, store_dtypes, in_register, count,
                                     partials=None):
        """The innermost loop of a kernel that reduces along it, with accumulators in registers.

        float32 sums accumulate in float32 over blocks of SUM_BLOCK elements (full-width vectors) and
        each block's sum is added to a float64 total, which keeps 4M-element sums accurate to ~1e-7.
        `count` is the loop's length (an int, or an i64 value for a thread's chunk); with `partials`
        the totals go to those 8-byte slots, in order, instead of memory.
        """
        kernel, axis, b = self.kernel, len(self.shape) - 1, self.builder
        reducing = [(s, d) for s, d, r in zip(kernel.stores, store_dtypes, in_register) if r]
        narrow = [d for s, d in reducing]
        wide = [_accumulator_dtype(s.reduce, d) for s, d in reducing]

        def block(start, size, totals):
            """Fold elements [start, start + size) into `totals` (values of the `wide` dtypes)."""
            def body(i, accumulators):
                index = b.add(start, i, flags=("nuw", "nsw"))
                inner_loads = self._advance(loads, self.load_strides, axis, index, load_dtypes)
                inner_stores = self._advance(stores, self.store_strides, axis, index, store_dtypes)
                values = _Body(self, inner_loads, load_dtypes)
                updated, result = iter(accumulators), []
                for store, expr, ptr, dtype, reg in zip(kernel.stores, self.exprs, inner_stores, store_dtypes,
                                                        in_register):
                    if reg:
                        value = values.value(expr, dtype)
                        result.append(self._combine(store.reduce, dtype, next(updated), value))
                    else:
                        self._store(store, ptr, dtype, values.value(expr, dtype), values)
                return result

            starts = [_const(REGISTER_TYPE[d], _identity(s.reduce, d)) for (s, _), d in zip(reducing, narrow)]
            partial = self._loop(size, body, starts, innermost=True)
            return [self._combine(s.reduce, w, t, self._convert(p, n, w))
                    for (s, _), n, w, t, p in zip(reducing, narrow, wide, totals, partial)]

        totals = [_const(REGISTER_TYPE[w], _identity(s.reduce, w)) for (s, _), w in zip(reducing, wide)]
        if not isinstance(count, int):
            # a thread's chunk (whole SUM_BLOCKs but for the kernel's ragged end): blocks of constant
            # length, vectorized without a remainder loop, then the ragged end if this chunk has it
            unit = ir.Constant(I64, SUM_BLOCK)
            totals = self._loop(b.udiv(count, unit), lambda k, acc: block(
                b.mul(k, unit, flags=("nuw", "nsw")), SUM_BLOCK, acc), totals)
            totals = self._ragged_end(count, lambda first: block(first, self.shape[axis] % SUM_BLOCK, totals),
                                      totals)
        else:
            blocks, rest = divmod(count, SUM_BLOCK) if wide != narrow else (0, count)
            if blocks:
                totals = self._loop(blocks, lambda k, acc: block(
                    b.mul(k, ir.Constant(I64, SUM_BLOCK), flags=("nuw", "nsw")), SUM_BLOCK, acc), totals)
            if rest:
                totals = block(ir.Constant(I64, blocks * SUM_BLOCK), rest, totals)
        if partials is not None:
            for j, total in enumerate(totals):
                slot = b.gep(partials, [ir.Constant(I64, j)], source_etype=I64)  # 8-byte slots
                b.store(total, slot)
            return
        finals = iter(totals)
        for store, ptr, dtype, reg in zip(kernel.stores, stores, store_dtypes, in_register):
            if reg:
                total = next(finals)
                self._store(store, ptr, dtype, self._convert(total, _accumulator_dtype(store.reduce, dtype), dtype))

    # -- stores --------------------------------------------------------------------------------------
    def _store(self, store: Store, ptr, dtype, value, body=None):
        b = self.builder
        if store.index is not None:
            ptr = body.moved(ptr, store.index, store.index_stride, dtype)
        if dtype == "bool":
            value = b.zext(value, I8)
        if store.reduce is not None:
            old = b.load(ptr, typ=MEMORY_TYPE[dtype])
            if dtype == "bool":
                value = b.zext(self._combine(store.reduce, dtype, b.trunc(old, I1), b.trunc(value, I1)), I8)
            else:
                value = self._combine(store.reduce, dtype, old, value)
        instruction = b.store(value, ptr)
        if self.streaming and any(store is s for s in self.streamed):
            instruction.set_metadata("alias.scope", self._stream_scope())

    def _combine(self, reduce, dtype, acc, value):
        b = self.builder
        reduce = "sum" if reduce == "add" else reduce
        if dtype == "bool":
            return b.or_(acc, value) if reduce in ("sum", "max") else b.and_(acc, value)  # prod, min: and
        if reduce == "sum":
            return b.fadd(acc, value, flags=REDUCE_FLAGS) if dtype in FLOATS else b.add(acc, value)
        if reduce == "prod":
            return b.fmul(acc, value, flags=REDUCE_FLAGS) if dtype in FLOATS else b.mul(acc, value)
        if dtype in FLOATS:
            # NOTE: llvm.maximum propagates NaN like torch.max; maxnum would drop it.
            name = "llvm.maximum" if reduce == "max" else "llvm.minimum"
        else:
            name = "llvm.smax" if reduce == "max" else "llvm.smin"
        return b.call(declare_intrinsic(self.module, name, acc.type, 2), [acc, value])

    def _convert(self, value, source: str, target: str):
        return convert(self.builder, value, source, target)


_TRANSCENDENTAL = (sympy.exp, sympy.log, sympy.tanh, sympy.sin, sympy.cos, sympy.erf, rewrite.Sigmoid)


def _cost_per_element(kernel: Kernel, exprs) -> float:
    """A rough one-core cost in nanoseconds per point of a kernel's index space, to decide whether
    splitting it across threads pays: ~0.3 ns per memory stream (a 4-byte stream out of cache moves
    at ~10 GB/s), ~0.4 ns per transcendental function (a vectorized polynomial with zmm registers),
    ~0.03 ns per other operation."""
    streams = sum(1 for a in (*kernel.loads, *kernel.stores) if any(a.strides))
    functions, operations = _count_operations(exprs)
    return 0.3 * streams + 0.4 * functions + 0.03 * operations


def _functions(exprs) -> int:
    return _count_operations(exprs)[0]


def _count_operations(exprs):
    """(transcendental functions, other operations) among the distinct subexpressions of `exprs`."""
    functions = operations = 0
    seen, stack = set(), list(exprs)
    while stack:
        e = stack.pop()
        if e in seen or not e.args:
            continue
        seen.add(e)
        if isinstance(e, _TRANSCENDENTAL) or (e.is_Pow and not e.exp.is_Integer):
            functions += 1
        else:
            operations += 1
        stack.extend(e.args)
    return functions, operations


def _accumulator_dtype(reduce, dtype):
    # NOTE: float32 sums accumulate in float64 registers: 4M float32 values summed in float32 lose
    # about four digits, and the loop is memory-bound either way. Products stay in their dtype, like
    # torch's (whose float32 prod of [1e30, 1e30, 1e-30] overflows to inf).
    if reduce == "sum" and dtype == "float32":
        return "float64"
    return dtype


def convert(b: ir.IRBuilder, value, source: str, target: str):
    """Convert a register value between dtypes with torch's rules (float -> int truncates)."""
    if source == target:
        return value
    ty = REGISTER_TYPE[target]
    if target == "bool":
        if source in FLOATS:
            return b.fcmp_unordered("!=", value, _splat_zero_like(value))
        return b.icmp_unsigned("!=", value, _splat_zero_like(value))
    if source == "bool":
        return b.uitofp(value, ty) if target in FLOATS else b.zext(value, ty)
    if source in FLOATS and target in FLOATS:
        return b.fpext(value, ty) if target == "float64" else b.fptrunc(value, ty)
    if source in FLOATS:
        return b.fptosi(value, ty)
    return b.sitofp(value, ty)


class _Body:
    """Prints a kernel body's SymPy expressions as typed IR in the innermost loop block.

    Loads are emitted on first use and every (expression, dtype) pair once, so shared subexpressions
    between the stores of a fused kernel (a forward value and its gradient) are computed once.
    """

    def __init__(self, lowering: _KernelLowering, pointers, dtypes):
        self.lowering, self.b = lowering, lowering.builder
        self.loads = {load.symbol: (ptr, dtype, load)
                      for load, ptr, dtype in zip(lowering.kernel.loads, pointers, dtypes)}
        self.memo: dict = {}
        self.type_memo: dict = {}

    # -- typing --------------------------------------------------------------------------------------
    def dtype_of(self, e):
        """The dtype an expression computes in, or None when it is weak (numbers, runtime scalars)."""
        if e in self.type_memo:
            return self.type_memo[e]
        if e in self.loads:
            found = self.loads[e][1]
        elif isinstance(e, Cast):
            found = e.dtype
        elif isinstance(e, (Relational, BooleanFunction, BooleanAtom)):
            found = "bool"
        elif isinstance(e, sympy.Piecewise):
            found = next((d for d in (self.dtype_of(v) for v, _ in e.args) if d), None)
        else:
            found = next((d for d in (self.dtype_of(a) for a in e.args) if d), None)
        self.type_memo[e] = found
        return found

    def value(self, e, dtype: str):
        """Emit `e` computed in `dtype` (weak parts adopt it)."""
        key = (e, dtype)
        if key not in self.memo:
            own = self.dtype_of(e)
            if own is not None and own != dtype:
                self.memo[key] = convert(self.b, self.value(e, own), own, dtype)
            else:
                self.memo[key] = self._dispatch(e, dtype)
        return self.memo[key]

    def _dispatch(self, e, dtype):
        for cls in type(e).__mro__:
            method = getattr(self, "_print_" + cls.__name__, None)
            if method is not None:
                return method(e, dtype)
        raise NotImplementedError(f"codegen cannot lower {type(e).__name__} in {e}")

    def moved(self, ptr, index, stride, dtype):
        """`ptr` advanced by `index * stride` elements, `index` an int64 expression of this body."""
        step = self.b.mul(self.value(index, "int64"), ir.Constant(I64, stride), flags=("nsw",))
        return self.b.gep(ptr, [step], source_etype=MEMORY_TYPE[dtype])

    # -- atoms ---------------------------------------------------------------------------------------
    def _print_Symbol(self, e, dtype):
        if e in self.loads:
            ptr, stored, load = self.loads[e]
            if load.index is not None:
                ptr = self.moved(ptr, load.index, load.index_stride, stored)
            value = self.b.load(ptr, typ=MEMORY_TYPE[stored])
            return self.b.trunc(value, I1) if stored == "bool" else value
        scalar = self.lowering.scalar_args.get(e)
        if scalar is None:
            raise NotImplementedError(f"symbol {e} is neither a load nor a runtime scalar of this kernel")
        return convert(self.b, scalar, "float64", dtype)

    def _print_Number(self, e, dtype):
        if dtype == "bool":
            return ir.Constant(I1, int(bool(e)))
        if dtype == "int64":
            return ir.Constant(I64, int(e))
        return ir.Constant(REGISTER_TYPE[dtype], float(e))

    def _print_NumberSymbol(self, e, dtype):
        return self._print_Number(sympy.Float(e, 30), dtype)

    def _print_BooleanTrue(self, e, dtype):
        return ir.Constant(I1, 1)

    def _print_BooleanFalse(self, e, dtype):
        return ir.Constant(I1, 0)

    def _print_Cast(self, e, dtype):
        (arg,) = e.args
        source = self.dtype_of(arg) or e.dtype
        return convert(self.b, self.value(arg, source), source, e.dtype)

    # -- arithmetic ----------------------------------------------------------------------------------
    def _print_Add(self, e, dtype):
        b, floats = self.b, dtype in FLOATS
        factored = rewrite.factor_add(e) if floats else None
        if factored is not None:
            content, common, inner = factored
            value = self.value(inner, dtype)
            for factor in common:
                value = b.fmul(value, self.value(factor, dtype), flags=ARITH)
            return self._times_rational(value, content, dtype)
        plus, minus = [], []
        # Terms whose coefficients share a denominator q are summed first and divided once:
        # the gradient of a mean puts 1/N on every term (powers of two are exact products instead).
        over: dict = {}
        for term in e.args:
            coeff, rest = term.as_coeff_Mul()
            if floats and coeff.is_Rational and coeff.q != 1 and self._exact_constant(coeff, dtype) is None:
                over.setdefault(coeff.q, []).append((coeff.p, rest, term))
            elif coeff.is_negative:
                minus.append(self.value(-coeff * rest, dtype))
            else:
                plus.append(self.value(term, dtype))
        for q, members in over.items():
            if len(members) == 1:
                p, rest, term = members[0]
                (minus if p < 0 else plus).append(self.value(-term if p < 0 else term, dtype))
                continue
            total = None
            for p, rest, _ in members:
                value = self._times_integer(self.value(rest, dtype), abs(p), dtype)
                if total is None:
                    total = b.fneg(value) if p < 0 else value
                else:
                    total = (b.fsub if p < 0 else b.fadd)(total, value, flags=ARITH)
            plus.append(b.fdiv(total, self._print_Number(q, dtype), flags=ARITH))
        total = plus[0] if plus else (b.fneg(minus.pop(0)) if floats else b.neg(minus.pop(0)))
        for v in plus[1:]:
            total = b.fadd(total, v, flags=ARITH) if floats else b.add(total, v)
        for v in minus:
            total = b.fsub(total, v, flags=ARITH) if floats else b.sub(total, v)
        return total

    def _times_rational(self, value, coeff, dtype):
        """value * coeff (a positive Rational): one product when coeff is exact in `dtype`, else
        value * p / q as `_print_Mul` does."""
        if coeff == 1:
            return value
        exact = self._exact_constant(coeff, dtype)
        if exact is not None:
            return self.b.fmul(value, self._print_Number(exact, dtype), flags=ARITH)
        value = self._times_integer(value, coeff.p, dtype)
        return value if coeff.q == 1 else self.b.fdiv(value, self._print_Number(coeff.q, dtype), flags=ARITH)

    def _times_integer(self, value, p, dtype):
        return value if p == 1 else self.b.fmul(self._print_Number(p, dtype), value, flags=ARITH)

    @staticmethod
    def _exact_constant(coeff, dtype):
        """`coeff` (a Rational) as a float of `dtype` if that float is exactly it, else None:
        multiplying by an exact 2**-22 rounds like dividing by 2**22, and costs far less."""
        value = (np.float32 if dtype == "float32" else np.float64)(float(coeff))
        if np.isfinite(value) and value != 0 and Fraction(float(value)) == Fraction(coeff.p, coeff.q):
            return float(value)
        return None

    def _print_Mul(self, e, dtype):
        b, floats = self.b, dtype in FLOATS
        coeff, rest = e.as_coeff_Mul()
        numerator, denominator = [], []
        for factor in sympy.Mul.make_args(rest):
            if factor.is_Pow and factor.exp.is_number and factor.exp.is_negative and floats:
                base = factor.base if factor.exp == -1 else sympy.Pow(factor.base, -factor.exp)
                denominator.append(self.value(base, dtype))
            else:
                numerator.append(self.value(factor, dtype))
        negate = coeff.is_negative
        coeff = abs(coeff)
        if coeff != 1:
            exact = self._exact_constant(coeff, dtype) if floats and coeff.is_Rational else None
            if floats and coeff.is_Rational and coeff.q != 1 and exact is None:
                # NOTE: x * 1/3 rounds twice; x * p / q matches torch's x / q for mean's 1/N.
                if coeff.p != 1:
                    numerator.insert(0, self._print_Number(coeff.p, dtype))
                denominator.insert(0, self._print_Number(coeff.q, dtype))
            else:
                numerator.insert(0, self._print_Number(coeff, dtype))
        value = numerator[0] if numerator else self._print_Number(1, dtype)
        for v in numerator[1:]:
            value = b.fmul(value, v, flags=ARITH) if floats else b.mul(value, v)
        if denominator:
            divisor = denominator[0]
            for v in denominator[1:]:
                divisor = b.fmul(divisor, v, flags=ARITH)
            value = b.fdiv(value, divisor, flags=ARITH)
        if negate:
            value = b.fneg(value) if floats else b.neg(value)
        return value

    def _print_Pow(self, e, dtype):
        b, base, exponent = self.b, e.base, e.exp
        if dtype not in FLOATS:
            if exponent.is_Integer and exponent >= 0:
                return self._power_by_squaring(self.value(base, dtype), int(exponent), dtype)
            raise NotImplementedError(f"integer power {e} with exponent {exponent}")
        if exponent.is_Integer:
            n = int(exponent)
            value = self._power_by_squaring(self.value(base, dtype), abs(n), dtype)
            return b.fdiv(self._print_Number(1, dtype), value, flags=ARITH) if n < 0 else value
        if exponent == sympy.S.Half or exponent == -sympy.S.Half:
            root = self._intrinsic("llvm.sqrt", self.value(base, dtype))
            return root if exponent > 0 else b.fdiv(self._print_Number(1, dtype), root, flags=ARITH)
        if base == sympy.E:
            return self._math("exp", exponent, dtype=dtype)
        return self._math("pow", base, exponent, dtype=dtype)

    def _power_by_squaring(self, value, n, dtype):
        floats = dtype in FLOATS
        mul = (lambda x, y: self.b.fmul(x, y, flags=ARITH)) if floats else self.b.mul
        result, square = None, value
        while n:
            if n & 1:
                result = square if result is None else mul(result, square)
            n >>= 1
            if n:
                square = mul(square, square)
        return result if result is not None else self._print_Number(1, dtype)

    # -- functions -----------------------------------------------------------------------------------
    def _math(self, name, *args, dtype):
        values = [self.value(a, dtype) for a in args]
        if name in mathlib.SUPPORTED:
            return mathlib.emit(name, self.b, *values)
        return self._intrinsic(f"llvm.{name}", *values)

    def _intrinsic(self, name, *values):
        if name == "llvm.abs":  # NOTE: llvm.abs takes an i1 "poison on INT_MIN" flag
            fn = self.lowering.module.globals.get("llvm.abs.i64") or ir.Function(
                self.lowering.module, ir.FunctionType(I64, [I64, I1]), name="llvm.abs.i64")
        else:
            fn = declare_intrinsic(self.lowering.module, name, values[0].type, len(values))
        return self.b.call(fn, list(values))

    def _print_exp(self, e, dtype):
        return self._math("exp", e.args[0], dtype=dtype)

    def _print_log(self, e, dtype):
        return self._math("log", e.args[0], dtype=dtype)

    def _print_tanh(self, e, dtype):
        if e.args[0] in self.lowering.tanh_sigmoid and dtype in FLOATS:
            return self._tanh_sigmoid(e.args[0], dtype)[0]
        return self._math("tanh", e.args[0], dtype=dtype)

    def _print_Sigmoid(self, e, dtype):
        if e.args[0] in self.lowering.tanh_sigmoid and dtype in FLOATS:
            return self._tanh_sigmoid(e.args[0], dtype)[1]
        return self._math("sigmoid", e.args[0], dtype=dtype)

    def _tanh_sigmoid(self, argument, dtype):
        """Both values at once; each is memoised under its own expression."""
        tanh, sigmoid = mathlib.emit_tanh_sigmoid(self.b, self.value(argument, dtype))
        self.memo[(sympy.tanh(argument), dtype)] = tanh
        self.memo[(rewrite.Sigmoid(argument), dtype)] = sigmoid
        return tanh, sigmoid

    def _print_sin(self, e, dtype):
        return self._math("sin", e.args[0], dtype=dtype)

    def _print_cos(self, e, dtype):
        return self._math("cos", e.args[0], dtype=dtype)

    def _print_erf(self, e, dtype):
        return self._math("erf", e.args[0], dtype=dtype)

    def _print_Abs(self, e, dtype):
        value = self.value(e.args[0], dtype)
        if dtype in FLOATS:
            return self._intrinsic("llvm.fabs", value)
        return self._intrinsic("llvm.abs", value, ir.Constant(I1, 0))

    def _print_sign(self, e, dtype):
        b, value = self.b, self.value(e.args[0], dtype)
        zero, one = self._print_Number(0, dtype), self._print_Number(1, dtype)
        minus = self._print_Number(-1, dtype)
        if dtype in FLOATS:
            positive = b.select(b.fcmp_ordered(">", value, zero), one, zero)
            result = b.select(b.fcmp_ordered("<", value, zero), minus, positive)
            return b.select(b.fcmp_unordered("uno", value, value), value, result)
        positive = b.select(b.icmp_signed(">", value, zero), one, zero)
        return b.select(b.icmp_signed("<", value, zero), minus, positive)

    def _min_max(self, e, dtype, is_max):
        if dtype in FLOATS:
            name = "llvm.maximum" if is_max else "llvm.minimum"
        else:
            name = "llvm.smax" if is_max else "llvm.smin"
        values = [self.value(a, dtype) for a in e.args]
        result = values[0]
        for v in values[1:]:
            result = self._intrinsic(name, result, v)
        return result

    def _print_Max(self, e, dtype):
        return self._min_max(e, dtype, True)

    def _print_Min(self, e, dtype):
        return self._min_max(e, dtype, False)

    def _print_Piecewise(self, e, dtype):
        *cases, (otherwise, last_condition) = e.args
        value = self.value(otherwise, dtype)
        if last_condition != sympy.true:
            raise NotImplementedError(f"Piecewise without a default branch: {e}")
        for branch, condition in reversed(cases):
            value = self.b.select(self.value(condition, "bool"), self.value(branch, dtype), value)
        return value

    # -- truth values --------------------------------------------------------------------------------
    def _print_Relational(self, e, dtype):
        lhs, rhs = e.args
        operand = self.dtype_of(lhs) or self.dtype_of(rhs) or "float64"
        x, y = self.value(lhs, operand), self.value(rhs, operand)
        op = e.rel_op
        if operand in FLOATS:
            # NOTE: unordered for != so that nan != nan is True, ordered for the rest (nan < 1 is False).
            if op == "!=":
                return self.b.fcmp_unordered("!=", x, y)
            return self.b.fcmp_ordered(op, x, y)
        if operand == "bool":
            return self.b.icmp_unsigned(op, x, y)
        return self.b.icmp_signed(op, x, y)

    def _fold_truth(self, e, combine):
        values = [self.value(a, "bool") for a in e.args]
        result = values[0]
        for v in values[1:]:
            result = combine(result, v)
        return result

    def _print_And(self, e, dtype):
        return self._fold_truth(e, self.b.and_)

    def _print_Or(self, e, dtype):
        return self._fold_truth(e, self.b.or_)

    def _print_ITE(self, e, dtype):
        condition, then, otherwise = (self.value(a, "bool") for a in e.args)
        return self.b.select(condition, then, otherwise)

    def _print_Xor(self, e, dtype):
        return self._fold_truth(e, self.b.xor)

    def _print_IsNan(self, e, dtype):
        (arg,) = e.args
        operand = self.dtype_of(arg) or "float64"
        if operand not in FLOATS:
            return ir.Constant(I1, 0)
        value = self.value(arg, operand)
        return self.b.fcmp_unordered("uno", value, value)

    def _print_Not(self, e, dtype):
        return self.b.xor(self.value(e.args[0], "bool"), ir.Constant(I1, 1))
