"""Capturing the demo traffic: backends, frame witness, private network namespaces.

Backends, tried in this order unless one is named: ``dumpcap`` (pcapng), ``tcpdump`` (pcap;
``--immediate-mode -U``, stopped with SIGINT) and ``scapy`` (AsyncSniffer, pcapng, needs no
system package). scapy is imported only inside its backend, never by ``import analyzer``.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.capture.base import Backend, CaptureStats
from analyzer.errors import ToolNotFoundError, UsageError

BACKENDS = ("dumpcap", "tcpdump", "scapy")
INSTALL_HINTS = {
    "dumpcap": "apt install tshark (it brings dumpcap), or choose --capture scapy",
    "tcpdump": "apt install tcpdump, or choose --capture dumpcap or scapy",
    "scapy": "pip install scapy",
}

__all__ = ["BACKENDS", "Backend", "CaptureStats", "choose", "create", "unavailable_reasons"]


def unavailable_reasons(isolation: str) -> dict[str, str | None]:
    """Each backend mapped to None when usable under ``isolation`` (host, netns, userns), else why not."""
    from analyzer.capture import dumpcap, sniffer, tcpdump

    return {
        "dumpcap": dumpcap.available(),
        "tcpdump": tcpdump.available(isolation),
        "scapy": sniffer.available(),
    }


def choose(requested: str | None, isolation: str) -> str:
    """The backend to use: ``requested`` if usable, else the first usable one in order."""
    reasons = unavailable_reasons(isolation)
    if requested is not None:
        if requested not in reasons:
            raise UsageError(
                f"unknown capture backend {requested!r}", hint=f"choose one of {', '.join(BACKENDS)}"
            )
        why = reasons[requested]
        if why is not None:
            others = " or ".join(b for b in BACKENDS if b != requested and reasons[b] is None)
            hint = INSTALL_HINTS[requested] if "not installed" in why else f"choose --capture {others}"
            raise ToolNotFoundError(f"cannot capture with {requested}: {why}", hint=hint)
        return requested
    for name in BACKENDS:
        if reasons[name] is None:
            return name
    raise ToolNotFoundError(
        "no capture backend is usable: " + "; ".join(f"{why}" for why in reasons.values() if why),
        hint="pip install scapy (or apt install tshark for dumpcap)",
    )


def create(name: str, *, iface: str, bpf: str, path: Path, proto: str, ports: list[int]) -> Backend:
    from analyzer.capture.dumpcap import Dumpcap
    from analyzer.capture.sniffer import ScapySniffer
    from analyzer.capture.tcpdump import Tcpdump

    classes: dict[str, type[Backend]] = {"dumpcap": Dumpcap, "tcpdump": Tcpdump, "scapy": ScapySniffer}
    return classes[name](iface, bpf, path, proto, ports)
