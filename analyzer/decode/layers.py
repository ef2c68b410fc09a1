"""The working state of one native decode: per-packet columns every layer reads and writes.

An index array that covers every packet is used as a whole column (no gather or scatter):
the common case on single-protocol captures.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from analyzer.decode.container import Records
from analyzer.decode.gather import gather
from analyzer.decode.source import Buffer
from analyzer.decode.wire import BE16, NOTE_MALFORMED, NOTE_TRUNCATED

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]
Fields = dict[str, npt.NDArray[np.generic]]
T = TypeVar("T", bound=np.generic)


def take(a: npt.NDArray[T], idx: I64) -> npt.NDArray[T]:
    """``a[idx]``; ``idx`` is sorted and unique, so full length means every element (no gather)."""
    return a if len(idx) == len(a) else a[idx]


def put(a: npt.NDArray[np.generic], idx: I64, values: npt.ArrayLike) -> None:
    """``a[idx] = values`` without a scatter when ``idx`` covers all of ``a``."""
    if len(idx) == len(a):
        a[...] = values
    else:
        a[idx] = values


def keep(idx: I64, mask: Bool) -> I64:
    return idx if mask.all() else idx[mask]


class Layers:
    """Working columns while decoding; one entry per packet."""

    def __init__(self, buf: Buffer, rec: Records, out: Fields | None = None) -> None:
        """``out``: where to write named result columns (views of the whole capture's arrays,
        when several threads decode ranges of it); others are allocated here."""
        n = len(rec.data_off)
        self._out = out or {}
        self.buf = buf
        self.u8: U8 = np.frombuffer(buf, dtype=np.uint8) if len(buf) else np.zeros(0, np.uint8)
        self.n = n
        self.start = rec.data_off
        self.end = rec.data_off + rec.caplen.astype(np.int64)  # one past the last captured byte
        self.cut = rec.caplen < rec.wirelen  # snaplen shortened the frame
        self.note = self.column("note", np.uint8, 0)
        self.l3 = np.full(n, -1, dtype=np.int64)
        self.l3_kind = np.zeros(n, dtype=np.uint8)  # 4 or 6: what the link layer says
        self.ip_version = self.column("ip_version", np.uint8, 0)
        self.ip_proto = self.column("ip_proto", np.uint8, 0)
        self.ip_frag = self.column("ip_frag", np.bool_, 0)
        self.l4 = np.full(n, -1, dtype=np.int64)
        self.l4_end = np.zeros(n, dtype=np.int64)  # end of the IP datagram (by its length field)
        self.src4 = self.column("src4", np.uint32, 0)
        self.dst4 = self.column("dst4", np.uint32, 0)
        self.src6: npt.NDArray[np.uint64] = np.zeros((0, 2), dtype=np.uint64)
        self.dst6: npt.NDArray[np.uint64] = np.zeros((0, 2), dtype=np.uint64)
        self.idx6: I64 = np.zeros(0, dtype=np.int64)
        # TCP header + 12 option bytes read together with the IPv4 header (IHL 5 only):
        self.pre_mask: Bool | None = None
        # IPv4 + TCP + 12 option bytes read with the link header, assuming the IP header at pre_l3_at:
        self.pre_l3: np.ndarray | None = None  # type: ignore[type-arg]
        self.pre_l3_at: I64 | None = None
        self.pre: dict[str, npt.NDArray[np.generic]] = {}

    def column(self, name: str, dtype: npt.DTypeLike, fill: int) -> npt.NDArray[Any]:
        """A result column of every packet, set to ``fill``: the view ``out`` gave, or new."""
        view = self._out.get(name)
        if view is None:
            return np.full(self.n, fill, dtype=dtype)
        view[...] = fill
        return view

    def be16(self, pos: I64) -> npt.NDArray[np.uint16]:
        return gather(self.buf, pos, BE16).astype(np.uint16)

    def mark(self, idx: I64 | Bool, bit: int) -> None:
        self.note[idx] |= np.uint8(bit)

    def short(self, idx: I64, need_end: I64) -> Bool:
        """Which of ``idx`` lack captured bytes up to ``need_end``; marks them truncated."""
        lacking = need_end > take(self.end, idx)
        if lacking.any():
            self.mark(idx[lacking], NOTE_TRUNCATED)
        return lacking


def mark_if(ly: Layers, bad: Bool, bit: int, alive: Bool) -> Bool:
    """Note ``bit`` on the ``bad`` packets and return ``alive`` without them."""
    if bad.any():
        ly.note[bad] |= np.uint8(bit)
        return alive & ~bad
    return alive


def mark_past_capture(ly: Layers, past: Bool) -> None:
    """Datagrams longer than what was captured: truncated by snaplen, else malformed lengths."""
    if past.any():
        ly.note[past & ly.cut] |= np.uint8(NOTE_TRUNCATED)
        ly.note[past & ~ly.cut] |= np.uint8(NOTE_MALFORMED)


def fields(a: np.ndarray, names: tuple[str, ...]) -> Fields:  # type: ignore[type-arg]
    """Plain native-endian columns out of a structured array (cheap to filter, unlike the struct)."""
    return {name: a[name].astype(a.dtype[name].newbyteorder("=")) for name in names}
