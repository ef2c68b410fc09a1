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

Everything per packet is done with numpy/pandas; the only per-datagram Python work is hashing
and previewing payloads, building the report records, and pairing in conversations whose
datagrams do not simply alternate request, reply (the common case is paired vectorized).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.decode.source import CaptureBytes
from analyzer.flows.preview import preview
from analyzer.flows.tcp_data import HASH_BATCH, drop_resident_pages

I64 = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]

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
    """One row per conversation in ``table``; the ``udp`` entries of analyzer.report/1 in ``records``."""

    table: pd.DataFrame
    records: list[dict[str, Any]]


def icmp_reason(icmp_type: int, code: int) -> str:
    """Readable name of an ICMP/ICMPv6 destination-unreachable code."""
    names = ICMP6_CODES if icmp_type == ICMP6_UNREACHABLE else ICMP4_CODES
    return names.get(code, f"code {code}")


def analyze_udp(packets: pd.DataFrame, payloads: CaptureBytes | None) -> UdpFlows:
    """Reconstruct the UDP conversations of a PACKETS frame (``payloads`` gives the bytes)."""
    # Non-first IP fragments and cut UDP headers have no ports: not datagrams we can place.
    ports = (packets["sport"].to_numpy() != 0) | (packets["dport"].to_numpy() != 0)
    udp = packets.loc[(packets["proto"] == "udp").to_numpy() & ports]
    icmp = packets.loc[_icmp_unreachable_mask(packets)]
    if len(udp) == 0:
        return UdpFlows(table=_empty_table(), records=[])
    addr_codes, addrs = _address_codes([udp["src"], udp["dst"], icmp["inner_src"], icmp["inner_dst"]])
    dg = _conversations(udp, addr_codes[0], addr_codes[1], payloads)
    pairs = _pairs(dg)
    icmp_hits = _match_icmp(icmp, addr_codes[2], addr_codes[3], dg)
    return UdpFlows(table=_table(dg, pairs, icmp_hits, addrs), records=_records(dg, pairs, icmp_hits, addrs))


@dataclass(frozen=True)
class _Datagrams:
    """Per-datagram columns (rows in file order) and per-conversation endpoints."""

    conv: I64  # conversation id, numbered by first datagram
    c2s: BoolArr
    ts: npt.NDArray[np.float64]
    ts_ns: I64
    length: I64  # UDP payload length
    digests: list[str | None]
    previews: list[str]
    order: I64  # rows sorted by conversation, file order inside each
    bounds: I64  # conversation k is order[bounds[k]:bounds[k + 1]]
    lo: I64  # the conversation key: lower and higher endpoint
    hi: I64
    client_ep: I64  # per conversation
    server_ep: I64

    @property
    def n_conv(self) -> int:
        return len(self.client_ep)


@dataclass(frozen=True)
class _Pairs:
    request: I64  # rows, sorted by reply row
    reply: I64
    latency_ms: npt.NDArray[np.float64]
    exchanges: I64  # per conversation
    echo: BoolArr  # per conversation
    c2s_count: I64
    s2c_count: I64


def _conversations(
    udp: pd.DataFrame, src_addr: I64, dst_addr: I64, payloads: CaptureBytes | None
) -> _Datagrams:
    src_ep = _endpoint(src_addr, udp["sport"].to_numpy())
    dst_ep = _endpoint(dst_addr, udp["dport"].to_numpy())
    lo, hi = np.minimum(src_ep, dst_ep), np.maximum(src_ep, dst_ep)
    # groupby(sort=False) numbers groups in order of first appearance: ids follow the file.
    groups = pd.DataFrame({"lo": lo, "hi": hi}).groupby(["lo", "hi"], sort=False).ngroup()
    conv: I64 = groups.to_numpy().astype(np.int64)
    n_conv = int(conv.max()) + 1
    _, first_row = np.unique(conv, return_index=True)
    client_ep = src_ep[first_row]
    order = np.argsort(conv, kind="stable").astype(np.int64)
    digests, previews = _hash_and_preview(udp, payloads)
    return _Datagrams(
        conv=conv,
        c2s=np.asarray(src_ep == client_ep[conv], dtype=bool),
        ts=udp["ts"].to_numpy(dtype=np.float64),
        ts_ns=udp["ts_ns"].to_numpy().astype(np.int64),
        length=udp["payload_len"].to_numpy().astype(np.int64),
        digests=digests,
        previews=previews,
        order=order,
        bounds=np.searchsorted(conv[order], np.arange(n_conv + 1)).astype(np.int64),
        lo=lo[first_row],
        hi=hi[first_row],
        client_ep=client_ep,
        server_ep=dst_ep[first_row],
    )


# -- keys -------------------------------------------------------------------------------------


def _icmp_unreachable_mask(packets: pd.DataFrame) -> BoolArr:
    proto = packets["proto"]
    icmp_type = packets["icmp_type"].to_numpy()
    v4 = (proto == "icmp").to_numpy() & (icmp_type == ICMP4_UNREACHABLE)
    v6 = (proto == "icmpv6").to_numpy() & (icmp_type == ICMP6_UNREACHABLE)
    quoted_udp = packets["inner_proto"].to_numpy() == IPPROTO_UDP
    return np.asarray((v4 | v6) & quoted_udp, dtype=bool)


