"""Matrix products through the OpenBLAS that numpy ships, called from generated code.

numpy's wheels bundle an ILP64 OpenBLAS (`numpy.libs/libscipy_openblas64_*.so`) whose CBLAS entry
points carry a `scipy_` prefix and a `64_` suffix. `symbols()` resolves the ones generated code calls;
`codegen.jit` imports them into the JIT library of any module that references them. `lower_gemm`
turns one `Gemm` spec into an internal function (same calling convention as an elementwise kernel:
one `ptr` per distinct buffer, in sorted buffer order) that loops over the batch and calls
`scipy_cblas_sgemm64_` or `scipy_cblas_dgemm64_`.

All integer arguments of the ILP64 interface are int64; the enums are int32 (RowMajor=101,
NoTrans=111, Trans=112).

>>> sorted(symbols())
['scipy_cblas_dgemm64_', 'scipy_cblas_sgemm64_']
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os

import llvmlite.ir as ir

from .kernel import Gemm, Program

GEMM_SYMBOLS = {"float32": "scipy_cblas_sgemm64_", "float64": "scipy_cblas_dgemm64_"}
SYMBOL_PREFIX = "scipy_cblas_"
_SET_THREADS = "scipy_openblas_set_num_threads64_"
_GET_THREADS = "scipy_openblas_get_num_threads64_"
_LIBRARY_PATTERN = "libscipy_openblas*.so*"

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

I32, I64 = ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
_SCALAR = {"float32": F32, "float64": F64}


# -- the library ------------------------------------------------------------------------------------
def _mapped_libraries():
    """OpenBLAS files already mapped into this process (what `import numpy` loaded)."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if "libscipy_openblas" in os.path.basename(path) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


def _numpy_libs_directories():
    import numpy

    site = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    return [os.path.join(site, "numpy.libs"), os.path.join(os.path.dirname(numpy.__file__), ".libs")]


@functools.cache
def library_path() -> str:
    """Path of numpy's bundled OpenBLAS; raises RuntimeError naming every place searched."""
    import numpy  # noqa: F401  (loads OpenBLAS into the process)

    mapped = _mapped_libraries()
    if mapped:
        return mapped[0]
    directories = _numpy_libs_directories()
    for directory in directories:
        candidates = sorted(glob.glob(os.path.join(directory, _LIBRARY_PATTERN)))
        if candidates:
            return candidates[0]
    raise RuntimeError(
        "codegen.blas: numpy's bundled OpenBLAS was not found: no mapping named libscipy_openblas* in "
        f"/proc/self/maps and no {_LIBRARY_PATTERN} in {', '.join(directories)}. Matrix products need "
        "numpy's wheel build (numpy >= 2 from PyPI), which ships scipy_cblas_sgemm64_/scipy_cblas_dgemm64_.")


@functools.cache
def _library():
    path = library_path()
    library = ctypes.CDLL(path)
    missing = [name for name in (*GEMM_SYMBOLS.values(), _SET_THREADS, _GET_THREADS) if not hasattr(library, name)]
    if missing:
        raise RuntimeError(f"codegen.blas: {path} does not export {', '.join(missing)} "
                           "(expected numpy's ILP64 scipy-openblas build)")
    library.scipy_openblas_set_num_threads64_.argtypes = [ctypes.c_int]
    library.scipy_openblas_set_num_threads64_.restype = None
    library.scipy_openblas_get_num_threads64_.argtypes = []
    library.scipy_openblas_get_num_threads64_.restype = ctypes.c_int
    return library


@functools.cache
def _symbols() -> tuple[tuple[str, int], ...]:
    library = _library()
    return tuple((name, ctypes.cast(getattr(library, name), ctypes.c_void_p).value) for name in GEMM_SYMBOLS.values())


def symbols() -> dict[str, int]:
    """Addresses of the BLAS functions generated code may call, by symbol name (resolved once)."""
    return dict(_symbols())


def set_num_threads(n: int) -> None:
    """Set OpenBLAS's thread count (process-wide: numpy's own matmul follows it too)."""
    if int(n) < 1:
        raise ValueError(f"set_num_threads expects a positive thread count, got {n}")
    _library().scipy_openblas_set_num_threads64_(int(n))


def get_num_threads() -> int:
    """OpenBLAS's current thread count."""
    return int(_library().scipy_openblas_get_num_threads64_())


# -- lowering ---------------------------------------------------------------------------------------
def gemm_buffers(gemm: Gemm) -> list[int]:
    """The distinct buffers a Gemm touches, sorted: its function's pointer arguments, in order."""
    return sorted({gemm.a, gemm.b, gemm.c})


def _operand_layout(name, rows, cols, strides):
    """(transpose flag, leading dimension) for a rows x cols operand with (row, col) `strides`.

    Row-major (col stride 1): NoTrans with ld = row stride. Column-major (row stride 1): Trans with
    ld = col stride. Strides of size-1 dimensions are meaningless and are normalized so that BLAS's
    check ld >= max(1, columns of the stored layout) holds. An empty operand is never read.
    """
    rs, cs = strides
    if rows == 0 or cols == 0:
        return NO_TRANS, max(1, cols)
    if (cols == 1 or cs == 1) and (rows == 1 or rs >= max(1, cols)):
        return NO_TRANS, (rs if rows > 1 else max(1, cols))
    if (rows == 1 or rs == 1) and (cols == 1 or cs >= max(1, rows)):
        return TRANS, (cs if cols > 1 else max(1, rows))
    raise ValueError(f"Gemm operand {name} ({rows}x{cols}) with strides {strides} is neither row- nor "
                     "column-major with non-overlapping rows; BLAS cannot read it without a copy")


