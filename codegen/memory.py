"""Where a caller should put the buffers that generated code writes.

Two placement effects cost more than a kernel's arithmetic on this class of CPU (Cascade Lake):

* A 64-byte vector store that straddles two cache lines costs two; numpy aligns its allocations to
  16 bytes only.
* "4K aliasing": a load whose address matches a not-yet-written store's in the low 12 bits waits for
  it. A kernel reads its inputs ahead of the outputs it writes, so an output that starts a little
  *above* an input modulo 4096 stalls nearly every load. It is not rare: two same-size arrays
  allocated one after the other sit one array length plus a small header apart. Measured: the 4M-element
  fused forward+backward kernel of benchmarks/elementwise.py took 12.8 ms with its gradient 16 MiB +
  112 bytes after its input, 7.9 ms with the gradient 2048 bytes further on.

`output_shift` picks where, inside an over-allocated block, the outputs of a program go.

A third: a store to a line that is not in cache first reads it ("read for ownership"), so a kernel
writing an array far larger than the cache moves 12 bytes per float it reads and writes instead of 8,
and its outputs evict its inputs on the way. `stream_bytes` is the traffic beyond which a kernel writes the
outputs no later kernel of its program reads with non-temporal (streaming) stores (codegen/lower.py).

>>> output_shift(4096 + 16, [(0, 1 << 20)], [(8192 + 1000, 1 << 20)]) % 64 == (-(4096 + 16)) % 64
True
"""
from __future__ import annotations

import functools
import os

import numpy as np

LINE = 64
PAGE = 4096
# An output this close above an input (modulo PAGE) is in the aliasing window: a fused kernel's
# loads run a few hundred bytes ahead of its stores.
WINDOW = 1024
# Streams smaller than this are mostly cached: their placement does not matter.
MIN_BYTES = 1 << 16
PAIRS = 16  # only the largest outputs and inputs are considered (the search stays ~microseconds)


def output_shift(base: int, outputs, inputs) -> int:
    """The shift (< PAGE + LINE) to add to `base`, an allocation's address, so that its outputs
    start on cache lines and none of the large ones starts within WINDOW bytes above a large input.

    `outputs`: (offset from the shifted base, nbytes) per output; `inputs`: (address, nbytes) per
    buffer the program reads. The caller allocates PAGE + LINE bytes more than it needs.
    """
    first = -base % LINE
    big_out = sorted(((n, o) for o, n in outputs if n >= MIN_BYTES), reverse=True)[:PAIRS]
    big_in = sorted(((n, a) for a, n in inputs if n >= MIN_BYTES), reverse=True)[:PAIRS]
    if not big_out or not big_in:
        return first
    best, best_score = first, None
    for shift in range(first, first + PAGE, LINE):
        distances = [(base + shift + o - a) % PAGE for _, o in big_out for _, a in big_in]
        score = (sum(d < WINDOW for d in distances), -min(d for d in distances if d >= WINDOW)
                 if any(d >= WINDOW for d in distances) else 0)
        if best_score is None or score < best_score:
            best, best_score = shift, score
            if score[0] == 0 and -score[1] >= PAGE // 2:
                break
    return best


# Without a readable cache description (not Linux): a typical per-core (L2) cache.
DEFAULT_STREAM_BYTES = 1 << 20


@functools.cache
def stream_bytes() -> int:
    """Bytes a kernel must move (reads plus writes) for its final outputs to be written past the cache:
    the largest cache private to one core (L2). Measured on this host (2 MiB L2) for a 1-in-1-out
    float32 kernel, ns/element plain -> streaming: 1 MiB moved 0.28 -> 0.37 (it fits, streaming
    loses), 2 MiB 0.40 -> 0.35, 34 MiB 0.81 -> 0.57, 67 MiB 0.82 -> 0.60.

    >>> stream_bytes() > 0
    True
    """
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = None
    try:
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            folder = os.path.join(base, entry)
            with open(os.path.join(folder, "type")) as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(folder, "level")) as f:
                if int(f.read()) > 2:
                    continue  # the L3, shared by the cores (an L2 may be shared by hyperthreads)
            with open(os.path.join(folder, "size")) as f:
                size = _parse_size(f.read().strip())
            best = max(best or 0, size)
    except (OSError, ValueError):
        return DEFAULT_STREAM_BYTES
    return best or DEFAULT_STREAM_BYTES


def _parse_size(text: str) -> int:
    """'36608K' -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)



def aligned_copy(array) -> np.ndarray:
    """A C-contiguous copy of `array` whose data starts on a cache line when it is large enough to
    matter (numpy aligns to 16 bytes only, and a kernel's 64-byte loads that straddle two lines cost
    two: ~3% of the elementwise benchmark's kernel, measured).

    >>> x = aligned_copy(np.arange(1 << 16, dtype=np.float32))
    >>> x.ctypes.data % LINE, x.flags.c_contiguous, float(x[-1])
    (0, True, 65535.0)
    """
    array = np.asarray(array)
    if array.nbytes < MIN_BYTES:
        return array.copy()
    raw = np.empty(array.nbytes + LINE, np.uint8)
    start = -raw.ctypes.data % LINE
    out = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    np.copyto(out, array)
    return out
