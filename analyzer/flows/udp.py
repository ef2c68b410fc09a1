"""UDP conversations from the packet table: datagrams, request/response pairs, echo, ICMP errors.

A conversation is every UDP datagram between two endpoints (ip, port), whatever the direction;
the client is the sender of its first datagram (Wireshark's ``udp.stream`` grouping, Zeek's
originator without its likely-server-port flip). Conversations are numbered from 0 in the order
of their first datagram in the file.

Pairing rule (UDP has no sequence numbers, so this is a documented heuristic): a datagram from
the server answers the most recent unanswered client datagram sent before it, preferring one
whose payload is identical (an echo). This is exact for lock-step clients (send, wait, maybe give
up and send the next), for echoes with lost replies, and for any pipelined echo whose payloads
differ. ``echo`` is true only when every client datagram got a reply and every reply equals its
request byte for byte (payloads cut short by the snap length cannot be compared: not an echo).

ICMP destination-unreachable errors (IPv4 type 3, ICMPv6 type 1) quoting a UDP header are
matched, through the packet table's ``inner_*`` columns, to the conversation and to the latest
datagram of the quoted direction sent before the error.

Everything per packet is done with numpy over whole columns: the only per-datagram Python work
is pairing in conversations whose datagrams do not simply alternate request, reply (the common
case is paired vectorized), and a hashlib call per datagram when the optional C helper
(``analyzer.flows._digest``, which hashes a batch per call) is not built. Previews are rendered
for a batch of datagrams at once (``analyzer.flows.preview.json_bodies``). ``UdpFlows.records`` are
built on first use; ``UdpFlows.json_chunks`` writes the same records as JSON text from the
columns, without building them (10^5 datagram dicts cost more than the whole analysis).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from analyzer.decode.source import Buffer, CaptureBytes
from analyzer.flows.preview import PREVIEW_BYTES, json_bodies, texts
from analyzer.flows.tcp_data import drop_resident_pages

I64 = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]
OBJ = npt.NDArray[np.object_]

try:  # optional C helper (setup.py): one call hashes every datagram; hashlib does it without it
    from analyzer.flows import _digest  # type: ignore[attr-defined]

    if not _digest.available():
        _digest = None
except ImportError:
    _digest = None

# Datagrams hashed and previewed per batch: a batch's preview work arrays (tens of bytes per
# payload byte) stay in memory the allocator hands back; bigger batches fault fresh pages in.
DATAGRAM_BATCH = 4096

ICMP4_UNREACHABLE = 3  # RFC 792 destination unreachable
ICMP6_UNREACHABLE = 1  # RFC 4443 destination unreachable
IPPROTO_UDP = 17

# ICMP codes whose names readers know; others print as "code N".
ICMP4_CODES = {
    0: "net unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    13: "communication administratively prohibited",
}
ICMP6_CODES = {
    0: "no route to destination",
    1: "communication administratively prohibited",
    2: "beyond scope of source address",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed ingress/egress policy",
    6: "reject route to destination",
}

# Zeek (UDP.cc): 'D' on the originator's first datagram, 'd' on the responder's; conn_state SF
# when both sent, S0 when only the originator did (the originator is our client: first sender).
ZEEK_ANSWERED = ("SF", "Dd")
ZEEK_UNANSWERED = ("S0", "D")

UDP_TABLE_COLUMNS: tuple[str, ...] = (
    "id",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "first_ts",
    "last_ts",
    "datagrams",
    "c2s_datagrams",
    "s2c_datagrams",
    "c2s_bytes",
    "s2c_bytes",
    "exchanges",
    "echo",
    "latency_min_ms",
    "latency_max_ms",
    "icmp_unreachable",
    "zeek_conn_state",
    "zeek_history",
)


@dataclass(frozen=True, eq=False)
class UdpFlows:
    """One row per conversation in ``table``; the ``udp`` entries of analyzer.report/1 in ``records``.

    ``records`` are built on first use from ``facts``; ``json_chunks`` writes the same records as
    JSON text without building them.
    """

    table: pd.DataFrame
    facts: UdpFacts | None = field(default=None, repr=False)

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        """The ``udp`` entries of analyzer.report/1, in conversation id order."""
        return [] if self.facts is None else _records(self.facts)

    def json_chunks(self, records_per_chunk: int = 1024) -> Iterator[bytes]:
        """``records`` as JSON text, records separated by ``,\\n    `` (chunks join with that too).

        Chunks stay around a megabyte: a fresh buffer of tens of megabytes costs a page fault per
        page on every call (glibc maps it anew), more than writing its text.
        """
        if self.facts is not None:
            yield from _json_chunks(self.facts, records_per_chunk)


def icmp_reason(icmp_type: int, code: int) -> str:
    """Readable name of an ICMP/ICMPv6 destination-unreachable code."""
    names = ICMP6_CODES if icmp_type == ICMP6_UNREACHABLE else ICMP4_CODES
    return names.get(code, f"code {code}")


def analyze_udp(packets: pd.DataFrame, payloads: CaptureBytes | None) -> UdpFlows:
    """Reconstruct the UDP conversations of a PACKETS frame (``payloads`` gives the bytes)."""
    # Non-first IP fragments and cut UDP headers have no ports: not datagrams we can place.
    ports = (packets["sport"].to_numpy() != 0) | (packets["dport"].to_numpy() != 0)
    udp = np.flatnonzero(_is_proto(packets, "udp") & ports)
    if len(udp) == 0:
        return UdpFlows(table=_empty_table())
    icmp = np.flatnonzero(_icmp_unreachable_mask(packets))
    addr_codes, addrs = _address_codes(
        packets, [("src", udp), ("dst", udp), ("inner_src", icmp), ("inner_dst", icmp)]
    )
    dg = _conversations(packets, udp, addr_codes[0], addr_codes[1], payloads)
    pairs = _pairs(dg)
    icmp_hits = _match_icmp(packets, icmp, addr_codes[2], addr_codes[3], dg)
    facts = UdpFacts(dg, pairs, icmp_hits, _address_names(addrs, dg))
    return UdpFlows(table=_table(facts), facts=facts)


@dataclass(frozen=True)
class _Payloads:
    """What the report says about each datagram's bytes (rows in file order)."""

    digests: bytes  # sha256 of each datagram's captured bytes, 32 bytes each
    whole: BoolArr  # the whole payload was captured: its digest is the datagram's sha256
    previews: list[bytes]  # each preview's JSON text, without the quotes (preview.json_bodies)

    def digest(self, row: int) -> bytes | None:
        """The datagram's sha256 (None when part of its payload was not captured)."""
        return self.digests[32 * row : 32 * row + 32] if self.whole[row] else None

    def sha256_hex(self) -> list[str | None]:
        """Every datagram's sha256 as the report writes it: hex, or None when cut."""
        text = self.digests.hex()
        return [text[64 * i : 64 * i + 64] if w else None for i, w in enumerate(self.whole.tolist())]


