"""The four demo programs and how to start each one, in Python or in C.

Python programs run as ``python -m analyzer.demos.<module>`` (no CLI import, so they start
fast); C programs are the binaries that ``analyzer.demos.cbuild`` compiled into its cache.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

IMPLS = ("python", "c")


@dataclass(frozen=True)
class Program:
    name: str  # what users type: analyzer demo NAME HOST PORT
    module: str  # analyzer.demos.<module> and analyzer/demos/c/<module>.c
    summary: str


PROGRAMS = {
    p.name: p
    for p in (
        Program("tcp-daytime-server", "tcp_daytime_server", "send the time to each client, then close"),
        Program("tcp-daytime-client", "tcp_daytime_client", "read until EOF, print it, close"),
        Program("udp-echo-server", "udp_echo_server", "send each datagram back to its sender"),
        Program("udp-echo-client", "udp_echo_client", "send lines, print each echoed reply"),
    )
}


def command(name: str, impl: str, c_bin_dir: Path | None = None) -> list[str]:
    """The argv prefix that starts program ``name`` (append HOST PORT and options)."""
    program = PROGRAMS[name]
    if impl == "python":
        return [sys.executable, "-m", f"analyzer.demos.{program.module}"]
    if impl == "c":
        if c_bin_dir is None:
            raise ValueError("the C programs need their build directory (analyzer.demos.cbuild.build)")
        return [str(c_bin_dir / program.module)]
    raise ValueError(f"unknown implementation {impl!r}")
