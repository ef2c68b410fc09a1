"""Deterministic generator of large, realistic loopback captures for the benchmark.

Owns the synthetic traffic model and the three capture writers used by ``bench/run.py``:

* classic pcap, Ethernet with zero MACs, microsecond timestamps (what ``tcpdump -i lo -w`` writes);
* pcapng like dumpcap: SHB, one IDB (``lo``, Ethernet, ``if_tsresol`` 9 = nanoseconds), EPBs and a
  closing ISB;
* classic pcap with LINUX_SLL2 framing (what ``tcpdump -i any -w`` writes).

The traffic mimics a Linux host talking to itself: HTTP-like TCP connections over 127.0.0.1 and
::1 with the kernel's SYN options (MSS, SACK-permitted, timestamps, window scale 7), timestamps on
every segment, request/response data both ways, and every teardown kind in a realistic mix
(``KIND_WEIGHTS``), plus SYN retransmissions, retransmitted data, port reuse with a higher ISN,
and DNS-like UDP request/response. IPv4, TCP and UDP checksums are computed and correct (a real
capture on ``lo`` usually shows partial checksums because of offload; correct ones keep checksum-
validating tools quiet). The three formats carry identical IP packets and timestamps: the clock is
microseconds, so the pcapng nanosecond timestamps end in 000.

Speed: bytes are built with precompiled ``struct`` templates and the ones'-complement checksum is
taken with ``int.from_bytes(...) % 0xFFFF`` (a big-endian integer is congruent to the sum of its
16-bit words modulo 0xFFFF), so 1,000,000 packets take seconds, not the minutes scapy would need.

Same ``--seed`` and ``--packets`` give byte-identical files. Usage::

    python bench/gen.py --packets 1000000 --format pcap -o bench/data/bench-1m.pcap
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

FORMATS = ("pcap", "pcapng", "sll2")
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL2 = 276
SNAPLEN = 262144

# Teardown kinds of a TCP connection and how often each occurs (weights, normalised on use).
KINDS = ("fin-4way", "fin-3way", "half-close", "simultaneous", "rst", "refused")
KIND_WEIGHTS = (0.40, 0.29, 0.08, 0.03, 0.10, 0.05)
# Orthogonal to the kind: share of connections that reuse a recently closed 4-tuple on purpose,
# whose first SYN goes unanswered (retransmitted after Linux's 1 s initial RTO), or that lose and
# retransmit one data segment.
P_REUSE = 0.03
P_SYN_RETX = 0.01
P_DATA_RETX = 0.02
P_IPV6 = 0.10
# Events (TCP connection or DNS lookup) start as a Poisson process at this rate.
EVENTS_PER_S = 2500.0
P_DNS = 0.25

EPOCH_US = 1_718_000_000 * 1_000_000
LO4 = bytes([127, 0, 0, 1])
RESOLVER4 = bytes([127, 0, 0, 53])
LO6 = bytes(15) + b"\x01"
HTTP_PORTS = (8080, 8088)
CLOSED_PORT = 9090
EPHEMERAL_LO, EPHEMERAL_HI = 32768, 60999

F_FIN, F_SYN, F_RST, F_PSH, F_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_SYNOPT = struct.Struct("!BBHBBBBIIBBBB")
_TSOPT = struct.Struct("!BBBBII")
_MASK32 = 0xFFFFFFFF


def _csum_part(data: bytes) -> int:
    """Partial ones'-complement sum of ``data`` (odd length padded), reduced modulo 0xFFFF."""
    if len(data) & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF


def _fold(total: int) -> int:
    r = total % 0xFFFF
    return 0xFFFF - r if r else 0


