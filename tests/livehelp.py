"""Shared helpers of the live tests (capture, run): namespace probe, worker jobs, leftovers."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from analyzer.demos.scenarios import SCENARIOS, Scenario

ROOT = Path(__file__).resolve().parent.parent
# Every process the live tests start carries this variable, and so do all their descendants
# (workers, demo programs, capture tools): a process still carrying it after a run is a leftover,
# whatever it was reparented to.
MARK_VAR = "ANALYZER_TEST_MARK"
MARK = f"{os.getpid()}-{uuid.uuid4().hex}"


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out[MARK_VAR] = MARK
    out.update(extra)
    return out


def leftovers() -> list[str]:
    """Running processes (not zombies) that descend from a process a live test started."""
    needle = f"{MARK_VAR}={MARK}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and alive(int(entry.name)):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name} {cmdline}")
        except OSError:
            continue
    return found


@functools.cache
def namespace_problem() -> str | None:
    """None when this user can create a private network namespace, else why not."""
    probe = "from analyzer.capture import netns; netns.enter()"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, env=env(), check=False
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["namespace probe failed"])[-1]


def need_namespace() -> None:
    problem = namespace_problem()
    if problem:
        pytest.skip(f"no private network namespace here: {problem}")


def job(scenario: Scenario | str, backend: str, path: Path, **over: Any) -> dict[str, Any]:
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    doc = dataclasses.asdict(sc)
    doc["client_exits"] = sorted(doc["client_exits"])
    out: dict[str, Any] = {
        "scenario": doc,
        "family": 4,
        "impl": "python",
        "backend": backend,
        "capture_path": str(path),
        "host_loopback": False,
        "c_bin_dir": None,
        "watch": False,
        "client_timeout": 15.0,
    }
    out.update(over)
    return out


def run_worker(doc: dict[str, Any], *, path_env: str | None = None, timeout: float = 120) -> dict[str, Any]:
    """Run ``python -m analyzer.demos.worker`` on one job; return its result line."""
    extra = {"PATH": path_env} if path_env else {}
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.demos.worker"],
        input=json.dumps(doc) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra),
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = [m for m in lines if m.get("event") == "result"]
    assert results, f"worker exit {proc.returncode}: {proc.stderr}"
    return results[-1]


def alive(pid: int) -> bool:
    """True when ``pid`` runs (zombies count as gone: they hold no resources but a table slot)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_of(result: dict[str, Any]) -> list[int]:
    """Every process a worker result names: the worker, the demo programs, the capture tool."""
    pids = [result.get("worker_pid")]
    pids += [p.get("pid") for p in (result.get("programs") or {}).values()]
    cap = result.get("capture_stats") or result.get("capture")  # a run document or a worker result
    if isinstance(cap, dict):
        pids.append(cap.get("pid"))
    return [int(p) for p in pids if p]
