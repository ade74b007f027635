"""symgrad.save / symgrad.load: tensors, state dicts and optimizer states in an `.npz` file.

The file is a numpy `.npz` archive (a zip of `.npy` arrays): one array per tensor, plus `__symgrad__`,
a UTF-8 JSON manifest describing the saved object (dicts, lists, tuples, numbers, strings, None, and
references to the arrays). Loading reads arrays with `allow_pickle=False` and parses JSON, so a file
can never execute code. The format is described in docs/serialization.md.

>>> import io, symgrad
>>> model = symgrad.nn.Linear(2, 1)
>>> buffer = io.BytesIO()
>>> symgrad.save(model.state_dict(), buffer)
>>> _ = buffer.seek(0)
>>> restored = symgrad.load(buffer)
>>> list(restored), bool((restored["weight"] == model.weight).all())
(['weight', 'bias'], True)
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np

from ._tensor_module import _t

FORMAT = "symgrad-npz"
VERSION = 1
MANIFEST = "__symgrad__"


def save(obj, f) -> None:
    """Write `obj` (a tensor, or dicts/lists/tuples of tensors, numpy arrays, numbers, strings, None)
    to `f`, a path or a binary file object. Tensors shared within `obj` are stored once.

    >>> import io, symgrad
    >>> buffer = io.BytesIO()
    >>> symgrad.save({"x": symgrad.ones(2), "step": 3}, buffer)
    """
    arrays: dict[str, np.ndarray] = {}
    names: dict[int, str] = {}

    def array_name(value, array) -> str:
        if id(value) not in names:
            names[id(value)] = f"a{len(arrays)}"
            arrays[names[id(value)]] = np.array(array, order="C")  # a copy; keeps 0-d arrays 0-d
        return names[id(value)]

    def encode(value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, _t.Tensor):
            from .nn.parameter import Parameter

            return {"tensor": array_name(value, value.detach().numpy()), "requires_grad": value.requires_grad,
                    "parameter": isinstance(value, Parameter)}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise TypeError("symgrad.save cannot store numpy arrays of Python objects")
            return {"ndarray": array_name(value, value)}
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            return value.item()
        if isinstance(value, list):
            return [encode(v) for v in value]
        if isinstance(value, tuple):
            return {"tuple": [encode(v) for v in value]}
        if isinstance(value, dict):
            return {"dict": [[encode(k), encode(v)] for k, v in value.items()],
                    "ordered": isinstance(value, OrderedDict)}
        raise TypeError(f"symgrad.save cannot store objects of type {type(value).__name__} (tensors, numpy arrays, "
                        "dicts, lists, tuples, numbers, strings and None can be saved)")

    manifest = {"format": FORMAT, "version": VERSION, "object": encode(obj)}
    arrays[MANIFEST] = np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)
    if isinstance(f, (str, os.PathLike)):
        # NOTE: through a file object, so numpy does not append ".npz" to the caller's path
        with open(f, "wb") as handle:
            np.savez(handle, **arrays)
    else:
        np.savez(f, **arrays)


def load(f, map_location=None, weights_only: bool = True, **kwargs):
    """Read an object written by `save` from a path or binary file object. Never unpickles.

    >>> import io, symgrad
    >>> buffer = io.BytesIO()
    >>> symgrad.save([symgrad.tensor([1, 2]), (0.5, "adam")], buffer)
    >>> _ = buffer.seek(0)
    >>> symgrad.load(buffer)
    [tensor([1, 2]), (0.5, 'adam')]
    """
    with np.load(f, allow_pickle=False) as archive:
        if MANIFEST not in archive.files:
            raise RuntimeError("Invalid symgrad file: no __symgrad__ manifest (symgrad.load reads files written by "
                               "symgrad.save)")
        manifest = json.loads(archive[MANIFEST].tobytes().decode("utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("version", 0) > VERSION:
            raise RuntimeError(f"Invalid symgrad file: format {manifest.get('format')!r} version "
                               f"{manifest.get('version')!r} is not {FORMAT!r} version <= {VERSION}")
        arrays = {name: archive[name] for name in archive.files if name != MANIFEST}
    loaded: dict[str, object] = {}

    def decode(value):
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "tensor" in value:
            key = (value["tensor"], value.get("parameter", False), value.get("requires_grad", False))
            if key not in loaded:
                loaded[key] = _tensor(arrays[value["tensor"]], value)
            return loaded[key]
        if "ndarray" in value:
            return arrays[value["ndarray"]]
        if "tuple" in value:
            return tuple(decode(v) for v in value["tuple"])
        if "dict" in value:
            items = [(_hashable(decode(k)), decode(v)) for k, v in value["dict"]]
            return OrderedDict(items) if value.get("ordered") else dict(items)
        raise RuntimeError(f"Invalid symgrad file: unknown entry {sorted(value)}")

    return decode(manifest["object"])


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _tensor(array, entry):
    from .nn.parameter import Parameter

    if array.dtype.kind not in "biuf":
        raise RuntimeError(f"Invalid symgrad file: tensor of numpy dtype {array.dtype}")
    t = _t.tensor(array)
    if entry.get("parameter"):
        return Parameter(t, requires_grad=entry.get("requires_grad", True))
    if entry.get("requires_grad"):
        t.requires_grad_()
    return t
