"""The TCP analysis split over forked workers (analyzer.flows.tcp_parallel) equals the serial one.

The benchmark generator's capture has every teardown kind, port reuse during TIME_WAIT, RSTs
and IPv6; shares are cut at 4-tuple boundaries, so the table, the JSON text and the records
must come out exactly as ``analyze_tcp`` makes them, for any number of workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas.testing as pdt
import pytest
from test_bench_gen import gen

from analyzer.analysis import Analysis, analyze
from analyzer.flows import tcp_parallel
from analyzer.flows.tcp_streams import build_tcp_packets
from analyzer.report.json_report import render_json

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture(scope="module")
def bench_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("par") / "bench.pcap"
    gen.write(path, "pcap", 6000, seed=7)
    return path


@pytest.fixture(scope="module")
def serial(bench_capture: Path) -> Analysis:
    return analyze(bench_capture, jobs=1)


@pytest.fixture
def small_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork even for a small capture (a few hundred packets per worker)."""
    monkeypatch.setattr(tcp_parallel, "MIN_PACKETS_PER_WORKER", 200)


def _same(a: Analysis, b: Analysis) -> None:
    pdt.assert_frame_equal(a.tcp, b.tcp)
    assert render_json(a) == render_json(b)
    assert list(a.tcp_records) == list(b.tcp_records)


@needs_fork
@pytest.mark.parametrize("jobs", [2, 3, 5])
def test_workers_give_the_serial_table_json_and_records(
    bench_capture: Path, serial: Analysis, small_shares: None, jobs: int
) -> None:
    tp = build_tcp_packets(serial.packets)
    assert len(tcp_parallel.share_cuts(tp, jobs)) == jobs + 1  # it really splits
    _same(serial, analyze(bench_capture, jobs=jobs))


def test_shares_are_cut_where_a_four_tuple_begins(serial: Analysis, small_shares: None) -> None:
    tp = build_tcp_packets(serial.packets)
    assert tp.n_blocks > 100 and (tp.next_on_tuple >= 0).any()  # port reuse is in the capture
    for workers in (2, 3, 4, 7):
        cuts = tcp_parallel.share_cuts(tp, workers, reserve=500)
        assert cuts[0] == 0 and cuts[-1] == tp.n_blocks and cuts == sorted(set(cuts))
        assert set(cuts[1:-1]) <= set(tp.tuple_starts().tolist())
        # every connection that reuses a 4-tuple is in the same share as the one before it
        share_of = np.searchsorted(cuts, np.arange(tp.n_blocks), side="right")
        reused = np.flatnonzero(tp.next_on_tuple >= 0)
        assert (share_of[reused] == share_of[tp.next_on_tuple[reused]]).all()
    assert tcp_parallel.share_cuts(tp, 1) == [0, tp.n_blocks]


def test_blocks_of_a_range_keep_global_ids(serial: Analysis) -> None:
    tp = build_tcp_packets(serial.packets)
    cut = int(tp.tuple_starts()[len(tp.tuple_starts()) // 2])
    left, right = tp.blocks(0, cut), tp.blocks(cut, tp.n_blocks)
    assert left.n_blocks + right.n_blocks == tp.n_blocks
    assert left.n_packets + right.n_packets == tp.n_packets
    assert (np.r_[left.conn_id, right.conn_id] == tp.conn_id).all()
    assert right.block[0] == 0 and right.starts[0] == 0
    assert (right.row == tp.row[tp.starts[cut] :]).all()
    with pytest.raises(ValueError, match="outside"):
        tp.blocks(2, 1)


def test_no_fork_while_another_thread_runs(serial: Analysis, small_shares: None) -> None:
    tp = build_tcp_packets(serial.packets)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not tcp_parallel.can_fork()
        assert tcp_parallel.share_cuts(tp, 4) == [0, tp.n_blocks]
    finally:
        stop.set()
        other.join()


@needs_fork
def test_a_failed_worker_is_redone_in_the_caller(
    bench_capture: Path, serial: Analysis, small_shares: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("worker cannot write")

    monkeypatch.setattr(tcp_parallel, "_write_share", broken)  # inherited by the forked worker
    with pytest.warns(RuntimeWarning, match="analyzing it here instead"):
        result = analyze(bench_capture, jobs=2)
    _same(serial, result)


@needs_fork
@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.glob("*.pcapng")))
def test_reference_captures_agree(name: str, small_shares: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_parallel, "MIN_PACKETS_PER_WORKER", 1)
    _same(analyze(CAPTURES / name, jobs=1), analyze(CAPTURES / name, jobs=4))


def test_invalid_jobs_is_a_usage_error(bench_capture: Path) -> None:
    from analyzer.errors import UsageError

    with pytest.raises(UsageError, match="jobs"):
        analyze(bench_capture, jobs=-1)


def test_cli_jobs_gives_the_same_report(bench_capture: Path, serial: Analysis) -> None:
    """The console entry point (which exits without interpreter teardown) writes it all."""
    out = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(bench_capture), "--format", "json", "-j", "2"],
        capture_output=True,
        check=True,
    )
    assert out.stdout.decode() == render_json(serial)
    bad = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(bench_capture), "-j", "-1"], capture_output=True
    )
    assert bad.returncode == 2


