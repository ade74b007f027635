"""Text formatting of tensors, matching ``repr(torch.Tensor)`` exactly.

This module re-implements the parts of PyTorch's ``torch/_tensor_str.py``
that matter for dense CPU tensors of dtype float32, float64, int64 and bool,
using only numpy.  It keeps torch's print options (``set_printoptions``,
``get_printoptions``, ``printoptions``) so users who tweak them see the same
output they would from torch.

The structure deliberately follows torch's (a ``_Formatter`` that decides one
common style and width for every element, then recursive vector/nested
rendering, then suffixes) because byte-for-byte equality with torch is the
goal, and torch has a few quirks (noted in comments below) that only fall out
naturally when the same steps are taken in the same order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["format_tensor", "set_printoptions", "get_printoptions", "printoptions"]

# The prefix ``tensor(`` is 7 characters; continuation lines are indented by
# that much so that they line up under the opening bracket.
_PREFIX = "tensor("

# dtype name -> numpy dtype used to hold the values.
_NUMPY_DTYPES = {
    "float32": np.float32,
    "float64": np.float64,
    "int64": np.int64,
    "bool": np.bool_,
}

# torch's default dtype is float32.  For non-empty tensors torch omits the
# ``dtype=`` suffix for the default float dtype and for int64 / bool, because
# those dtypes are what ``torch.tensor(...)`` infers from the printed literals.
_DEFAULT_DTYPE = "float32"
_IMPLIED_DTYPES = frozenset({"float32", "int64", "bool"})
_FLOATING_DTYPES = frozenset({"float32", "float64"})


# ---------------------------------------------------------------------------
# Print options
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _PrintOptions:
    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


_PRINT_OPTS = _PrintOptions()

_PROFILES = {
    "default": dict(precision=4, threshold=1000, edgeitems=3, linewidth=80),
    "short": dict(precision=2, threshold=1000, edgeitems=2, linewidth=80),
    "full": dict(precision=4, threshold=math.inf, edgeitems=3, linewidth=80),
}


def set_printoptions(
    precision: int | None = None,
    threshold: float | None = None,
    edgeitems: int | None = None,
    linewidth: int | None = None,
    profile: str | None = None,
    sci_mode: bool | None = None,
) -> None:
    """Set options for printing tensors; same arguments as ``torch.set_printoptions``.

    ``profile`` is one of ``"default"``, ``"short"`` or ``"full"`` and is
    applied first; the other arguments then override it.  As in torch,
    ``sci_mode`` is always assigned, so calling this without ``sci_mode``
    resets it to automatic (``None``).

    >>> set_printoptions(precision=2)
    >>> format_tensor(np.array([1.12345], np.float32), "float32", [])
    'tensor([1.12])'
    >>> set_printoptions(profile="default")
    """
    if profile is not None:
        # torch silently ignores unknown profile names; so do we.
        for name, value in _PROFILES.get(profile, {}).items():
            setattr(_PRINT_OPTS, name, value)
    if precision is not None:
        _PRINT_OPTS.precision = precision
    if threshold is not None:
        _PRINT_OPTS.threshold = threshold
    if edgeitems is not None:
        _PRINT_OPTS.edgeitems = edgeitems
    if linewidth is not None:
        _PRINT_OPTS.linewidth = linewidth
    _PRINT_OPTS.sci_mode = sci_mode


def get_printoptions() -> dict[str, Any]:
    """Return the current print options as a dict accepted by ``set_printoptions``.

    >>> get_printoptions()["precision"]
    4
    """
    return dataclasses.asdict(_PRINT_OPTS)


@contextlib.contextmanager
def printoptions(**kwargs: Any) -> Iterator[None]:
    """Temporarily change print options (same keywords as ``set_printoptions``).

    >>> with printoptions(threshold=5):
    ...     format_tensor(np.arange(10), "int64", [])
    'tensor([0, 1, 2,  ..., 7, 8, 9])'
    """
    old = get_printoptions()
    set_printoptions(**kwargs)
    try:
        yield
    finally:
        set_printoptions(**old)


# ---------------------------------------------------------------------------
# Element formatting
# ---------------------------------------------------------------------------


class _Formatter:
    """Chooses one style and column width for all elements of a tensor.

    ``values`` is the flat array of elements torch looks at when deciding the
    style: the whole tensor, or only the edge items when it is summarized.
    """

    def __init__(self, values: np.ndarray, floating: bool, opts: _PrintOptions):
        self.floating = floating
        self.precision = opts.precision
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1

        if not floating:
            # ints and bools: width of the plain ``str`` of each value.
            for value in values.tolist():
                self.max_width = max(self.max_width, len(f"{value}"))
            return

        # Only nonzero finite values take part in choosing the style; nan,
        # inf and zeros are printed in whatever style the others dictate and
        # are *not* counted in the width (so e.g. ``nan`` can be wider than
        # the column, a torch quirk we keep).
        nonzero_finite = values[np.isfinite(values) & (values != 0)]
        if nonzero_finite.size == 0:
            return

        # torch compares in float64 regardless of the tensor's dtype.
        magnitudes = np.abs(nonzero_finite).astype(np.float64)
        smallest, largest = magnitudes.min(), magnitudes.max()

        self.int_mode = bool(np.all(nonzero_finite == np.ceil(nonzero_finite)))
        if opts.sci_mode is None:
            # The ratio may overflow to inf (e.g. 1e300 / 1e-300); that is
            # fine, it still means "use scientific notation".
            with np.errstate(over="ignore"):
                ratio = largest / smallest
            self.sci_mode = bool(ratio > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4)
        else:
            self.sci_mode = bool(opts.sci_mode)

        # ``tolist`` yields Python floats; a float32 becomes the exact double
        # of its value, which is what torch formats too (0.1f -> "0.1000").
        for value in nonzero_finite.tolist():
            if self.sci_mode:
                width = len(f"{value:.{self.precision}e}")
            elif self.int_mode:
                width = len(f"{value:.0f}") + 1  # room for the trailing "."
            else:
                width = len(f"{value:.{self.precision}f}")
            self.max_width = max(self.max_width, width)

    def width(self) -> int:
        return self.max_width

    def format(self, value: float | int | bool) -> str:
        """Format one Python scalar, right-aligned to the common width."""
        if not self.floating:
            text = f"{value}"
        elif self.sci_mode:
            text = f"{value:{self.max_width}.{self.precision}e}"
        elif self.int_mode:
            text = f"{value:.0f}"
            # The trailing "." marks the tensor as floating ("1." not "1"),
            # but "nan." / "inf." would be silly.
            if math.isfinite(value):
                text += "."
        else:
            text = f"{value:.{self.precision}f}"
        return " " * (self.max_width - len(text)) + text


def _summarized_values(array: np.ndarray, edgeitems: int) -> np.ndarray:
    """The elements torch shows when summarizing, flattened.

    Mirrors torch's ``get_summarized_data``: keep ``edgeitems`` rows at each
    end of every dimension that is longer than ``2 * edgeitems``.
    """
    if array.ndim == 0:
        return array.reshape(-1)
    if array.ndim == 1:
        if array.shape[0] > 2 * edgeitems:
            # With edgeitems == 0, ``array[-0:]`` is the whole array; torch
            # has the same behaviour, so no special case is needed.
            return np.concatenate((array[:edgeitems], array[-edgeitems:]))
        return array
    if not edgeitems:
        return array[:0].reshape(-1)
    n = array.shape[0]
    if n > 2 * edgeitems:
        rows = list(range(edgeitems)) + list(range(n - edgeitems, n))
    else:
        rows = list(range(n))
    return np.concatenate([_summarized_values(array[i], edgeitems) for i in rows])


# ---------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------


def _vector_str(
    vector: np.ndarray,
    indent: int,
    summarize: bool,
    formatter: _Formatter,
    opts: _PrintOptions,
) -> str:
    """Render a 1-D array, wrapping so lines fit in ``opts.linewidth``."""
    # Each element costs its width plus ", ".
    element_length = formatter.width() + 2
    per_line = max(1, math.floor((opts.linewidth - indent) / element_length))
    edge = opts.edgeitems

    if summarize and not edge:
        data = ["..."]
    elif summarize and vector.shape[0] > 2 * edge:
        data = (
            [formatter.format(v) for v in vector[:edge].tolist()]
            # The leading space makes "..." line up with right-aligned numbers.
            + [" ..."]
            + [formatter.format(v) for v in vector[-edge:].tolist()]
        )
    else:
        data = [formatter.format(v) for v in vector.tolist()]

    lines = [", ".join(data[i : i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested_str(
    array: np.ndarray,
    indent: int,
    summarize: bool,
    formatter: _Formatter,
    opts: _PrintOptions,
) -> str:
    """Render an array of any rank; ``indent`` is the column of its ``[``."""
    if array.ndim == 0:
        return formatter.format(array.item())
    if array.ndim == 1:
        return _vector_str(array, indent, summarize, formatter, opts)

    def render(i: int) -> str:
        return _nested_str(array[i], indent + 1, summarize, formatter, opts)

    n, edge = array.shape[0], opts.edgeitems
    if summarize and n > 2 * edge:
        slices = (
            [render(i) for i in range(edge)]
            + ["..."]
            + [render(i) for i in range(n - edge, n)]
        )
    else:
        slices = [render(i) for i in range(n)]

    # Rows of a matrix are separated by one newline, 2-D blocks of a 3-D
    # tensor by two (a blank line), and so on: ndim - 1 newlines.
    separator = "," + "\n" * (array.ndim - 1) + " " * (indent + 1)
    return "[" + separator.join(slices) + "]"


def _data_str(array: np.ndarray, floating: bool, opts: _PrintOptions) -> str:
    """Render a non-empty array's data as torch's ``_tensor_str`` does."""
    summarize = array.size > opts.threshold
    sample = _summarized_values(array, opts.edgeitems) if summarize else array.reshape(-1)
    formatter = _Formatter(sample, floating, opts)
    return _nested_str(array, len(_PREFIX), summarize, formatter, opts)


def _add_suffixes(text: str, suffixes: Sequence[str], indent: int, linewidth: int) -> str:
    """Append ``, suffix`` pieces, moving one to a new line when it would overflow."""
    pieces = [text]
    # torch's estimate of the current line length; for a single line it is
    # two more than the real length (rfind returns -1, then ``+ 1``).  Kept
    # as-is because it decides where torch wraps.
    last_line_len = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > linewidth:
            pieces.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            pieces.append(", " + suffix)
            last_line_len += len(suffix) + 2
    pieces.append(")")
    return "".join(pieces)


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------


def format_tensor(values: np.ndarray, dtype_name: str, suffixes: Sequence[str] = ()) -> str:
    """Return exactly what ``repr`` of the equivalent torch CPU tensor prints.

    ``values`` holds the data in its final shape (0-d allowed); it is
    converted to ``dtype_name`` (``"float32"``, ``"float64"``, ``"int64"`` or
    ``"bool"``).  ``suffixes`` are extra pre-formatted pieces such as
    ``"requires_grad=True"`` or ``"grad_fn=<MulBackward0>"``; they are placed
    after the ``size=``/``dtype=`` pieces this function adds itself, which is
    torch's order.  The current print options (see ``set_printoptions``) apply.

    >>> format_tensor(np.array([1.0, 2.5], np.float64), "float64", ["requires_grad=True"])
    'tensor([1.0000, 2.5000], dtype=torch.float64, requires_grad=True)'
    >>> format_tensor(np.array(27.0, np.float32), "float32", ["grad_fn=<MeanBackward0>"])
    'tensor(27., grad_fn=<MeanBackward0>)'
    >>> format_tensor(np.zeros((0, 3), np.int64), "int64", [])
    'tensor([], size=(0, 3), dtype=torch.int64)'
    """
    if dtype_name not in _NUMPY_DTYPES:
        raise ValueError(
            f"unsupported dtype {dtype_name!r}; expected one of {sorted(_NUMPY_DTYPES)}"
        )
    opts = _PRINT_OPTS
    array = np.asarray(values, dtype=_NUMPY_DTYPES[dtype_name])
    dtype_suffix = f"dtype=torch.{dtype_name}"
    size_suffix = f"size={tuple(array.shape)}"

    own_suffixes = []
    if array.size == 0:
        # Nothing to infer the dtype from, so anything but the default float
        # dtype is spelled out; the shape is shown unless it is plain (0,).
        data = "[]"
        if array.ndim != 1:
            own_suffixes.append(size_suffix)
        if dtype_name != _DEFAULT_DTYPE:
            own_suffixes.append(dtype_suffix)
    else:
        data = _data_str(array, dtype_name in _FLOATING_DTYPES, opts)
        # With edgeitems == 0 the data is just "[...]", so torch adds the size.
        if not opts.edgeitems:
            own_suffixes.append(size_suffix)
        if dtype_name not in _IMPLIED_DTYPES:
            own_suffixes.append(dtype_suffix)

    return _add_suffixes(
        _PREFIX + data, own_suffixes + list(suffixes), len(_PREFIX), opts.linewidth
    )
