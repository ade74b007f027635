"""Hard-coded expectations for symgrad's tensor formatter; no torch needed.

Every expected string here was produced by ``repr`` of the same tensor in
torch 2.13 (CPU); ``tests/test_repr.py`` checks many more cases against a
live torch.
"""

import ast
import doctest
import math
from pathlib import Path

import numpy as np
import pytest

import symgrad._repr as repr_module
from symgrad._repr import format_tensor, get_printoptions, printoptions, set_printoptions

nan, inf = float("nan"), float("inf")


def f32(values):
    return np.array(values, np.float32)


EXPECTED = [
    # (values, dtype, suffixes, torch's repr)
    (np.ones((2, 2), np.float32), "float32", ["requires_grad=True"],
     "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)"),
    (f32(27.0), "float32", ["grad_fn=<MeanBackward0>"], "tensor(27., grad_fn=<MeanBackward0>)"),
    (f32([2.0]), "float32", ["requires_grad=True"], "tensor([2.], requires_grad=True)"),
    (f32([1.99999]), "float32", [], "tensor([2.0000])"),
    (f32(0.1), "float32", [], "tensor(0.1000)"),
    (np.array([0.1, 0.2, 0.3]), "float64", [], "tensor([0.1000, 0.2000, 0.3000], dtype=torch.float64)"),
    (np.array([1.0, 2.5]), "float64", ["requires_grad=True"],
     "tensor([1.0000, 2.5000], dtype=torch.float64, requires_grad=True)"),
    (f32([[1.5, -2.0], [3.25, 4.0]]), "float32", [],
     "tensor([[ 1.5000, -2.0000],\n        [ 3.2500,  4.0000]])"),
    # scientific notation: tiny values, and a max/min ratio over 1000
    (f32([1e-5, 1.0]), "float32", [], "tensor([1.0000e-05, 1.0000e+00])"),
    (f32([1e7, 1.0]), "float32", [], "tensor([1.0000e+07, 1.0000e+00])"),
    # nan/inf get no trailing "." and do not count towards the column width
    (f32([nan, 1.0, -inf]), "float32", [], "tensor([nan, 1., -inf])"),
    (f32([-0.0, 2.0]), "float32", [], "tensor([-0., 2.])"),
    # ints, bools (padded to a common width), 3-D with a blank line between blocks
    (np.arange(8).reshape(2, 2, 2), "int64", [],
     "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])"),
    (np.array([True, False]), "bool", [], "tensor([ True, False])"),
    # empty tensors: size unless (0,), dtype unless float32 (even int64)
    (f32([]), "float32", [], "tensor([])"),
    (np.zeros((0, 3), np.float32), "float32", [], "tensor([], size=(0, 3))"),
    (np.array([], np.int64), "int64", [], "tensor([], dtype=torch.int64)"),
    # summarization over 1000 elements, with line wrapping
    (np.arange(2000, dtype=np.float32), "float32", [],
     "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
     "        1.9990e+03])"),
    # a long row wraps, and the suffixes then move to their own line
    (np.linspace(0, 1, 15), "float64", ["requires_grad=True"],
     "tensor([0.0000, 0.0714, 0.1429, 0.2143, 0.2857, 0.3571, 0.4286, 0.5000, 0.5714,\n"
     "        0.6429, 0.7143, 0.7857, 0.8571, 0.9286, 1.0000], dtype=torch.float64,\n"
     "       requires_grad=True)"),
]


@pytest.mark.parametrize("values,dtype_name,suffixes,expected", EXPECTED)
def test_expected_strings(values, dtype_name, suffixes, expected):
    assert format_tensor(values, dtype_name, suffixes) == expected


def test_suffixes_default_to_none():
    assert format_tensor(np.arange(3), "int64") == "tensor([0, 1, 2])"


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="unsupported dtype"):
        format_tensor(np.ones(2), "float16", [])


def test_print_options_round_trip():
    defaults = dict(precision=4, threshold=1000, edgeitems=3, linewidth=80, sci_mode=None)
    assert get_printoptions() == defaults
    with printoptions(precision=2, threshold=5, edgeitems=1):
        assert format_tensor(np.arange(10), "int64", []) == "tensor([0,  ..., 9])"
        assert format_tensor(f32([1.12345]), "float32", []) == "tensor([1.12])"
    assert get_printoptions() == defaults


def test_set_printoptions_profiles():
    try:
        set_printoptions(profile="full")
        assert get_printoptions()["threshold"] == math.inf
        set_printoptions(profile="short", sci_mode=False)
        assert get_printoptions() == dict(
            precision=2, threshold=1000, edgeitems=2, linewidth=80, sci_mode=False
        )
        assert format_tensor(f32([1e-5, 1.0]), "float32", []) == "tensor([0.00, 1.00])"
    finally:
        set_printoptions(profile="default")
    assert get_printoptions()["sci_mode"] is None


def test_docstring_examples():
    result = doctest.testmod(repr_module)
    assert result.attempted > 0 and result.failed == 0


def test_module_does_not_import_torch():
    # Inspect the source rather than sys.modules: importing symgrad may pull
    # in other modules, but _repr itself must depend on numpy only.
    tree = ast.parse(Path(repr_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "torch" not in imported
