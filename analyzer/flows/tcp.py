"""TCP flow analysis: one row and one report record per TCP connection.

``analyze_tcp(packets, payloads)`` runs the stages, each in its own module:

* ``tcp_streams`` - connections (like ``tcp.stream``, with port reuse) and the client;
* ``tcp_seq`` - relative sequence numbers per direction;
* ``tcp_handshake`` - handshake state, ISNs, RTT, SYN retransmissions, options;
* ``tcp_data`` - reassembly, bytes, sha256/preview, retransmissions, gaps, dup ACKs, ...;
* ``tcp_teardown`` - teardown kind, FIN/RST evidence, TIME_WAIT holder and timing;
* ``tcp_states`` - RFC 9293 per-endpoint state timelines and anomalies (table-driven);
* ``tcp_interop`` - Zeek ``conn_state``/``history`` and Wireshark ``tcp.completeness``.

Every stage works on whole numpy columns (the SYN/FIN/RST rows are few; payload and ACK rows are
handled by group operations); Python loops run only per distinct event pattern, over the rare
connections that need a careful path, and once per connection to build its report record.

``TcpFlows.table`` follows ``TCP_FLOWS`` (below); ``TcpFlows.records`` are the ``tcp`` entries of
the ``analyzer.report/1`` JSON document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from analyzer.decode.source import CaptureBytes
from analyzer.flows.tcp_data import DataFacts, StreamIndex, analyze_data
from analyzer.flows.tcp_handshake import HANDSHAKE_STATES, HandshakeFacts, SideOptions, analyze_handshake
from analyzer.flows.tcp_interop import InteropFacts, analyze_interop, completeness_label
from analyzer.flows.tcp_seq import compute_seq, reduce_per_group
from analyzer.flows.tcp_states import SIDES, StateEvents, run_states
from analyzer.flows.tcp_streams import TcpPackets, build_tcp_packets
from analyzer.flows.tcp_teardown import (
    H_NONE,
    HOLDERS,
    RST,
    TEARDOWN_KINDS,
    TIME_WAIT_NOTE,
    TeardownFacts,
    analyze_teardown,
)
from analyzer.schema import Column
from analyzer.writev import Gather

__all__ = ["TCP_FLOWS", "TIME_WAIT_NOTE", "TcpFlows", "analyze_connections", "analyze_tcp", "stream_bytes"]

DIRECTIONS = ("client_to_server", "server_to_client")

TCP_FLOWS: tuple[Column, ...] = (
    Column("id", "int64", "connection number from 0, in order of first packet (like tcp.stream)"),
    Column("client_ip", "category", "client address (sender of the first SYN)"),
    Column("client_port", "int64", "client port"),
    Column("server_ip", "category", "server address"),
    Column("server_port", "int64", "server port"),
    Column("client_guessed", "bool", "no SYN/SYN-ACK: the client is the first packet's sender"),
    Column("first_ts", "float64", "time of the first packet, epoch seconds"),
    Column("last_ts", "float64", "time of the last packet, epoch seconds"),
    Column("first_frame", "int64", "frame number of the first packet"),
    Column("last_frame", "int64", "frame number of the last packet"),
    Column("packets", "int64", "packets in both directions"),
    Column("c2s_packets", "int64", "packets client -> server"),
    Column("s2c_packets", "int64", "packets server -> client"),
    Column("handshake", "category", "complete, partial, refused, no-reply, simultaneous-open, not-seen"),
    Column("rtt_ms", "float64", "handshake RTT (last SYN -> final ACK), NaN unless complete"),
    Column("client_isn", "int64", "client initial sequence number, -1 when no SYN seen"),
    Column("server_isn", "int64", "server initial sequence number, -1 when no SYN-ACK seen"),
    Column("syn_retransmits", "int64", "client SYNs beyond the first"),
    Column("c2s_bytes", "int64", "unique payload bytes client -> server"),
    Column("s2c_bytes", "int64", "unique payload bytes server -> client"),
    Column("c2s_segments", "int64", "payload segments client -> server (retransmissions included)"),
    Column("s2c_segments", "int64", "payload segments server -> client"),
    Column("c2s_missing", "int64", "client -> server stream bytes never captured (gaps)"),
    Column("s2c_missing", "int64", "server -> client stream bytes never captured"),
    Column("c2s_sha256", "object", "sha256 of the reassembled client -> server bytes; None without payloads"),
    Column("s2c_sha256", "object", "sha256 of the reassembled server -> client bytes"),
    Column("retransmissions", "int64", "retransmitted payload segments, both directions"),
    Column("out_of_order", "int64", "out-of-order payload segments, both directions"),
    Column("dup_acks", "int64", "duplicate ACKs, both directions"),
    Column("zero_windows", "int64", "zero-window advertisements, both directions"),
    Column("keep_alives", "int64", "keep-alive probes, both directions"),
    Column("teardown", "category", "fin-4way, fin-3way, simultaneous, rst, half-closed, open"),
    Column("first_fin", "category", "client or server (the active closer); none without FIN"),
    Column("client_fin_acked", "bool", "the client's FIN was ACKed by the server"),
    Column("server_fin_acked", "bool", "the server's FIN was ACKed by the client"),
    Column("rst_by", "category", "sender of the first RST: client, server or none"),
    Column("fin_before_rst", "bool", "a FIN preceded the first RST"),
    Column("bytes_after_first_fin", "int64", "new bytes the other side sent after the first FIN"),
    Column("time_wait_holder", "category", "client, server, both or none"),
    Column("time_wait_start", "float64", "when TIME_WAIT began (epoch s), NaN if none/unknown"),
    Column("time_wait_until", "float64", "start + 2*MSL, extended by re-ACKed FINs"),
    Column("time_wait_hold_s", "float64", "until - start"),
    Column("time_wait_reused_by", "int64", "id of a connection whose SYN reused the tuple in TIME_WAIT, -1"),
    Column("time_wait_rst", "bool", "a RST hit the tuple during TIME_WAIT (RFC 1337)"),
    Column("time_wait_fin_reacked", "bool", "a retransmitted FIN was ACKed again during TIME_WAIT"),
    Column("conn_state", "category", "Zeek conn_state"),
    Column("history", "object", "Zeek history string"),
    Column("completeness", "int64", "Wireshark tcp.completeness value"),
    Column("anomalies", "int64", "number of anomalies in the record"),
)
TCP_FLOW_COLUMNS: tuple[str, ...] = tuple(c.name for c in TCP_FLOWS)


@dataclass(frozen=True)
class TcpFlows:
    """Result of ``analyze_tcp``: ``table`` (``TCP_FLOWS`` columns) and JSON-ready ``records``.

    ``records`` are built on first use from the per-connection facts (``json_chunks`` writes
    the same records as JSON text straight from those facts, without building them: at 10^5
    connections the dicts cost more time and memory than the rest of the report). Records are
    read-only: equal small objects (a side's ``options``, ``fins_acked``, the ``time_wait`` of
    connections without a holder, empty ``gaps``) are shared between records.
    """

    # The table, or how to make it on first use (``tcp_parallel`` merges its workers' tables
    # only when someone reads it: the JSON report does not).
    frame: pd.DataFrame | Callable[[], pd.DataFrame] = field(repr=False)
    facts: TcpFacts | None = field(default=None, repr=False)
    streams: _Streams | None = field(default=None, repr=False)
    # Instead of facts: every record's JSON text, in id order (``tcp_parallel`` merges the
    # texts its workers wrote; the facts stayed in the workers).
    texts: Sequence[bytes | memoryview] | None = field(default=None, repr=False)

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per connection, in id order (``TCP_FLOWS`` columns)."""
        return self.frame() if callable(self.frame) else self.frame

    @property
    def count(self) -> int:
        """How many connections (without making the table)."""
        if self.facts is not None:
            return self.facts.n_blocks
        if self.texts is not None:
            return len(self.texts)
        return len(self.table)

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        """The ``tcp`` entries of analyzer.report/1, in connection id order."""
        f = self.facts
        if f is None:
            # The texts are exactly orjson's serialization of the records (tests compare them).
            return [orjson.loads(t) for t in self.texts or ()]
        records = _records(f)
        return [records[i] for i in f.order.tolist()]

    def json_chunks(self, records_per_chunk: int = 8192) -> Iterator[bytes | Gather]:
        """``records`` as JSON text, records separated by ``,\\n    `` (chunks join with that too).

        Merged texts come as ``Gather`` lists of the texts as they are held and separators:
        joining them would copy every byte once more than ``writev`` does.
        """
        from analyzer.flows.tcp_json import RECORD_SEPARATOR, record_chunks

        if self.facts is not None:
            yield from record_chunks(self.facts, records_per_chunk)
        elif self.texts:
            texts = self.texts
            for k in range(0, len(texts), records_per_chunk):
                part = texts[k : k + records_per_chunk]
                chunk = Gather([RECORD_SEPARATOR] * (2 * len(part) - 1))
                chunk[::2] = part
                yield chunk