def _mix32(x: int) -> int:
    """A cheap integer hash (murmur3 finaliser) so ISNs and TS offsets look kernel-like."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


def _seq_after(a: int, b: int) -> bool:
    """RFC 793 sequence-space comparison: ``a`` is after ``b``."""
    return 0 < ((a - b) & _MASK32) < 0x80000000


@dataclass
class Manifest:
    """What the generator emitted, counted packet by packet (tests compare it with tshark)."""

    packets: int = 0
    tcp_packets: int = 0
    udp_packets: int = 0
    ipv6_packets: int = 0
    syn: int = 0
    synack: int = 0
    fin: int = 0
    rst: int = 0
    tcp_payload_packets: int = 0
    tcp_payload_bytes: int = 0
    tcp_connections: int = 0
    udp_exchanges: int = 0
    syn_retransmits: int = 0
    data_retransmits: int = 0
    reused_tuples: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    cut_at_end: int = 0
    first_ts_us: int = 0
    last_ts_us: int = 0

    def as_dict(self) -> dict[str, object]:
        d = dict(self.__dict__)
        d["kinds"] = dict(sorted(self.kinds.items()))
        return d


# One emitted packet: (ts_us, tiebreak, flow id, tcp flags or -1 for UDP, payload len, is_v6, bytes)
_Pkt = tuple[int, int, int, int, int, bool, bytes]


class _Payloads:
    """Deterministic pools of HTTP requests/responses and DNS names, with cached checksum sums."""

    WORDS = (
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
        "mike",
        "november",
        "oscar",
        "papa",
        "quebec",
        "romeo",
        "sierra",
        "tango",
        "uniform",
        "victor",
        "whiskey",
        "xray",
        "yankee",
        "zulu",
        "loopback",
        "socket",
        "kernel",
        "window",
        "segment",
        "packet",
        "stream",
        "buffer",
        "handshake",
        "teardown",
    )

    def __init__(self, rng: random.Random) -> None:
        self.requests: list[tuple[bytes, int]] = [self._request(rng, i) for i in range(1024)]
        self.bodies: list[bytes] = [self._body(rng) for _ in range(1024)]
        self._responses: dict[tuple[int, bool], list[tuple[bytes, int]]] = {}
        self.names = [
            f"{rng.choice(self.WORDS)}-{rng.randrange(1000)}.svc.{rng.choice(self.WORDS)}.internal"
            for _ in range(512)
        ]

    def _request(self, rng: random.Random, i: int) -> tuple[bytes, int]:
        path = "/".join(rng.choice(self.WORDS) for _ in range(rng.randrange(1, 5)))
        lines = [
            f"GET /api/v1/{path}?id={i}&page={rng.randrange(100)} HTTP/1.1" if rng.random() < 0.85 else "",
            "Host: localhost",
            "User-Agent: bench-client/1.0",
            "Accept: */*",
        ]
        body = b""
        if not lines[0]:
            form = "&".join(
                f"{rng.choice(self.WORDS)}={rng.randrange(10**6)}" for _ in range(rng.randrange(1, 12))
            )
            body = form.encode()
            lines[0] = f"POST /api/v1/{path} HTTP/1.1"
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        if rng.random() < 0.5:
            lines.append("Cookie: session=" + f"{rng.getrandbits(128):032x}" * rng.randrange(1, 4))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        return data, _csum_part(data)

    def _body(self, rng: random.Random) -> bytes:
        # Mostly small API answers, a tail of larger documents (mean about 0.9 KB).
        u = rng.random()
        if u < 0.65:
            n = rng.randrange(60, 600)
        elif u < 0.94:
            n = rng.randrange(600, 1800)
        elif u < 0.99:
            n = rng.randrange(1800, 5000)
        else:
            n = rng.randrange(5000, 25000)
        words: list[str] = []
        size = 0
        while size < n:
            w = rng.choice(self.WORDS)
            words.append(w)
            size += len(w) + 1
        text = " ".join(words)[:n]
        return text.encode()

    def response(self, rid: int, close: bool) -> list[tuple[bytes, int]]:
        """The response's segments (the server writes at most 16 KiB per send) and their sums."""
        key = (rid, close)
        segs = self._responses.get(key)
        if segs is None:
            body = self.bodies[rid]
            status = "404 Not Found" if rid % 29 == 0 else "200 OK"
            head = (
                f"HTTP/1.1 {status}\r\nServer: bench-server/1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
            ).encode()
            data = head + body
            segs = [
                (data[i : i + 16384], _csum_part(data[i : i + 16384])) for i in range(0, len(data), 16384)
            ]
            self._responses[key] = segs
        return segs


