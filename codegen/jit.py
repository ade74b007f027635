"""Compile LLVM IR to native code for this CPU and hand back a callable.

One target machine for the host (its CPU name and features, 512-bit vectors preferred) and one ORC
LLJIT per process. Each compiled program is optimised with LLVM's O3 pipeline (loop and SLP
vectorization on), emitted as an object file and linked into its own JIT library; the object bytes
are kept so that callers can inspect or cache them.

>>> from codegen.jit import compile_ir
>>> ir_text = 'define void @f(ptr %a, ptr %b) {\\n  ret void\\n}\\n'
>>> compile_ir(ir_text, "f").address > 0
True
"""
from __future__ import annotations

import ctypes
import functools
import itertools
import re
from dataclasses import dataclass

import llvmlite.binding as llvm

from . import cache, mathlib

PROGRAM_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class _Counter:
    """How many modules this process has compiled; tests count recompiles with it."""

    def __init__(self):
        self.value = 0


_compiles = _Counter()
_disk_loads = _Counter()
_library_names = itertools.count()
_BLAS_DECLARATION = re.compile(r"^declare [^@\n]*@\"?(scipy_cblas_\w+)", re.MULTILINE)


def compile_count() -> int:
    """Number of modules made native so far in this process (compiled, or loaded from the disk cache).

    >>> isinstance(compile_count(), int)
    True
    """
    return _compiles.value


def disk_load_count() -> int:
    """How many of those came from the disk cache instead of LLVM's code generator."""
    return _disk_loads.value


# What `optimize` runs; part of the disk cache key, so change it with the pipeline.
PIPELINE = ("speed_level=3 loop_vectorization slp_vectorization loop_unrolling loop_interleaving stream_stores "
            "mathlib_primitives")


@functools.cache
def _host():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    # NOTE: cascadelake prefers 256-bit vectors; dropping that preference gives zmm code, 1.3-1.9x
    # faster on in-cache transcendental kernels (shared/notes, section 2).
    features = llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"
    cpu = llvm.get_host_cpu_name()
    tm = target.create_target_machine(cpu=cpu, features=features, opt=3, jit=True)
    return tm, llvm.create_lljit_compiler(tm), cpu, features


@functools.cache
def host_has(feature: str) -> bool:
    """Whether the host CPU has `feature` (an LLVM feature name such as "avx512f")."""
    return f"+{feature}" in _host()[3].split(",")


def target_machine():
    """The host target machine (its CPU name and feature string are part of the disk cache key)."""
    return _host()[0]


def optimize(ir_text: str):
    """Parse and verify `ir_text`, run the O3 pipeline with vectorizers on; return the ModuleRef."""
    tm = target_machine()
    module = llvm.parse_assembly(ir_text)
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    module.verify()
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True  # NOTE: off by default at every speed level in llvmlite 0.50
    tuning.loop_unrolling = True
    tuning.loop_interleaving = True
    builder = llvm.create_pass_builder(tm, tuning)
    builder.getModulePassManager().run(module, builder)
    module = mathlib.link_primitives(module, builder)
    if _STREAM_SCOPE in ir_text:
        streamed = stream_stores(str(module))
        module = llvm.parse_assembly(streamed)
        module.verify()
    return module


_STREAM_SCOPE = "codegen.stream.store"  # the alias scope lower.py puts on stores to stream
_METADATA = re.compile(r"^!(\d+) = (?:distinct )?!\{(.*)\}$", re.MULTILINE)
_VECTOR_STORE = re.compile(r"^\s*store <(\d+) x (float|double)> [^\n]*, align (\d+)[^\n]*!alias\.scope !(\d+)[^\n]*$",
                           re.MULTILINE)


def stream_stores(text: str) -> str:
    """Optimized IR `text` with a non-temporal hint on each vector store that lower.py marked for
    streaming (alias scope "codegen.stream.store") and that LLVM proved aligned to its size: x86 has
    non-temporal vector stores only for aligned addresses (an unaligned one would be split into
    scalar stores). The loop vectorizer will not vectorize a loop whose scalar stores carry the hint,
    so it goes on here, after the pipeline; the code generator then emits `vmovntps`."""
    nodes = {int(m.group(1)): m.group(2) for m in _METADATA.finditer(text)}
    scopes = {n for n, body in nodes.items() if f'!"{_STREAM_SCOPE}"' in body}
    # (inlining merges the kernels' own `noalias` scopes into the same lists)
    lists = {n for n, body in nodes.items() if any(part.strip() in {f"!{k}" for k in scopes} for part in body.split(","))}
    hint = max(nodes, default=-1) + 1

    def add_hint(m):
        lanes, size, align, scope = int(m.group(1)), 4 if m.group(2) == "float" else 8, int(m.group(3)), int(m.group(4))
        if scope not in lists or align < lanes * size or lanes * size not in (16, 32, 64):
            return m.group(0)
        return f"{m.group(0)}, !nontemporal !{hint}"

    out = _VECTOR_STORE.sub(add_hint, text)
    return out if out == text else f"{out}\n!{hint} = !{{i32 1}}\n"