@dataclass(frozen=True)
class TcpFacts:
    """Every stage's per-block results: what the records (and their JSON) are made of."""

    tp: TcpPackets
    hs: HandshakeFacts
    data: DataFacts
    td: TeardownFacts
    io: InteropFacts
    timelines: TimelineEntries
    anomalies: list[list[dict[str, Any]]]
    order: npt.NDArray[np.int64]  # blocks in connection id order

    @property
    def n_blocks(self) -> int:
        return self.tp.n_blocks


@dataclass(frozen=True)
class _Streams:
    """What ``stream_bytes`` needs: the connection id of each block, and the stream index."""

    conn_id: npt.NDArray[np.int64]  # per block
    index: StreamIndex | None

    @cached_property
    def _by_id(self) -> npt.NDArray[np.int64]:
        return np.argsort(self.conn_id, kind="stable")

    def block_of(self, conn_id: int) -> int:
        k = int(np.searchsorted(self.conn_id, conn_id, sorter=self._by_id))
        if k == len(self.conn_id) or self.conn_id[self._by_id[k]] != conn_id:
            raise KeyError(f"no TCP connection with id {conn_id}")
        return int(self._by_id[k])


def stream_bytes(flows: TcpFlows, conn_id: int, direction: str, payloads: CaptureBytes) -> bytes:
    """Reassembled bytes of one direction (``"c2s"``/``"s2c"``) of connection ``conn_id``.

    Gaps (bytes never captured) are left out; ``data.<dir>.gaps`` in the record lists them.
    """
    if flows.streams is None:
        raise ValueError("these TcpFlows carry no stream index (analyze_tcp builds one)")
    if direction not in ("c2s", "s2c"):
        raise ValueError(f"direction must be 'c2s' or 's2c', not {direction!r}")
    index = flows.streams.index
    if index is None:
        return b""
    block = flows.streams.block_of(conn_id)
    mv = memoryview(payloads.data)
    return b"".join([mv[o : o + n] for o, n in index.pieces(2 * block + (0 if direction == "c2s" else 1))])


