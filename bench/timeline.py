"""Where one `analyzer analyze F --format json` process spends its time, phase by phase.

    python bench/timeline.py bench/data/bench-1m.pcap [-j N]

Runs the CLI in this process with timestamps (seconds since start, on stderr) at: imports
done, decoding started/ended, the TCP workers forked, writing the JSON started/ended, and
exit. The report goes to /dev/null. For a whole-process wall time, compare with
`/usr/bin/time python -m analyzer analyze F --format json >/dev/null` (this adds ~10 ms).
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Callable
from typing import Any

T0 = time.perf_counter()


def mark(what: str) -> None:
    sys.stderr.write(f"{time.perf_counter() - T0:7.3f} s  {what}\n")


def around(obj: Any, name: str, before: str, after: str | None = None) -> None:
    """Wrap ``obj.name`` so calls are marked ``before`` (and ``after`` they return)."""
    real: Callable[..., Any] = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(before)
        out = real(*args, **kwargs)
        if after:
            mark(after)
        return out

    setattr(obj, name, wrapper)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    import analyzer.analysis
    import analyzer.report.json_report

    around(analyzer.analysis, "read_packets", "decode starts", "decode ends")
    around(os, "fork", "TCP worker forked")
    around(analyzer.report.json_report, "write_json", "JSON writing starts", "JSON writing ends")
    atexit.register(mark, "exit (atexit handlers)")
    mark("imports done")
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # the report is not the point
    sys.argv = ["analyzer", "analyze", argv[0], "--format", "json", *argv[1:]]
    from analyzer.cli import main as cli

    cli()


if __name__ == "__main__":
    main(sys.argv[1:])