def test_exit_now_runs_atexit_and_flushes() -> None:
    code = (
        "import atexit, sys; from analyzer.cli import exit_now; "
        "atexit.register(lambda: print('bye')); sys.stdout.write('x'); exit_now({})"
    )
    for arg, status, err in (("3", 3, ""), ("None", 0, ""), ("'stopped'", 1, "stopped")):
        out = subprocess.run([sys.executable, "-c", code.format(arg)], capture_output=True, text=True)
        assert (out.returncode, out.stdout, out.stderr.strip()) == (status, "xbye\n", err)


@needs_fork
def test_an_error_in_the_caller_leaves_no_worker_behind(
    bench_capture: Path, small_shares: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.flows import udp

    def broken(*_: object) -> None:
        raise RuntimeError("udp failed")

    started: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            started.append(pid)
        return pid

    monkeypatch.setattr(udp, "analyze_udp", broken)
    monkeypatch.setattr(os, "fork", fork)
    with pytest.raises(RuntimeError, match="udp failed"):
        analyze(bench_capture, jobs=3)
    assert len(started) == 2
    for pid in started:  # reaped: no longer our child
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@needs_fork
def test_a_failed_fork_is_done_in_the_caller(
    bench_capture: Path, serial: Analysis, small_shares: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.warns(UserWarning, match="cannot fork a TCP worker"):
        result = analyze(bench_capture, jobs=3)
    _same(serial, result)


@needs_fork
def test_the_json_report_does_not_merge_the_tables(
    bench_capture: Path, serial: Analysis, small_shares: None
) -> None:
    result = analyze(bench_capture, jobs=2)
    assert render_json(result) == render_json(serial)
    assert callable(result._tables["tcp"])  # the workers' tables are merged on first use only
    pdt.assert_frame_equal(result.tcp, serial.tcp)
    assert not callable(result._tables["tcp"]) and result.tcp is result.tcp


def test_blocks_slices_every_field() -> None:
    from dataclasses import fields

    from analyzer.flows.tcp_streams import BLOCK_FIELDS, PACKET_FIELDS, TcpPackets

    assert {f.name for f in fields(TcpPackets)} == {*PACKET_FIELDS, *BLOCK_FIELDS, "packets"}


def test_a_reader_that_goes_away_is_not_an_error(bench_capture: Path) -> None:
    """``analyzer analyze F --format json | head``: exit 0, nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "analyze", str(bench_capture), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b'{\n  "schem'
    proc.stdout.close()  # the reader goes away before the report is written
    err = proc.stderr.read()
    assert (proc.wait(timeout=60), err) == (0, b"")


@pytest.mark.parametrize(
    ("args", "jobs"),
    [(["--format", "json"], 0), ([], 1), (["--format", "md"], 1), (["--format", "text", "-j", "2"], 2)],
)
def test_cli_forks_by_default_only_for_json(
    args: list[str], jobs: int, bench_capture: Path, serial: Analysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other formats read every record, which a worker's texts would have to be parsed into."""
    from typer.testing import CliRunner

    import analyzer.analysis
    from analyzer.cli import app

    seen: list[int] = []

    def fake(*_: object, jobs: int, **__: object) -> Analysis:
        seen.append(jobs)
        return serial

    monkeypatch.setattr(analyzer.analysis, "analyze", fake)
    result = CliRunner().invoke(app, ["analyze", str(bench_capture), *args])
    assert result.exit_code == 0, result.output
    assert seen == [jobs]