def analyze_tcp(packets: pd.DataFrame, payloads: CaptureBytes | None, *, msl: float = 30.0) -> TcpFlows:
    """Reconstruct and check every TCP connection of a PACKETS frame.

    ``payloads`` gives access to the capture's bytes for sha256/preview; with ``None`` those are
    ``None``. ``msl`` is the maximum segment lifetime in seconds (TIME_WAIT = 2*MSL).
    """
    return analyze_connections(build_tcp_packets(packets), payloads, msl=msl)


def analyze_connections(tp: TcpPackets, payloads: CaptureBytes | None, *, msl: float = 30.0) -> TcpFlows:
    """``analyze_tcp`` on connections already grouped (all of a capture's, or ``tp.blocks(...)``)."""
    packets = tp.packets
    si = compute_seq(tp)
    hs = analyze_handshake(packets, tp, si)
    data = analyze_data(tp, si, payloads, hs.rtt_ms / 1000.0)
    td = analyze_teardown(packets, tp, si, hs, data.is_data, data.origin, msl)
    st = run_states(tp, si, hs, td, data.is_data)
    io = analyze_interop(tp, si, data.bytes[0::2], data.bytes[1::2], data.gaps, data.origin)
    anomalies = _anomalies(tp, data, td, st)
    order = np.argsort(tp.conn_id)
    facts = TcpFacts(tp, hs, data, td, io, timeline_entries(tp, st), anomalies, order)
    # The table is made on first use: the JSON report reads only the records.
    return TcpFlows(
        frame=lambda: flow_table(flow_columns(facts)),
        facts=facts,
        streams=_Streams(tp.conn_id, data.stream_index),
    )


