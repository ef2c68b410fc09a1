"""The worker process: one scenario attempt inside its own private network namespace.

``analyzer run`` starts ``python -m analyzer.demos.worker`` per scenario attempt and writes one
JSON job line to its stdin. The worker enters a new network namespace first (while it is still
single-threaded; see ``analyzer.capture.netns``), runs the exchange, and answers with JSON lines
on stdout: ``progress`` events, then one ``result``. When its last process exits, the namespace
is gone. SIGTERM (sent by the kernel if ``analyzer run`` dies) is handled like Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from analyzer.errors import AnalyzerError

WORKER_PROTOCOL = 1


def _emit(obj: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass  # the parent is gone (killed): the cleanup already happened, nobody is listening


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def decode_job(doc: dict[str, Any]) -> Any:
    from analyzer.demos.driver import Job
    from analyzer.demos.scenarios import Scenario

    sc = dict(doc["scenario"])
    sc["client"] = tuple(sc["client"])
    sc["server"] = tuple(sc["server"]) if sc["server"] is not None else None
    sc["client_exits"] = frozenset(sc["client_exits"])
    return Job(
        scenario=Scenario(**sc),
        family=doc["family"],
        impl=doc["impl"],
        backend=doc["backend"],
        capture_path=Path(doc["capture_path"]),
        host_loopback=doc["host_loopback"],
        c_bin_dir=Path(doc["c_bin_dir"]) if doc.get("c_bin_dir") else None,
        watch=doc["watch"],
        client_timeout=doc["client_timeout"],
    )


def main() -> int:
    # The parent forwards Ctrl-C as SIGINT; we may have inherited "ignore" (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_term)
    result: dict[str, Any] = {
        "event": "result",
        "protocol": WORKER_PROTOCOL,
        "error": None,
        "worker_pid": os.getpid(),
    }
    try:
        doc = json.loads(sys.stdin.readline())
        isolation = "host"
        if not doc["host_loopback"]:
            from analyzer.capture import netns

            isolation = netns.enter()  # before any thread exists
            result["netns"] = os.stat("/proc/self/ns/net").st_ino
        result["isolation"] = isolation
        from analyzer.demos.driver import Exchange, run

        ex = Exchange()
        try:
            run(decode_job(doc), ex, _emit)
        finally:
            result.update(ex.to_dict())
    except AnalyzerError as exc:
        result["error"] = {"class": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    except KeyboardInterrupt:
        result["interrupted"] = True
    except Exception as exc:  # a bug: report it with its traceback instead of dying silently
        traceback.print_exc()
        result["error"] = {"class": "InternalError", "message": f"{type(exc).__name__}: {exc}", "hint": None}
    _emit(result)
    return 130 if result.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
