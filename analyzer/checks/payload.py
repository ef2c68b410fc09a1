"""The payload bytes a ``regex`` check reads: reassembled TCP streams and UDP datagrams.

The report carries only a 64-byte preview and the sha256 of each direction, so the bytes come
from the capture again: the packet table of the ``Analysis`` (or, for a bare report dict, the
file named in ``capture.file``, decoded on first use) and the file's bytes (``CaptureBytes``).

TCP: the connection's packets (its 4-tuple, between its first and last timestamp) go through
``analyze_tcp`` again, and ``analyzer.flows.tcp.stream_bytes`` gives the reassembled direction,
exactly as the analysis built it (gaps left out). A few connections are re-run one by one (a
few ms each); beyond ``WHOLE_RUN_AFTER`` of them the whole table is re-run once instead. The
result's sha256 is compared with the report's, so a check never reads bytes other than the
ones the report describes.

UDP: the conversation's datagrams are its packets in file order, as ``analyzer.flows.udp``
lists them.

Bytes become text for a regex as UTF-8 when they are valid UTF-8, else as latin-1 (one
character per byte, so ``\\xNN`` in a pattern matches byte NN).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from analyzer.analysis import Analysis
    from analyzer.decode.source import CaptureBytes
    from analyzer.flows.tcp import TcpFlows

WHOLE_RUN_AFTER = 20  # connections re-analyzed one by one before re-running the whole table


class PayloadUnavailable(Exception):
    """The bytes cannot be had (no capture file, or the report does not match it)."""


def as_text(data: bytes) -> str:
    """The bytes a regex searches: UTF-8 when valid, else latin-1 (one character per byte)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class Payloads:
    """Lazy access to flow bytes; use as a context manager (it maps the capture file)."""

    def __init__(
        self,
        path: str | None,
        packets: pd.DataFrame | None = None,
        *,
        msl: float = 30.0,
        engine: str = "native",
    ) -> None:
        self.path = path
        self._packets = packets
        self.msl = msl
        self.engine = engine
        self._bytes: CaptureBytes | None = None
        self._whole: TcpFlows | None = None
        self._singles = 0
        self._cache: dict[tuple[int, str], bytes] = {}

    @classmethod
    def of(cls, subject: Analysis | dict[str, Any]) -> Payloads:
        from analyzer.analysis import Analysis

        if isinstance(subject, Analysis):
            return cls(subject.capture.file, subject.packets, msl=subject.msl, engine=subject.engine)
        capture = subject.get("capture") or {}
        file = capture.get("file") if isinstance(capture, dict) else None
        return cls(str(file) if file else None)

    def __enter__(self) -> Payloads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._bytes is not None:
            self._bytes.close()
            self._bytes = None

    # -- sources ----------------------------------------------------------------------------

    def _capture(self) -> CaptureBytes:
        if self._bytes is None:
            if not self.path:
                raise PayloadUnavailable("the report names no capture file to read the bytes from")
            from analyzer.decode.source import CaptureBytes
            from analyzer.errors import InputError

            try:
                self._bytes = CaptureBytes(Path(self.path))
            except InputError as exc:
                raise PayloadUnavailable(exc.message) from None
        return self._bytes

    def _table(self) -> pd.DataFrame:
        if self._packets is None:
            from analyzer.decode import read_packets
            from analyzer.errors import AnalyzerError

            if not self.path:
                raise PayloadUnavailable("the report names no capture file to read the bytes from")
            try:
                self._packets = read_packets(self.path, engine=self.engine)
            except AnalyzerError as exc:
                raise PayloadUnavailable(exc.message) from None
        return self._packets

    # -- TCP --------------------------------------------------------------------------------

    def tcp_stream(self, flow: dict[str, Any], direction: str) -> bytes:
        """Reassembled bytes of ``direction`` (``client_to_server``/``server_to_client``)."""
        key = (int(flow["id"]), direction)
        if key not in self._cache:
            self._cache[key] = self._tcp_stream(flow, direction)
        return self._cache[key]

    def _tcp_stream(self, flow: dict[str, Any], direction: str) -> bytes:
        from analyzer.flows.tcp import stream_bytes

        short = "c2s" if direction == "client_to_server" else "s2c"
        payloads = self._capture()
        if self._whole is None and self._singles >= WHOLE_RUN_AFTER:
            from analyzer.flows.tcp import analyze_tcp

            self._whole = analyze_tcp(self._table(), payloads, msl=self.msl)
        if self._whole is not None:
            data = stream_bytes(self._whole, int(flow["id"]), short, payloads)
        else:
            self._singles += 1
            flows, conn = self._one_connection(flow)
            data = stream_bytes(flows, conn, short, payloads)
        want = ((flow.get("data") or {}).get(direction) or {}).get("sha256")
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise PayloadUnavailable(
                f"the capture's bytes of tcp flow {flow['id']} do not match the report's sha256 "
                "(was the report made from another file?)"
            )
        return data

    def _one_connection(self, flow: dict[str, Any]) -> tuple[TcpFlows, int]:
        import numpy as np

        from analyzer.flows.tcp import analyze_tcp

        packets = self._table()
        client, server = flow["client"], flow["server"]
        mask = (
            self._tuple_mask(packets, "tcp", client, server)
            & (packets["ts"].to_numpy() >= flow["first_ts"])
            & (packets["ts"].to_numpy() <= flow["last_ts"])
        )
        part = packets.loc[mask].reset_index(drop=True)
        flows = analyze_tcp(part, self._capture(), msl=self.msl)
        for rec in flows.records:
            if (
                rec["client"] == client
                and rec["server"] == server
                and np.isclose(rec["first_ts"], flow["first_ts"], rtol=0, atol=1e-9)
            ):
                return flows, int(rec["id"])
        raise PayloadUnavailable(
            f"tcp flow {flow['id']} ({_ep(client)} -> {_ep(server)}) is not in the capture file "
            f"{self.path} (was the report made from another file?)"
        )

    @staticmethod
    def _tuple_mask(
        packets: pd.DataFrame, proto: str, a: dict[str, Any], b: dict[str, Any]
    ) -> npt.NDArray[np.bool_]:
        import numpy as np

        src = packets["src"].astype(object).to_numpy()
        dst = packets["dst"].astype(object).to_numpy()
        sport = packets["sport"].to_numpy().astype(np.int64)
        dport = packets["dport"].to_numpy().astype(np.int64)
        forward = (src == a["ip"]) & (sport == a["port"]) & (dst == b["ip"]) & (dport == b["port"])
        back = (src == b["ip"]) & (sport == b["port"]) & (dst == a["ip"]) & (dport == a["port"])
        proto_ok = (packets["proto"] == proto).to_numpy()
        return np.asarray(proto_ok & (forward | back), dtype=bool)

    # -- UDP --------------------------------------------------------------------------------

    def udp_datagrams(self, flow: dict[str, Any]) -> list[bytes]:
        """The payload of every datagram of the conversation, in the order of ``flow["datagrams"]``."""
        packets = self._table()
        rows = packets.loc[self._tuple_mask(packets, "udp", flow["client"], flow["server"])]
        payloads = self._capture()
        offsets = rows["payload_offset"].to_numpy().tolist()
        caplens = rows["payload_caplen"].to_numpy().tolist()
        data = [payloads.get(o, n) for o, n in zip(offsets, caplens, strict=True)]
        listed = flow.get("datagrams") or []
        if len(data) != len(listed) or any(
            d.get("sha256") is not None and hashlib.sha256(b).hexdigest() != d["sha256"]
            for b, d in zip(data, listed, strict=False)
        ):
            raise PayloadUnavailable(
                f"the capture's datagrams of udp flow {flow['id']} do not match the report "
                "(was the report made from another file?)"
            )
        return data


def _ep(end: dict[str, Any]) -> str:
    ip = str(end.get("ip"))
    return f"[{ip}]:{end.get('port')}" if ":" in ip else f"{ip}:{end.get('port')}"