@dataclass(frozen=True)
class _Datagrams:
    """Per-datagram columns (rows in file order) and per-conversation endpoints."""

    conv: I64  # conversation id, numbered by first datagram
    c2s: BoolArr
    ts: npt.NDArray[np.float64]
    ts_ns: I64
    length: I64  # UDP payload length
    payload: _Payloads
    order: I64  # rows sorted by conversation, file order inside each
    bounds: I64  # conversation k is order[bounds[k]:bounds[k + 1]]
    lo: I64  # the conversation key: lower and higher endpoint
    hi: I64
    client_ep: I64  # per conversation
    server_ep: I64

    @property
    def n_conv(self) -> int:
        return len(self.client_ep)

    @cached_property
    def position(self) -> I64:
        """Each datagram's index in its conversation's list (what pairs and ICMP hits refer to)."""
        position = np.empty(len(self.order), dtype=np.int64)
        position[self.order] = np.arange(len(self.order)) - np.repeat(self.bounds[:-1], np.diff(self.bounds))
        return position


def _conversations(
    packets: pd.DataFrame, rows: I64, src_addr: I64, dst_addr: I64, payloads: CaptureBytes | None
) -> _Datagrams:
    def column(name: str) -> npt.NDArray[Any]:
        return packets[name].to_numpy()[rows]

    src_ep = _endpoint(src_addr, column("sport"))
    dst_ep = _endpoint(dst_addr, column("dport"))
    lo, hi = np.minimum(src_ep, dst_ep), np.maximum(src_ep, dst_ep)
    conv = _ids_by_first_appearance(lo, hi)
    n_conv = int(conv.max()) + 1
    order = np.argsort(conv, kind="stable").astype(np.int64)
    bounds = np.zeros(n_conv + 1, dtype=np.int64)
    np.cumsum(np.bincount(conv, minlength=n_conv), out=bounds[1:])
    first_row = order[bounds[:-1]]
    client_ep = src_ep[first_row]
    length = column("payload_len").astype(np.int64)
    return _Datagrams(
        conv=conv,
        c2s=np.asarray(src_ep == client_ep[conv], dtype=bool),
        ts=column("ts").astype(np.float64),
        ts_ns=column("ts_ns").astype(np.int64),
        length=length,
        payload=_hash_and_preview(
            column("payload_offset").astype(np.int64),
            column("payload_caplen").astype(np.int64),
            length,
            payloads,
        ),
        order=order,
        bounds=bounds,
        lo=lo[first_row],
        hi=hi[first_row],
        client_ep=client_ep,
        server_ep=dst_ep[first_row],
    )


