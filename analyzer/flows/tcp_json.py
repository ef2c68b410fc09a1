"""The ``tcp`` records of analyzer.report/1 written as JSON text straight from the per-block facts.

``TcpFlows.records`` builds one dict per connection (about 30 small objects each); at 10^5
connections building them, and then serializing them, costs more than every analysis stage.
Here each field becomes one column of ready JSON fragments (orjson serializes a whole column of
numbers or strings at once; fields with few distinct values become codes, and runs of them are
merged into one shared fragment per distinct combination), and a record is one ``%`` formatting
of its row with the template of its state-timeline pattern. The text is exactly what orjson
makes of ``TcpFlows.records`` (tests compare the two).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from analyzer.flows.tcp import DIRECTIONS, RST_BY, TcpFacts, TimelineEntries, rst_by_codes, side_option_codes
from analyzer.flows.tcp_handshake import HANDSHAKE_STATES, SideOptions
from analyzer.flows.tcp_interop import completeness_label
from analyzer.flows.tcp_teardown import H_NONE, HOLDERS, TEARDOWN_KINDS

OBJ = npt.NDArray[np.object_]
I64 = npt.NDArray[np.int64]

try:  # optional C helper (setup.py); without it records are made with ``%`` formatting
    from analyzer.flows import _fill  # type: ignore[attr-defined]
except ImportError:
    _fill = None

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
RECORD_SEPARATOR = b",\n    "
MAX_LOW = 4096  # distinct values up to which a column is laid out as codes into shared fragments


class _Ints:
    """A column of plain integers, formatted as decimals (what orjson writes for an int)."""

    def __init__(self, values: npt.NDArray[np.integer[Any]]) -> None:
        self.ints: I64 = np.ascontiguousarray(values, dtype=np.int64)

    @property
    def values(self) -> OBJ:
        out: OBJ = self.ints.astype(object)
        return out


class _Low:
    """A column with few distinct fragments: ``frags[codes[i]]`` is row ``i``'s."""

    def __init__(self, codes: npt.NDArray[np.integer[Any]], frags: list[bytes]) -> None:
        self.codes: I64 = np.ascontiguousarray(codes, dtype=np.int64)
        self.frags = frags

    @property
    def values(self) -> OBJ:
        table = np.empty(len(self.frags), dtype=object)
        table[:] = self.frags
        out: OBJ = table[self.codes]
        return out


class _Blob:
    """A column of distinct fragments, all in one bytes object: row ``i`` is
    ``blob[starts[i]:ends[i]]``.

    One buffer instead of a bytes object per row: the filler reads each record's fragments
    from a few sequential buffers instead of chasing ~40 scattered objects (cache misses cost
    more than the copying).
    """

    def __init__(self, blob: bytes, starts: I64, ends: I64) -> None:
        self.blob, self.starts, self.ends = blob, starts, ends

    @classmethod
    def split(cls, blob: bytes, sep: bytes, count: int) -> Self:
        """``blob.split(sep)`` as a blob (``count`` pieces expected; ``sep`` 1 to 3 bytes)."""
        if count == 0:
            return cls(b"", np.zeros(0, np.int64), np.zeros(0, np.int64))
        raw = np.frombuffer(blob, dtype=np.uint8)
        hit = raw[: len(raw) - len(sep) + 1] == sep[0]
        for k in range(1, len(sep)):
            hit &= raw[k : len(raw) - len(sep) + 1 + k] == sep[k]
        at = np.flatnonzero(hit)
        if len(at) != count - 1:
            raise ValueError(f"expected {count - 1} separators {sep!r}, found {len(at)}")
        starts = np.r_[0, at + len(sep)].astype(np.int64)
        ends = np.r_[at, len(blob)].astype(np.int64)
        return cls(blob, starts, ends)

    @classmethod
    def join(cls, fragments: list[bytes]) -> Self:
        """The fragments as a blob."""
        lengths = np.fromiter(map(len, fragments), dtype=np.int64, count=len(fragments))
        ends = np.cumsum(lengths)
        return cls(b"".join(fragments), ends - lengths, ends)

    def with_null(self, rows: npt.NDArray[np.bool_]) -> _Blob:
        """The same column with ``null`` at ``rows``."""
        if not rows.any():
            return self
        n = len(self.blob)
        return _Blob(self.blob + b"null", np.where(rows, n, self.starts), np.where(rows, n + 4, self.ends))

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def values(self) -> OBJ:
        out = np.empty(len(self), dtype=object)
        b = self.blob
        out[:] = [b[s:e] for s, e in zip(self.starts.tolist(), self.ends.tolist(), strict=True)]
        return out


