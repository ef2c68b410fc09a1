"""analyzer: make TCP and UDP behaviour visible and verifiable from packet captures.

``import analyzer`` stays light: pandas and numpy load on first use of ``read_packets``;
scapy and pyshark only inside the engines that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.analysis import Analysis

__all__ = ["Analysis", "__version__", "analyze", "read_packets"]


def read_packets(path: Any, engine: str = "native") -> pd.DataFrame:
    """Decode a pcap/pcapng (optionally gzip) file into a PACKETS frame (see ``analyzer.schema``).

    engine: ``native`` (default, fastest), ``scapy`` or ``tshark`` (via pyshark).
    """
    from analyzer.decode import read_packets as _read

    return _read(path, engine=engine)


def analyze(path: Any, *, msl: float = 30.0, engine: str = "native") -> Analysis:
    """Analyze a capture: TCP connections and UDP conversations (see ``analyzer.analysis``)."""
    from analyzer.analysis import analyze as _analyze

    return _analyze(path, msl=msl, engine=engine)


def __getattr__(name: str) -> Any:
    # ``analyzer.Analysis`` without importing pandas at ``import analyzer``.
    if name == "Analysis":
        from analyzer.analysis import Analysis

        return Analysis
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
