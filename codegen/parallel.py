"""Large kernels split across threads, from native code.

Generated code starts its worker threads itself with `pthread_create`/`pthread_join` (in libc on
every Linux; libgomp may be absent on a user's machine, and threads started from Python cost
~35 µs and the GIL). A kernel whose estimated work is large enough is lowered as a *range function*
over rows [start, start + count) of its outermost loop plus a dispatcher that cuts the rows into one
contiguous chunk per thread, runs chunk 0 on the calling thread and the others on new threads, and
joins them. Reductions along the split axis keep one partial result per chunk and combine them in
chunk order on the calling thread, so a result depends only on the thread count, never on timing.

The thread count is one process-wide native integer (`codegen_num_threads`) that every program
reads when it runs: `set_num_threads` changes it, and OpenBLAS's, without recompiling anything.
Small kernels are never split (see `MIN_WORK_NS`), and a kernel uses no more threads than its work
can keep busy.

>>> old = get_num_threads()
>>> set_num_threads(1); get_num_threads()
1
>>> set_num_threads(old)
"""
from __future__ import annotations

import ctypes
import operator
import os

import llvmlite.ir as ir

SYMBOL = "codegen_num_threads"
# Chunks carry their own context on the dispatcher's stack; more threads than this are clamped.
MAX_THREADS = 64
# NOTE: measured on the 2-core development VM, idle, kernels forced to split (median of 15 interleaved
# rounds): starting and joining one extra thread from JIT code costs ~40 µs (a 128-element kernel: 2.9
# -> 42 µs). Two threads break even at ~75 µs of one-thread work and gain 1.3x at 150-280 µs, 1.5-1.75x
# at 0.7-1.3 ms, 1.7-1.9x at 5-7.5 ms; with the other core busy they gain nothing or lose. A kernel is
# split only when each thread gets at least this much estimated work (so >= ~1.4x when idle).
MIN_WORK_NS = 250_000.0

I32, I64 = ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()


def _default_count() -> int:
    """torch's rule: OMP_NUM_THREADS when set, else the cores this process may run on."""
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
        if value >= 1:
            return value
    except ValueError:
        pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_count = ctypes.c_int64(_default_count())


def symbols() -> dict[str, int]:
    """The native address of the thread count, which generated code imports by name."""
    return {SYMBOL: ctypes.addressof(_count)}


def get_num_threads() -> int:
    """Threads a large kernel is split across (default: the usable cores, or OMP_NUM_THREADS)."""
    return int(_count.value)


def set_num_threads(n: int) -> None:
    """Use `n` threads for large kernels, and for OpenBLAS's matrix products too."""
    if isinstance(n, bool) or not hasattr(n, "__index__") or operator.index(n) < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    n = operator.index(n)
    _count.value = n  # (generated code uses at most MAX_THREADS of them)
    from . import blas

    try:
        blas.set_num_threads(n)
    except (RuntimeError, OSError):
        pass  # no OpenBLAS in this process: only our kernels are threaded


# -- IR ---------------------------------------------------------------------------------------------
def _declare(module: ir.Module, name: str, ty: ir.FunctionType) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ty, name=name)
    fn.attributes.add("nounwind")
    return fn


def thread_count(module: ir.Module, builder: ir.IRBuilder, limit: int):
    """The runtime thread count clamped to [1, min(limit, MAX_THREADS)] (an i64 value)."""
    count = module.globals.get(SYMBOL)
    if count is None:
        count = ir.GlobalVariable(module, I64, name=SYMBOL)
        count.linkage = "external"
    n = builder.load(count, typ=I64)
    top = ir.Constant(I64, max(1, min(limit, MAX_THREADS)))
    n = builder.select(builder.icmp_signed(">", n, top), top, n)
    one = ir.Constant(I64, 1)
    return builder.select(builder.icmp_signed("<", n, one), one, n)