# A record template: literal bytes and columns (one value per block).
_Piece = bytes | _Blob | _Ints | _Low


def _numbers(values: Sequence[Any]) -> _Blob:
    """Fragments of numbers, booleans and None (NaN -> null): one orjson call for the column.

    Their JSON never contains a comma, so the serialized list splits at its commas.
    """
    return _Blob.split(orjson.dumps(values, option=_OPTIONS)[1:-1], b",", len(values))


def _strings(values: Sequence[str | None]) -> _Blob:
    """Fragments of strings (or None): one orjson call for the column.

    ``","`` only occurs between two encoded strings (a quote inside a string is escaped), so
    the list splits there. None goes in as a NUL string and comes back as ``null``.
    """
    nulls = list(values).count(None)  # compared in C; most columns have none
    strings = [_NUL if v is None else v for v in values] if nulls else values
    try:
        blob = _Blob.split(orjson.dumps(strings)[1:-1], b'","', len(values))
    except ValueError:
        # A string that is "," or ends with '",' puts '","' inside its own encoding: one more
        # match than boundaries. Rare (a preview), so then each string is encoded on its own.
        blob = _Blob.join([orjson.dumps(v) for v in strings])
    else:
        if len(values):  # the split cut the quotes at each boundary: put them back
            blob.starts[1:] -= 1
            blob.ends[:-1] += 1
    if nulls:
        blob = blob.with_null(np.fromiter((v is None for v in values), dtype=bool, count=len(values)))
    return blob


_NUL = "\x00"
_NO_ANOMALIES: list[Any] = []  # one shared empty list: serialized once


def _low_ints(values: npt.NDArray[np.integer[Any]]) -> _Low | _Ints:
    """Small or repetitive integers as codes; others as a ``%d`` column."""
    if len(values) and values.min() >= 0 and values.max() < MAX_LOW:
        return _Low(values, [b"%d" % i for i in range(int(values.max()) + 1)])
    uniq, inverse = np.unique(values, return_inverse=True)
    if len(uniq) <= MAX_LOW:
        return _Low(inverse.ravel(), [b"%d" % i for i in uniq.tolist()])
    return _Ints(values)


def _low_values(values: Sequence[Any], *, by_id: bool = False) -> _Low:
    """Any JSON values, serialized once per distinct value (or per object when ``by_id``)."""
    if not len(values):
        return _Low(np.zeros(0, np.int64), [])
    if by_id:
        codes, _ = pd.factorize(np.fromiter(map(id, values), dtype=np.uint64, count=len(values)))
        _, first = np.unique(codes, return_index=True)
        uniques = [values[i] for i in first.tolist()]
    else:
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        codes, found = pd.factorize(arr, use_na_sentinel=False)
        uniques = list(found)
    return _Low(codes, [orjson.dumps(v, option=_OPTIONS) for v in uniques])


def _coded(codes: npt.NDArray[np.integer[Any]], names: Sequence[str | None]) -> _Low:
    """A categorical column (codes into ``names``)."""
    return _Low(codes, [orjson.dumps(n) for n in names])


def _options(side: SideOptions) -> _Low:
    """A side's handshake options objects (few distinct ones)."""
    codes, objects = side_option_codes(side)
    return _Low(codes, [orjson.dumps(o) for o in objects])


def _bools(values: npt.NDArray[np.bool_]) -> _Low:
    return _Low(values.astype(np.int64), [b"false", b"true"])


def _bools_or_null(values: npt.NDArray[np.bool_], missing: npt.NDArray[np.bool_]) -> _Low:
    return _Low(np.where(missing, 2, values.astype(np.int64)), [b"false", b"true", b"null"])


def _or_null(values: npt.NDArray[Any], missing: npt.NDArray[np.bool_]) -> _Blob:
    return _numbers(values.tolist()).with_null(missing)