# ---------------------------------------------------------------------------------------------


def _opt_or_none(values: npt.NDArray[np.generic], missing: npt.NDArray[np.bool_]) -> list[Any]:
    out = values.astype(object)
    out[missing] = None
    return list(out.tolist())


def _float_or_none(values: npt.NDArray[np.float64]) -> list[float | None]:
    out = values.astype(object)
    out[np.isnan(values)] = None
    return list(out.tolist())


def _anomalies(
    tp: TcpPackets, data: DataFacts, td: TeardownFacts, st: StateEvents
) -> list[list[dict[str, Any]]]:
    """Anomalies per block: the state machine's, plus checks on the teardown and the data."""
    nb = tp.n_blocks
    frame_l = tp.frame
    ts_l = tp.ts
    ev_pkt = st.ev_pkt
    ev_start = st.ev_start
    pat = st.pattern_of_block
    out: list[list[dict[str, Any]]] = [[] for _ in range(nb)]
    has = np.array([bool(r.anomalies) for r in st.results], dtype=bool)
    for b in np.flatnonzero(has[st.pattern_of_block]).tolist() if nb else []:
        base = ev_start[b]
        for name, side, pos in st.results[pat[b]].anomalies:
            k = ev_pkt[base + pos]
            out[b].append({"name": name, "side": SIDES[side], "frame": int(frame_l[k]), "ts": float(ts_l[k])})

    def add(mask: npt.NDArray[np.bool_], name: str, side: str | None, idx: npt.NDArray[np.int64]) -> None:
        for b in np.flatnonzero(mask).tolist():
            k = int(idx[b])
            entry: dict[str, Any] = {"name": name, "side": side, "frame": None, "ts": None}
            if k >= 0:
                entry["frame"], entry["ts"] = int(frame_l[k]), float(ts_l[k])
            out[b].append(entry)

    not_rst = td.kind != RST
    for d, side in enumerate(SIDES):
        add(not_rst & (td.fin_idx[d] >= 0) & (td.fin_ack_idx[d] < 0), "fin_not_acked", side, td.fin_idx[d])
        add(data.missing[d::2] > 0, "missing_bytes", side, np.full(nb, -1, dtype=np.int64))
    holder_set = td.holder != H_NONE
    add(holder_set & np.isnan(td.tw_start), "time_wait_start_unknown", None, np.full(nb, -1, np.int64))
    reuse = td.reused_by >= 0
    bad6191 = reuse & np.array([v is False for v in td.rfc6191_ok.tolist()], dtype=bool)
    add(bad6191, "rfc6191_violation", None, np.full(nb, -1, np.int64))
    return out


@dataclass(frozen=True)
class Coded:
    """A categorical column as codes into fixed ``names`` (concatenates without re-coding)."""

    codes: npt.NDArray[np.int64]
    names: tuple[str, ...]


FlowColumns = dict[str, Any]  # TCP_FLOWS name -> numpy array (Coded for fixed categories)


