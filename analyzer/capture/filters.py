"""The capture filter of a scenario, as a BPF expression and as the same test in Python.

The Python form (``matches``) serves the frame witness and the scapy backend when libpcap is
not there to compile BPF; both forms must select exactly the same frames. UDP scenarios also keep
ICMP/ICMPv6 destination-unreachable messages, which carry no port of their own.
"""

from __future__ import annotations

ETH_HEADER = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP = 1
PROTO_ICMPV6 = 58
ICMP_UNREACH = 3
ICMPV6_UNREACH = 1


def bpf(proto: str, ports: list[int]) -> str:
    """``tcp port 13`` / ``(udp port 7) or (icmp unreachable) or (icmpv6 unreachable)``."""
    if proto not in ("tcp", "udp"):
        raise ValueError(f"unknown protocol {proto!r}")
    by_port = " or ".join(f"{proto} port {p}" for p in ports)
    if proto == "tcp":
        return by_port
    return f"({by_port}) or (icmp and icmp[icmptype] == icmp-unreach) or (icmp6 and ip6[40] == 1)"


def matches(frame: bytes, proto: str, ports: frozenset[int]) -> bool:
    """True when the Ethernet frame passes ``bpf(proto, ports)``."""
    if len(frame) < ETH_HEADER + 20:
        return False
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETHERTYPE_IPV4:
        ihl = (frame[ETH_HEADER] & 0x0F) * 4
        ip_proto = frame[ETH_HEADER + 9]
        l4 = ETH_HEADER + ihl
        icmp_proto, unreach = PROTO_ICMP, ICMP_UNREACH
    elif ethertype == ETHERTYPE_IPV6:
        ip_proto = frame[ETH_HEADER + 6]
        l4 = ETH_HEADER + 40
        icmp_proto, unreach = PROTO_ICMPV6, ICMPV6_UNREACH
    else:
        return False
    if proto == "udp" and ip_proto == icmp_proto:
        return len(frame) > l4 and frame[l4] == unreach
    wanted = PROTO_TCP if proto == "tcp" else PROTO_UDP
    if ip_proto != wanted or len(frame) < l4 + 4:
        return False
    sport = int.from_bytes(frame[l4 : l4 + 2], "big")
    dport = int.from_bytes(frame[l4 + 2 : l4 + 4], "big")
    return sport in ports or dport in ports
