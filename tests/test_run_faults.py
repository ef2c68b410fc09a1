"""Faults of ``analyzer run``: each gives one clear message with a fix and leaves nothing behind
(no process, no namespace, no half-written file): port in use, a capture tool that dies,
Ctrl-C in the middle, no way to capture."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from livehelp import alive, env, leftovers, need_namespace, pids_of

from analyzer.capture.pcapfile import count_frames
from analyzer.demos.scenarios import SCENARIOS
from analyzer.demos.session import ScenarioResult, _first_error
from analyzer.errors import EXIT_ENVIRONMENT, CapturePermissionError, DemoError

pytestmark = pytest.mark.live


def run_cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", "run", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(**extra_env),
        check=False,
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith(("error:", "hint:"))]


def assert_left_nothing(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "report.json").read_text())  # complete JSON, never half
    assert not list(out.glob(".*.tmp")), "a temporary file was left"
    for capture in list(out.glob("*.pcapng")) + list(out.glob("*.pcap")):
        assert count_frames(capture).complete, f"{capture} is half-written"
    for sc in doc["scenarios"]:
        for pid in pids_of(sc):
            assert not alive(pid), f"{sc['name']}: process {pid} survived"
    assert leftovers() == []  # and so no private namespace either: it lives as long as its processes
    return doc


@pytest.mark.skipif(os.geteuid() != 0, reason="--host-loopback needs root here")
def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", 10013))
        except OSError:
            pytest.skip("port 10013 is taken on this host already")
        busy.listen()
        proc = run_cli("--host-loopback", "--out", str(tmp_path), "daytime")
    assert proc.returncode == EXIT_ENVIRONMENT
    assert error_lines(proc) == [
        "error: daytime: TCP port 10013 on 127.0.0.1 is in use: "
        "error: cannot listen on 127.0.0.1 port 10013: Address already in use",
        "hint: stop the program using that port, or run without --host-loopback",
    ]
    doc = assert_left_nothing(tmp_path)
    assert doc["passed"] is False and doc["error"]["message"].startswith("daytime: TCP port 10013")
    assert not list(tmp_path.glob("*.pcap*")), "a capture was started before the server was up"


def test_capture_backend_dies(tmp_path: Path) -> None:
    need_namespace()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dumpcap").write_text(
        "#!/bin/sh\n"
        'for a; do case "$prev" in -w) out="$a";; esac; prev="$a"; done\n'
        'echo "Capturing on \'lo\'" >&2; echo "File: $out" >&2\n'
        'printf "\\012\\015\\015\\012junk" > "$out"\n'
        "sleep 0.2; echo 'dumpcap: The capture device went away' >&2; exit 2\n"
    )
    (fake / "dumpcap").chmod(0o755)
    out = tmp_path / "out"
    proc = run_cli("--capture", "dumpcap", "--out", str(out), "daytime", PATH=f"{fake}:{os.environ['PATH']}")
    assert proc.returncode == EXIT_ENVIRONMENT
    assert error_lines(proc)[0] == (
        "error: daytime: dumpcap stopped during the run: dumpcap: The capture device went away"
    )
    assert_left_nothing(out)
    assert not (out / "daytime.pcapng").exists()


def test_ctrl_c_stops_cleanly_with_a_partial_report(tmp_path: Path) -> None:
    need_namespace()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "run", "--all", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("*.pcap*")) and time.monotonic() < deadline:  # a capture is running
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    doc = assert_left_nothing(out)
    assert doc["interrupted"] is True and doc["passed"] is False
    states = [(sc["interrupted"], bool(sc["problems"])) for sc in doc["scenarios"]]
    assert any(interrupted for interrupted, _ in states)
    assert all(problems for interrupted, problems in states if interrupted)  # says what is missing
    assert "STOPPED" in stdout or "NOT RUN" in stdout


def test_unknown_backend_and_missing_compiler_are_one_line_errors(tmp_path: Path) -> None:
    proc = run_cli("--capture", "dumpcap", "--out", str(tmp_path / "a"), PATH=str(tmp_path))
    assert proc.returncode == EXIT_ENVIRONMENT
    assert error_lines(proc) == [
        "error: cannot capture with dumpcap: dumpcap is not installed",
        "hint: apt install tshark (it brings dumpcap), or choose --capture scapy",
    ]
    proc = run_cli("--impl", "c", "--out", str(tmp_path / "b"), PATH=str(tmp_path), CC="")
    assert proc.returncode == EXIT_ENVIRONMENT
    assert error_lines(proc)[0] == "error: no C compiler found (tried $CC, cc, gcc, clang)"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing created


def test_no_namespace_is_explained() -> None:
    code = (
        "import analyzer.capture.netns as n\n"
        "n._unshare = lambda flags: 1  # EPERM, as with unprivileged user namespaces disabled\n"
        "try:\n    n.enter()\n"
        "except Exception as e:\n    print(type(e).__name__, '|', e.message, '|', e.hint)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), check=False
    )
    name, message, hint = (part.strip() for part in proc.stdout.split("|"))
    assert name == "CapturePermissionError"
    assert message == "cannot create a private network namespace: Operation not permitted"
    assert "--host-loopback" in hint and "unprivileged_userns_clone" in hint


def test_worker_errors_become_their_class_with_the_scenario_name() -> None:
    results = [
        ScenarioResult(SCENARIOS["daytime"], 4, worker={"error": None}),
        ScenarioResult(
            SCENARIOS["refused"],
            6,
            worker={"error": {"class": "CapturePermissionError", "message": "no", "hint": "fix"}},
        ),
    ]
    err = _first_error(results)
    assert isinstance(err, CapturePermissionError) and err.exit_code == EXIT_ENVIRONMENT
    assert (err.message, err.hint) == ("refused-ipv6: no", "fix")
    results[1].worker["error"]["class"] = "DemoError"
    assert isinstance(_first_error(results), DemoError)
