"""Plans on disk: a later process runs a graph it has seen before without SymPy or lowering.

The object cache (`codegen/cache.py`) already skips LLVM for a program compiled before, but a fresh
process still builds each plan's SymPy kernel bodies and prints their IR just to find its cache key;
that, and SymPy's own first-use imports, is most of a warm first step. So a plan also leaves a
*record* on disk under its structural key: which values it stores, how its results are laid out, and
its IR. A plan made from a record asks the object cache for its code by that IR, so nothing is
compiled or built.

A record is keyed by the structural key (ops, shapes, dtypes, integer constants, input layouts) and by
a fingerprint of the code that turns graphs into plans (this package's scheduler, op table and graph
modules and all of `codegen`), so editing that code never reuses a stale record. Keys holding
anything but plain data (a Python function as an op argument) are not stored: their text is not stable
across processes. Records live beside the object code (`SYMGRAD_CACHE_DIR`, `SYMGRAD_CACHE=0`) and get
the same atomic writes and checksums.

>>> import tempfile, os
>>> os.environ["SYMGRAD_CACHE_DIR"] = tempfile.mkdtemp()
>>> key = ((("BUFFER", None, (2,), "float32", ()),), (), (0,))
>>> store(key, {"ir": "..."}); load(key)
{'ir': '...'}
>>> load((lambda: 0,)) is None  # not plain data: never stored, never found
True
>>> del os.environ["SYMGRAD_CACHE_DIR"]
"""
from __future__ import annotations

import hashlib
import json
import os

from codegen import cache

FORMAT = "symgrad-plan-1"
SUFFIX = ".plan"
_PLAIN = (str, int, float, bool, type(None))


def load(structural_key) -> dict | None:
    """The record stored for `structural_key`, or None."""
    name = _name(structural_key)
    if name is None:
        return None
    data = cache.load(name, SUFFIX)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def store(structural_key, record: dict) -> None:
    """Keep `record` (JSON-able) for `structural_key` (best effort, like the object cache)."""
    name = _name(structural_key)
    if name is not None:
        cache.store(name, json.dumps(record).encode(), SUFFIX)


def _name(structural_key) -> str | None:
    if cache.directory() is None or not _is_plain(structural_key):
        return None
    digest = hashlib.sha256()
    for part in (FORMAT, _code_fingerprint(), repr(structural_key)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _is_plain(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is tuple:
            stack.extend(item)
        elif not isinstance(item, _PLAIN):
            return False
    return True


def _code_fingerprint() -> str:
    """A hash of the sources that decide what plan a graph gets (codegen's and these)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return cache.code_fingerprint(*(os.path.join(here, name) for name in (
        "schedule.py", "ops.py", "graph.py", "plan_cache.py")))
