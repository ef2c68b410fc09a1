"""Wire-format constants and header layouts shared by the native decoder's layers."""

from __future__ import annotations

import numpy as np

# LINKTYPE_* values (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINK_TYPES = (0, 1, 101, 108, 113, 228, 229, 276)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, old QinQ
MAX_VLAN_TAGS = 4
AF_INET6_VALUES = (10, 24, 28, 30)  # Linux, OpenBSD/NetBSD, FreeBSD/DragonFly, Darwin

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPV6_EXT_HEADERS = (0, 43, 44, 60, 51, 135)  # hop-by-hop, routing, fragment, dstopts, AH, mobility
MAX_IPV6_EXT = 8
ICMP4_ERRORS = (3, 4, 5, 11, 12)  # unreachable, source quench, redirect, time exceeded, param problem
ICMP6_ERRORS = (1, 2, 3, 4)  # unreachable, too big, time exceeded, param problem

# note bits, rendered in this order
NOTE_TRUNCATED = 1
NOTE_MALFORMED = 2
NOTE_FRAGMENT = 4
NOTE_UNSUPPORTED_LINK = 8
NOTE_TOKENS = (
    (NOTE_TRUNCATED, "truncated"),
    (NOTE_MALFORMED, "malformed"),
    (NOTE_FRAGMENT, "fragment"),
    (NOTE_UNSUPPORTED_LINK, "unsupported-link"),
)

IP4_DT = np.dtype(
    [
        ("vihl", "u1"),
        ("tos", "u1"),
        ("len", ">u2"),
        ("id", ">u2"),
        ("frag", ">u2"),
        ("ttl", "u1"),
        ("proto", "u1"),
        ("sum", ">u2"),
        ("src", ">u4"),
        ("dst", ">u4"),
    ]
)
IP6_DT = np.dtype(
    [("vtcfl", ">u4"), ("plen", ">u2"), ("nh", "u1"), ("hlim", "u1"), ("src", ">u8", 2), ("dst", ">u8", 2)]
)
TCP_DT = np.dtype(
    [
        ("sport", ">u2"),
        ("dport", ">u2"),
        ("seq", ">u4"),
        ("ack", ">u4"),
        ("off", "u1"),
        ("flags", "u1"),
        ("win", ">u2"),
        ("sum", ">u2"),
        ("urp", ">u2"),
    ]
)
UDP_DT = np.dtype([("sport", ">u2"), ("dport", ">u2"), ("len", ">u2"), ("sum", ">u2")])
LINUX_TS_DT = np.dtype([("nopnop", ">u4"), ("tsval", ">u4"), ("tsecr", ">u4")])
# IPv4 without options + TCP + Linux's 12 option bytes, read in one gather: on typical captures
# this is nearly every packet, and one pass over the file beats three (cache misses dominate).
BE16 = np.dtype(">u2")
IP4_TCP_TS_DT = np.dtype([("ip", IP4_DT), ("tcp", TCP_DT), ("ts", LINUX_TS_DT)])
NOP_NOP_TS = 0x0101080A  # Linux puts NOP, NOP, kind 8 len 10 on every established segment
# Linux's SYN / SYN-ACK options: MSS, SACK-permitted, timestamps, NOP, window scale (20 bytes).
LINUX_SYN_DT = np.dtype(
    [
        ("mss_kl", ">u2"),  # 0x0204
        ("mss", ">u2"),
        ("sack_ts_kl", ">u4"),  # 0x0402080a
        ("tsval", ">u4"),
        ("tsecr", ">u4"),
        ("nop_ws_kl", ">u2"),  # 0x0103
        ("ws_len", "u1"),  # 3
        ("wscale", "u1"),
    ]
)
TCP_FIELDS = ("sport", "dport", "seq", "ack", "off", "flags", "win")
TS_FIELDS = ("nopnop", "tsval", "tsecr")
