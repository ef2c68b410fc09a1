"""The TCP analysis split over forked workers (analyzer.flows.tcp_parallel) equals the serial one.

The benchmark generator's capture has every teardown kind, port reuse during TIME_WAIT, RSTs
and IPv6; shares are whole 4-tuples, each process groups its own, and ids are exchanged, so the
table, the JSON text and the records must come out exactly as ``analyze_tcp`` makes them, for
any number of workers.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas.testing as pdt
import pytest
from test_bench_gen import gen

from analyzer.analysis import Analysis, analyze
from analyzer.flows import tcp_parallel
from analyzer.flows.tcp_streams import build_tcp_packets, group_connections, tcp_tuples, with_ids
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


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the workers forked during the test, in order."""
    pids: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return pids


def _same(a: Analysis, b: Analysis) -> None:
    pdt.assert_frame_equal(a.tcp, b.tcp)
    assert render_json(a) == render_json(b)
    assert list(a.tcp_records) == list(b.tcp_records)


@needs_fork
@pytest.mark.parametrize("jobs", [2, 3, 5])
def test_workers_give_the_serial_table_json_and_records(
    bench_capture: Path, serial: Analysis, small_shares: None, jobs: int
) -> None:
    share_of = tcp_parallel.plan_shares(tcp_tuples(serial.packets), jobs)
    assert share_of is not None and int(share_of.max()) == jobs - 1  # it really splits
    _same(serial, analyze(bench_capture, jobs=jobs))


def test_shares_are_whole_four_tuples_of_planned_size(serial: Analysis, small_shares: None) -> None:
    tp = build_tcp_packets(serial.packets)
    assert tp.n_blocks > 100 and (tp.next_on_tuple >= 0).any()  # port reuse is in the capture
    tr = tcp_tuples(serial.packets)
    assert (tr.rows == np.sort(tp.row)).all()
    for workers, reserve in ((2, 0), (3, 500), (4, 0), (7, 300)):
        share_of = tcp_parallel.plan_shares(tr, workers, reserve=reserve)
        assert share_of is not None
        # every packet of a 4-tuple (so every connection reusing it) is in one share
        share_of_packet = share_of[np.searchsorted(tr.rows, tp.row)]
        tuple_of_packet = tp.tuple_id[tp.block]
        pairs = np.unique(np.c_[tuple_of_packet, share_of_packet], axis=0)
        assert len(pairs) == len(np.unique(tuple_of_packet))
        # the sizes follow the plan: the caller's share is lighter by the reserve
        sizes = np.bincount(share_of, minlength=workers)
        load = (len(tr) + reserve) / workers
        expected = [load - reserve] + [load] * (workers - 1)
        assert np.allclose(sizes, expected, rtol=0.25), (sizes, expected)
    assert tcp_parallel.plan_shares(tr, 1) is None


def test_shares_grouped_apart_get_the_ids_of_the_whole(serial: Analysis) -> None:
    whole = build_tcp_packets(serial.packets)
    tr = tcp_tuples(serial.packets)
    odd = (tr.tuple_hash() & np.uint64(1)).astype(bool)  # any split into whole 4-tuples
    parts = [group_connections(serial.packets, tr.take(np.flatnonzero(m))) for m in (odd, ~odd)]
    every = np.sort(np.concatenate([p.frame[p.starts] for p in parts]))
    first_frame_to_id = dict(zip(whole.frame[whole.starts].tolist(), whole.conn_id.tolist(), strict=True))
    for part in parts:
        numbered = with_ids(part, np.searchsorted(every, part.frame[part.starts]))
        assert numbered.conn_id.tolist() == [first_frame_to_id[f] for f in part.frame[part.starts].tolist()]
    assert sum(p.n_blocks for p in parts) == whole.n_blocks
    with pytest.raises(ValueError, match="connection ids"):
        with_ids(parts[0], np.zeros(1, np.int64))


