"""Link layers -> where the IP header starts: Ethernet (+VLAN tags), SLL, SLL2, NULL/LOOP, raw IP."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analyzer.decode.gather import gather
from analyzer.decode.layers import I64, Layers, keep, put, take
from analyzer.decode.wire import (
    AF_INET6_VALUES,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    IP4_TCP_TS_DT,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    MAX_VLAN_TAGS,
    NOTE_UNSUPPORTED_LINK,
    VLAN_TPIDS,
)


def link_layer(ly: Layers, link_type: npt.NDArray[np.uint16]) -> None:
    present = np.unique(link_type)
    for lt in present.tolist():
        idx = np.nonzero(link_type == lt)[0] if len(present) > 1 else np.arange(ly.n)
        if lt == LINKTYPE_ETHERNET:
            _ethernet(ly, idx)
        elif lt == LINKTYPE_LINUX_SLL:
            _by_ethertype(ly, idx, hdr_len=16, type_at=14)
        elif lt == LINKTYPE_LINUX_SLL2:
            _by_ethertype(ly, idx, hdr_len=20, type_at=0)
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            _null_loop(ly, idx, big_endian_only=lt == LINKTYPE_LOOP)
        elif lt == LINKTYPE_RAW:
            ok = idx[~ly.short(idx, ly.start[idx] + 1)]
            ver = ly.u8[ly.start[ok]] >> 4
            _set_l3(ly, ok[ver == 4], 0, 4)
            _set_l3(ly, ok[ver == 6], 0, 6)
        elif lt == LINKTYPE_IPV4:
            _set_l3(ly, idx, 0, 4)
        elif lt == LINKTYPE_IPV6:
            _set_l3(ly, idx, 0, 6)
        else:
            ly.mark(idx, NOTE_UNSUPPORTED_LINK)


def _set_l3(ly: Layers, idx: I64, hdr_len: int | I64, kind: int) -> None:
    put(ly.l3, idx, take(ly.start, idx) + hdr_len)
    put(ly.l3_kind, idx, kind)


def _ethertype_to_l3(ly: Layers, idx: I64, etype: npt.NDArray[np.uint16], hdr_len: I64) -> None:
    for ethertype, kind in ((ETHERTYPE_IPV4, 4), (ETHERTYPE_IPV6, 6)):
        m = etype == ethertype
        if m.all():
            _set_l3(ly, idx, hdr_len, kind)
        elif len(idx) == ly.n:  # whole columns: masked copies instead of gathers and scatters
            np.copyto(ly.l3, ly.start + hdr_len, where=m)
            ly.l3_kind[m] = kind
        elif m.any():
            _set_l3(ly, idx[m], hdr_len[m], kind)


def _ethernet(ly: Layers, idx: I64) -> None:
    idx = keep(idx, ~ly.short(idx, take(ly.start, idx) + 14))
    start = take(ly.start, idx)
    hdr_len = np.full(len(idx), 14, dtype=np.int64)
    etype = _ethertype(ly, idx, 12, 14)
    tagged = np.isin(etype, VLAN_TPIDS)
    for _ in range(MAX_VLAN_TAGS):
        if not tagged.any():
            break
        t = np.nonzero(tagged)[0]
        lacking = ly.short(idx[t], start[t] + hdr_len[t] + 4)
        etype[t[lacking]] = 0
        t = t[~lacking]
        hdr_len[t] += 4
        etype[t] = ly.be16(start[t] + hdr_len[t] - 2)
        tagged = np.zeros(len(idx), dtype=np.bool_)
        tagged[t] = np.isin(etype[t], VLAN_TPIDS)
    _ethertype_to_l3(ly, idx, etype, hdr_len)


def _by_ethertype(ly: Layers, idx: I64, *, hdr_len: int, type_at: int) -> None:
    idx = idx[~ly.short(idx, ly.start[idx] + hdr_len)]
    etype = _ethertype(ly, idx, type_at, hdr_len)
    _ethertype_to_l3(ly, idx, etype, np.full(len(idx), hdr_len, dtype=np.int64))


def _ethertype(ly: Layers, idx: I64, type_at: int, hdr_len: int) -> npt.NDArray[np.uint16]:
    """The EtherType at ``type_at`` of each packet of ``idx``.

    When ``idx`` is every packet, the IPv4 + TCP + timestamp headers that would follow an
    untagged header are read in the same gather (one cache miss per packet instead of two) and
    left for ipv4() in ``ly.pre_l3``; it uses them only where the IPv4 header really is there.
    """
    start = take(ly.start, idx)
    if len(idx) != ly.n:
        return ly.be16(start + type_at)
    pad = hdr_len - type_at - 2
    dt = np.dtype(
        [("etype", ">u2"), ("pad", f"V{pad}"), ("l3", IP4_TCP_TS_DT)]
        if pad
        else [("etype", ">u2"), ("l3", IP4_TCP_TS_DT)]
    )
    both = gather(ly.buf, start + type_at, dt)
    ly.pre_l3, ly.pre_l3_at = both["l3"], start + hdr_len
    return both["etype"].astype(np.uint16)


def _null_loop(ly: Layers, idx: I64, *, big_endian_only: bool) -> None:
    idx = idx[~ly.short(idx, ly.start[idx] + 4)]
    b = [ly.u8[ly.start[idx] + k].astype(np.uint32) for k in range(4)]
    be = (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
    if big_endian_only:
        fam = be
    else:  # DLT_NULL is in the capturing host's byte order: the family is a small number either way
        le = (b[3] << 24) | (b[2] << 16) | (b[1] << 8) | b[0]
        fam = np.where(le <= 0xFFFF, le, be)
    _set_l3(ly, idx[fam == 2], 4, 4)
    _set_l3(ly, idx[np.isin(fam, AF_INET6_VALUES)], 4, 6)
