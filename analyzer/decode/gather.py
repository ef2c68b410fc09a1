"""Columnar field access: the same struct read at many offsets of a buffer, in one numpy step."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analyzer.decode.source import Buffer

I64 = npt.NDArray[np.int64]


def gather(buf: Buffer, offsets: I64, dtype: np.dtype) -> np.ndarray:  # type: ignore[type-arg]
    """The ``dtype`` struct found at each of ``offsets`` in ``buf``.

    One fancy index over a 1-byte-stride structured view of the buffer: numpy copies
    ``dtype.itemsize`` bytes per offset with no Python per element. Offsets whose struct
    would run past the end of ``buf`` read zeros there; callers check record bounds
    themselves, so speculative reads near the end are safe.
    """
    size = dtype.itemsize
    if len(offsets) == 0:
        return np.zeros(0, dtype=dtype)
    if dtype.kind != "V" or dtype.fields is not None:
        # Gather opaque records, then reinterpret: numpy copies a structured (or byte-swapped)
        # dtype field by field when indexing, which is several times slower.
        return gather(buf, offsets, np.dtype((np.void, size))).view(dtype)
    span = len(buf) - size + 1
    if span > 0 and int(offsets.max()) < span:
        view = np.ndarray(shape=(span,), dtype=dtype, buffer=buf, offset=0, strides=(1,))
        return view[offsets]
    # Rare: some structs overhang the end; read those from a zero-padded copy of the tail.
    out = np.zeros(len(offsets), dtype=dtype)
    inside = offsets < max(span, 0)
    if inside.any():
        view = np.ndarray(shape=(span,), dtype=dtype, buffer=buf, offset=0, strides=(1,))
        out[inside] = view[offsets[inside]]
    tail_start = max(0, min(int(offsets[~inside].min()), len(buf)))
    tail = np.zeros(len(buf) - tail_start + size, dtype=np.uint8)
    tail[: len(buf) - tail_start] = np.frombuffer(buf, dtype=np.uint8, offset=tail_start)
    tview = np.ndarray(shape=(len(tail) - size + 1,), dtype=dtype, buffer=tail, offset=0, strides=(1,))
    out[~inside] = tview[np.minimum(offsets[~inside], len(buf)) - tail_start]
    return out


def rows(a: np.ndarray, sel: npt.NDArray[np.bool_] | I64) -> np.ndarray:  # type: ignore[type-arg]
    """``a[sel]`` for a structured array, copying whole records (numpy copies field by field)."""
    if a.dtype.fields is None:
        return a[sel]
    return a.view(np.dtype((np.void, a.dtype.itemsize)))[sel].view(a.dtype)
