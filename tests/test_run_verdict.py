"""analyzer.demos.verdict and the run's text rendering, on synthetic reports and kernel samples."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from analyzer.checks import Payloads
from analyzer.demos import render
from analyzer.demos.scenarios import SCENARIOS
from analyzer.demos.session import RunOptions, RunResult, ScenarioResult
from analyzer.demos.verdict import health_checks, judge, kernel_view

T0 = 1_795_000_000.0


def sock(
    local: tuple[str, int], remote: tuple[str, int], state: str = "TIME_WAIT", timer: float = 59.5
) -> dict:
    return {
        "local_ip": local[0],
        "local_port": local[1],
        "remote_ip": remote[0],
        "remote_port": remote[1],
        "state": state,
        "timer": 3,
        "timer_s": timer,
        "inode": 0,
    }


def flow(
    holder: str, client: tuple[str, int] = ("127.0.0.1", 40864), server: tuple[str, int] = ("127.0.0.1", 13)
) -> dict[str, Any]:
    return {
        "id": 0,
        "client": {"ip": client[0], "port": client[1]},
        "server": {"ip": server[0], "port": server[1]},
        "handshake": {"state": "complete", "rtt_ms": 0.03},
        "data": {
            "client_to_server": {"bytes": 0, "preview": ""},
            "server_to_client": {"bytes": 20, "preview": "2026-11-26 22:14:03⏎"},
            "retransmissions": 0,
        },
        "teardown": {"kind": "fin-4way", "first_fin": "server", "bytes_after_first_fin": 0},
        "time_wait": {"holder": holder, "start_ts": T0, "until_ts": T0 + 60, "hold_s": 60.0},
        "zeek": {"conn_state": "SF", "history": "ShAdfFa"},
        "completeness": 31,
    }


C, S = ("127.0.0.1", 40864), ("127.0.0.1", 13)


class Streams(Payloads):
    """The bytes behind the synthetic flows (no capture file): what the daytime server sent."""

    def __init__(self, streams: dict[tuple[int, str], bytes]) -> None:
        super().__init__(None)
        self.streams = streams

    def tcp_stream(self, flow: dict[str, Any], direction: str) -> bytes:
        return self.streams[(int(flow["id"]), direction)]


def daytime_streams() -> Streams:
    return Streams({(0, "client_to_server"): b"", (0, "server_to_client"): b"2026-11-26 22:14:03\n"})


def test_kernel_view_matches_the_four_tuple_and_names_the_side() -> None:
    view, holder = kernel_view(flow("server"), [sock(S, C, timer=58.9)])
    assert holder == "server" and view["agrees"] is True
    assert view["observed"] == [
        {
            "local": "127.0.0.1:13",
            "remote": "127.0.0.1:40864",
            "side": "server",
            "state": "TIME_WAIT",
            "timer_s": 58.9,
        }
    ]
    assert view["timer_s"] == 58.9
    # Another connection of the same server port is not this flow's.
    other = sock(S, ("127.0.0.1", 40000))
    view, holder = kernel_view(flow("server"), [other])
    assert (holder, view["agrees"], view["observed"]) == ("none", False, [])
    # Both sides, and a LISTEN socket that is ignored.
    view, holder = kernel_view(flow("both"), [sock(S, C), sock(C, S), sock(S, ("0.0.0.0", 0), "LISTEN")])
    assert holder == "both" and view["agrees"]
    view, holder = kernel_view(flow("none"), [])
    assert holder == "none" and view["agrees"] and view["timer_s"] is None


def test_kernel_view_compares_ipv6_and_mapped_addresses() -> None:
    f = flow("client", client=("::1", 50000), server=("0:0:0:0:0:0:0:1", 13))
    view, holder = kernel_view(f, [sock(("::1", 50000), ("::1", 13))])
    assert holder == "client" and view["observed"][0]["local"] == "[::1]:50000"
    f4 = flow("server")
    view, holder = kernel_view(f4, [sock(("::ffff:127.0.0.1", 13), ("::ffff:127.0.0.1", 40864))])
    assert holder == "server"


def test_health_checks() -> None:
    ok = {"capture": {"dropped": 0, "witness": 8, "frames_in_file": 8}, "kernel": {"settled": True}}
    assert all(c.passed for c in health_checks(ok, "tcp"))
    bad = {"capture": {"dropped": 2, "witness": 9, "frames_in_file": 8}, "kernel": {"settled": False}}
    assert [(c.name, c.passed) for c in health_checks(bad, "tcp")] == [
        ("capture.dropped", False),
        ("capture.frames", False),
        ("kernel.settled", False),
    ]
    assert health_checks(bad, "tcp")[0].describe() == "capture dropped: expected 0, observed 2"
    assert [c.field for c in health_checks({"capture": {"dropped": 0}}, "udp")] == ["dropped"]


def test_judge_adds_kernel_view_and_fails_on_disagreement() -> None:
    worker = {
        "capture": {"dropped": 0, "witness": 8, "frames_in_file": 8},
        "kernel": {"settled": True, "sample": {"ts": T0 + 0.1, "sockets": [sock(C, S)]}},
    }
    report = {"tcp": [flow("server")], "udp": []}
    checks = judge(SCENARIOS["daytime"], worker, report, None, payloads=daytime_streams())
    assert report["tcp"][0]["time_wait"]["kernel"]["agrees"] is False
    failed = [(c.name, c.selector, c.field, c.expected, c.observed, c.flows) for c in checks if not c.passed]
    assert failed == [("kernel.tcp[0]", "kernel", "time_wait.kernel", "server", "client", (0,))]
    # The expectation file's checks come from analyzer.checks: one per rule and key.
    names = [c.name for c in checks]
    assert names[:4] == ["capture.dropped", "capture.frames", "kernel.settled", "kernel.tcp[0]"]
    assert "tcp[0].server_to_client.regex" in names and "tcp[0].count" in names
    assert checks[-1].where.startswith("analyzer/demos/expect/daytime.toml:")


def test_judge_reads_regex_bytes_from_the_payloads_and_maps_ports() -> None:
    worker = {
        "capture": {"dropped": 0, "witness": 8, "frames_in_file": 8},
        "kernel": {"settled": True, "sample": {"ts": T0, "sockets": [sock(("127.0.0.1", 10013), C)]}},
    }
    report = {"tcp": [flow("server", server=("127.0.0.1", 10013))], "udp": []}
    wrong = Streams({(0, "client_to_server"): b"", (0, "server_to_client"): b"not a time line\n"})
    checks = judge(SCENARIOS["daytime"], worker, report, {13: 10013}, payloads=wrong)
    failed = [c for c in checks if not c.passed]
    assert [c.name for c in failed] == ["tcp[0].server_to_client.regex"]
    assert failed[0].selector == "tcp[0] server_port=10013" and failed[0].observed == "not a time line\n"
    assert failed[0].describe().startswith("tcp[0] server_port=10013 server_to_client.regex: expected ")


def test_text_report_shows_prediction_kernel_and_verdicts(tmp_path: Path) -> None:
    sc = SCENARIOS["daytime"]
    worker = {
        "event": "result",
        "attempts": 1,
        "capture": {"dropped": 0, "witness": 8, "frames_in_file": 8},
        "kernel": {"settled": True, "sample": {"ts": T0 + 0.5, "sockets": [sock(S, C, timer=59.4)]}},
    }
    report = {"tcp": [flow("server")], "udp": []}
    result = ScenarioResult(sc, 4, worker=worker, capture_path=tmp_path / "daytime.pcapng", report=report)
    result.checks = judge(sc, worker, report, None, payloads=daytime_streams())
    run = RunResult(RunOptions([sc]), "netns", "dumpcap", tmp_path, [result], seconds=1.25)
    out = io.StringIO()
    render.render(run, render.make_console(out))
    text = out.getvalue()
    assert "private network namespace - capture: dumpcap on lo" in text
    assert "daytime - the server sends the time" in text and text.splitlines()[2].endswith("PASS")
    assert (
        " kernel     predicted: server 127.0.0.1:13 in TIME_WAIT until +60 s (59.5 s left at the sample)"
        " | kernel: 127.0.0.1:13 -> 127.0.0.1:40864 TIME_WAIT, 59 s left | agree"
    ) in text
    assert "checks     13 of 13 passed" in text
    assert "1 scenario passed - 1.2 s - report:" in text
    assert "·" not in text and "━" not in text  # plain ASCII when not a terminal


def test_kernel_line_for_none_and_disagreement() -> None:
    refused = flow("none")
    refused["time_wait"] = {"holder": "none", "kernel": {"observed": [], "timer_s": None, "agrees": True}}
    assert render.kernel_line(refused, T0) == "predicted: no TIME_WAIT | kernel: no TIME_WAIT socket | agree"
    wrong = flow("client")
    view, _ = kernel_view(wrong, [sock(S, C, timer=59.0)])
    wrong["time_wait"]["kernel"] = view
    assert render.kernel_line(wrong, T0 + 1) == (
        "predicted: client 127.0.0.1:40864 in TIME_WAIT until +60 s (59.0 s left at the sample)"
        " | kernel: 127.0.0.1:13 -> 127.0.0.1:40864 TIME_WAIT, 59 s left | DISAGREE"
    )
