"""Writing many buffers in order without joining them first: ``os.writev``, short writes handled.

The JSON report of 10^5 flows is ~10^5 record texts (~150 MB); joining them before writing
copies every byte once more than the kernel does.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Sequence
from typing import IO

Buffer = bytes | memoryview
WRITEV_PIECES = 1024  # buffers per os.writev call (Linux's IOV_MAX)


class Gather(list[Buffer]):
    """Buffers that belong back to back: a stream item ``write_stream`` writes without joining."""

    def joined(self) -> bytes:
        return b"".join(self)


def write_all(fh: IO[bytes], pieces: Sequence[Buffer]) -> None:
    """Write ``pieces`` to ``fh`` in order (flushing ``fh`` first): gathered by the kernel when
    ``fh`` is a real file (``os.writev``), else through ``fh.write``."""
    fd = _fd(fh)
    if fd is None:
        for piece in pieces:
            fh.write(piece)
        return
    fh.flush()
    i = 0
    cut: memoryview | None = None  # the unwritten end of piece i, after a short write
    while i < len(pieces):
        batch = list(pieces[i : i + WRITEV_PIECES])
        if cut is not None:
            batch[0] = cut
        done = os.writev(fd, batch)
        cut = None
        for piece in batch:
            if done < len(piece):
                cut = memoryview(piece)[done:]
                break
            done -= len(piece)
            i += 1


def write_stream(fh: IO[bytes], items: Iterable[Buffer | Gather]) -> None:
    """``write_all`` over an iterable of buffers and ``Gather`` lists, in batches."""
    batch: list[Buffer] = []
    for item in items:
        if isinstance(item, Gather):
            write_all(fh, batch)
            write_all(fh, item)
            batch = []
            continue
        batch.append(item)
        if len(batch) == WRITEV_PIECES:
            write_all(fh, batch)
            batch = []
    write_all(fh, batch)


def _fd(fh: IO[bytes]) -> int | None:
    """The descriptor to write ``fh``'s bytes to directly, or None (in-memory or wrapped)."""
    if not hasattr(os, "writev") or isinstance(fh, io.BytesIO):
        return None
    with contextlib.suppress(AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return fh.fileno()
    return None