def flow_columns(f: TcpFacts) -> FlowColumns:
    """The ``TCP_FLOWS`` columns of ``f``, rows in id order, as plain arrays.

    Cheap to make and to pickle (``tcp_parallel``'s workers send them); ``flow_table`` makes
    the DataFrame, whose categoricals and strings cost more than the arrays themselves.
    """
    tp, hs, data, td, io = f.tp, f.hs, f.data, f.td, f.io
    nb = tp.n_blocks
    counts = tp.counts()
    c2s_pk = np.bincount(tp.block[tp.dir == 0], minlength=nb)
    side3 = ("client", "server", "none")

    def side_codes(d: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.where(d < 0, 2, d)

    last = np.maximum(tp.ends - 1, 0)
    cols: FlowColumns = {
        "id": tp.conn_id,
        "client_ip": tp.client_ip,
        "client_port": tp.client_port,
        "server_ip": tp.server_ip,
        "server_port": tp.server_port,
        "client_guessed": tp.client_guessed,
        "first_ts": tp.ts[tp.starts] if nb else np.zeros(0),
        "last_ts": tp.ts[last] if nb else np.zeros(0),
        "first_frame": tp.frame[tp.starts] if nb else np.zeros(0, np.int64),
        "last_frame": tp.frame[last] if nb else np.zeros(0, np.int64),
        "packets": counts,
        "c2s_packets": c2s_pk.astype(np.int64),
        "s2c_packets": (counts - c2s_pk).astype(np.int64),
        "handshake": Coded(hs.state, HANDSHAKE_STATES),
        "rtt_ms": hs.rtt_ms,
        "client_isn": hs.client_isn,
        "server_isn": hs.server_isn,
        "syn_retransmits": hs.syn_retransmits,
        "c2s_bytes": data.bytes[0::2],
        "s2c_bytes": data.bytes[1::2],
        "c2s_segments": data.segments[0::2],
        "s2c_segments": data.segments[1::2],
        "c2s_missing": data.missing[0::2],
        "s2c_missing": data.missing[1::2],
        "c2s_sha256": np.asarray(data.sha256[0::2], dtype=object),
        "s2c_sha256": np.asarray(data.sha256[1::2], dtype=object),
        "retransmissions": data.retransmissions[0::2] + data.retransmissions[1::2],
        "out_of_order": data.out_of_order[0::2] + data.out_of_order[1::2],
        "dup_acks": data.dup_acks[0::2] + data.dup_acks[1::2],
        "zero_windows": data.zero_windows[0::2] + data.zero_windows[1::2],
        "keep_alives": data.keep_alives[0::2] + data.keep_alives[1::2],
        "teardown": Coded(td.kind, TEARDOWN_KINDS),
        "first_fin": Coded(side_codes(td.first_fin), side3),
        "client_fin_acked": td.fin_ack_idx[0] >= 0,
        "server_fin_acked": td.fin_ack_idx[1] >= 0,
        "rst_by": Coded(side_codes(td.rst_dir), side3),
        "fin_before_rst": td.fin_before_rst,
        "bytes_after_first_fin": td.bytes_after_first_fin,
        "time_wait_holder": Coded(td.holder, HOLDERS),
        "time_wait_start": td.tw_start,
        "time_wait_until": td.tw_until,
        "time_wait_hold_s": td.tw_hold,
        "time_wait_reused_by": td.reused_by,
        "time_wait_rst": td.rst_in_time_wait,
        "time_wait_fin_reacked": td.fin_reacked,
        "conn_state": np.asarray(io.conn_state, dtype=object),
        "history": np.asarray(io.history, dtype=object),
        "completeness": io.completeness,
        "anomalies": np.fromiter(map(len, f.anomalies), dtype=np.int64, count=nb),
    }
    order = f.order
    return {name: _take(values, order) for name, values in cols.items()}


def _take(values: Any, order: npt.NDArray[np.int64]) -> Any:
    if isinstance(values, Coded):
        return Coded(np.asarray(values.codes, dtype=np.int64)[order], values.names)
    return np.asarray(values)[order]


def concat_columns(parts: Sequence[FlowColumns]) -> FlowColumns:
    """Several shares' columns as one, rows in id order (each part is in id order)."""
    order = np.argsort(np.concatenate([p["id"] for p in parts]), kind="stable")
    out: FlowColumns = {}
    for name in TCP_FLOW_COLUMNS:
        first = parts[0][name]
        if isinstance(first, Coded):
            out[name] = Coded(np.concatenate([p[name].codes for p in parts])[order], first.names)
        else:
            out[name] = np.concatenate([p[name] for p in parts])[order]
    return out


def flow_table(cols: FlowColumns) -> pd.DataFrame:
    """The ``TCP_FLOWS`` DataFrame of ``flow_columns``' arrays."""
    frame: dict[str, Any] = {}
    for name in TCP_FLOW_COLUMNS:
        values = cols[name]
        if isinstance(values, Coded):
            frame[name] = pd.Categorical.from_codes(values.codes, categories=pd.Index(list(values.names)))
        elif name in ("client_ip", "server_ip", "conn_state"):
            frame[name] = pd.Categorical(values)
        else:
            frame[name] = values
    return pd.DataFrame(frame, columns=list(TCP_FLOW_COLUMNS))


@dataclass(frozen=True)
class TimelineEntries:
    """Every block's state timeline entries, laid out flat in block order.

    Block ``b`` owns entries ``start[b] : start[b] + lengths[b]``: its client entries first
    (``n_client[b]`` of them), then its server entries.
    """

    names: npt.NDArray[np.object_]  # state name per entry
    ts: npt.NDArray[np.float64]
    frame: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]  # per block
    lengths: npt.NDArray[np.int64]
    n_client: npt.NDArray[np.int64]
    pattern: npt.NDArray[np.int64]  # per block: blocks of one pattern have the same state names
    source: npt.NDArray[np.int64]  # per entry: its event in the pattern (-1: the first packet)