# -- keys -------------------------------------------------------------------------------------


def _is_proto(packets: pd.DataFrame, name: str) -> BoolArr:
    """``packets["proto"] == name``, compared on the categorical codes (PACKETS' proto column)."""
    proto = packets["proto"]
    code = int(proto.cat.categories.get_indexer(pd.Index([name]))[0])
    if code < 0:  # -1 would match the missing values
        return np.zeros(len(proto), dtype=bool)
    return np.asarray(proto.cat.codes.to_numpy() == code, dtype=bool)


def _icmp_unreachable_mask(packets: pd.DataFrame) -> BoolArr:
    icmp_type = packets["icmp_type"].to_numpy()
    v4 = _is_proto(packets, "icmp") & (icmp_type == ICMP4_UNREACHABLE)
    v6 = _is_proto(packets, "icmpv6") & (icmp_type == ICMP6_UNREACHABLE)
    quoted_udp = packets["inner_proto"].to_numpy() == IPPROTO_UDP
    return np.asarray((v4 | v6) & quoted_udp, dtype=bool)


def _address_codes(packets: pd.DataFrame, columns: list[tuple[str, I64]]) -> tuple[list[I64], pd.Index]:
    """Codes of address columns (at the given rows) in one code space (-1 for missing), and its names."""
    cats = []
    for name, _ in columns:
        col = packets[name]
        cats.append(col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category"))
    union = cats[0].cat.categories
    for col in cats[1:]:
        if not col.cat.categories.equals(union):
            union = union.append(col.cat.categories).unique()
    codes: list[I64] = []
    for col, (_, rows) in zip(cats, columns, strict=True):
        local = col.cat.codes.to_numpy()[rows].astype(np.int64)
        if not col.cat.categories.equals(union):
            remap = np.append(union.get_indexer(col.cat.categories), -1)  # code -1 (NaN) stays -1
            local = remap[local]
        codes.append(local)
    return codes, union


def _address_names(addrs: pd.Index, dg: _Datagrams) -> OBJ:
    """The text of every address code the conversations use (the others stay None)."""
    names = np.full(len(addrs), None, dtype=object)
    used = np.unique(np.concatenate([dg.client_ep, dg.server_ep]) >> 16)
    names[used] = [str(addrs[i]) for i in used.tolist()]
    return names


def _endpoint(addr: I64, port: npt.NDArray[Any]) -> I64:
    return (addr << 16) | port.astype(np.int64)


def _ids_by_first_appearance(lo: I64, hi: I64) -> I64:
    """Ids of the (lo, hi) pairs, numbered from 0 in order of first appearance."""
    endpoints, _ = pd.factorize(np.concatenate([lo, hi]))  # codes < 2n: the pair key fits int64
    n = len(lo)
    ids, _ = pd.factorize(endpoints[:n].astype(np.int64) * (2 * n) + endpoints[n:])
    return ids.astype(np.int64)


# -- payloads ---------------------------------------------------------------------------------


def _hash_and_preview(offsets: I64, caplens: I64, lengths: I64, payloads: CaptureBytes | None) -> _Payloads:
    """sha256 and preview of every datagram, a batch of rows (in file order) at a time."""
    n = len(offsets)
    whole = caplens == lengths
    if payloads is None:
        return _Payloads(digests=bytes(32 * n), whole=np.zeros(n, dtype=bool), previews=[b""] * n)
    caplens = np.where(offsets < 0, 0, caplens)  # CaptureBytes.get: no bytes at a negative offset
    starts = np.maximum(offsets, 0)
    digests: list[bytes] = []  # one joined batch each
    previews: list[bytes] = []
    for part in range(0, n, DATAGRAM_BATCH):
        begin, cap = starts[part : part + DATAGRAM_BATCH], caplens[part : part + DATAGRAM_BATCH]
        batch_digests, heads = _digests_and_heads(payloads.data, begin, cap)
        digests.append(batch_digests)
        previews += json_bodies(heads, np.minimum(cap, PREVIEW_BYTES), cap > PREVIEW_BYTES)
        # The mapped pages are hashed: let the kernel drop them (rows are in file order).
        drop_resident_pages(payloads)
    return _Payloads(digests=b"".join(digests), whole=whole, previews=previews)


def _digests_and_heads(data: Buffer, starts: I64, lengths: I64) -> tuple[bytes, list[bytes]]:
    """sha256 (32 bytes each, joined) and first PREVIEW_BYTES bytes of every payload
    ``data[starts[i] : starts[i] + lengths[i]]``."""
    if _digest is not None and os.environ.get("ANALYZER_PURE_PYTHON") != "1":
        runs = np.arange(len(starts) + 1, dtype=np.int64)  # every payload is a run of one piece
        pieces = (data, starts, lengths, runs[:-1], runs[1:])
        return _digest.sha256_runs(*pieces), _digest.heads(*pieces, PREVIEW_BYTES)
    datagrams = list(map(data.__getitem__, map(slice, starts.tolist(), (starts + lengths).tolist())))
    sha = hashlib.sha256
    digests = b"".join([sha(d).digest() for d in datagrams])
    for i in np.flatnonzero(lengths > PREVIEW_BYTES).tolist():
        datagrams[i] = datagrams[i][:PREVIEW_BYTES]
    return digests, datagrams


# -- pairing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pairs:
    request: I64  # rows, sorted by reply row
    reply: I64
    latency_ms: npt.NDArray[np.float64]
    exchanges: I64  # per conversation
    echo: BoolArr  # per conversation
    c2s_count: I64
    s2c_count: I64


def _pairs(dg: _Datagrams) -> _Pairs:
    """Every exchange (request row, reply row), its latency, and the per-conversation verdicts."""
    n_conv, conv, c2s = dg.n_conv, dg.conv, dg.c2s
    conv_sorted = conv[dg.order]
    dir_sorted = c2s[dg.order]
    # A conversation that strictly alternates client, server, client, ... pairs each reply
    # with the datagram just before it under the rule in the module docstring: at every reply
    # the only unanswered request is the previous datagram. That is the bulk (DNS-like
    # traffic); only the rest goes through the sequential matcher.
    repeat = np.zeros(len(dg.order), dtype=bool)
    repeat[1:] = (conv_sorted[1:] == conv_sorted[:-1]) & (dir_sorted[1:] == dir_sorted[:-1])
    irregular = np.bincount(conv_sorted[repeat], minlength=n_conv) > 0
    reply_pos = np.flatnonzero(~irregular[conv_sorted] & ~dir_sorted)
    req_rows = [dg.order[reply_pos - 1]]
    rep_rows = [dg.order[reply_pos]]
    for cid in np.flatnonzero(irregular).tolist():
        rows = dg.order[dg.bounds[cid] : dg.bounds[cid + 1]]
        keys = [dg.payload.digest(r) for r in rows.tolist()]
        r, p = _pair_sequential(list(range(len(rows))), c2s[rows].tolist(), keys, dg.length[rows])
        req_rows.append(rows[r])
        rep_rows.append(rows[p])
    req = np.concatenate(req_rows).astype(np.int64)
    rep = np.concatenate(rep_rows).astype(np.int64)
    by_reply = np.argsort(rep, kind="stable")
    req, rep = req[by_reply], rep[by_reply]

    pair_conv = conv[req]
    exchanges = np.bincount(pair_conv, minlength=n_conv).astype(np.int64)
    c2s_count = np.bincount(conv, weights=c2s, minlength=n_conv).astype(np.int64)
    s2c_count = np.bincount(conv, minlength=n_conv).astype(np.int64) - c2s_count
    unequal = np.bincount(pair_conv, weights=~_same_payload(dg, req, rep), minlength=n_conv)
    echo = (c2s_count > 0) & (exchanges == c2s_count) & (exchanges == s2c_count) & (unequal == 0)
    return _Pairs(
        request=req,
        reply=rep,
        latency_ms=(dg.ts_ns[rep] - dg.ts_ns[req]) / 1e6,  # exact ns: no float epoch noise
        exchanges=exchanges,
        echo=np.asarray(echo, dtype=bool),
        c2s_count=c2s_count,
        s2c_count=s2c_count,
    )


def _same_payload(dg: _Datagrams, a: I64, b: I64) -> BoolArr:
    """Whether datagrams ``a`` and ``b`` carry the same bytes (unknown unless both are whole)."""
    payload = dg.payload
    digests = np.frombuffer(payload.digests, dtype=np.uint64).reshape(-1, 4)
    same = (digests[a] == digests[b]).all(axis=1) & payload.whole[a] & payload.whole[b]
    return np.asarray(same & (dg.length[a] == dg.length[b]), dtype=bool)


def _pair_sequential(
    rows: list[int], dirs: list[bool], digests: Sequence[bytes | str | None], length: I64
) -> tuple[list[int], list[int]]:
    pending: list[int] = []  # unanswered requests, newest last (answered ones removed lazily)
    by_content: dict[tuple[bytes | str, int], list[int]] = {}
    answered: set[int] = set()
    reqs: list[int] = []
    reps: list[int] = []
    for row, is_request in zip(rows, dirs, strict=True):
        digest = digests[row]
        key = (digest, int(length[row])) if digest is not None else None
        if is_request:
            pending.append(row)
            if key is not None:
                by_content.setdefault(key, []).append(row)
            continue
        match = _pop_unanswered(by_content.get(key, []) if key is not None else [], answered)
        if match is None:
            match = _pop_unanswered(pending, answered)
        if match is not None:
            answered.add(match)
            reqs.append(match)
            reps.append(row)
    return reqs, reps


def _pop_unanswered(stack: list[int], answered: set[int]) -> int | None:
    while stack and stack[-1] in answered:
        stack.pop()
    return stack.pop() if stack else None


# -- ICMP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IcmpHits:
    conv: I64  # sorted
    datagram_row: I64  # row into the UDP datagrams, -1 when none of that direction was seen
    ts: npt.NDArray[np.float64]
    frame: I64
    icmp_type: I64
    code: I64
    sender: list[str]


def _no_icmp_hits() -> _IcmpHits:
    none = np.zeros(0, dtype=np.int64)
    return _IcmpHits(none, none, np.zeros(0), none, none, none, [])


def _match_icmp(
    packets: pd.DataFrame, rows: I64, inner_src: I64, inner_dst: I64, dg: _Datagrams
) -> _IcmpHits:
    if len(rows) == 0:
        return _no_icmp_hits()

    def column(name: str) -> npt.NDArray[Any]:
        return packets[name].to_numpy()[rows]

    q_src = _endpoint(inner_src, column("inner_sport"))
    q_dst = _endpoint(inner_dst, column("inner_dport"))
    errors = pd.DataFrame(
        {
            "lo": np.minimum(q_src, q_dst),
            "hi": np.maximum(q_src, q_dst),
            "quoted_src": q_src,
            "ts": column("ts").astype(np.float64),
            "frame": column("frame").astype(np.int64),
            "type": column("icmp_type").astype(np.int64),
            "code": column("icmp_code").astype(np.int64),
            "sender": packets["src"].iloc[rows].astype(object).to_numpy(),
        }
    )
    keys = pd.DataFrame({"lo": dg.lo, "hi": dg.hi, "conv": np.arange(dg.n_conv, dtype=np.int64)})
    errors = errors.merge(keys, on=["lo", "hi"], how="inner")
    if len(errors) == 0:
        return _no_icmp_hits()
    conv_ids = errors["conv"].to_numpy().astype(np.int64)
    errors = errors.assign(c2s=errors["quoted_src"].to_numpy() == dg.client_ep[conv_ids])
    datagram_rows = np.arange(len(dg.conv), dtype=np.int64)
    sent = pd.DataFrame({"conv": dg.conv, "c2s": dg.c2s, "ts": dg.ts, "row": datagram_rows})
    sent = sent.sort_values("ts", kind="stable")
    errors = errors.sort_values(["ts", "frame"], kind="stable")
    matched = pd.merge_asof(errors, sent, on="ts", by=["conv", "c2s"], direction="backward")
    # An error stamped before its datagram (clocks of two capture interfaces) still answers it.
    late = matched["row"].isna().to_numpy()
    if late.any():
        ahead = pd.merge_asof(errors.loc[late], sent, on="ts", by=["conv", "c2s"], direction="forward")
        matched.loc[late, "row"] = ahead["row"].to_numpy()
    matched = matched.sort_values(["conv", "ts", "frame"], kind="stable")
    return _IcmpHits(
        conv=matched["conv"].to_numpy().astype(np.int64),
        datagram_row=matched["row"].fillna(-1).to_numpy().astype(np.int64),
        ts=matched["ts"].to_numpy(dtype=np.float64),
        frame=matched["frame"].to_numpy().astype(np.int64),
        icmp_type=matched["type"].to_numpy().astype(np.int64),
        code=matched["code"].to_numpy().astype(np.int64),
        sender=[str(s) for s in matched["sender"].tolist()],
    )


# -- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UdpFacts:
    """What the table and the records are made of."""

    dg: _Datagrams
    pairs: _Pairs
    icmp: _IcmpHits
    addrs: OBJ  # address text by address code

    @cached_property
    def pairs_by_conv(self) -> I64:
        """Pair indices in conversation order (reply order inside each conversation)."""
        return np.argsort(self.dg.conv[self.pairs.request], kind="stable").astype(np.int64)

    def endpoint_ip(self, ep: I64) -> OBJ:
        ips: OBJ = self.addrs[ep >> 16]
        return ips


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=_TABLE_DTYPES[name]) for name in UDP_TABLE_COLUMNS})


