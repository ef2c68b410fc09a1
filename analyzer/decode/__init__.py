"""Decoding stage: capture file -> PACKETS frame (``analyzer.schema.PACKETS``).

Three engines produce the same table: ``native`` (our columnar numpy decoder, the default,
for speed), ``scapy`` (RawPcapReader + scapy dissection) and ``tshark`` (Wireshark's
dissectors through pyshark). Engines other than native are imported lazily so that
``import analyzer`` never pays for scapy or pyshark.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from analyzer.errors import InputError, UsageError

if TYPE_CHECKING:
    import pandas as pd

ENGINES = ("native", "scapy", "tshark")


def read_packets(path: str | os.PathLike[str], engine: str = "native") -> pd.DataFrame:
    """Return the PACKETS frame of ``path`` decoded by ``engine``."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file", hint="check the path of the capture")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a capture file")
    if engine == "native":
        from analyzer.decode.native import read_native

        return read_native(p)
    if engine == "scapy":
        from analyzer.decode.scapy_engine import read_scapy

        return read_scapy(p)
    if engine == "tshark":
        from analyzer.decode.tshark_engine import read_tshark

        return read_tshark(p)
    raise UsageError(f"unknown engine {engine!r}", hint=f"choose one of: {', '.join(ENGINES)}")