def _template(f: TcpFacts) -> tuple[list[_Piece], list[_Piece]]:
    """The record's pieces before the state timelines and after them (fragments in block order)."""
    tp, hs, data, td, io = f.tp, f.hs, f.data, f.td, f.io
    nb = tp.n_blocks
    held = td.holder != H_NONE
    side_or_none = ("client", "server", None)

    def direction(d: int) -> list[_Piece]:
        return [
            b'{"bytes":', _Ints(data.bytes[d::2]),
            b',"segments":', _Ints(data.segments[d::2]),
            b',"sha256":', _strings(data.sha256[d::2]),
            b',"preview":', _strings(data.preview[d::2]),
            b',"retransmissions":', _low_ints(data.retransmissions[d::2]),
            b',"out_of_order":', _low_ints(data.out_of_order[d::2]),
            b',"dup_acks":', _low_ints(data.dup_acks[d::2]),
            b',"zero_windows":', _low_ints(data.zero_windows[d::2]),
            b',"keep_alives":', _low_ints(data.keep_alives[d::2]),
            b',"missing_bytes":', _low_ints(data.missing[d::2]),
            b',"gaps":', _low_values(data.gaps[d::2], by_id=True),
            b"}",
        ]  # fmt: skip

    c_sent = td.fin_idx[0] >= 0
    s_sent = td.fin_idx[1] >= 0
    rfc_ok = td.rfc6191_ok.copy()
    rfc_ok[~held] = None
    rfc_by = td.rfc6191_by.copy()
    rfc_by[~held] = None
    reused = td.reused_by
    compl = io.completeness
    compl_values, compl_codes = np.unique(compl, return_inverse=True)
    labels = _Low(compl_codes.ravel(), [orjson.dumps(completeness_label(v)) for v in compl_values.tolist()])
    last = np.maximum(tp.ends - 1, 0)
    head: list[_Piece] = [
        b'{"id":', _Ints(tp.conn_id),
        b',"client":{"ip":', _low_values(tp.client_ip.tolist()),
        b',"port":', _Ints(tp.client_port),
        b'},"server":{"ip":', _low_values(tp.server_ip.tolist()),
        b',"port":', _low_ints(tp.server_port),
        b'},"client_guessed":', _bools(tp.client_guessed),
        b',"first_ts":', _numbers(tp.ts[tp.starts].tolist()),
        b',"last_ts":', _numbers(tp.ts[last].tolist()),
        b',"packets":', _Ints(tp.counts()),
        b',"handshake":{"state":', _coded(hs.state, HANDSHAKE_STATES),
        b',"rtt_ms":', _numbers(np.round(hs.rtt_ms, 6).tolist()),
        b',"client_isn":', _or_null(hs.client_isn, hs.client_isn < 0),
        b',"server_isn":', _or_null(hs.server_isn, hs.server_isn < 0),
        b',"syn_retransmits":', _low_ints(hs.syn_retransmits),
        b',"options":{"client":', _options(hs.client_opts),
        b',"server":', _options(hs.server_opts),
        b'}},"data":{"client_to_server":', *direction(0),
        b',"server_to_client":', *direction(1),
        b',"retransmissions":', _low_ints(data.retransmissions[0::2] + data.retransmissions[1::2]),
        b',"out_of_order":', _low_ints(data.out_of_order[0::2] + data.out_of_order[1::2]),
        b'},"teardown":{"kind":', _coded(td.kind, TEARDOWN_KINDS),
        b',"first_fin":', _coded(np.where(td.first_fin < 0, 2, td.first_fin), side_or_none),
        b',"fins_acked":{"client":', _bools_or_null(td.fin_ack_idx[0] >= 0, ~c_sent),
        b',"server":', _bools_or_null(td.fin_ack_idx[1] >= 0, ~s_sent),
        b'},"rst_by":', _coded(rst_by_codes(tp, td), RST_BY),
        b',"fin_before_rst":', _bools(td.fin_before_rst),
        b',"bytes_after_first_fin":', _Ints(td.bytes_after_first_fin),
        b'},"time_wait":{"holder":', _coded(td.holder, HOLDERS),
        b',"start_ts":', _or_null(td.tw_start, ~held),
        b',"until_ts":', _or_null(td.tw_until, ~held),
        b',"hold_s":', _or_null(td.tw_hold, ~held),
        b',"msl_s":' + orjson.dumps(td.msl),
        b',"fin_reacked":', _bools(held & td.fin_reacked),
        b',"reused_by_syn":', _or_null(reused, ~held | (reused < 0)),
        b',"reuse_ts":', _or_null(td.reuse_ts, ~held),
        b',"rfc6191_ok":', _low_values(rfc_ok.tolist()),
        b',"rfc6191_by":', _low_values(rfc_by.tolist()),
        b',"rst_in_time_wait":', _bools(held & td.rst_in_time_wait),
        b'},"states":{"client":[',
    ]  # fmt: skip
    tail: list[_Piece] = [
        b']},"zeek":{"conn_state":', _low_values(io.conn_state),
        b',"history":', _low_values(io.history),
        b'},"completeness":', _low_ints(compl),
        b',"completeness_label":', labels,
        b',"anomalies":', _low_values([a or _NO_ANOMALIES for a in f.anomalies], by_id=True),
        b"}",
    ]  # fmt: skip
    assert all(len(p) == nb for p in head + tail if isinstance(p, _Blob))
    return head, tail


