"""The pipeline behind ``analyzer run``: plan, run the workers, analyze, judge, write.

Each scenario runs in its own worker process and private network namespace
(``analyzer.demos.worker``), so scenarios without a barrier run side by side (a few at a time);
the simultaneous close runs alone: its two peers need both cores, and its worker retries it, a
bounded number of times, until the kernel shows both ends in TIME_WAIT. Ctrl-C is forwarded to
the workers, which stop their capture cleanly; what was captured is still analyzed and the
report says what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import analyzer
from analyzer import capture, errors
from analyzer.capture.procs import Child
from analyzer.checks import Check
from analyzer.demos import outputs
from analyzer.demos.scenarios import Scenario

if TYPE_CHECKING:
    from analyzer.analysis import Analysis

OnEvent = Callable[[str, dict[str, Any]], None]
WORKER_TIMEOUT = 120.0  # ten tries of a simultaneous close fit easily
WATCH_EXTRA = 140.0
MAX_PARALLEL = 4  # workers at once: each runs a capture tool and two demo programs


@dataclass
class RunOptions:
    scenarios: list[Scenario]
    ipv6: bool = False
    impl: str = "python"
    capture: str | None = None
    host_loopback: bool = False
    out: Path | None = None
    msl: float = 30.0
    watch: bool = False


@dataclass
class ScenarioResult:
    scenario: Scenario
    family: int
    worker: dict[str, Any] = field(default_factory=dict)
    capture_path: Path | None = None
    report: dict[str, Any] | None = None
    analysis: Analysis | None = None  # kept for the text report
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.scenario.name + ("-ipv6" if self.family == 6 else "")

    @property
    def attempts(self) -> int:
        return int(self.worker.get("attempts") or 0)

    @property
    def interrupted(self) -> bool:
        return bool(self.worker.get("interrupted"))

    @property
    def passed(self) -> bool:
        return (
            bool(self.checks)
            and all(c.passed for c in self.checks)
            and not self.problems
            and not self.interrupted
            and self.report is not None
        )


@dataclass
class RunResult:
    options: RunOptions
    isolation: str
    backend: str
    out_dir: Path
    results: list[ScenarioResult]
    interrupted: bool = False
    error: errors.AnalyzerError | None = None
    seconds: float = 0.0
    started: float = 0.0  # wall clock (time.time()) when the run began
    html_report: Path | None = None  # report.html beside report.json, when the renderer exists

    @property
    def passed(self) -> bool:
        return not self.interrupted and self.error is None and all(r.passed for r in self.results)


def isolation_mode(host_loopback: bool) -> str:
    if host_loopback:
        return "host"
    return "netns" if os.geteuid() == 0 else "userns"


def _worker_env() -> dict[str, str]:
    # The workers and the Python demo programs import this very package, wherever it lives.
    env = dict(os.environ)
    root = str(Path(analyzer.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _job(result: ScenarioResult, opts: RunOptions, backend: str, out_dir: Path, c_bin: Path | None) -> str:
    sc = dataclasses.asdict(result.scenario)
    sc["client_exits"] = sorted(sc["client_exits"])
    ext = "pcap" if backend == "tcpdump" else "pcapng"
    result.capture_path = out_dir / f"{result.name}.{ext}"
    return json.dumps(
        {
            "scenario": sc,
            "family": result.family,
            "impl": opts.impl,
            "backend": backend,
            "capture_path": str(result.capture_path),
            "host_loopback": opts.host_loopback,
            "c_bin_dir": str(c_bin) if c_bin else None,
            "watch": opts.watch,
            "client_timeout": 15.0,
        }
    )


class _Workers:
    """Running workers, polled for their JSON lines; every wait is bounded."""

    def __init__(self, on_event: OnEvent | None) -> None:
        self.on_event = on_event
        self.active: dict[str, tuple[ScenarioResult, Child, int, float]] = {}

    def spawn(self, result: ScenarioResult, job: str, timeout: float) -> None:
        argv = [sys.executable, "-m", "analyzer.demos.worker"]
        child = Child(
            argv, name=f"worker {result.name}", stdin=True, death_signal=signal.SIGTERM, env=_worker_env()
        )
        child.send_line(job)
        result.worker = {}
        self.active[result.name] = (result, child, 0, time.monotonic() + timeout)
        if self.on_event:
            self.on_event(result.name, {"event": "started"})

    def collect(self) -> list[ScenarioResult]:
        """Wait until every active worker has answered (or timed out); return their results."""
        done: list[ScenarioResult] = []
        while self.active:
            for name, (result, child, seen, deadline) in list(self.active.items()):
                lines = child.lines("stdout")
                for line in lines[seen:]:
                    self._handle(result, line)
                self.active[name] = (result, child, len(lines), deadline)
                answered = "event" in result.worker and result.worker.get("event") == "result"
                if answered or child.returncode is not None or time.monotonic() > deadline:
                    if not answered:
                        self._lost(result, child, time.monotonic() > deadline)
                    child.stop(signal.SIGTERM, timeout=10.0)
                    del self.active[name]
                    done.append(result)
            time.sleep(0.01)
        return done

    def _handle(self, result: ScenarioResult, line: str) -> None:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            return
        if msg.get("event") == "result":
            result.worker = msg
        elif self.on_event:
            self.on_event(result.name, msg)

    def _lost(self, result: ScenarioResult, child: Child, timed_out: bool) -> None:
        child.stop(signal.SIGTERM, timeout=10.0)
        for line in child.lines("stdout"):  # it may have answered while stopping
            self._handle(result, line)
        if result.worker.get("event") == "result":
            return
        tail = " ".join(child.lines("stderr")[-3:]) or f"exit code {child.returncode}"
        what = "did not finish in time" if timed_out else "stopped without a result"
        result.worker = {
            "event": "result",
            "error": {"class": "InternalError", "message": f"worker {what}: {tail}"},
        }

    def interrupt(self) -> None:
        for _, child, _, _ in self.active.values():
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        for _, child, _, _ in self.active.values():
            child.stop(signal.SIGKILL, timeout=5.0)
        self.active.clear()


def _batches(results: list[ScenarioResult], host_loopback: bool) -> list[list[ScenarioResult]]:
    """Scenarios that may run side by side (a few at a time), then the ones that must run alone."""
    if host_loopback:  # same host ports: one at a time
        return [[r] for r in results]
    together = [r for r in results if not r.scenario.barrier]
    alone = [[r] for r in results if r.scenario.barrier]
    return [together[i : i + MAX_PARALLEL] for i in range(0, len(together), MAX_PARALLEL)] + alone


def execute(opts: RunOptions, on_event: OnEvent | None = None) -> RunResult:
    """Run every scenario of ``opts``; faults are returned in ``RunResult.error`` after cleanup."""
    t0, started = time.monotonic(), time.time()
    isolation = isolation_mode(opts.host_loopback)
    backend = capture.choose(opts.capture, isolation)
    c_bin = None
    if opts.impl == "c":
        from analyzer.demos.cbuild import build

        c_bin = build()
    out_dir = outputs.make_out_dir(opts.out)
    family = 6 if opts.ipv6 else 4
    results = [ScenarioResult(sc, family) for sc in opts.scenarios]
    run = RunResult(opts, isolation, backend, out_dir, results, started=started)
    workers = _Workers(on_event)
    timeout = WORKER_TIMEOUT + (WATCH_EXTRA if opts.watch else 0.0)
    try:
        for batch in _batches(results, opts.host_loopback):
            for result in batch:
                workers.spawn(result, _job(result, opts, backend, out_dir, c_bin), timeout)
            workers.collect()
            if any(r.worker.get("error") or r.worker.get("interrupted") for r in batch):
                break
    except KeyboardInterrupt:
        run.interrupted = True
        workers.interrupt()
        try:
            workers.collect()
        except KeyboardInterrupt:
            workers.kill()
    run.interrupted = run.interrupted or any(r.interrupted for r in results)
    run.error = _first_error(results)
    for result in results:
        _judge(result, opts, isolation)
    run.seconds = time.monotonic() - t0
    outputs.write_run(run)
    return run


def _first_error(results: list[ScenarioResult]) -> errors.AnalyzerError | None:
    for r in results:
        err = r.worker.get("error")
        if err:
            cls = getattr(errors, err.get("class", ""), None)
            if not (isinstance(cls, type) and issubclass(cls, errors.AnalyzerError)):
                cls = errors.CaptureError
            return cls(f"{r.name}: {err['message']}", hint=err.get("hint"))
    return None


def _judge(result: ScenarioResult, opts: RunOptions, isolation: str) -> None:
    from analyzer.demos.verdict import judge

    w = result.worker
    if not w:
        result.problems.append("not run")
        return
    if w.get("interrupted"):
        result.problems.append(f"interrupted during {w.get('stage', 'start')}: the rest was not captured")
    path = result.capture_path
    if path is None or not path.exists():
        result.capture_path = None
        if not w.get("error"):
            result.problems.append("no capture file")
        return
    try:
        from analyzer.analysis import analyze

        analysis = analyze(path, msl=opts.msl)
        report = analysis.to_dict()
    except ImportError as exc:
        result.problems.append(f"analysis is not available in this build: {exc}")
        return
    except errors.AnalyzerError as exc:
        result.problems.append(f"cannot analyze {path}: {exc.message}")
        return
    result.report, result.analysis = report, analysis
    if w.get("interrupted"):
        return  # a partial capture: shown as it is, not judged
    port_map = {result.scenario.port: result.scenario.server_port(True)} if opts.host_loopback else None
    result.checks = judge(result.scenario, w, report, port_map, analysis)
    report["checks"] = [c.to_dict() for c in result.checks]
    _measure_hold(result)


def _measure_hold(result: ScenarioResult) -> None:
    """With --watch-time-wait: the kernel's release time minus the capture's TIME_WAIT start."""
    watch = (result.worker.get("kernel") or {}).get("watch")
    if not watch or result.report is None:
        return
    starts = [f["time_wait"].get("start_ts") for f in result.report.get("tcp", []) if f.get("time_wait")]
    starts = [s for s in starts if s]
    if starts and watch.get("released_ts"):
        watch["measured_hold_s"] = round(watch["released_ts"] - min(starts), 2)
        watch["resolution_s"] = round(watch["released_ts"] - watch["last_seen_ts"], 2)