def _fold_batch(gemm: Gemm):
    """Drop size-1 batch axes and fold batch axes that broadcast B into the rows of A and C.

    `C[b] = A[b] @ B` over a batch with B shared is one (batch*m) x k product when A's rows continue
    across the batch axis (row-major A with a_batch_stride == m * row stride) and C is contiguous
    across it. Returns (m, a_strides, batch axes as (size, a, b, c strides)).
    """
    axes = [(size, sa, sb, sc) for size, sa, sb, sc in
            zip(gemm.batch, gemm.a_batch_strides, gemm.b_batch_strides, gemm.c_batch_strides) if size != 1]
    m, (rs, cs) = gemm.m, gemm.a_strides
    while axes and gemm.k > 0:
        size, sa, sb, sc = axes[-1]
        row_major = gemm.k == 1 or cs == 1
        rows_continue = sa == m * rs or m == 1
        folded_rs = rs if m > 1 else sa
        if not (sb == 0 and sc == m * gemm.n and row_major and rows_continue and folded_rs >= max(1, gemm.k)):
            break
        rs = folded_rs
        m *= size
        axes.pop()
    return m, (rs, cs), axes


def _declare(module: ir.Module, dtype: str) -> ir.Function:
    name = GEMM_SYMBOLS[dtype]
    if name in module.globals:
        return module.globals[name]
    scalar = _SCALAR[dtype]
    fnty = ir.FunctionType(ir.VoidType(), [I32, I32, I32, I64, I64, I64, scalar, PTR, I64, PTR, I64, scalar, PTR, I64])
    fn = ir.Function(module, fnty, name=name)
    fn.attributes.add("nounwind")
    return fn


def lower_gemm(module: ir.Module, program: Program, index: int, gemm: Gemm) -> ir.Function:
    """Add `gemm{index}`, an internal function computing `gemm`, to `module` and return it."""
    dtypes = {program.buffers[i] for i in (gemm.a, gemm.b, gemm.c)}
    if len(dtypes) != 1 or not dtypes <= set(GEMM_SYMBOLS):
        got = ", ".join(f"{role}=buffer {i} ({program.buffers[i]})" for role, i in
                        (("a", gemm.a), ("b", gemm.b), ("c", gemm.c)))
        raise NotImplementedError(f"Gemm supports float32 or float64 operands of one dtype through BLAS; got {got}")
    (dtype,) = dtypes
    if min(gemm.m, gemm.n, gemm.k, *gemm.batch) < 0:
        raise ValueError(f"Gemm with negative sizes: m={gemm.m} n={gemm.n} k={gemm.k} batch={gemm.batch}")

    if gemm.c in (gemm.a, gemm.b):
        raise ValueError(f"Gemm writes buffer {gemm.c} while reading it as an operand; BLAS needs C apart from A and B")

    buffers = gemm_buffers(gemm)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * len(buffers)), name=f"gemm{index}")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    pointer = dict(zip(buffers, fn.args))
    builder = ir.IRBuilder(fn.append_basic_block("entry"))

    empty = gemm.m == 0 or gemm.n == 0 or 0 in gemm.batch
    # NOTE: k == 0 is left to BLAS: with beta = 0 OpenBLAS scales C by beta before it looks at k and
    # writes exact zeros (NaN in C does not survive; tested), with beta = 1 it leaves C alone.
    if not empty and not (gemm.k == 0 and gemm.accumulate):
        m, a_strides, axes = _fold_batch(gemm)
        trans_a, lda = _operand_layout("A", m, gemm.k, a_strides)
        trans_b, ldb = _operand_layout("B", gemm.k, gemm.n, gemm.b_strides)
        scalar = _SCALAR[dtype]
        call_args = lambda a, b, c: [  # noqa: E731
            ir.Constant(I32, ROW_MAJOR), ir.Constant(I32, trans_a), ir.Constant(I32, trans_b),
            ir.Constant(I64, m), ir.Constant(I64, gemm.n), ir.Constant(I64, gemm.k),
            ir.Constant(scalar, 1.0), a, ir.Constant(I64, lda), b, ir.Constant(I64, ldb),
            ir.Constant(scalar, 1.0 if gemm.accumulate else 0.0), c, ir.Constant(I64, max(1, gemm.n))]
        blas_fn = _declare(module, dtype)
        _batch_loops(builder, scalar, axes, [pointer[gemm.a], pointer[gemm.b], pointer[gemm.c]],
                     lambda a, b, c: builder.call(blas_fn, call_args(a, b, c)))
    builder.ret_void()
    return fn


def _batch_loops(builder: ir.IRBuilder, scalar, axes, pointers, emit):
    """Nested counted loops over `axes` ((size, a, b, c strides) each); `emit(a, b, c)` at the bottom."""
    if not axes:
        emit(*pointers)
        return
    (size, *strides), rest = axes[0], axes[1:]
    before = builder.block
    header = builder.append_basic_block("batch")
    builder.branch(header)
    builder.position_at_end(header)
    i = builder.phi(I64, name="b")
    i.add_incoming(ir.Constant(I64, 0), before)
    moved = [ptr if s == 0 else builder.gep(ptr, [builder.mul(i, ir.Constant(I64, s), flags=("nsw",))],
                                            source_etype=scalar)
             for ptr, s in zip(pointers, strides)]
    _batch_loops(builder, scalar, rest, moved, emit)
    following = builder.add(i, ir.Constant(I64, 1), flags=("nuw", "nsw"))
    i.add_incoming(following, builder.block)
    done = builder.append_basic_block("batch.done")
    builder.cbranch(builder.icmp_unsigned("<", following, ir.Constant(I64, size)), header, done)
    builder.position_at_end(done)