def test_both_directions_hash_alike(serial: Analysis) -> None:
    tr = tcp_tuples(serial.packets)
    swapped = type(tr)(tr.rows, tr.d_ip, tr.s_ip, tr.dport, tr.sport, tr.addresses)
    assert (swapped.tuple_hash() == tr.tuple_hash()).all()


def test_no_fork_while_another_thread_runs(serial: Analysis, small_shares: None) -> None:
    tr = tcp_tuples(serial.packets)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not tcp_parallel.can_fork()
        assert tcp_parallel.plan_shares(tr, 4) is None
    finally:
        stop.set()
        other.join()


@needs_fork
def test_a_failed_worker_is_redone_in_the_caller(
    bench_capture: Path, serial: Analysis, small_shares: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("worker cannot write")

    monkeypatch.setattr(tcp_parallel, "_write_texts", broken)  # inherited by the forked worker
    with pytest.warns(RuntimeWarning, match="analyzing it here instead"):
        result = analyze(bench_capture, jobs=2)
    _same(serial, result)


@needs_fork
def test_a_worker_that_dies_before_the_exchange_is_redone_in_the_caller(
    bench_capture: Path, serial: Analysis, small_shares: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller = os.getpid()
    real_send = tcp_parallel._send_array

    def send(fd: int, values: np.ndarray) -> None:
        if os.getpid() != caller:  # in the worker
            os._exit(3)
        real_send(fd, values)

    monkeypatch.setattr(tcp_parallel, "_send_array", send)
    with pytest.warns(RuntimeWarning, match="analyzing it here instead"):
        result = analyze(bench_capture, jobs=3)
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
    bench_capture: Path, small_shares: None, started: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.flows import udp

    def broken(*_: object) -> None:
        raise RuntimeError("udp failed")

    monkeypatch.setattr(udp, "analyze_udp", broken)
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


def test_the_cli_leaves_only_the_last_analysis_to_the_exit(bench_capture: Path) -> None:
    """Freeing a large analysis object by object is left to the process exit, one at a time,
    and the collector does not scan it on the way out."""
    from typer.testing import CliRunner

    from analyzer.cli import analyze as analyze_cmd
    from analyzer.cli import app

    for _ in range(2):
        result = CliRunner().invoke(app, ["analyze", str(bench_capture), "--format", "json", "-j", "1"])
        assert result.exit_code == 0, result.output
    assert len(analyze_cmd._KEPT) == 1 and isinstance(analyze_cmd._KEPT[0], Analysis)
    # ... and out of the collector's sight, which is running again
    assert gc.isenabled() and gc.get_freeze_count() > 0
    tracked = {id(o) for o in gc.get_objects()}
    assert id(analyze_cmd._KEPT[0]) not in tracked


@needs_fork
def test_a_worker_that_ends_before_its_table_columns_only_costs_the_table(
    bench_capture: Path, serial: Analysis, small_shares: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The texts (DONE) came, the columns never do: the JSON is whole, the table says why not."""
    caller = os.getpid()
    real = tcp_parallel.flow_columns

    def columns(facts: object) -> object:
        if os.getpid() != caller:  # in the worker
            os._exit(5)
        return real(facts)  # type: ignore[arg-type]

    monkeypatch.setattr(tcp_parallel, "flow_columns", columns)
    result = analyze(bench_capture, jobs=2)
    assert render_json(result) == render_json(serial)
    with pytest.raises(RuntimeError, match="ended before sending its table columns"):
        result.tcp  # noqa: B018


@needs_fork
def test_workers_whose_table_is_not_read_are_reaped_later(
    bench_capture: Path, small_shares: None, started: list[int]
) -> None:
    result = analyze(bench_capture, jobs=3)
    render_json(result)  # the texts only: the workers' columns are never read
    assert len(started) == 2
    for _ in range(200):  # they exit on their own; bounded wait
        tcp_parallel._reap_finished()
        if not set(started) & tcp_parallel._UNREAPED:
            break
        time.sleep(0.05)
    for pid in started:  # reaped: no longer our child
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