_TABLE_DTYPES: dict[str, str] = {
    "id": "int64",
    "client_ip": "str",
    "client_port": "uint16",
    "server_ip": "str",
    "server_port": "uint16",
    "first_ts": "float64",
    "last_ts": "float64",
    "datagrams": "int64",
    "c2s_datagrams": "int64",
    "s2c_datagrams": "int64",
    "c2s_bytes": "int64",
    "s2c_bytes": "int64",
    "exchanges": "int64",
    "echo": "bool",
    "latency_min_ms": "float64",
    "latency_max_ms": "float64",
    "icmp_unreachable": "int64",
    "zeek_conn_state": "str",
    "zeek_history": "str",
}


def _table(f: UdpFacts) -> pd.DataFrame:
    dg, pairs = f.dg, f.pairs
    n_conv, conv, c2s, length = dg.n_conv, dg.conv, dg.c2s, dg.length
    ts_by_conv = dg.ts[dg.order]
    starts = dg.bounds[:-1]
    answered = pairs.s2c_count > 0
    zeek = np.where(answered, ZEEK_ANSWERED[0], ZEEK_UNANSWERED[0])
    history = np.where(answered, ZEEK_ANSWERED[1], ZEEK_UNANSWERED[1])
    lat_min, lat_max = _latency_range(f)
    return pd.DataFrame(
        {
            "id": np.arange(n_conv, dtype=np.int64),
            "client_ip": pd.Series(f.endpoint_ip(dg.client_ep), dtype="str"),
            "client_port": (dg.client_ep & 0xFFFF).astype(np.uint16),
            "server_ip": pd.Series(f.endpoint_ip(dg.server_ep), dtype="str"),
            "server_port": (dg.server_ep & 0xFFFF).astype(np.uint16),
            "first_ts": np.minimum.reduceat(ts_by_conv, starts),
            "last_ts": np.maximum.reduceat(ts_by_conv, starts),
            "datagrams": pairs.c2s_count + pairs.s2c_count,
            "c2s_datagrams": pairs.c2s_count,
            "s2c_datagrams": pairs.s2c_count,
            "c2s_bytes": np.bincount(conv, weights=length * c2s, minlength=n_conv).astype(np.int64),
            "s2c_bytes": np.bincount(conv, weights=length * ~c2s, minlength=n_conv).astype(np.int64),
            "exchanges": pairs.exchanges,
            "echo": pairs.echo,
            "latency_min_ms": lat_min,
            "latency_max_ms": lat_max,
            "icmp_unreachable": np.bincount(f.icmp.conv, minlength=n_conv).astype(np.int64),
            "zeek_conn_state": pd.Series(zeek, dtype="str"),
            "zeek_history": pd.Series(history, dtype="str"),
        }
    )


