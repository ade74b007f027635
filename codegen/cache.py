"""Compiled object code on disk, so a later process loads a program instead of compiling it again.

An entry is keyed by everything that changes the machine code: the IR text, the llvmlite and LLVM
versions, the CPU name and feature string, the pipeline flags, and the source of this package (a hash
of its files: an edited codegen never loads code an older one made, with or without a version bump). It lives in
the user cache directory (`$XDG_CACHE_HOME/symgrad` or `~/.cache/symgrad`); `SYMGRAD_CACHE_DIR`
relocates it and `SYMGRAD_CACHE=0` turns it off.

Entries are written to a temporary file and renamed into place, so concurrent processes never see half
an entry; each carries a SHA-256 of its payload, and an entry that does not match (truncated, corrupt)
is ignored and rewritten, never loaded.

>>> import tempfile, os
>>> os.environ["SYMGRAD_CACHE_DIR"] = tempfile.mkdtemp()
>>> key = entry_key("define void @f() {\\n  ret void\\n}\\n", "cascadelake", "+avx2", "O3")
>>> load(key) is None
True
>>> store(key, b"object bytes"); load(key)
b'object bytes'
>>> del os.environ["SYMGRAD_CACHE_DIR"]
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile

MAGIC = b"symgrad-object-1\n"
_DIGEST = 32


def directory() -> str | None:
    """Where entries live, or None when the cache is off."""
    if os.environ.get("SYMGRAD_CACHE", "1") == "0":
        return None
    chosen = os.environ.get("SYMGRAD_CACHE_DIR")
    if chosen:
        return chosen
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "symgrad")


def entry_key(ir_text: str, cpu: str, features: str, flags: str) -> str:
    """The hex key of a module: its IR and everything else that decides the code made from it."""
    import llvmlite
    import llvmlite.binding as llvm

    digest = hashlib.sha256()
    for part in (MAGIC.decode(), llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)), cpu, features,
                 flags, code_fingerprint(), ir_text):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def load(key: str, suffix: str = ".o") -> bytes | None:
    """The object code stored under `key`, or None (no entry, cache off, or an entry that fails its
    checksum). `suffix` names other kinds of entries kept the same way (symgrad's plan records)."""
    path = _path(key, suffix)
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _DIGEST:
        return None
    digest, payload = data[len(MAGIC):len(MAGIC) + _DIGEST], data[len(MAGIC) + _DIGEST:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    return payload


def store(key: str, object_code: bytes, suffix: str = ".o") -> None:
    """Keep `object_code` under `key` (best effort: a read-only or full disk just means no cache)."""
    path = _path(key, suffix)
    if path is None:
        return
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".partial-")
        with os.fdopen(handle, "wb") as out:
            out.write(MAGIC + hashlib.sha256(object_code).digest() + object_code)
        os.replace(temporary, path)  # NOTE: atomic: readers see the old entry or the whole new one
    except OSError:
        pass


def _path(key: str, suffix: str) -> str | None:
    folder = directory()
    return None if folder is None else os.path.join(folder, key[:2], key + suffix)


@functools.cache
def code_fingerprint(*extra_files: str) -> str:
    """A SHA-256 of this package's Python sources (and of `extra_files`).

    NOTE: cheaper than asking importlib.metadata for a version (whose import alone took tens of
    milliseconds of a warm first step), and exact where a version number is not.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(os.path.join(here, name) for name in os.listdir(here) if name.endswith(".py"))
    digest = hashlib.sha256()
    for path in [*files, *extra_files]:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()
