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

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from analyzer.flows.tcp import DIRECTIONS, TcpFacts, _side_options, rst_by_side
from analyzer.flows.tcp_handshake import HANDSHAKE_STATES
from analyzer.flows.tcp_interop import completeness_label
from analyzer.flows.tcp_teardown import H_NONE, HOLDERS, TEARDOWN_KINDS

OBJ = npt.NDArray[np.object_]
I64 = npt.NDArray[np.int64]
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
RECORD_SEPARATOR = b",\n    "
MAX_LOW = 4096  # distinct values up to which a column is laid out as codes into shared fragments


class _Ints:
    """A column of plain integers, formatted by ``%d`` (what orjson writes for an int)."""

    def __init__(self, values: npt.NDArray[np.integer[Any]]) -> None:
        self.values: OBJ = values.astype(np.int64).astype(object)


class _Low:
    """A column with few distinct fragments: ``frags[codes[i]]`` is row ``i``'s."""

    def __init__(self, codes: npt.NDArray[np.integer[Any]], frags: list[bytes]) -> None:
        self.codes: I64 = codes.astype(np.int64)
        self.frags = frags

    @property
    def values(self) -> OBJ:
        table = np.empty(len(self.frags), dtype=object)
        table[:] = self.frags
        out: OBJ = table[self.codes]
        return out


# A record template: literal bytes and columns (one value per block).
_Piece = bytes | OBJ | _Ints | _Low


def _numbers(values: Sequence[Any]) -> OBJ:
    """Fragments of numbers, booleans and None (NaN -> null): one orjson call for the column.

    Their JSON never contains a comma, so the serialized list splits into the fragments.
    """
    out = np.empty(len(values), dtype=object)
    if len(values):
        out[:] = orjson.dumps(values, option=_OPTIONS)[1:-1].split(b",")
    return out


def _strings(values: Sequence[str | None]) -> OBJ:
    """Fragments of strings (or None): one orjson call for the column.

    An encoded string never holds a raw NUL (orjson escapes it), and ``","`` only occurs between
    two strings (a quote inside a string is escaped), so the boundaries can be marked and split
    in C. None goes in as a NUL string and comes back as ``null``.
    """
    out = np.empty(len(values), dtype=object)
    if len(values):
        nulls = list(values).count(None)  # compared in C; most columns have none
        strings = [_NUL if v is None else v for v in values] if nulls else values
        encoded = orjson.dumps(strings)[1:-1]
        out[:] = encoded.replace(b'","', b'"\x00"').split(b"\x00")
        if nulls:
            out[[v is None for v in values]] = b"null"
    return out


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


def _bools(values: npt.NDArray[np.bool_]) -> _Low:
    return _Low(values.astype(np.int64), [b"false", b"true"])


def _bools_or_null(values: npt.NDArray[np.bool_], missing: npt.NDArray[np.bool_]) -> _Low:
    return _Low(np.where(missing, 2, values.astype(np.int64)), [b"false", b"true", b"null"])


def _or_null(values: npt.NDArray[Any], missing: npt.NDArray[np.bool_]) -> OBJ:
    out = _numbers(values.tolist())
    out[missing] = b"null"
    return out


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
    labels = {v: completeness_label(v) for v in set(compl.tolist())}
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
        b',"options":{"client":', _low_values(_side_options(hs.client_opts), by_id=True),
        b',"server":', _low_values(_side_options(hs.server_opts), by_id=True),
        b'}},"data":{"client_to_server":', *direction(0),
        b',"server_to_client":', *direction(1),
        b',"retransmissions":', _low_ints(data.retransmissions[0::2] + data.retransmissions[1::2]),
        b',"out_of_order":', _low_ints(data.out_of_order[0::2] + data.out_of_order[1::2]),
        b'},"teardown":{"kind":', _coded(td.kind, TEARDOWN_KINDS),
        b',"first_fin":', _coded(np.where(td.first_fin < 0, 2, td.first_fin), side_or_none),
        b',"fins_acked":{"client":', _bools_or_null(td.fin_ack_idx[0] >= 0, ~c_sent),
        b',"server":', _bools_or_null(td.fin_ack_idx[1] >= 0, ~s_sent),
        b'},"rst_by":', _low_values(rst_by_side(tp, td)),
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
        b',"completeness_label":', _low_values([labels[v] for v in compl.tolist()]),
        b',"anomalies":', _low_values([a or _NO_ANOMALIES for a in f.anomalies], by_id=True),
        b"}",
    ]  # fmt: skip
    assert all(len(p) == nb for p in head + tail if isinstance(p, np.ndarray))
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


def _format(pieces: list[_Piece]) -> tuple[bytes, list[OBJ]]:
    """A ``%`` template of the pieces (literals escaped) and its argument columns."""
    template = b""
    columns: list[OBJ] = []
    for p in _collapse(pieces):
        if isinstance(p, bytes):
            template += p.replace(b"%", b"%%")
        elif isinstance(p, _Ints):
            template += b"%d"
            columns.append(p.values)
        elif isinstance(p, _Low):
            template += b"%b"
            columns.append(p.values)
        else:
            template += b"%b"
            columns.append(p)
    return template, columns


def record_chunks(f: TcpFacts, records_per_chunk: int = 8192) -> Iterator[bytes]:
    """The records as JSON, in connection id order, ``records_per_chunk`` records per chunk.

    Records inside a chunk are separated by ``RECORD_SEPARATOR``; the caller puts it between
    chunks too.
    """
    for _, texts in record_texts(f, records_per_chunk):
        yield RECORD_SEPARATOR.join(texts)


def record_texts(f: TcpFacts, records_per_chunk: int = 8192) -> Iterator[tuple[I64, list[bytes]]]:
    """(connection ids, JSON text of each record), ``records_per_chunk`` at a time, in id order.

    Blocks whose state timelines follow one pattern (same states, same count) share one ``%``
    template for the whole record, so a record costs one formatting call.
    """
    nb = f.n_blocks
    if nb == 0:
        return
    head, tail = _template(f)
    head_t, head_cols = _format(head)
    tail_t, tail_cols = _format(tail)
    tl = f.timelines
    templates: dict[int, bytes] = {}
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
            template = templates.get(int(tl.pattern[b0]))
            if template is None:
                start, n_client = int(tl.start[b0]), int(tl.n_client[b0])
                names = tl.names[start : start + length].tolist()
                entries = [b"[" + orjson.dumps(name).replace(b"%", b"%%") + b",%b]" for name in names]
                states = b",".join(entries[:n_client]) + b'],"server":[' + b",".join(entries[n_client:])
                template = templates[int(tl.pattern[b0])] = head_t + states + tail_t
            # One "ts,frame" column per event of the pattern; entries at one event share it.
            first = tl.start[blocks]
            by_event: dict[int, list[bytes]] = {}
            entry_cols: list[list[bytes]] = []
            for j, event in enumerate(tl.source[int(first[0]) : int(first[0]) + length].tolist()):
                col = by_event.get(event)
                if col is None:
                    pairs = zip(tl.ts[first + j].tolist(), tl.frame[first + j].tolist(), strict=True)
                    col = by_event[event] = orjson.dumps(list(pairs))[2:-2].split(b"],[")
                entry_cols.append(col)
            rows = zip(
                *[c[blocks].tolist() for c in head_cols],
                *entry_cols,
                *[c[blocks].tolist() for c in tail_cols],
                strict=True,
            )
            out[local] = [template % row for row in rows]
        yield f.tp.conn_id[chunk], out.tolist()


__all__ = ["DIRECTIONS", "RECORD_SEPARATOR", "record_chunks", "record_texts"]