def _address_codes(columns: list[pd.Series]) -> tuple[list[I64], list[str]]:
    """Map several categorical address columns onto one code space (-1 for missing)."""
    cats: list[str] = []
    seen: dict[str, int] = {}
    codes_out: list[I64] = []
    for col in columns:
        values = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
        local = [str(c) for c in values.cat.categories]
        remap = np.empty(len(local) + 1, dtype=np.int64)
        remap[-1] = -1  # code -1 (NaN) indexes the last slot
        for i, name in enumerate(local):
            if name not in seen:
                seen[name] = len(cats)
                cats.append(name)
            remap[i] = seen[name]
        codes_out.append(remap[values.cat.codes.to_numpy()])
    return codes_out, cats


def _endpoint(addr: I64, port: npt.NDArray[Any]) -> I64:
    return (addr << 16) | port.astype(np.int64)


# -- payloads ---------------------------------------------------------------------------------


def _hash_and_preview(udp: pd.DataFrame, payloads: CaptureBytes | None) -> tuple[list[str | None], list[str]]:
    """sha256 (None unless the whole payload was captured) and preview of every datagram."""
    n = len(udp)
    if payloads is None:
        return [None] * n, [""] * n
    offsets = udp["payload_offset"].to_numpy().tolist()
    caplens = udp["payload_caplen"].to_numpy().tolist()
    complete = (udp["payload_caplen"].to_numpy() == udp["payload_len"].to_numpy()).tolist()
    get = payloads.get
    sha = hashlib.sha256
    digests: list[str | None] = []
    previews: list[str] = []
    # A batch at a time, dropping the mapped pages after each (rows are in file order).
    for part in range(0, n, HASH_BATCH):
        end = part + HASH_BATCH
        data = [get(off, cap) for off, cap in zip(offsets[part:end], caplens[part:end], strict=True)]
        digests += [
            sha(d).hexdigest() if full else None for d, full in zip(data, complete[part:end], strict=True)
        ]
        previews += [preview(d) for d in data]
        drop_resident_pages(payloads)
    return digests, previews


# -- pairing ----------------------------------------------------------------------------------


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
        r, p = _pair_sequential(rows.tolist(), c2s[rows].tolist(), dg.digests, dg.length)
        req_rows.append(np.asarray(r, dtype=np.int64))
        rep_rows.append(np.asarray(p, dtype=np.int64))
    req = np.concatenate(req_rows).astype(np.int64)
    rep = np.concatenate(rep_rows).astype(np.int64)
    by_reply = np.argsort(rep, kind="stable")
    req, rep = req[by_reply], rep[by_reply]

    pair_conv = conv[req]
    exchanges = np.bincount(pair_conv, minlength=n_conv).astype(np.int64)
    c2s_count = np.bincount(conv, weights=c2s, minlength=n_conv).astype(np.int64)
    s2c_count = np.bincount(conv, minlength=n_conv).astype(np.int64) - c2s_count
    digests = dg.digests
    same = np.array(
        [digests[a] is not None and digests[a] == digests[b] for a, b in zip(req, rep, strict=True)],
        dtype=bool,
    )
    same &= dg.length[req] == dg.length[rep]
    unequal = np.bincount(pair_conv, weights=~same, minlength=n_conv)
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


def _pair_sequential(
    rows: list[int], dirs: list[bool], digests: list[str | None], length: I64
) -> tuple[list[int], list[int]]:
    pending: list[int] = []  # unanswered requests, newest last (answered ones removed lazily)
    by_content: dict[tuple[str, int], list[int]] = {}
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
    conv: I64
    datagram_row: I64  # row into the UDP datagrams, -1 when none of that direction was seen
    ts: npt.NDArray[np.float64]
    frame: I64
    icmp_type: I64
    code: I64
    sender: list[str]


def _match_icmp(icmp: pd.DataFrame, inner_src: I64, inner_dst: I64, dg: _Datagrams) -> _IcmpHits:
    q_src = _endpoint(inner_src, icmp["inner_sport"].to_numpy())
    q_dst = _endpoint(inner_dst, icmp["inner_dport"].to_numpy())
    errors = pd.DataFrame(
        {
            "lo": np.minimum(q_src, q_dst),
            "hi": np.maximum(q_src, q_dst),
            "quoted_src": q_src,
            "ts": icmp["ts"].to_numpy(dtype=np.float64),
            "frame": icmp["frame"].to_numpy().astype(np.int64),
            "type": icmp["icmp_type"].to_numpy().astype(np.int64),
            "code": icmp["icmp_code"].to_numpy().astype(np.int64),
            "sender": icmp["src"].astype(object).to_numpy(),
        }
    )
    keys = pd.DataFrame({"lo": dg.lo, "hi": dg.hi, "conv": np.arange(dg.n_conv, dtype=np.int64)})
    errors = errors.merge(keys, on=["lo", "hi"], how="inner")
    if len(errors) == 0:
        none = np.zeros(0, dtype=np.int64)
        return _IcmpHits(none, none, np.zeros(0), none, none, none, [])
    conv_ids = errors["conv"].to_numpy().astype(np.int64)
    errors = errors.assign(c2s=errors["quoted_src"].to_numpy() == dg.client_ep[conv_ids])
    rows = np.arange(len(dg.conv), dtype=np.int64)
    sent = pd.DataFrame({"conv": dg.conv, "c2s": dg.c2s, "ts": dg.ts, "row": rows})
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