def _collapse(pieces: list[_Piece]) -> list[_Piece]:
    """Runs of literals and low-cardinality columns merged into one column of shared fragments.

    Most of a record (handshake state and options, counters that are mostly 0, the teardown,
    flags) takes few distinct combinations: each combination is serialized once, so a record
    formats a handful of fragments instead of a hundred.
    """
    out: list[_Piece] = []
    run: list[bytes | _Low] = []

    def flush() -> None:
        lows = [p for p in run if isinstance(p, _Low)]
        if len(lows) < 2:
            out.extend(run)
        else:
            out.append(_combine(run))
        run.clear()

    for p in pieces:
        if isinstance(p, bytes) or (isinstance(p, _Low) and len(p.frags) <= MAX_LOW):
            run.append(p)
        else:
            flush()
            out.append(p)
    flush()
    return out


def _combine(run: list[bytes | _Low]) -> _Low:
    code: I64 | None = None
    card = 1
    for p in run:
        if isinstance(p, bytes):
            continue
        if code is None:
            code, card = p.codes, len(p.frags)
            continue
        if card * len(p.frags) >= 1 << 40:  # keep the mixed-radix code within int64
            uniq, inverse = np.unique(code, return_inverse=True)
            code, card = inverse.ravel().astype(np.int64), len(uniq)
        code = code * len(p.frags) + p.codes
        card *= len(p.frags)
    assert code is not None
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    frags = [
        b"".join(p if isinstance(p, bytes) else p.frags[p.codes[r]] for p in run) for r in first.tolist()
    ]
    return _Low(inverse.ravel(), frags)


# A record laid out as literal parts around columns: parts[0] col[0] parts[1] ... parts[-1].
# A column is per block (indexed by block number), or a ``_Local`` of one pattern group.
class _Local(_Blob):
    """Fragments for the blocks of one pattern group, in the group's order."""


_Column = _Ints | _Low | _Blob


def _layout(pieces: Sequence[_Piece]) -> tuple[list[bytes], list[_Column]]:
    """The pieces as literal parts (adjacent literals merged) and the columns between them."""
    parts = [b""]
    columns: list[_Column] = []
    for p in pieces:
        if isinstance(p, bytes):
            parts[-1] += p
        else:
            columns.append(p)
            parts.append(b"")
    return parts, columns


def _fill_c(parts: list[bytes], columns: list[_Column], blocks: I64) -> list[bytes]:
    """The records of ``blocks`` (one pattern group) through the C filler."""
    assert _fill is not None
    modes = bytearray()
    args: list[object] = []
    for c in columns:
        if isinstance(c, _Ints):
            modes += b"d"
            args.append(c.ints)
        elif isinstance(c, _Low):
            modes += b"c"
            args.append((c.frags, c.codes))
        else:
            modes += b"B" if isinstance(c, _Local) else b"b"
            args.append((c.blob, c.starts, c.ends))
    out: list[bytes] = _fill.fill(parts, args, bytes(modes), np.ascontiguousarray(blocks, dtype=np.int64))
    return out


def _fill_percent(parts: list[bytes], columns: list[_Column], blocks: I64) -> list[bytes]:
    """The records of ``blocks`` by ``%`` formatting (what ``_fill_c`` does, without the C helper)."""
    holes = [b"%d" if isinstance(c, _Ints) else b"%b" for c in columns]
    template = parts[0].replace(b"%", b"%%") + b"".join(
        hole + part.replace(b"%", b"%%") for hole, part in zip(holes, parts[1:], strict=True)
    )
    if not columns:
        return [parts[0]] * len(blocks)
    rows = zip(*[_values(c, blocks) for c in columns], strict=True)
    return [template % row for row in rows]


