"""The files a run leaves: ``captures/runs/<UTC timestamp>/`` with one capture and one kernel
sample file per scenario, ``report.json`` (``analyzer.run/1``) and ``report.html`` (when the HTML
renderer is part of this build). Files are written to a temporary name and renamed, so an
interrupted run never leaves half a file.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.errors import UsageError

if TYPE_CHECKING:
    from analyzer.demos.session import RunResult, ScenarioResult

RUN_SCHEMA = "analyzer.run/1"
DEFAULT_ROOT = Path("captures") / "runs"


def make_out_dir(out: Path | None) -> Path:
    """``out`` (created if needed) or a new ``captures/runs/<UTC timestamp>/``."""
    try:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            return out
        stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
        DEFAULT_ROOT.mkdir(parents=True, exist_ok=True)
        for n in range(1, 100):
            path = DEFAULT_ROOT / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
        raise FileExistsError(errno.EEXIST, "too many runs in one second", str(DEFAULT_ROOT / stamp))
    except OSError as exc:
        where = exc.filename or out or DEFAULT_ROOT
        raise UsageError(
            f"cannot create the output directory {where}: {exc.strerror}", hint="pass a writable --out DIR"
        ) from None


def write_json(path: Path, doc: Any) -> None:
    write_text(path, json.dumps(doc, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def scenario_doc(r: ScenarioResult) -> dict[str, Any]:
    kernel = dict(r.worker.get("kernel") or {})
    kernel.update(
        isolation=r.worker.get("isolation"),
        netns=r.worker.get("netns"),
        attempts=r.attempts,
        history=r.worker.get("history") or [],
    )
    return {
        "name": r.name,
        "summary": r.scenario.summary,
        "passed": r.passed,
        "family": r.family,
        "capture": str(r.capture_path) if r.capture_path else None,
        "capture_stats": r.worker.get("capture") or {},
        "kernel": kernel,
        "programs": r.worker.get("programs") or {},
        "worker_pid": r.worker.get("worker_pid"),
        "timings": r.worker.get("timings") or {},
        "interrupted": r.interrupted,
        "error": r.worker.get("error"),
        "problems": r.problems,
        "report": r.report,
    }


def run_doc(run: RunResult) -> dict[str, Any]:
    return {
        "schema": RUN_SCHEMA,
        "passed": run.passed,
        "interrupted": run.interrupted,
        "isolation": run.isolation,
        "capture_backend": run.backend,
        "impl": run.options.impl,
        "msl": run.options.msl,
        "out_dir": str(run.out_dir),
        "seconds": round(run.seconds, 3),
        "error": None if run.error is None else {"message": run.error.message, "hint": run.error.hint},
        "scenarios": [scenario_doc(r) for r in run.results],
    }


def write_run(run: RunResult) -> None:
    for r in run.results:
        if r.worker.get("kernel"):
            write_json(run.out_dir / f"{r.name}.kernel.json", scenario_doc(r)["kernel"])
    write_json(run.out_dir / "report.json", run_doc(run))
    from analyzer.demos.documents import html_available, run_html

    if html_available():
        run.html_report = run.out_dir / "report.html"
        write_text(run.html_report, run_html(run))