def _table(dg: _Datagrams, pairs: _Pairs, icmp: _IcmpHits, addrs: list[str]) -> pd.DataFrame:
    n_conv, conv, c2s, length = dg.n_conv, dg.conv, dg.c2s, dg.length
    addr_arr = np.asarray(addrs, dtype=object)
    ids = np.arange(n_conv, dtype=np.int64)
    by_conv = pd.DataFrame({"conv": conv, "ts": dg.ts}).groupby("conv", sort=True)["ts"]
    lat = pd.DataFrame({"conv": conv[pairs.request], "ms": pairs.latency_ms}).groupby("conv")["ms"]
    answered = pairs.s2c_count > 0
    zeek = np.where(answered, ZEEK_ANSWERED[0], ZEEK_UNANSWERED[0])
    history = np.where(answered, ZEEK_ANSWERED[1], ZEEK_UNANSWERED[1])
    return pd.DataFrame(
        {
            "id": ids,
            "client_ip": pd.Series(addr_arr[dg.client_ep >> 16], dtype="str"),
            "client_port": (dg.client_ep & 0xFFFF).astype(np.uint16),
            "server_ip": pd.Series(addr_arr[dg.server_ep >> 16], dtype="str"),
            "server_port": (dg.server_ep & 0xFFFF).astype(np.uint16),
            "first_ts": by_conv.min().to_numpy(dtype=np.float64),
            "last_ts": by_conv.max().to_numpy(dtype=np.float64),
            "datagrams": pairs.c2s_count + pairs.s2c_count,
            "c2s_datagrams": pairs.c2s_count,
            "s2c_datagrams": pairs.s2c_count,
            "c2s_bytes": np.bincount(conv, weights=length * c2s, minlength=n_conv).astype(np.int64),
            "s2c_bytes": np.bincount(conv, weights=length * ~c2s, minlength=n_conv).astype(np.int64),
            "exchanges": pairs.exchanges,
            "echo": pairs.echo,
            "latency_min_ms": lat.min().reindex(ids).to_numpy(dtype=np.float64),
            "latency_max_ms": lat.max().reindex(ids).to_numpy(dtype=np.float64),
            "icmp_unreachable": np.bincount(icmp.conv, minlength=n_conv).astype(np.int64),
            "zeek_conn_state": pd.Series(zeek, dtype="str"),
            "zeek_history": pd.Series(history, dtype="str"),
        }
    )


def _records(dg: _Datagrams, pairs: _Pairs, icmp: _IcmpHits, addrs: list[str]) -> list[dict[str, Any]]:
    order, bounds, n_conv = dg.order, dg.bounds, dg.n_conv
    # Position of every datagram inside its conversation's list, for pair/ICMP references.
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - np.repeat(bounds[:-1], np.diff(bounds))
    pos = position.tolist()
    digests, previews = dg.digests, dg.previews
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
    by_conv = np.argsort(dg.conv[pairs.request], kind="stable")
    req, rep = pairs.request[by_conv], pairs.reply[by_conv]
    for c, a, b, ms in zip(
        dg.conv[req].tolist(), req.tolist(), rep.tolist(), pairs.latency_ms[by_conv].tolist(), strict=True
    ):
        pair_lists[c].append({"request": pos[a], "reply": pos[b], "latency_ms": ms})

    icmp_lists: list[list[dict[str, Any]]] = [[] for _ in range(n_conv)]
    for c, row, t, frame, typ, code, sender in zip(
        icmp.conv.tolist(),
        icmp.datagram_row.tolist(),
        icmp.ts.tolist(),
        icmp.frame.tolist(),
        icmp.icmp_type.tolist(),
        icmp.code.tolist(),
        icmp.sender,
        strict=True,
    ):
        icmp_lists[c].append(
            {
                "ts": t,
                "frame": frame,
                "type": typ,
                "code": code,
                "from": sender,
                "datagram": pos[row] if row >= 0 else None,
            }
        )

    addr_arr = np.asarray(addrs, dtype=object)
    client_ip = addr_arr[dg.client_ep >> 16].tolist()
    server_ip = addr_arr[dg.server_ep >> 16].tolist()
    client_port = (dg.client_ep & 0xFFFF).tolist()
    server_port = (dg.server_ep & 0xFFFF).tolist()
    cuts = bounds.tolist()
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