def _values(column: _Column, blocks: I64) -> list[Any]:
    if isinstance(column, _Local):
        return column.values.tolist()  # type: ignore[no-any-return]
    if isinstance(column, _Ints):
        return column.ints[blocks].tolist()  # type: ignore[no-any-return]
    if isinstance(column, _Low):
        return [column.frags[k] for k in column.codes[blocks].tolist()]
    b = column.blob
    return [b[s:e] for s, e in zip(column.starts[blocks].tolist(), column.ends[blocks].tolist(), strict=True)]


def record_chunks(f: TcpFacts, records_per_chunk: int = 8192) -> Iterator[bytes]:
    """The records as JSON, in connection id order, ``records_per_chunk`` records per chunk.

    Records inside a chunk are separated by ``RECORD_SEPARATOR``; the caller puts it between
    chunks too.
    """
    for _, texts in record_texts(f, records_per_chunk):
        yield from join_records(texts)


JOIN_RECORDS = 1024  # records per joined piece of text: ~2 MB, reused by malloc (larger ones are
# fresh mappings, page-faulted on every join)


def join_records(texts: Sequence[bytes | memoryview]) -> Iterator[bytes]:
    """``texts`` joined by ``RECORD_SEPARATOR``, JOIN_RECORDS at a time (pieces join with it too)."""
    for k in range(0, len(texts), JOIN_RECORDS):
        yield RECORD_SEPARATOR.join(texts[k : k + JOIN_RECORDS])


def record_texts(f: TcpFacts, records_per_chunk: int = 8192) -> Iterator[tuple[I64, list[bytes]]]:
    """(connection ids, JSON text of each record), ``records_per_chunk`` at a time, in id order.

    Blocks whose state timelines follow one pattern (same states, same count) share one ``%``
    template for the whole record, so a record costs one formatting call.
    """
    nb = f.n_blocks
    if nb == 0:
        return
    head, tail = _template(f)
    head, tail = _collapse(head), _collapse(tail)
    tl = f.timelines
    use_c = _fill is not None and os.environ.get("ANALYZER_PURE_PYTHON") != "1"
    fill = _fill_c if use_c else _fill_percent
    states: dict[int, list[bytes | int]] = {}  # per pattern: literals and entry numbers
    # Chunk by chunk (in id order), so only one chunk of text is held at a time.
    for r0 in range(0, nb, records_per_chunk):
        chunk = f.order[r0 : r0 + records_per_chunk]
        out = np.empty(len(chunk), dtype=object)
        by_pattern = np.argsort(tl.pattern[chunk], kind="stable")
        cuts = np.flatnonzero(np.diff(tl.pattern[chunk][by_pattern])) + 1
        for local in np.split(by_pattern, cuts):
            blocks = chunk[local]
            b0 = int(blocks[0])
            length = int(tl.lengths[b0])
            layout = states.get(int(tl.pattern[b0]))
            if layout is None:
                layout = states[int(tl.pattern[b0])] = _states_layout(tl, b0)
            # One "ts,frame" column per event of the pattern; entries at one event share it.
            first = tl.start[blocks]
            by_event: dict[int, _Local] = {}
            entry_cols: list[_Local] = []
            for j, event in enumerate(tl.source[int(first[0]) : int(first[0]) + length].tolist()):
                col = by_event.get(event)
                if col is None:
                    pairs = zip(tl.ts[first + j].tolist(), tl.frame[first + j].tolist(), strict=True)
                    text = orjson.dumps(list(pairs))[2:-2]
                    col = by_event[event] = _Local.split(text, b"],[", len(blocks))
                entry_cols.append(col)
            pieces = [*head, *(p if isinstance(p, bytes) else entry_cols[p] for p in layout), *tail]
            parts, columns = _layout(pieces)
            out[local] = fill(parts, columns, blocks)
        yield f.tp.conn_id[chunk], out.tolist()


def _states_layout(tl: TimelineEntries, block: int) -> list[bytes | int]:
    """The ``states`` value of a pattern: literals, and entry numbers where its columns go."""
    start, n_client = int(tl.start[block]), int(tl.n_client[block])
    names = tl.names[start : start + int(tl.lengths[block])].tolist()
    out: list[bytes | int] = []
    for j, name in enumerate(names):
        if j == n_client:
            out.append(b'],"server":[')
        elif j:
            out.append(b",")
        out += [b"[" + orjson.dumps(name) + b",", j, b"]"]
    if n_client == len(names):
        out.append(b'],"server":[')
    return out


__all__ = ["DIRECTIONS", "RECORD_SEPARATOR", "join_records", "record_chunks", "record_texts"]