def timeline_entries(tp: TcpPackets, st: StateEvents) -> TimelineEntries:
    """The ``[state, ts, frame]`` entries of every block's timelines, as flat columns.

    The machine ran once per event pattern; here every block's entries are laid out with numpy
    (template entry -> event -> packet -> time and frame).
    """
    nb = tp.n_blocks
    templates: list[tuple[str, int]] = []
    tmpl_start: list[int] = []
    n_client: list[int] = []
    n_all: list[int] = []
    for res in st.results:
        client, server = res.timelines
        tmpl_start.append(len(templates))
        templates.extend(client)
        templates.extend(server)
        n_client.append(len(client))
        n_all.append(len(client) + len(server))
    names = np.array([s for s, _ in templates], dtype=object)
    t_pos = np.array([p for _, p in templates], dtype=np.int64)
    pat = st.pattern_of_block
    lengths = np.asarray(n_all, dtype=np.int64)[pat]
    total = int(lengths.sum())
    entry_start = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64) if nb else np.zeros(0, np.int64)
    within = np.arange(total, dtype=np.int64) - np.repeat(entry_start, lengths)
    tidx = np.repeat(np.asarray(tmpl_start, dtype=np.int64)[pat], lengths) + within
    pos = t_pos[tidx]
    blk = np.repeat(np.arange(nb, dtype=np.int64), lengths)
    pkt = np.where(
        pos >= 0, st.ev_pkt[np.maximum(st.ev_start[blk] + pos, 0)] if len(st.ev_pkt) else 0, tp.starts[blk]
    )
    return TimelineEntries(
        names=names[tidx],
        ts=tp.ts[pkt],
        frame=tp.frame[pkt],
        start=entry_start,
        lengths=lengths,
        n_client=np.asarray(n_client, dtype=np.int64)[pat],
        pattern=pat,
        source=pos,
    )


def _timelines(tl: TimelineEntries) -> list[dict[str, list[list[Any]]]]:
    """``{"client": [[state, ts, frame], ...], "server": [...]}`` per block."""
    entries = list(map(list, zip(tl.names.tolist(), tl.ts.tolist(), tl.frame.tolist(), strict=True)))
    mid = (tl.start + tl.n_client).tolist()
    return [
        {"client": entries[a:m], "server": entries[m:e]}
        for a, m, e in zip(tl.start.tolist(), mid, (tl.start + tl.lengths).tolist(), strict=True)
    ]


RST_BY: tuple[str | None, ...] = ("client", "server", None, "both")  # rst_by_codes' values


def rst_by_codes(tp: TcpPackets, td: TeardownFacts) -> npt.NDArray[np.int64]:
    """``teardown.rst_by`` per block, as codes into RST_BY: the first RST's sender, ``both``
    when each side sent one."""
    is_rst = (tp.flags & 0x04) != 0
    nb = tp.n_blocks
    rst_sides = reduce_per_group(np.bitwise_or, np.where(tp.dir[is_rst] == 0, 1, 2), tp.block[is_rst], nb, 0)
    codes: npt.NDArray[np.int64] = np.where(rst_sides == 3, 3, np.where(td.rst_dir < 0, 2, td.rst_dir))
    return codes.astype(np.int64)


def rst_by_side(tp: TcpPackets, td: TeardownFacts) -> list[str | None]:
    """``teardown.rst_by`` per block (``rst_by_codes`` as values)."""
    return [RST_BY[c] for c in rst_by_codes(tp, td).tolist()]