def _latency_range(f: UdpFacts) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Smallest and largest latency of every conversation (NaN without an exchange)."""
    lat_min = np.full(f.dg.n_conv, np.nan)
    lat_max = np.full(f.dg.n_conv, np.nan)
    has = np.flatnonzero(f.pairs.exchanges > 0)
    if len(has):
        lat = f.pairs.latency_ms[f.pairs_by_conv]
        starts = np.cumsum(f.pairs.exchanges) - f.pairs.exchanges
        lat_min[has] = np.minimum.reduceat(lat, starts[has])
        lat_max[has] = np.maximum.reduceat(lat, starts[has])
    return lat_min, lat_max


def _records(f: UdpFacts) -> list[dict[str, Any]]:
    dg, pairs, icmp = f.dg, f.pairs, f.icmp
    order, n_conv = dg.order, dg.n_conv
    pos = dg.position.tolist()
    payload = dg.payload
    digests = payload.sha256_hex()
    previews = texts(payload.previews)
    # Datagram dicts in conversation order, so each conversation's list is one slice.
    in_order = [
        {"dir": d, "ts": t, "bytes": b, "sha256": digests[r], "preview": previews[r]}
        for d, t, b, r in zip(
            np.where(dg.c2s[order], "c2s", "s2c").tolist(),
            dg.ts[order].tolist(),
            dg.length[order].tolist(),
            order.tolist(),
            strict=True,
        )
    ]

    pair_lists: list[list[dict[str, Any]]] = [[] for _ in range(n_conv)]
    by_conv = f.pairs_by_conv
    req, rep = pairs.request[by_conv], pairs.reply[by_conv]
    for c, a, b, ms in zip(
        dg.conv[req].tolist(), req.tolist(), rep.tolist(), pairs.latency_ms[by_conv].tolist(), strict=True
    ):
        pair_lists[c].append({"request": pos[a], "reply": pos[b], "latency_ms": ms})

    icmp_lists: list[list[dict[str, Any]]] = [[] for _ in range(n_conv)]
    for c, hit in zip(icmp.conv.tolist(), _icmp_dicts(f), strict=True):
        icmp_lists[c].append(hit)

    client_ip = f.endpoint_ip(dg.client_ep).tolist()
    server_ip = f.endpoint_ip(dg.server_ep).tolist()
    client_port = (dg.client_ep & 0xFFFF).tolist()
    server_port = (dg.server_ep & 0xFFFF).tolist()
    cuts = dg.bounds.tolist()
    exchanges = pairs.exchanges.tolist()
    echo = pairs.echo.tolist()
    return [
        {
            "id": cid,
            "client": {"ip": client_ip[cid], "port": client_port[cid]},
            "server": {"ip": server_ip[cid], "port": server_port[cid]},
            "datagrams": in_order[cuts[cid] : cuts[cid + 1]],
            "pairs": pair_lists[cid],
            "exchanges": exchanges[cid],
            "echo": echo[cid],
            "icmp_unreachable": icmp_lists[cid],
        }
        for cid in range(n_conv)
    ]


def _icmp_dicts(f: UdpFacts) -> list[dict[str, Any]]:
    """The ``icmp_unreachable`` entries, in conversation order."""
    icmp, pos = f.icmp, f.dg.position.tolist()
    return [
        {
            "ts": t,
            "frame": frame,
            "type": typ,
            "code": code,
            "from": sender,
            "datagram": pos[row] if row >= 0 else None,
        }
        for row, t, frame, typ, code, sender in zip(
            icmp.datagram_row.tolist(),
            icmp.ts.tolist(),
            icmp.frame.tolist(),
            icmp.icmp_type.tolist(),
            icmp.code.tolist(),
            icmp.sender,
            strict=True,
        )
    ]


# -- JSON -------------------------------------------------------------------------------------
#
# The records' JSON text from the columns: every record is a run of items (byte strings) joined
# in C, each item either a serialized value (orjson serializes a whole column of numbers at once)
# or JSON syntax merged with a value of few distinct values (an address, a length, a position:
# serialized once per distinct value). The text is exactly orjson's of ``_records`` (tests
# compare the two).

RECORD_SEPARATOR = b",\n    "
_HEAD_ITEMS = 6  # {"id":, id, client ip, client port, server ip, server port
_DATAGRAM_ITEMS = 5  # {"dir":..,"ts":, ts, bytes, sha256, preview
_PAIR_ITEMS = 4  # {"request":, request, reply, latency_ms


def _json_chunks(f: UdpFacts, records_per_chunk: int) -> Iterator[bytes]:
    items, starts = _json_items(f)
    for c0 in range(0, f.dg.n_conv, records_per_chunk):
        part = items[starts[c0] : starts[min(c0 + records_per_chunk, f.dg.n_conv)]].tolist()
        part[0] = b'{"id":'  # no separator before a chunk's first record: the caller writes it
        yield b"".join(part)


def _json_items(f: UdpFacts) -> tuple[OBJ, I64]:
    """Every item of every record, in text order, and where each record's items start."""
    dg, pairs = f.dg, f.pairs
    n_dg = np.diff(dg.bounds)
    hits_per_conv = np.bincount(f.icmp.conv, minlength=dg.n_conv)
    after = _HEAD_ITEMS + _DATAGRAM_ITEMS * n_dg + _PAIR_ITEMS * pairs.exchanges
    count = after + 1 + np.where(hits_per_conv > 0, hits_per_conv + 1, 0)
    starts = np.concatenate([[0], np.cumsum(count)])
    start = starts[:-1]
    items = np.empty(int(starts[-1]), dtype=object)
    items[start] = RECORD_SEPARATOR + b'{"id":'
    for k, column in enumerate(_head_items(f)):
        items[start + 1 + k] = column
    _place(items, start + _HEAD_ITEMS, n_dg, _datagram_items(f))
    _place(items, start + after - _PAIR_ITEMS * pairs.exchanges, pairs.exchanges, _pair_items(f))
    items[start + after] = _after_pairs(pairs.exchanges, pairs.echo, hits_per_conv > 0)
    with_hits = np.flatnonzero(hits_per_conv)
    _place(items, start[with_hits] + after[with_hits] + 1, hits_per_conv[with_hits], (_hit_items(f),))
    items[start[with_hits] + count[with_hits] - 1] = b"]}"
    return items, starts