def task_function(module: ir.Module, name: str, range_fn: ir.Function, n_pointers: int, n_scalars: int):
    """`ptr name(ptr ctx)`: the thread entry calling `range_fn(pointers..., scalars..., start, count,
    partials)` with ctx = {ptr args, i64 start, i64 count, ptr partials} and args an array of 8-byte
    slots (pointers, then float64 scalars)."""
    fn = ir.Function(module, ir.FunctionType(PTR, [PTR]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = fn.args[0]

    def slot(base, k, ty):  # every slot is 8 bytes wide
        return b.load(b.gep(base, [ir.Constant(I64, k)], source_etype=ty), typ=ty)

    args = slot(ctx, 0, PTR)
    values = [slot(args, k, PTR) for k in range(n_pointers)]
    values += [slot(args, n_pointers + k, ir.DoubleType()) for k in range(n_scalars)]
    b.call(range_fn, values + [slot(ctx, 1, I64), slot(ctx, 2, I64), slot(ctx, 3, PTR)])
    b.ret(ir.Constant(PTR, None))
    return fn


def dispatch(module: ir.Module, b: ir.IRBuilder, loop, range_fn, task, arguments, rows: int, align: int,
             limit: int, partial_slots: int):
    """Run `range_fn` over `rows` rows split into one chunk per thread; returns (threads, partials):
    the i64 number of chunks run and the array of `partial_slots` 8-byte slots per chunk that the
    range functions filled (chunk t's at slots [t * partial_slots, (t + 1) * partial_slots)).

    `loop(count, body, carried)` emits a counted loop (the kernel lowering's); chunks start at
    multiples of `align` rows.
    """
    create = _declare(module, "pthread_create", ir.FunctionType(I32, [PTR, PTR, PTR, PTR]))
    join = _declare(module, "pthread_join", ir.FunctionType(I32, [I64, PTR]))
    threads = thread_count(module, b, limit)
    one, zero = ir.Constant(I64, 1), ir.Constant(I64, 0)
    # chunk = ceil(ceil(rows / threads) / align) * align
    per = b.udiv(b.add(ir.Constant(I64, rows - 1), threads), threads)
    chunk = b.mul(b.udiv(b.add(per, ir.Constant(I64, align - 1)), ir.Constant(I64, align)),
                  ir.Constant(I64, align))

    def bounds(t):
        start = b.mul(t, chunk)
        start = b.select(b.icmp_unsigned(">", start, ir.Constant(I64, rows)), ir.Constant(I64, rows), start)
        left = b.sub(ir.Constant(I64, rows), start)
        return start, b.select(b.icmp_unsigned("<", left, chunk), left, chunk)

    args = _entry_alloca(b, ir.ArrayType(I64, max(1, len(arguments))))
    for k, value in enumerate(arguments):
        b.store(value, b.gep(args, [ir.Constant(I64, k)], source_etype=value.type))
    contexts = _entry_alloca(b, ir.ArrayType(I64, 4 * MAX_THREADS))
    ids = _entry_alloca(b, ir.ArrayType(I64, MAX_THREADS))
    started = _entry_alloca(b, ir.ArrayType(ir.IntType(8), MAX_THREADS))
    partials = _entry_alloca(b, ir.ArrayType(I64, max(1, partial_slots) * MAX_THREADS))

    def partials_of(t):
        return b.gep(partials, [b.mul(t, ir.Constant(I64, partial_slots))], source_etype=I64)

    def start_one(i, _):
        t = b.add(i, one)
        start, count = bounds(t)
        ctx = b.gep(contexts, [b.mul(t, ir.Constant(I64, 4))], source_etype=I64)
        for k, value in enumerate((args, start, count, partials_of(t))):
            b.store(value, b.gep(ctx, [ir.Constant(I64, k)], source_etype=value.type))
        status = b.call(create, [b.gep(ids, [t], source_etype=I64), ir.Constant(PTR, None), task, ctx])
        ok = b.icmp_signed("==", status, ir.Constant(I32, 0))
        b.store(b.zext(ok, ir.IntType(8)), b.gep(started, [t], source_etype=ir.IntType(8)))
        with b.if_then(b.not_(ok)):  # no thread to be had: run the chunk here
            b.call(task, [ctx])
        return []

    loop(b.sub(threads, one), start_one)
    start, count = bounds(zero)
    b.call(range_fn, list(arguments) + [start, count, partials_of(zero)])

    def join_one(i, _):
        t = b.add(i, one)
        flag = b.load(b.gep(started, [t], source_etype=ir.IntType(8)), typ=ir.IntType(8))
        with b.if_then(b.icmp_unsigned("!=", flag, ir.Constant(ir.IntType(8), 0))):
            b.call(join, [b.load(b.gep(ids, [t], source_etype=I64), typ=I64), ir.Constant(PTR, None)])
        return []

    loop(b.sub(threads, one), join_one)
    return threads, partials


def _entry_alloca(b: ir.IRBuilder, ty):
    """An alloca at the start of the function (one stack slot, not one per loop trip)."""
    here = b.block
    b.position_at_start(b.function.entry_basic_block)
    slot = b.alloca(ty)
    slot.type = PTR  # an opaque pointer, like the kernels' arguments (llvmlite types allocas)
    b.position_at_end(here)
    return slot