def _side_options(o: SideOptions) -> list[dict[str, Any] | None]:
    """The options object of one side per block; equal objects are shared between records."""
    codes, objects = side_option_codes(o)
    return [objects[i] for i in codes.tolist()]


def side_option_codes(o: SideOptions) -> tuple[npt.NDArray[np.int64], list[dict[str, Any] | None]]:
    """The distinct options objects of one side, and each block's code into them."""
    keys = (
        o.seen.astype(np.int64) << 40
        | (o.mss & 0xFFFF) << 24
        | ((o.wscale + 1) & 0xFF) << 16
        | o.sack_perm.astype(np.int64) << 1
        | o.timestamps.astype(np.int64)
    )
    uniq, inverse = np.unique(keys, return_inverse=True)
    objects: list[dict[str, Any] | None] = []
    for key in uniq.tolist():
        if not key >> 40:
            objects.append(None)
            continue
        mss = (key >> 24) & 0xFFFF
        ws = ((key >> 16) & 0xFF) - 1
        objects.append(
            {
                "mss": mss if mss > 0 else None,
                "wscale": ws if ws >= 0 else None,
                "sack_perm": bool(key & 2),
                "timestamps": bool(key & 1),
            }
        )
    return inverse.ravel().astype(np.int64), objects


def _records(f: TcpFacts) -> list[dict[str, Any]]:
    """The ``tcp`` records of analyzer.report/1, in block order.

    Built column by column with comprehensions over zipped Python lists: at 10^5 connections the
    per-record cost is what matters, and indexing numpy arrays element by element is slow.
    """
    tp, hs, data, td, io, anomalies = f.tp, f.hs, f.data, f.td, f.io, f.anomalies
    nb = tp.n_blocks
    if nb == 0:
        return []
    ts = tp.ts
    handshakes = [
        {
            "state": state,
            "rtt_ms": rtt,
            "client_isn": c_isn,
            "server_isn": s_isn,
            "syn_retransmits": rtx,
            "options": {"client": c_opt, "server": s_opt},
        }
        for state, rtt, c_isn, s_isn, rtx, c_opt, s_opt in zip(
            [HANDSHAKE_STATES[i] for i in hs.state.tolist()],
            _float_or_none(np.round(hs.rtt_ms, 6)),
            _opt_or_none(hs.client_isn, hs.client_isn < 0),
            _opt_or_none(hs.server_isn, hs.server_isn < 0),
            hs.syn_retransmits.tolist(),
            _side_options(hs.client_opts),
            _side_options(hs.server_opts),
            strict=True,
        )
    ]

    directions = []
    for d in (0, 1):
        directions.append(
            [
                {
                    "bytes": nbytes,
                    "segments": segs,
                    "sha256": digest,
                    "preview": text,
                    "retransmissions": rtx,
                    "out_of_order": ooo,
                    "dup_acks": dup,
                    "zero_windows": zw,
                    "keep_alives": ka,
                    "missing_bytes": miss,
                    "gaps": gaps,
                }
                for nbytes, segs, digest, text, rtx, ooo, dup, zw, ka, miss, gaps in zip(
                    data.bytes[d::2].tolist(),
                    data.segments[d::2].tolist(),
                    data.sha256[d::2],
                    data.preview[d::2],
                    data.retransmissions[d::2].tolist(),
                    data.out_of_order[d::2].tolist(),
                    data.dup_acks[d::2].tolist(),
                    data.zero_windows[d::2].tolist(),
                    data.keep_alives[d::2].tolist(),
                    data.missing[d::2].tolist(),
                    data.gaps[d::2],
                    strict=True,
                )
            ]
        )
    datas = [
        {"client_to_server": c2s, "server_to_client": s2c, "retransmissions": rtx, "out_of_order": ooo}
        for c2s, s2c, rtx, ooo in zip(
            directions[0],
            directions[1],
            (data.retransmissions[0::2] + data.retransmissions[1::2]).tolist(),
            (data.out_of_order[0::2] + data.out_of_order[1::2]).tolist(),
            strict=True,
        )
    ]

    side_or_none = ("client", "server", None)
    flags3 = (True, False, None)
    fins_acked = {(c, s): {"client": c, "server": s} for c in flags3 for s in flags3}
    c_sent = td.fin_idx[0] >= 0
    s_sent = td.fin_idx[1] >= 0
    rst_by = rst_by_side(tp, td)
    teardowns = [
        {
            "kind": kind,
            "first_fin": first,
            "fins_acked": fins_acked[(c_ack, s_ack)],
            "rst_by": rst,
            "fin_before_rst": fin_rst,
            "bytes_after_first_fin": after,
        }
        for kind, first, c_ack, s_ack, rst, fin_rst, after in zip(
            [TEARDOWN_KINDS[i] for i in td.kind.tolist()],
            [side_or_none[i] for i in td.first_fin.tolist()],
            _opt_or_none(td.fin_ack_idx[0] >= 0, ~c_sent),
            _opt_or_none(td.fin_ack_idx[1] >= 0, ~s_sent),
            rst_by,
            td.fin_before_rst.tolist(),
            td.bytes_after_first_fin.tolist(),
            strict=True,
        )
    ]

    msl = td.msl
    # Without a holder every field is fixed: those records share one object.
    no_time_wait: dict[str, Any] = {
        "holder": "none",
        "start_ts": None,
        "until_ts": None,
        "hold_s": None,
        "msl_s": msl,
        "fin_reacked": False,
        "reused_by_syn": None,
        "reuse_ts": None,
        "rfc6191_ok": None,
        "rfc6191_by": None,
        "rst_in_time_wait": False,
    }
    time_waits: list[dict[str, Any]] = [no_time_wait] * nb
    held = np.flatnonzero(td.holder != H_NONE)
    for b, holder, start, until, hold, reacked, reused, reuse_ts, ok, by, tw_rst in zip(
        held.tolist(),
        [HOLDERS[i] for i in td.holder[held].tolist()],
        _float_or_none(td.tw_start[held]),
        _float_or_none(td.tw_until[held]),
        _float_or_none(td.tw_hold[held]),
        td.fin_reacked[held].tolist(),
        _opt_or_none(td.reused_by[held], td.reused_by[held] < 0),
        _float_or_none(td.reuse_ts[held]),
        td.rfc6191_ok[held].tolist(),
        td.rfc6191_by[held].tolist(),
        td.rst_in_time_wait[held].tolist(),
        strict=True,
    ):
        time_waits[b] = {
            "holder": holder,
            "start_ts": start,
            "until_ts": until,
            "hold_s": hold,
            "msl_s": msl,
            "fin_reacked": reacked,
            "reused_by_syn": reused,
            "reuse_ts": reuse_ts,
            "rfc6191_ok": ok,
            "rfc6191_by": by,
            "rst_in_time_wait": tw_rst,
        }

    # State timelines: [state, ts, frame]; the initial state sits at the first packet.
    states = _timelines(f.timelines)
    first_ts = ts[tp.starts].tolist()

    compl = io.completeness.tolist()
    labels = {v: completeness_label(v) for v in set(compl)}
    return [
        {
            "id": cid,
            "client": {"ip": cip, "port": cport},
            "server": {"ip": sip, "port": sport},
            "client_guessed": guessed,
            "first_ts": t0,
            "last_ts": t1,
            "packets": npk,
            "handshake": hsr,
            "data": dr,
            "teardown": tdr,
            "time_wait": twr,
            "states": sr,
            "zeek": {"conn_state": cs, "history": hist},
            "completeness": comp,
            "completeness_label": labels[comp],
            "anomalies": an,
        }
        for cid, cip, cport, sip, sport, guessed, t0, t1, npk, hsr, dr, tdr, twr, sr, cs, hist, comp, an in zip(  # noqa: E501
            tp.conn_id.tolist(),
            tp.client_ip.tolist(),
            tp.client_port.tolist(),
            tp.server_ip.tolist(),
            tp.server_port.tolist(),
            tp.client_guessed.tolist(),
            first_ts,
            ts[tp.ends - 1].tolist(),
            tp.counts().tolist(),
            handshakes,
            datas,
            teardowns,
            time_waits,
            states,
            io.conn_state,
            io.history,
            compl,
            anomalies,
            strict=True,
        )
    ]