def _place(items: OBJ, first: I64, counts: I64, columns: tuple[OBJ, ...]) -> None:
    """Put the rows of ``columns``, ``counts[r]`` rows of ``len(columns)`` items from ``first[r]``."""
    width = len(columns)
    row_start = np.cumsum(counts) - counts
    at = np.repeat(first - width * row_start, counts) + width * np.arange(int(counts.sum()))
    for k, column in enumerate(columns):
        items[at + k] = column


def _numbers(values: npt.NDArray[np.int64] | npt.NDArray[np.float64]) -> OBJ:
    """JSON of a column of numbers, one orjson call (its text for numpy numbers is the text for
    the Python numbers the records hold; no comma inside a number, so the list splits)."""
    out = np.empty(len(values), dtype=object)
    if len(values):
        text = orjson.dumps(np.ascontiguousarray(values), option=orjson.OPT_SERIALIZE_NUMPY)
        out[:] = text[1:-1].split(b",")
    return out


def _objects(values: Sequence[bytes]) -> OBJ:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _by_value(values: I64, text: Any) -> OBJ:
    """``text(v)`` for every value, computed once per distinct value."""
    distinct, which = np.unique(values, return_inverse=True)
    frags: OBJ = _objects([text(v) for v in distinct.tolist()])[which.ravel()]
    return frags


