"""Basic indexing, slicing, index assignment, and joining/splitting tensors.

Two primitives carry all of it. SLICE is a view: `(start, step)` per axis, folded into strides and
offsets like broadcasting. ASSEMBLE writes parts into regions of a new buffer, in order (a later part
overwrites an earlier one): `cat` assembles its inputs side by side, `x[i] = v` assembles `x` then `v`
over the region, and the gradient of a slice assembles zeros then the incoming gradient.

>>> import symgrad
>>> x = symgrad.arange(6.0).reshape(2, 3)
>>> x[1, ::2]
tensor([3., 5.])
>>> symgrad.cat([x, x[:1]]).shape
torch.Size([3, 3])
"""
from __future__ import annotations

import builtins

from .ops import OPS


def full_region(shape):
    return tuple((0, 1) for _ in shape)


# -- primitives through the op table ---------------------------------------------------------------
def slice_region(x, region, kept, shape=None, name="SliceBackward0"):
    """x viewed at `region` ((start, step) per axis), `kept` elements per axis, seen with `shape`
    (which drops the axes an integer index selected)."""
    from .tensor import _apply

    return _apply(OPS["SLICE"], (x,), arg=(region, tuple(kept), tuple(kept if shape is None else shape)), name=name)


def assemble(parts, regions, shape, name=None):
    """A new tensor of `shape` whose `regions` hold `parts`, written in order."""
    from .tensor import _apply

    return _apply(OPS["ASSEMBLE"], tuple(parts), arg=(tuple(regions), tuple(shape)), name=name)


def assemble_vjp(g, inputs, out, arg):
    """Each part gets the gradient of its region, minus what later parts overwrote."""
    from .tensor import zeros

    regions, shape = arg
    grads = []
    for k, (part, region) in enumerate(zip(inputs, regions)):
        later = [(zeros(*p.shape, dtype=g.dtype), r) for p, r in zip(inputs[k + 1:], regions[k + 1:])]
        visible = assemble([g, *(z for z, _ in later)], [full_region(shape), *(r for _, r in later)], shape) \
            if later else g
        grads.append(visible if region == full_region(shape) and tuple(part.shape) == tuple(shape)
                     else slice_region(visible, region, part.shape))
    return tuple(grads)


def slice_vjp(g, inputs, out, arg):
    from .tensor import zeros

    (x,), (region, kept, _) = inputs, arg
    g = g.reshape(kept)
    return (assemble([zeros(*x.shape, dtype=g.dtype), g], [full_region(x.shape), region], x.shape),)


# -- indexing --------------------------------------------------------------------------------------
def _expand_index(index, rank):
    items = index if isinstance(index, tuple) else (index,)
    from .tensor import Tensor

    for item in items:
        if isinstance(item, Tensor) or isinstance(item, list) or (
                not isinstance(item, (int, slice, type(None), type(Ellipsis)))):
            raise NotImplementedError(
                f"indexing with {type(item).__name__} is not supported yet (only ints, slices, None and ...); "
                "use index_select or gather")
    used = sum(1 for item in items if item is not None and item is not Ellipsis)
    if Ellipsis in items:
        # NOTE: like torch, only the first ellipsis expands; later ones stand for no dimension
        at = items.index(Ellipsis)
        items = items[:at + 1] + tuple(item for item in items[at + 1:] if item is not Ellipsis)
    if used > rank:
        raise IndexError(f"too many indices for tensor of dimension {rank}")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + (slice(None),) * (rank - used) + items[at + 1:]
    return items


def getitem(x, index):
    """x[index] for ints, slices (positive steps), None and Ellipsis, with torch's grad_fn chain."""
    if index is Ellipsis:
        from .tensor import _apply

        return _apply(OPS["CLONE"], (x,), name="AliasBackward0")
    items = _expand_index(index, x.dim())
    # NOTE: torch records nothing for a full slice inside a tuple index (x[:, 1] is one Select), but
    # a lone slice (x[:]) is a Slice, and a tuple that selects nothing is an alias of x
    skip_full = isinstance(index, tuple)
    source, dim = x, 0
    for item in items:
        if item is None:
            x = x.unsqueeze(dim)
            dim += 1
        elif isinstance(item, int):
            x = _select(x, dim, item)
        else:
            if not (skip_full and _is_full(item, x.shape[dim])):
                x = _slice_dim(x, dim, item)
            dim += 1
    if x is source:
        from .tensor import _apply

        return _apply(OPS["CLONE"], (x,), name="AliasBackward0")
    return x


def _is_full(item: slice, size: int) -> bool:
    start, stop, step = item.indices(size)
    return start == 0 and stop == size and step == 1


def _select(x, dim, index, name="SelectBackward0"):
    size = x.shape[dim]
    if not -size <= index < size:
        raise IndexError(f"index {index} is out of bounds for dimension {dim} with size {size}")
    index %= size
    region = tuple((index, 1) if k == dim else (0, 1) for k in range(x.dim()))
    kept = tuple(1 if k == dim else n for k, n in enumerate(x.shape))
    shape = tuple(n for k, n in enumerate(x.shape) if k != dim)
    return slice_region(x, region, kept, shape, name=name)


