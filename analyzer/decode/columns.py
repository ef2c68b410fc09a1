"""The text-like columns of the packet table, as categoricals: addresses, proto, note."""

from __future__ import annotations

import socket

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.decode.layers import I64, U8, put, take
from analyzer.decode.wire import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, NOTE_TOKENS
from analyzer.schema import PROTO_DTYPE


def addresses(
    n: int, version: U8, v4: npt.NDArray[np.uint32], idx6: I64, v6: npt.NDArray[np.uint64]
) -> pd.Categorical:
    """Categorical text addresses: each distinct address is formatted once.

    ``v4`` is per packet (used where ``version == 4``); ``v6`` rows belong to packets ``idx6``.
    """
    codes = np.full(n, -1, dtype=np.int32)
    names: list[str] = []
    idx4 = np.nonzero(version == 4)[0]
    if len(idx4):
        inv4, uniq4 = pd.factorize(take(v4, idx4), sort=False)
        put(codes, idx4, inv4)
        names.extend(socket.inet_ntop(socket.AF_INET, int(a).to_bytes(4, "big")) for a in uniq4.tolist())
    if len(idx6):
        # hash-factorize each 64-bit half, then the pair of half codes (np.unique(axis=0) sorts: slow)
        hi_codes, hi_uniq = pd.factorize(v6[:, 0])
        lo_codes, lo_uniq = pd.factorize(v6[:, 1])
        pair_codes, pair_uniq = pd.factorize(hi_codes.astype(np.int64) * len(lo_uniq) + lo_codes)
        codes[idx6] = pair_codes + len(names)
        his, los = hi_uniq[pair_uniq // len(lo_uniq)], lo_uniq[pair_uniq % len(lo_uniq)]
        names.extend(
            socket.inet_ntop(socket.AF_INET6, int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big"))
            for hi, lo in zip(his.tolist(), los.tolist(), strict=True)
        )
    return pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object))


def proto_column(ip_proto: U8, ip_version: U8) -> pd.Categorical:
    # codes follow PROTO_DTYPE's categories: tcp, udp, icmp, icmpv6, other
    lut = np.full(256, 4, dtype=np.int8)
    lut[IPPROTO_TCP], lut[IPPROTO_UDP] = 0, 1
    codes = lut[ip_proto]
    codes[(ip_proto == IPPROTO_ICMP) & (ip_version == 4)] = 2
    codes[(ip_proto == IPPROTO_ICMPV6) & (ip_version == 6)] = 3
    codes[ip_version == 0] = 4
    return pd.Categorical.from_codes(codes, dtype=PROTO_DTYPE)


def note_column(bits: U8) -> pd.Categorical:
    """The note tokens of each packet; categories are only the combinations that occur."""
    present = np.nonzero(np.bincount(bits, minlength=16))[0]
    names = ["; ".join(tok for bit, tok in NOTE_TOKENS if value & bit) for value in present.tolist()]
    categories = pd.Index(names, dtype=object)
    if len(present) == 1 and present[0] == 0:  # no notes at all: skip the remap pass
        return pd.Categorical.from_codes(np.zeros(len(bits), np.int8), categories=categories)
    lut = np.zeros(16, dtype=np.int8)
    lut[present] = np.arange(len(present), dtype=np.int8)
    return pd.Categorical.from_codes(lut[bits], categories=categories)