def _head_items(f: UdpFacts) -> tuple[OBJ, ...]:
    """Id, client and server of every conversation."""
    dg = f.dg

    def address(key: bytes) -> Any:
        return lambda a: key + orjson.dumps(f.addrs[a]) + b',"port":'

    return (
        _numbers(np.arange(dg.n_conv, dtype=np.int64)),
        _by_value(dg.client_ep >> 16, address(b',"client":{"ip":')),
        _numbers(dg.client_ep & 0xFFFF),
        _by_value(dg.server_ep >> 16, address(b'},"server":{"ip":')),
        _numbers(dg.server_ep & 0xFFFF),
    )


_DATAGRAM_LEADS = (
    b'"},{"dir":"c2s","ts":',
    b'"},{"dir":"s2c","ts":',
    b'},"datagrams":[{"dir":"c2s","ts":',  # a conversation's first datagram opens the list
    b'},"datagrams":[{"dir":"s2c","ts":',
)


def _datagram_items(f: UdpFacts) -> tuple[OBJ, ...]:
    """The datagrams in conversation order; each but the first closes the one before it."""
    dg = f.dg
    order = dg.order
    first = np.zeros(len(order), dtype=np.int64)
    first[dg.bounds[:-1]] = 2
    return (
        _objects(_DATAGRAM_LEADS)[first + ~dg.c2s[order]],
        _numbers(dg.ts[order]),
        _by_value(dg.length[order], lambda n: b',"bytes":%d' % n),
        _sha256_items(dg.payload, order),
        _objects(dg.payload.previews)[order],
    )