def external_symbols(module) -> dict[str, int]:
    """Addresses for the functions `module` (a ModuleRef or IR text) declares that the process does not
    export by name.

    BLAS: numpy loads its OpenBLAS privately (RTLD_LOCAL), so `add_current_process()` cannot see
    `scipy_cblas_*`; modules that call no BLAS never touch (or need) OpenBLAS. And the thread count
    that split kernels read (`parallel.SYMBOL`, a variable of this process).
    """
    from . import parallel

    if isinstance(module, str):
        wanted = sorted(set(_BLAS_DECLARATION.findall(module)))
        threaded = re.search(rf'^@"?{parallel.SYMBOL}"? = external global', module, re.MULTILINE) is not None
    else:
        wanted = [f.name for f in module.functions if f.is_declaration and f.name.startswith("scipy_cblas_")]
        threaded = any(g.name == parallel.SYMBOL for g in module.global_variables)
    found = parallel.symbols() if threaded else {}
    if not wanted:
        return found
    from . import blas

    available = blas.symbols()
    missing = [name for name in wanted if name not in available]
    if missing:
        raise RuntimeError(f"codegen.jit: no address known for {', '.join(missing)} (known: {', '.join(available)})")
    return {**found, **{name: available[name] for name in wanted}}


@dataclass
class Compiled:
    """A linked native function. Keep this object alive as long as `address` is used."""

    address: int
    object_code: bytes
    ir_text: str
    from_disk: bool  # loaded from the disk cache rather than compiled
    _library: object
    _optimized: str | None = None

    @property
    def optimized_ir(self) -> str:
        """The IR after the O3 pipeline (recomputed on demand for a program loaded from disk)."""
        if self._optimized is None:
            self._optimized = str(optimize(self.ir_text))
        return self._optimized

    def assembly(self) -> str:
        return target_machine().emit_assembly(llvm.parse_assembly(self.optimized_ir))


def compile_ir(ir_text: str, entry: str) -> Compiled:
    """Optimise and link `ir_text`, or load its object code from the disk cache; return the address of
    its function `entry`."""
    tm, lljit, cpu, features = _host()
    key = cache.entry_key(ir_text + entry, cpu, features, PIPELINE)
    object_code, optimized = cache.load(key), None
    if object_code is not None:
        try:
            return _link(lljit, object_code, ir_text, entry, None, from_disk=True)
        except RuntimeError:
            pass  # an entry that will not link is compiled again and replaced, never used
    module = optimize(ir_text)
    optimized = str(module)
    object_code = tm.emit_object(module)
    cache.store(key, object_code)
    return _link(lljit, object_code, ir_text, entry, optimized, from_disk=False)


def link_ir(ir_text: str, entry: str, symbols: dict[str, int], name: str):
    """Compile a small helper module at LLVM's default level (no cache, not counted as a program),
    resolving `symbols` to the given addresses; (the address of `entry`, the library to keep alive)."""
    _, lljit, _, _ = _host()
    builder = llvm.JITLibraryBuilder().add_ir(ir_text)
    for symbol, address in symbols.items():
        builder = builder.import_symbol(symbol, address)
    library = builder.export_symbol(entry).link(lljit, name)
    return library[entry], library


def _link(lljit, object_code, ir_text, entry, optimized, from_disk) -> Compiled:
    builder = llvm.JITLibraryBuilder().add_object_img(object_code).add_current_process()
    for symbol, address in external_symbols(ir_text).items():
        builder = builder.import_symbol(symbol, address)
    library = builder.export_symbol(entry).link(lljit, f"symgrad{next(_library_names)}")
    _compiles.value += 1
    if from_disk:
        _disk_loads.value += 1
    return Compiled(library[entry], object_code, ir_text, from_disk, library, optimized)