class _Tcp:
    """One TCP connection being scripted: both endpoints' sequence, timestamp and IP-ID state."""

    __slots__ = (
        "ack_c",
        "ack_s",
        "addr_sum",
        "cport",
        "fid",
        "flow_c",
        "flow_s",
        "g",
        "ipid_c",
        "ipid_s",
        "nxt_c",
        "nxt_s",
        "out",
        "sport",
        "t",
        "ts_c",
        "ts_s",
        "tsoff_c",
        "tsoff_s",
        "v6",
    )

    def __init__(self, g: Generator, fid: int, v6: bool, cport: int, sport: int, t: int) -> None:
        self.g = g
        self.fid = fid
        self.v6 = v6
        self.cport = cport
        self.sport = sport
        self.t = t
        key = (cport << 16) | sport | (0x1_0000_0000 if v6 else 0)
        # Linux: the ISN is a keyed hash of the 4-tuple plus a 64 ns clock, the TS offset a keyed
        # hash too, so a reused 4-tuple later in time gets a higher ISN and a higher TSval.
        self.tsoff_c = _mix32(key ^ g.secret)
        self.tsoff_s = _mix32(key ^ g.secret ^ 0x5A5A5A5A)
        self.nxt_c = (_mix32(key * 3 + g.secret) + (t * 1000) // 64) & _MASK32
        self.nxt_s = (_mix32(key * 7 + g.secret) + (t * 1000) // 64) & _MASK32
        self.ack_c = 0
        self.ack_s = 0
        self.ts_c = 0
        self.ts_s = 0
        self.ipid_c = g.rng.getrandbits(16)
        self.ipid_s = g.rng.getrandbits(16)
        self.flow_c = g.rng.getrandbits(20)
        self.flow_s = g.rng.getrandbits(20)
        addr = LO6 if v6 else LO4
        self.addr_sum = 2 * int.from_bytes(addr, "big")
        self.out: list[_Pkt] = []

    def tsval(self, client: bool) -> int:
        # Linux's TS clock ticks in milliseconds.
        return ((self.tsoff_c if client else self.tsoff_s) + self.t // 1000) & _MASK32

    def send(
        self,
        client: bool,
        flags: int,
        dt: int,
        payload: bytes = b"",
        psum: int = 0,
        *,
        seq: int | None = None,
        ack: int | None = None,
        win: int = 512,
        opts: str = "ts",
    ) -> None:
        """Emit one segment ``dt`` microseconds after the previous one of this connection."""
        self.t += max(dt, 1)
        g = self.g
        if client:
            s = self.nxt_c if seq is None else seq
            a = (self.nxt_s if ack is None else ack) if flags & F_ACK else 0
        else:
            s = self.nxt_s if seq is None else seq
            a = (self.nxt_c if ack is None else ack) if flags & F_ACK else 0
        if opts == "ts":
            tv = self.tsval(client)
            o = _TSOPT.pack(1, 1, 8, 10, tv, self.ts_s if client else self.ts_c)
        elif opts == "syn":
            tv = self.tsval(client)
            mss = 65476 if self.v6 else 65495
            o = _SYNOPT.pack(2, 4, mss, 4, 2, 8, 10, tv, self.ts_s if client else self.ts_c, 1, 3, 3, 7)
        else:
            tv = -1
            o = b""
        if tv >= 0:
            if client:
                self.ts_c = tv
            else:
                self.ts_s = tv
        hl = 20 + len(o)
        tcp_len = hl + len(payload)
        sp, dp = (self.cport, self.sport) if client else (self.sport, self.cport)
        off = (hl >> 2) << 4
        hdr = _TCP.pack(sp, dp, s, a, off, flags, win, 0, 0) + o
        cs = _fold(int.from_bytes(hdr, "big") + psum + self.addr_sum + 6 + tcp_len)
        hdr = _TCP.pack(sp, dp, s, a, off, flags, win, cs, 0) + o
        if self.v6:
            fl = self.flow_c if client else self.flow_s
            ip = _IP6.pack(0x60000000 | fl, tcp_len, 6, 64, LO6, LO6)
        else:
            if client:
                ipid = self.ipid_c
                self.ipid_c = (ipid + 1) & 0xFFFF
            else:
                ipid = self.ipid_s
                self.ipid_s = (ipid + 1) & 0xFFFF
            if opts == "none" or flags == F_SYN | F_ACK:
                # Linux sends IP-ID 0 from request and reset sockets (SYN-ACK, refused, bare RST),
                # as seen with tcpdump -i any on lo.
                ipid = 0
            h = _IP4.pack(0x45, 0, 20 + tcp_len, ipid, 0x4000, 64, 6, 0, LO4, LO4)
            ip = _IP4.pack(
                0x45, 0, 20 + tcp_len, ipid, 0x4000, 64, 6, _fold(int.from_bytes(h, "big")), LO4, LO4
            )
        self.out.append(
            (self.t, g.next_tiebreak(), self.fid, flags, len(payload), self.v6, ip + hdr + payload)
        )
        adv = len(payload) + (1 if flags & (F_SYN | F_FIN) else 0)
        if seq is None:
            if client:
                self.nxt_c = (self.nxt_c + adv) & _MASK32
            else:
                self.nxt_s = (self.nxt_s + adv) & _MASK32


class Generator:
    """Scripts connections in start-time order and merges their packets by timestamp."""

    def __init__(self, packets: int, seed: int = 1) -> None:
        self.target = packets
        self.seed = seed
        self.rng = random.Random(seed)
        self.secret = self.rng.getrandbits(32)
        self.payloads = _Payloads(random.Random(seed * 7919 + 1))
        self.manifest = Manifest()
        self._tiebreak = 0
        self._next_port = EPHEMERAL_LO + 2 * self.rng.randrange((EPHEMERAL_HI - EPHEMERAL_LO) // 2)
        self._busy_until: dict[tuple[bool, int], int] = {}
        self._last: dict[tuple[bool, int, int], tuple[int, int]] = {}
        # Tuples closed recently, candidates for deliberate reuse: (closed_at, v6, cport, sport, client_tw)
        self._recent: deque[tuple[int, bool, int, int, bool]] = deque(maxlen=256)
        self._kind_of: dict[int, str] = {}
        self._expected: dict[int, int] = {}
        self._emitted: Counter[int] = Counter()
        self._fid = 0
        # The first events walk through every kind and special case so even tiny files have all.
        self._forced: deque[tuple[str, str]] = deque(
            [(k, "") for k in KINDS]
            + [("fin-4way", "syn-retx"), ("fin-3way", "data-retx"), ("fin-4way", "reuse")]
        )

    def next_tiebreak(self) -> int:
        self._tiebreak += 1
        return self._tiebreak

    # -- ports -----------------------------------------------------------------------------
    def _ephemeral(self, v6: bool, now: int) -> int:
        # Linux connect() walks the ephemeral range in steps of 2 (even ports), skipping ports
        # still in use or in a TIME_WAIT it may not yet reuse.
        for _ in range(EPHEMERAL_HI - EPHEMERAL_LO):
            p = self._next_port
            self._next_port += 2
            if self._next_port > EPHEMERAL_HI:
                self._next_port = EPHEMERAL_LO
            if self._busy_until.get((v6, p), -1) <= now:
                return p
        raise RuntimeError("ephemeral ports exhausted")

    # -- one TCP connection ----------------------------------------------------------------
    def _tcp(self, t0: int, kind: str, special: str) -> list[_Pkt]:
        rng = self.rng
        v6 = rng.random() < P_IPV6
        reuse = kind != "refused" and (special == "reuse" or (not special and rng.random() < P_REUSE))
        picked = None
        if reuse:
            for i, (closed, rv6, rc, rs, client_tw) in enumerate(self._recent):
                # Server TIME_WAIT accepts a higher ISN at once (RFC 6191); a client in TIME_WAIT
                # may reuse its port only after 1 s (Linux tcp_tw_reuse on loopback).
                if (
                    closed + (1_000_000 if client_tw else 2_000) <= t0
                    and self._busy_until.get((rv6, rc), -1) <= t0
                ):
                    picked = (rv6, rc, rs)
                    del self._recent[i]
                    break
        if picked:
            v6, cport, sport = picked
        else:
            if special == "reuse":
                # Too early in the capture for a reusable tuple: try again with the next event.
                self._forced.appendleft((kind, special))
            cport = self._ephemeral(v6, t0)
            sport = CLOSED_PORT if kind == "refused" else HTTP_PORTS[rng.random() < 0.25]
        fid = self._fid
        self._fid += 1
        c = _Tcp(self, fid, v6, cport, sport, t0)
        last = self._last.get((v6, cport, sport))
        if last is not None:
            self.manifest.reused_tuples += 1
            # Keep the new incarnation's ISNs after the old one's final sequence numbers.
            if not _seq_after(c.nxt_c, last[0]):
                c.nxt_c = (last[0] + 65536 + rng.randrange(1 << 20)) & _MASK32
            if not _seq_after(c.nxt_s, last[1]):
                c.nxt_s = (last[1] + 65536 + rng.randrange(1 << 20)) & _MASK32
        isn_c = c.nxt_c
        c.t -= 1
        c.send(True, F_SYN, 1, win=65476 if v6 else 65495, opts="syn")
        if special == "syn-retx" or (not special and rng.random() < P_SYN_RETX):
            c.send(
                True,
                F_SYN,
                1_000_000 + rng.randrange(-2000, 8000),
                seq=isn_c,
                win=65476 if v6 else 65495,
                opts="syn",
            )
            self.manifest.syn_retransmits += 1
        if kind == "refused":
            c.send(False, F_RST | F_ACK, rng.randrange(6, 30), seq=0, win=0, opts="none")
            return self._finish(c, kind, client_tw=False)
        c.send(False, F_SYN | F_ACK, rng.randrange(8, 40), win=65464 if v6 else 65483, opts="syn")
        c.send(True, F_ACK, rng.randrange(3, 15))

        server_closes = rng.random() < 0.45
        exchanges = (
            1
            if kind == "half-close"
            else rng.choices((1, 2, 3, 4, 5, 6), (0.50, 0.22, 0.12, 0.08, 0.05, 0.03))[0]
        )
        data_retx = special == "data-retx" or (not special and rng.random() < P_DATA_RETX)
        for i in range(exchanges):
            last_one = i == exchanges - 1
            req, rsum = self.payloads.requests[rng.randrange(len(self.payloads.requests))]
            c.send(
                True, F_PSH | F_ACK, rng.randrange(10, 80) if i == 0 else rng.randrange(50, 3000), req, rsum
            )
            if kind == "half-close":
                # shutdown(SHUT_WR) right after the request; the server answers after our FIN.
                c.send(True, F_FIN | F_ACK, rng.randrange(4, 20))
                c.send(False, F_ACK, rng.randrange(5, 20))
            elif rng.random() < 0.7:
                c.send(False, F_ACK, rng.randrange(5, 20))  # quickack of the request
            if kind == "rst" and last_one and rng.random() < 0.3:
                # The server aborts (close with unread data / SO_LINGER 0) instead of answering.
                c.send(False, F_RST | F_ACK, self._think())
                return self._finish(c, "rst", client_tw=False)
            segs = self.payloads.response(
                rng.randrange(len(self.payloads.bodies)), server_closes and last_one
            )
            dt = self._think()
            for j, (seg, ssum) in enumerate(segs):
                seq = c.nxt_s
                c.send(False, F_PSH | F_ACK, dt, seg, ssum)
                dt = rng.randrange(2, 12)
                if data_retx and j == len(segs) - 1:
                    # The segment is dropped at the receiver (backlog full): no ACK, the sender
                    # retransmits it after the RTO (200 ms floor) or a tail loss probe (~10 ms).
                    data_retx = False
                    t_retx = (
                        rng.randrange(200_000, 230_000)
                        if rng.random() < 0.6
                        else rng.randrange(10_000, 22_000)
                    )
                    c.send(False, F_PSH | F_ACK, t_retx, seg, ssum, seq=seq)
                    self.manifest.data_retransmits += 1
                if j % 2 == 1 or j == len(segs) - 1 or rng.random() < 0.7:
                    c.send(True, F_ACK, rng.randrange(4, 40))
                    dt = rng.randrange(2, 12)
        return self._teardown(c, kind, server_closes)

    def _think(self) -> int:
        """Server processing time in microseconds: mostly sub-millisecond, a long tail."""
        u = self.rng.random()
        if u < 0.80:
            return self.rng.randrange(20, 400)
        if u < 0.97:
            return self.rng.randrange(400, 5000)
        return self.rng.randrange(5000, 60000)

    def _teardown(self, c: _Tcp, kind: str, server_closes: bool) -> list[_Pkt]:
        rng = self.rng
        x = not server_closes  # True: the client is the active closer
        if kind == "fin-4way":
            c.send(x, F_FIN | F_ACK, rng.randrange(5, 300))
            c.send(not x, F_ACK, rng.randrange(4, 25))
            # The passive side's application reads EOF and closes a little later.
            c.send(not x, F_FIN | F_ACK, rng.randrange(15, 3000))
            c.send(x, F_ACK, rng.randrange(4, 25))
            return self._finish(c, kind, client_tw=x)
        if kind == "fin-3way":
            c.send(x, F_FIN | F_ACK, rng.randrange(5, 300))
            c.send(not x, F_FIN | F_ACK, rng.randrange(8, 40))
            c.send(x, F_ACK, rng.randrange(4, 25))
            return self._finish(c, kind, client_tw=x)
        if kind == "half-close":
            c.send(False, F_FIN | F_ACK, rng.randrange(10, 300))
            c.send(True, F_ACK, rng.randrange(4, 25))
            return self._finish(c, kind, client_tw=True)
        if kind == "simultaneous":
            # Both applications close at once: each FIN acks only what preceded the peer's FIN.
            pre_c, pre_s = c.nxt_c, c.nxt_s
            c.send(True, F_FIN | F_ACK, rng.randrange(5, 300), ack=pre_s)
            c.send(False, F_FIN | F_ACK, rng.randrange(1, 4), ack=pre_c)
            c.send(True, F_ACK, rng.randrange(3, 15))
            c.send(False, F_ACK, rng.randrange(1, 6))
            return self._finish(c, kind, client_tw=True)
        # rst
        u = rng.random()
        if u < 0.55:
            # The client aborts (SO_LINGER 0): RST,ACK with timestamps from the live socket.
            c.send(True, F_RST | F_ACK, rng.randrange(5, 300))
        else:
            # The server closes, the client keeps writing: the orphaned socket answers with a
            # bare RST whose seq is the ACK of the offending segment (RFC 793 reset generation).
            c.send(False, F_FIN | F_ACK, rng.randrange(5, 300))
            c.send(True, F_ACK, rng.randrange(4, 25))
            req, rsum = self.payloads.requests[rng.randrange(len(self.payloads.requests))]
            c.send(True, F_PSH | F_ACK, rng.randrange(20, 400), req, rsum)
            c.send(False, F_RST, rng.randrange(5, 20), seq=c.nxt_s, win=0, opts="none")
        return self._finish(c, "rst", client_tw=False)

    def _finish(self, c: _Tcp, kind: str, client_tw: bool) -> list[_Pkt]:
        end = c.t
        key = (c.v6, c.cport)
        self._busy_until[key] = end + (1_000_000 if client_tw else 1)
        self._last[(c.v6, c.cport, c.sport)] = (c.nxt_c, c.nxt_s)
        if kind != "refused":  # nobody listens there: not a tuple a client would come back to
            self._recent.append((end, c.v6, c.cport, c.sport, client_tw))
        self._kind_of[c.fid] = kind
        self._expected[c.fid] = len(c.out)
        return c.out

    # -- one DNS lookup --------------------------------------------------------------------
    def _dns(self, t0: int) -> list[_Pkt]:
        rng = self.rng
        fid = self._fid
        self._fid += 1
        v6 = rng.random() < P_IPV6
        src, dst = (LO6, LO6) if v6 else (LO4, RESOLVER4)
        cport = rng.randrange(EPHEMERAL_LO, EPHEMERAL_HI + 1)
        qid = rng.getrandbits(16)
        qtype = 28 if rng.random() < 0.3 else 1
        qname = (
            b"".join(bytes([len(p)]) + p.encode() for p in rng.choice(self.payloads.names).split(".")) + b"\0"
        )
        question = qname + struct.pack("!HH", qtype, 1)
        edns = rng.random() < 0.5
        opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0) if edns else b""
        query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, int(edns)) + question + opt
        out: list[_Pkt] = [self._udp(fid, v6, src, dst, cport, 53, t0, query, rng.getrandbits(16))]
        u = rng.random()
        if u < 0.98:
            t1 = t0 + (rng.randrange(15, 250) if rng.random() < 0.8 else rng.randrange(1000, 30000))
            if u < 0.93:
                rdata = bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
                if qtype == 28:
                    rdata = b"\xfd\x00" + bytes(rng.getrandbits(8) for _ in range(14))
                answer = struct.pack("!HHHIH", 0xC00C, qtype, 1, rng.randrange(30, 3600), len(rdata)) + rdata
                resp = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, int(edns)) + question + answer + opt
            else:
                resp = struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, int(edns)) + question + opt
            out.append(self._udp(fid, v6, dst, src, 53, cport, t1, resp, rng.getrandbits(16)))
        self._expected[fid] = len(out)
        return out

    def _udp(
        self, fid: int, v6: bool, src: bytes, dst: bytes, sp: int, dp: int, t: int, data: bytes, ipid: int
    ) -> _Pkt:
        ulen = 8 + len(data)
        total = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + 17 + ulen
        total += int.from_bytes(_UDP.pack(sp, dp, ulen, 0), "big") + _csum_part(data)
        cs = _fold(total) or 0xFFFF  # 0 would mean "no checksum" for UDP
        udp = _UDP.pack(sp, dp, ulen, cs) + data
        if v6:
            ip = _IP6.pack(0x60000000 | (ipid << 4), ulen, 17, 64, src, dst)
        else:
            h = _IP4.pack(0x45, 0, 20 + ulen, ipid, 0x4000, 64, 17, 0, src, dst)
            ip = _IP4.pack(
                0x45, 0, 20 + ulen, ipid, 0x4000, 64, 17, _fold(int.from_bytes(h, "big")), src, dst
            )
        return (t, self.next_tiebreak(), fid, -1, len(data), v6, ip + udp)

    # -- the merged stream -----------------------------------------------------------------
    def _event(self, t0: int) -> list[_Pkt]:
        if self._forced:
            kind, special = self._forced.popleft()
            return self._tcp(t0, kind, special)
        if self.rng.random() < P_DNS:
            return self._dns(t0)
        kind = self.rng.choices(KINDS, KIND_WEIGHTS)[0]
        return self._tcp(t0, kind, "")

    def packets(self) -> Iterator[tuple[int, bool, bytes]]:
        """Yield ``(ts_us, is_ipv6, ip_packet)`` in timestamp order, exactly ``packets`` of them."""
        rng = self.rng
        heap: list[_Pkt] = []
        scheduled = 0
        t_next = EPOCH_US
        mean_gap = 1e6 / EVENTS_PER_S
        m = self.manifest
        emitted = self._emitted
        while m.packets < self.target:
            # Every packet of an event is at or after its start, so whatever is in the heap
            # before the next start is final.
            while scheduled < self.target and (not heap or heap[0][0] >= t_next):
                evt = self._event(t_next)
                scheduled += len(evt)
                for p in evt:
                    heapq.heappush(heap, p)
                t_next += 1 + int(rng.expovariate(1.0) * mean_gap)
            if not heap:
                break
            ts, _, fid, flags, plen, v6, pkt = heapq.heappop(heap)
            m.packets += 1
            emitted[fid] += 1
            if v6:
                m.ipv6_packets += 1
            if flags < 0:
                m.udp_packets += 1
            else:
                m.tcp_packets += 1
                if flags & F_SYN:
                    if flags & F_ACK:
                        m.synack += 1
                    else:
                        m.syn += 1
                if flags & F_FIN:
                    m.fin += 1
                if flags & F_RST:
                    m.rst += 1
                if plen:
                    m.tcp_payload_packets += 1
                    m.tcp_payload_bytes += plen
            if m.packets == 1:
                m.first_ts_us = ts
            m.last_ts_us = ts
            yield ts, v6, pkt
        for fid, kind in self._kind_of.items():
            n = emitted.get(fid, 0)
            if n == 0:
                continue
            m.tcp_connections += 1
            if n == self._expected[fid]:
                m.kinds[kind] += 1
            else:
                m.cut_at_end += 1
        m.udp_exchanges = sum(1 for fid in emitted if fid not in self._kind_of)