def _pair_items(f: UdpFacts) -> tuple[OBJ, ...]:
    """The pairs in conversation order; the first of a conversation closes its datagrams."""
    dg, pairs = f.dg, f.pairs
    by_conv = f.pairs_by_conv
    req, rep = pairs.request[by_conv], pairs.reply[by_conv]
    pair_conv = dg.conv[req]
    first = np.ones(len(req), dtype=np.int64)
    first[1:] = pair_conv[1:] != pair_conv[:-1]
    return (
        _objects([b'},{"request":', b'"}],"pairs":[{"request":'])[first],
        _by_value(dg.position[req], lambda p: b'%d,"reply":' % p),
        _by_value(dg.position[rep], lambda p: b'%d,"latency_ms":' % p),
        _numbers(pairs.latency_ms[by_conv]),
    )


def _hit_items(f: UdpFacts) -> OBJ:
    """The ICMP errors in conversation order, each but a conversation's first after a comma."""
    conv = f.icmp.conv
    first = np.ones(len(conv), dtype=bool)
    first[1:] = conv[1:] != conv[:-1]
    texts = [orjson.dumps(hit) for hit in _icmp_dicts(f)]
    return _objects([t if is_first else b"," + t for t, is_first in zip(texts, first.tolist(), strict=True)])


def _sha256_items(payload: _Payloads, rows: I64) -> OBJ:
    """``,"sha256":"<hex>","preview":"`` of the datagrams ``rows`` (null when the payload was cut)."""
    head, tail = b',"sha256":"', b'","preview":"'
    digests = np.frombuffer(payload.digests, dtype=np.uint8).reshape(-1, 32)[rows]
    hexes = np.frombuffer(digests.tobytes().hex().encode(), dtype=np.uint8).reshape(-1, 64)
    text = np.empty((len(hexes), len(head) + 64 + len(tail)), dtype=np.uint8)
    text[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    text[:, len(head) : len(head) + 64] = hexes
    text[:, len(head) + 64 :] = np.frombuffer(tail, dtype=np.uint8)
    items = _objects(text.view(f"S{text.shape[1]}").ravel().tolist())
    items[~payload.whole[rows]] = b',"sha256":null,"preview":"'
    return items


def _after_pairs(exchanges: I64, echo: BoolArr, has_hits: BoolArr) -> OBJ:
    """What closes the pairs: exchanges, echo and the ICMP list (closed too when empty)."""

    def text(code: int) -> bytes:
        n, is_echo, hits = code >> 2, code >> 1 & 1, code & 1
        close = b"}]" if n else b'"}],"pairs":[]'
        tail = b"" if hits else b"]}"
        return (
            close
            + b',"exchanges":%d,"echo":%s,"icmp_unreachable":[' % (n, orjson.dumps(bool(is_echo)))
            + tail
        )

    return _by_value(exchanges * 4 + echo * 2 + has_hits, text)