def _slice_dim(x, dim, item: slice, name="SliceBackward0"):
    if item.step is not None and item.step <= 0:
        raise ValueError("step must be greater than zero")
    start, stop, step = item.indices(x.shape[dim])
    count = builtins.max(0, len(range(start, stop, step)))
    region = tuple((start, step) if k == dim else (0, 1) for k in range(x.dim()))
    shape = tuple(count if k == dim else n for k, n in enumerate(x.shape))
    return slice_region(x, region, shape, name=name)


def setitem(x, index, value):
    """x[index] = value, in place (a leaf that requires grad refuses, as in torch)."""
    from .tensor import GradMode, Tensor, tensor

    if x.is_leaf and x.requires_grad and GradMode.enabled:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")
    target = getitem(x.detach(), index)
    if not isinstance(value, Tensor):
        value = tensor(value, dtype=x.dtype)
    region, kept = _region_of(x, index)
    value.expand(target.shape)  # raises torch's error for a value that does not broadcast
    from .tensor import _apply

    arg = (region, kept, tuple(target.shape))
    x._inplace(lambda: _apply(OPS["SETITEM"], (x, value), arg=arg), check_leaf=False)


def setitem_forward(x, value, arg):
    region, kept, target = arg
    value = value.to(x.dtype).expand(target).reshape(kept)
    return assemble([x, value], [full_region(x.shape), region], x.shape)


def setitem_vjp(g, inputs, out, arg):
    from .tensor import zeros

    (x, value), (region, kept, target) = inputs, arg
    shape = tuple(x.shape)
    d_x = assemble([g, zeros(*kept, dtype=g.dtype)], [full_region(shape), region], shape)
    return d_x, slice_region(g, region, kept, target)


def _region_of(x, index):
    """The (start, step) region of x that x[index] reads, and its extent per axis of x."""
    items = [item for item in _expand_index(index, x.dim()) if item is not None]
    region, kept = [], []
    for k, n in enumerate(x.shape):
        item = items[k] if k < len(items) else slice(None)
        if isinstance(item, int):
            region.append((item % n, 1))
            kept.append(1)
        else:
            start, stop, step = item.indices(n)
            region.append((start, step))
            kept.append(len(range(start, stop, step)))
    return tuple(region), tuple(kept)


# -- joining and splitting -------------------------------------------------------------------------
def cat(tensors, dim=0):
    """Concatenate along an existing dimension."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    from .tensor import _normalize_dim, result_type

    first = tensors[0]
    dim = _normalize_dim(dim, first.dim())
    for k, t in enumerate(tensors[1:], start=1):
        if t.dim() != first.dim():
            raise RuntimeError(f"Tensors must have same number of dimensions: got {first.dim()} and {t.dim()}")
        for axis in range(first.dim()):
            if axis != dim and t.shape[axis] != first.shape[axis]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {dim}. Expected size "
                                   f"{first.shape[axis]} but got size {t.shape[axis]} for tensor number {k} in the "
                                   "list.")
    dtype = result_type(*tensors)
    tensors = [t.to(dtype) for t in tensors]
    regions, start = [], 0
    for t in tensors:
        regions.append(tuple((start, 1) if axis == dim else (0, 1) for axis in range(first.dim())))
        start += t.shape[dim]
    shape = tuple(start if axis == dim else n for axis, n in enumerate(first.shape))
    return assemble(tensors, regions, shape, name="CatBackward0")


def stack(tensors, dim=0):
    """Join along a new dimension."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack expects a non-empty TensorList")
    from .tensor import _apply, _normalize_dim

    for k, t in enumerate(tensors):
        if tuple(t.shape) != tuple(tensors[0].shape):
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} at "
                               f"entry 0 and {list(t.shape)} at entry {k}")
    dim = _normalize_dim(dim, tensors[0].dim() + 1)
    return _apply(OPS["STACK"], tuple(tensors), arg=dim)


def stack_forward(*tensors_and_arg):
    *tensors, dim = tensors_and_arg
    return cat([t.unsqueeze(dim) for t in tensors], dim)


def stack_vjp(g, inputs, out, arg):
    return tuple(_select(g, arg, k) for k in range(len(inputs)))


def split(x, split_size_or_sections, dim=0):
    """Pieces of `split_size` along `dim` (the last may be smaller), or of the given sizes."""
    from .tensor import _normalize_dim

    dim = _normalize_dim(dim, x.dim())
    size = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [builtins.min(step, size - start) for start in range(0, size, step)] or [0]
        name = "SplitBackward0"
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != size:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's size "
                               f"at dimension {dim}), but got split_sizes={sizes}")
        name = "SplitWithSizesBackward0"
    pieces, start = [], 0
    for k, n in enumerate(sizes):
        piece = _slice_dim(x, dim, slice(start, start + n), name=name)
        piece._output_nr = k
        pieces.append(piece)
        start += n
    return tuple(pieces)


def chunk(x, chunks, dim=0):
    """`chunks` nearly equal pieces along `dim` (torch's rule: ceil(size / chunks) each)."""
    from .tensor import _normalize_dim

    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    size = x.shape[_normalize_dim(dim, x.dim())]
    step = builtins.max(1, -(-size // chunks))
    return split(x, step, dim)


def unbind(x, dim=0):
    from .tensor import _normalize_dim

    dim = _normalize_dim(dim, x.dim())
    pieces = tuple(_select(x, dim, k, name="UnbindBackward0") for k in range(x.shape[dim]))
    for k, piece in enumerate(pieces):
        piece._output_nr = k
    return pieces