# -- writers ---------------------------------------------------------------------------------
_REC = struct.Struct("<IIII")
_ETH4 = bytes(12) + b"\x08\x00"
_ETH6 = bytes(12) + b"\x86\xdd"
# SLL2: protocol, reserved, ifindex 1 (lo), ARPHRD_LOOPBACK, PACKET_HOST, address length 6, zero address.
_SLL2_4 = struct.pack("!HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, bytes(8))
_SLL2_6 = struct.pack("!HHIHBB8s", 0x86DD, 0, 1, 772, 0, 6, bytes(8))
_CHUNK = 8192


def _write_classic(out: BinaryIO, records: Iterable[tuple[int, bool, bytes]], linktype: int) -> None:
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
    l2_4, l2_6 = (_ETH4, _ETH6) if linktype == LINKTYPE_ETHERNET else (_SLL2_4, _SLL2_6)
    l2len = len(l2_4)
    pack = _REC.pack
    parts: list[bytes] = []
    for ts, v6, pkt in records:
        n = l2len + len(pkt)
        parts.append(pack(ts // 1_000_000, ts % 1_000_000, n, n))
        parts.append(l2_6 if v6 else l2_4)
        parts.append(pkt)
        if len(parts) >= 3 * _CHUNK:
            out.write(b"".join(parts))
            parts.clear()
    out.write(b"".join(parts))


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _write_pcapng(out: BinaryIO, records: Iterable[tuple[int, bool, bytes]], seed: int) -> None:
    shb_opts = _opt(3, b"Linux") + _opt(4, f"analyzer bench/gen.py (seed {seed})".encode()) + _opt(0, b"")
    out.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts))
    idb_opts = _opt(2, b"lo") + _opt(9, b"\x09") + _opt(12, b"Linux") + _opt(0, b"")
    out.write(_block(1, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + idb_opts))
    pack = struct.Struct("<IIIIIII").pack
    parts: list[bytes] = []
    first = last = count = 0
    for ts, v6, pkt in records:
        ns = ts * 1000
        if not count:
            first = ns
        last = ns
        count += 1
        n = 14 + len(pkt)
        pad = -n % 4
        blen = 32 + n + pad
        parts.append(pack(6, blen, 0, ns >> 32, ns & _MASK32, n, n))
        parts.append(_ETH6 if v6 else _ETH4)
        parts.append(pkt + bytes(pad) + blen.to_bytes(4, "little"))
        if len(parts) >= 3 * _CHUNK:
            out.write(b"".join(parts))
            parts.clear()
    out.write(b"".join(parts))
    # dumpcap closes the section with interface statistics: readers must skip or parse it.
    isb_opts = (
        _opt(2, struct.pack("<II", first >> 32, first & _MASK32))
        + _opt(3, struct.pack("<II", last >> 32, last & _MASK32))
        + _opt(4, struct.pack("<Q", count))
        + _opt(5, struct.pack("<Q", 0))
        + _opt(0, b"")
    )
    out.write(_block(5, struct.pack("<III", 0, last >> 32, last & _MASK32) + isb_opts))


def write(path: str | Path, fmt: str, packets: int, seed: int = 1) -> Manifest:
    """Generate ``packets`` packets with ``seed`` and write them to ``path`` in ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    g = Generator(packets, seed)
    writers: dict[str, Callable[[BinaryIO], None]] = {
        "pcap": lambda f: _write_classic(f, g.packets(), LINKTYPE_ETHERNET),
        "sll2": lambda f: _write_classic(f, g.packets(), LINKTYPE_LINUX_SLL2),
        "pcapng": lambda f: _write_pcapng(f, g.packets(), seed),
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb", buffering=1 << 20) as f:
        writers[fmt](f)
    return g.manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--packets", type=int, default=1_000_000, help="number of packets (default 1,000,000)")
    ap.add_argument("--format", choices=FORMATS, default="pcap", help="pcap (Ethernet), pcapng or sll2")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("-o", "--output", required=True, help="output file")
    ap.add_argument("--manifest", help="also write the emitted counts as JSON to this file")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    m = write(args.output, args.format, args.packets, args.seed)
    dt = time.perf_counter() - t0
    size = Path(args.output).stat().st_size
    if args.manifest:
        Path(args.manifest).write_text(json.dumps(m.as_dict(), indent=1) + "\n")
    print(
        f"{args.output}: {m.packets} packets, {m.tcp_connections} TCP connections, "
        f"{m.udp_exchanges} UDP exchanges, {size / 1e6:.1f} MB in {dt:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
