"""Compare symgrad's tensor formatter with torch's own ``repr`` (the oracle)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

# Every test here compares against torch (see the marker in pyproject.toml).
pytestmark = pytest.mark.oracle

from symgrad._repr import format_tensor, get_printoptions, printoptions  # noqa: E402

F32, F64, I64, BOOL = "float32", "float64", "int64", "bool"
NP_DTYPES = {F32: np.float32, F64: np.float64, I64: np.int64, BOOL: np.bool_}
nan, inf = float("nan"), float("inf")


def assert_same(values, dtype_name, suffixes=(), tensor=None):
    """Format ``values`` with symgrad and compare with torch's repr.

    ``tensor`` is the torch tensor to compare against; by default it is
    built from ``values`` (so ``suffixes`` should then be empty).
    """
    array = np.asarray(values, dtype=NP_DTYPES[dtype_name])
    if tensor is None:
        tensor = torch.from_numpy(array.copy())
    expected = repr(tensor)
    actual = format_tensor(array, dtype_name, list(suffixes))
    assert actual == expected, f"\n--- symgrad:\n{actual}\n--- torch:\n{expected}"


# ---------------------------------------------------------------------------
# Hand-picked cases
# ---------------------------------------------------------------------------

CASES = {
    # 0-d
    "scalar-int-valued": (27.0, F32),
    "scalar-frac": (0.1, F32),
    "scalar-f64": (1.0, F64),
    "scalar-nan": (nan, F32),
    "scalar-inf": (-inf, F64),
    "scalar-zero": (0.0, F32),
    "scalar-negzero": (-0.0, F32),
    "scalar-tiny": (1e-5, F32),
    "scalar-huge": (1e10, F32),
    "scalar-int": (7, I64),
    "scalar-bool": (True, BOOL),
    # 1-D basics
    "ones": ([1.0, 2.0], F32),
    "ints-as-floats-neg": ([-1.0, 20.0, 300.0], F32),
    "near-two": ([1.99999], F32),
    "tenths": ([0.1, 0.2, 0.3], F32),
    "tenths-f64": ([0.1, 0.2, 0.3], F64),
    "rounding-up-width": ([9.99996, 1.5], F32),
    "sci-small": ([1e-5, 1.0], F32),
    "sci-ratio": ([1.0, 1001.0], F32),
    "no-sci-ratio-1000": ([1.0, 1000.5], F32),
    "sci-big": ([1e8 + 8, 1.5e8], F32),
    "sci-int-valued": ([1e7, 1.0], F32),
    "big-int-valued-no-sci": ([12345678.0, 23456789.0], F32),
    "sci-threshold-min": ([1e-4, 2e-4], F64),
    "sci-mixed-sign": ([-1e-6, 3.5e3, 2.0], F64),
    "nan-inf-int-mode": ([nan, inf, -inf, 1.0], F32),
    "nan-inf-frac": ([nan, inf, -inf, 1.5], F32),
    "nan-inf-sci": ([nan, inf, 1e-8, 1.0], F32),
    "only-nonfinite": ([nan, inf, -inf], F32),
    "zeros": ([0.0, 0.0], F32),
    "negzero-int-mode": ([-0.0, 1.0], F32),
    "negzero-frac": ([-0.0, 1.5], F32),
    "negzero-sci": ([-0.0, 1e-7], F32),
    "only-negzero": ([-0.0, 0.0], F64),
    "float32-max": ([3.4028235e38, 1.0], F32),
    "subnormal": ([1e-45, 1.0], F32),
    "f64-extremes": ([1e-300, 1e300], F64),
    "ints": ([1, -22, 333], I64),
    "big-ints": ([2**62, -(2**63)], I64),
    "bools": ([True, False], BOOL),
    "bools-2d": ([[True, False], [False, True]], BOOL),
    # wrapping of long rows
    "long-row-f32": (np.linspace(-5, 5, 37), F32),
    "long-row-ints": (np.arange(100) * 37, I64),
    "long-row-bools": (np.arange(50) % 3 == 0, BOOL),
    "long-row-sci": (np.logspace(-10, 10, 41), F64),
    "long-rows-2d": (np.linspace(0, 1, 60).reshape(2, 30), F32),
    # nesting
    "matrix": (np.arange(6, dtype=np.float32).reshape(2, 3) / 7, F32),
    "3d": (np.arange(24).reshape(2, 3, 4), I64),
    "4d": (np.linspace(-3, 3, 48).reshape(2, 2, 3, 4), F64),
    "5d-singletons": (np.ones((1, 1, 1, 1, 1)), F32),
    "column": (np.arange(5.0).reshape(5, 1), F32),
    # summarization (> threshold elements)
    "summ-1d": (np.arange(1001, dtype=np.float32), F32),
    "summ-1d-frac": (np.linspace(0, 1, 2000), F64),
    "summ-1d-ints": (np.arange(5000), I64),
    "summ-1d-bools": (np.arange(1500) % 2 == 0, BOOL),
    "summ-2d": (np.arange(40 * 40, dtype=np.float32).reshape(40, 40), F32),
    "summ-2d-short-rows": (np.arange(3000.0).reshape(1000, 3), F32),
    "summ-2d-short-cols": (np.arange(3000.0).reshape(3, 1000), F32),
    "summ-3d": (np.linspace(-1, 1, 2000).reshape(10, 10, 20), F32),
    "summ-4d": (np.arange(2 * 500 * 2 * 2).reshape(2, 500, 2, 2), I64),
    # the hidden middle holds the extremes: only edge items set the style
    "summ-hidden-sci": (np.r_[np.ones(3), 1e-9, 1e9, np.ones(3) * 2, np.ones(1000)], F32),
    "not-summ-1000": (np.arange(1000.0), F32),
    # empty tensors
    "empty": ([], F32),
    "empty-f64": ([], F64),
    "empty-int": ([], I64),
    "empty-bool": ([], BOOL),
    "empty-2d": (np.zeros((0, 3)), F32),
    "empty-3d-int": (np.zeros((2, 0, 3)), I64),
    "empty-2d-f64": (np.zeros((4, 0)), F64),
}


@pytest.mark.parametrize("values,dtype_name", CASES.values(), ids=list(CASES))
def test_matches_torch(values, dtype_name):
    assert_same(values, dtype_name)


# ---------------------------------------------------------------------------
# Suffixes: requires_grad and grad_fn, including wrapping onto a new line
# ---------------------------------------------------------------------------

SUFFIX_CASES = {
    "scalar": (np.float32(27.0), F32),
    "vector": ([1.0, 2.0], F32),
    "vector-f64": ([1.0, 2.5], F64),
    "matrix": (np.ones((2, 2)), F32),
    "empty": ([], F32),
    "empty-2d-f64": (np.zeros((0, 2)), F64),
    "summarized": (np.linspace(0, 1, 1200), F64),
    "3d-sci": (np.logspace(-6, 6, 24).reshape(2, 3, 4), F32),
}
# Rows whose length lands around the line width so that the suffix sometimes
# has to move to its own line.
for n in range(1, 13):
    SUFFIX_CASES[f"wrap-{n}"] = (np.linspace(0.5, 9.5, n), F64)
    SUFFIX_CASES[f"wrap-int-valued-{n}"] = (np.arange(n) * 1000.0, F32)


@pytest.mark.parametrize("values,dtype_name", SUFFIX_CASES.values(), ids=list(SUFFIX_CASES))
def test_requires_grad_suffix(values, dtype_name):
    array = np.asarray(values, dtype=NP_DTYPES[dtype_name])
    leaf = torch.from_numpy(array.copy()).requires_grad_()
    assert_same(array, dtype_name, ["requires_grad=True"], tensor=leaf)


OPS = {
    "mul": lambda t: t * 2,
    "mean": lambda t: t.mean(),
    "exp": lambda t: t.exp(),
    "sum-dim": lambda t: t.sum(-1) if t.dim() else t.sum(),
}


@pytest.mark.parametrize("op", OPS.values(), ids=list(OPS))
@pytest.mark.parametrize("values,dtype_name", SUFFIX_CASES.values(), ids=list(SUFFIX_CASES))
def test_grad_fn_suffix(values, dtype_name, op):
    array = np.asarray(values, dtype=NP_DTYPES[dtype_name])
    out = op(torch.from_numpy(array.copy()).requires_grad_())
    suffix = f"grad_fn=<{type(out.grad_fn).__name__}>"
    assert_same(out.detach().numpy(), dtype_name, [suffix], tensor=out)


def test_dtype_suffix_then_caller_suffix():
    # The dtype suffix (added by format_tensor) comes before the caller's
    # grad_fn suffix, and each one is wrapped independently.
    array = np.linspace(0.5, 9.5, 7)
    leaf = torch.from_numpy(array.copy()).requires_grad_()
    out = leaf * 3
    assert_same(out.detach().numpy(), F64, ["grad_fn=<MulBackward0>"], tensor=out)


# ---------------------------------------------------------------------------
# Randomized comparison over shapes, magnitudes and special values
# ---------------------------------------------------------------------------

SHAPES = [(), (1,), (5,), (17,), (3, 4), (2, 3, 4), (2, 2, 2, 3), (7, 1, 3), (1200,), (2, 30, 20)]


def random_array(rng, shape, dtype_name):
    if dtype_name == BOOL:
        return rng.random(shape) < 0.5
    if dtype_name == I64:
        scale = 10 ** rng.integers(0, 18)
        return rng.integers(-scale, scale + 1, size=shape)
    # floats: a random exponent range so that some arrays need sci mode
    low = rng.uniform(-12, 9)
    high = low + rng.choice([0.0, 1.0, 2.9, 3.1, 6.0, 15.0])
    values = rng.standard_normal(shape) * 10 ** rng.uniform(low, high, shape)
    if rng.random() < 0.3:
        values = np.round(values)  # integer-valued floats
    if rng.random() < 0.3 and values.size:
        flat = values.reshape(-1)
        specials = [nan, inf, -inf, 0.0, -0.0]
        for _ in range(rng.integers(1, 4)):
            flat[rng.integers(flat.size)] = specials[rng.integers(len(specials))]
    return values


RANDOM_CASES = [
    (seed, shape, dtype_name)
    for seed, shape in enumerate(SHAPES * 6)
    for dtype_name in (F32, F64, I64, BOOL)
    if dtype_name in (F32, F64) or seed % 3 == 0
]


@pytest.mark.parametrize("seed,shape,dtype_name", RANDOM_CASES)
def test_random_matches_torch(seed, shape, dtype_name):
    rng = np.random.default_rng(seed * 7919 + len(dtype_name))
    assert_same(random_array(rng, shape, dtype_name), dtype_name)


# ---------------------------------------------------------------------------
# Print options behave like torch.set_printoptions
# ---------------------------------------------------------------------------

OPTION_SETS = [
    dict(precision=2),
    dict(precision=8),
    dict(threshold=5),
    dict(threshold=5, edgeitems=1),
    dict(threshold=5, edgeitems=0),
    dict(edgeitems=0),
    dict(linewidth=30),
    dict(linewidth=200),
    dict(sci_mode=True),
    dict(sci_mode=False),
    dict(profile="short"),
    dict(profile="full"),
]
OPTION_ARRAYS = [
    (np.array(3.25), F32),
    (np.linspace(-2, 2, 11), F32),
    (np.logspace(-6, 6, 13), F64),
    (np.arange(30).reshape(2, 3, 5), I64),
    (np.linspace(0, 1, 2000).reshape(20, 100), F32),
    (np.arange(1500.0), F32),
    (np.array([0.0, -0.0, nan]), F32),
    (np.zeros((0, 2)), F32),
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=[str(o) for o in OPTION_SETS])
@pytest.mark.parametrize("values,dtype_name", OPTION_ARRAYS)
def test_print_options_match_torch(options, values, dtype_name):
    with torch._tensor_str.printoptions(**options), printoptions(**options):
        assert get_printoptions() == torch._tensor_str.get_printoptions()
        assert_same(values, dtype_name)
    assert get_printoptions() == torch._tensor_str.get_printoptions()
