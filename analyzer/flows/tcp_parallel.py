"""TCP analysis on several cores: the connections split by 4-tuple, one share per process.

Why processes: the stages are numpy passes plus Python per distinct event pattern, and the JSON
text is built in Python; under the GIL threads would take turns on one core. Zeek and Suricata
scale the same way, flows hashed to workers. Here:

* every TCP packet's unordered 4-tuple is hashed into buckets, and the buckets are dealt into
  shares of about equal cost (``plan_shares``). Every stage looks only at the connections of
  one 4-tuple (port reuse, TIME_WAIT reuse, RST into TIME_WAIT), so a share analyzes exactly
  as inside the whole;
* the workers are forked before the connections are grouped, so the grouping is split too:
  each process groups its own share (``group_connections``), then sends the first frame
  numbers of its connections to the caller, which sends back every share's. A connection's
  id is the rank of its first frame among all of them, as in the one-process grouping;
* a worker analyzes its share, writes its records' JSON text to an in-memory file as it makes
  it, says DONE, then writes its table columns; the caller analyzes share 0 itself, after
  whatever it does meanwhile (``analysis.analyze`` runs the UDP analysis there), maps the
  workers' texts and merges them in id order. It reads the workers' table columns only when
  the table is read (the JSON report does not), and reaps workers it did not wait for once
  they have ended.

The merged ``TcpFlows`` has the same ``table`` and JSON text as ``analyze_tcp`` (tests compare
them); its records are parsed back from that text, and it carries no stream index
(``stream_bytes`` needs ``analyze_tcp``). A worker that fails is not fatal: its share is
grouped and analyzed again in the caller, with a warning.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import signal
import struct
import sys
import tempfile
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.decode.source import CaptureBytes
from analyzer.flows.tcp import (
    FlowColumns,
    TcpFacts,
    TcpFlows,
    analyze_connections,
    concat_columns,
    flow_columns,
    flow_table,
)
from analyzer.flows.tcp_json import record_texts
from analyzer.flows.tcp_streams import TcpPackets, TcpTuples, group_connections, tcp_tuples, with_ids
from analyzer.writev import write_all

I64 = npt.NDArray[np.int64]

# Below this many TCP packets per process a fork costs more than it saves.
MIN_PACKETS_PER_WORKER = 50_000
NOT_FORKED = -1  # the pid of a share whose fork failed (the caller analyzes it)
BUCKET_BITS = 12  # 4096 hash buckets: a share is a set of buckets


def can_fork() -> bool:
    """Forking is safe here: the platform has fork and no other thread is running."""
    return hasattr(os, "fork") and sys.platform != "win32" and threading.active_count() == 1


@dataclass(frozen=True)
class _Share:
    columns: FlowColumns | Callable[[], FlowColumns]  # TCP_FLOWS columns, in id order
    ids: I64  # connection id of each text
    texts: list[bytes | memoryview]  # JSON text of each record, in id order


# A worker's messages after the first-frame exchange: DONE (its texts and their index are
# written: sizes follow), then COLUMNS (its table columns are written after them: size follows).
DONE = b"D"
COLUMNS = b"C"
_SIZES = struct.Struct("<qq")
# Workers whose table columns were never asked for: they exit on their own, and are reaped
# when found finished (by the next start_tcp or TcpJob.close) instead of waited for.
_UNREAPED: set[int] = set()


@dataclass
class _Worker:
    pid: int  # NOT_FORKED: the caller does the share
    out: IO[bytes]  # the share, written by the worker
    to_worker: int = -1  # pipe ends: the first-frame exchange, then DONE and COLUMNS (-1: closed)
    from_worker: int = -1
    failed: bool = False  # the caller redoes the share
    reaped: bool = False
    handed_over: bool = False  # its texts are read; its pipe and file belong to _LateColumns

    def close_pipes(self) -> None:
        for fd in (self.to_worker, self.from_worker):
            if fd >= 0:
                os.close(fd)
        self.to_worker = self.from_worker = -1


@dataclass
class TcpJob:
    """TCP analysis under way: the workers run from ``start_tcp``; ``result()`` finishes it."""

    packets: pd.DataFrame
    payloads: CaptureBytes | None
    msl: float
    tr: TcpTuples
    share_of: npt.NDArray[np.int16] | None  # share of each packet of ``tr``; None: one share
    own: TcpPackets | None = None  # share 0, grouped and numbered
    workers: list[_Worker] = field(default_factory=list)  # share k + 1
    first_frames: list[I64] = field(default_factory=list)  # sorted, per share

    @property
    def forked(self) -> bool:
        """Some share is analyzed by a worker process."""
        return any(w.pid != NOT_FORKED for w in self.workers)

    def result(self) -> TcpFlows:
        """The caller's share, then the workers' shares, merged (blocks until they are done)."""
        if self.share_of is None:
            return analyze_connections(group_connections(self.packets, self.tr), self.payloads, msl=self.msl)
        assert self.own is not None
        shares = [self._analyze(self.own)]
        for k, worker in enumerate(self.workers, start=1):
            shares.append(self._collect(k, worker))
        return _merge(shares)

    def close(self) -> None:
        """Reap the workers, stopping those not collected yet (after an error in the caller).

        A worker whose texts were read may still be writing its table columns: it is left to
        finish, and reaped once it has (``_reap_finished``).
        """
        for worker in self.workers:
            if worker.handed_over:
                if not worker.reaped:
                    _UNREAPED.add(worker.pid)
                continue
            worker.close_pipes()
            if worker.pid != NOT_FORKED and not worker.reaped:
                if not worker.out.closed:  # not collected
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(worker.pid, 0)
                worker.reaped = True
            worker.out.close()
        _reap_finished()

    # -- grouping and numbering -----------------------------------------------------------

    def _group(self, k: int) -> TcpPackets:
        assert self.share_of is not None
        return group_connections(self.packets, self.tr.take(np.flatnonzero(self.share_of == k)))

    def _numbered(self, tp: TcpPackets) -> TcpPackets:
        """``tp`` with capture-wide ids (``first_frames`` holds every share's)."""
        every = np.sort(np.concatenate(self.first_frames))
        return with_ids(tp, np.searchsorted(every, tp.frame[tp.starts]))

    def exchange(self) -> None:
        """Group share 0, learn every worker's first frames, and send each worker all of them."""
        own = self._group(0)
        self.first_frames = [_first_frames(own)]
        for k, worker in enumerate(self.workers, start=1):
            frames = None
            if not worker.failed:
                try:
                    frames = _recv_array(worker.from_worker)
                except (OSError, EOFError):
                    worker.failed = True
            if frames is None:  # the worker did not say: group its share here
                frames = _first_frames(self._group(k))
            self.first_frames.append(frames)
        every = np.concatenate(self.first_frames)
        for worker in self.workers:
            if not worker.failed:
                try:
                    _send_array(worker.to_worker, every)
                except OSError:
                    worker.failed = True
            if worker.failed:
                worker.close_pipes()
            else:  # the other end stays open for DONE
                os.close(worker.to_worker)
                worker.to_worker = -1
        self.own = self._numbered(own)

    # -- analysis -------------------------------------------------------------------------

    def _facts(self, tp: TcpPackets) -> TcpFacts:
        facts = analyze_connections(tp, self.payloads, msl=self.msl).facts
        assert facts is not None
        return facts

    def _analyze(self, tp: TcpPackets) -> _Share:
        facts = self._facts(tp)
        ids: list[I64] = []
        texts: list[bytes | memoryview] = []
        for chunk_ids, chunk_texts in record_texts(facts):
            ids.append(chunk_ids)
            texts.extend(chunk_texts)
        # The columns are made when they are sent (by a worker) or when the table is read.
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        return _Share(lambda: flow_columns(facts), all_ids, texts)

    def _collect(self, k: int, worker: _Worker) -> _Share:
        # DONE, not the worker's exit, says the texts are written: the worker goes on with its
        # table columns, and a large process takes a while to tear down besides.
        try:
            sizes = None if worker.failed else _receive(worker.from_worker, DONE, _SIZES.size)
            if sizes is not None:
                share = _read_share(worker, *_SIZES.unpack(sizes))
                worker.handed_over = True
                return share
            if worker.pid != NOT_FORKED:
                _, status = os.waitpid(worker.pid, 0)
                worker.reaped = True
                warnings.warn(
                    f"TCP worker for share {k} failed (status {status}); analyzing it here instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
        finally:
            if not worker.handed_over:
                worker.close_pipes()
                worker.out.close()
        return self._analyze(self._numbered(self._group(k)))

    def run_worker(self, k: int, out: IO[bytes], send: int, receive: int) -> None:
        """In a forked worker: group and analyze share ``k``, write it out and exit, never return.

        ``send`` and ``receive`` are the pipe ends of the first-frame exchange with the caller.
        """
        try:
            tp = self._group(k)
            _send_array(send, _first_frames(tp))
            self.first_frames = [_recv_array(receive)]
            os.close(receive)
            facts = self._facts(self._numbered(tp))
            sizes = _write_texts(out, facts)
            os.write(send, DONE + _SIZES.pack(*sizes))
        except BaseException:  # the caller re-analyzes the share; say why on stderr
            import traceback

            traceback.print_exc()
            os._exit(1)
        # The texts are out. The table columns follow; the caller reads them only if it reads
        # the table, and may be gone already: from here on nothing is said on its streams.
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            table = pickle.dumps(flow_columns(facts), protocol=pickle.HIGHEST_PROTOCOL)
            write_all(out, [table])
            os.write(send, COLUMNS + _SIZES.pack(len(table), 0))
            code = 0
        finally:
            os._exit(code)


def start_tcp(
    packets: pd.DataFrame,
    payloads: CaptureBytes | None,
    *,
    msl: float = 30.0,
    workers: int = 1,
    reserve: int = 0,
) -> TcpJob:
    """Start analyzing the TCP connections of ``packets`` on ``workers`` processes.

    ``reserve``: packets' worth of other work the caller does before ``result()`` (its own
    share is made that much smaller). With one worker, a small capture, or where forking is not
    safe, ``result()`` analyzes everything in the calling process.
    """
    _reap_finished()
    tr = tcp_tuples(packets)
    share_of = plan_shares(tr, workers, reserve)
    job = TcpJob(packets, payloads, msl, tr, share_of)
    if share_of is None:
        return job
    try:
        _fork_workers(job, int(share_of.max()))
        job.exchange()
    except BaseException:
        job.close()
        raise
    return job


def _fork_workers(job: TcpJob, n: int) -> None:
    for out in (sys.stdout, sys.stderr):  # a fork would write buffered output twice
        out.flush()
    for k in range(1, n + 1):
        fh = _share_file()  # closed by TcpJob._collect
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:  # no fork here (process limit, sandbox): the caller does it
            warnings.warn(f"cannot fork a TCP worker ({exc}); analyzing its share here", stacklevel=3)
            for fd in (to_r, to_w, from_r, from_w):
                os.close(fd)
            job.workers.append(_Worker(NOT_FORKED, fh, failed=True))
            continue
        if pid == 0:
            # Only this worker's pipe ends stay open: an inherited end of another worker's
            # pipe would hide that worker's exit from the caller.
            for other in job.workers:
                other.close_pipes()
            os.close(to_w)
            os.close(from_r)
            job.run_worker(k, fh, send=from_w, receive=to_r)
        os.close(to_r)
        os.close(from_w)
        job.workers.append(_Worker(pid, fh, to_worker=to_w, from_worker=from_r))


def plan_shares(tr: TcpTuples, workers: int, reserve: int = 0) -> npt.NDArray[np.int16] | None:
    """The share of every TCP packet (0: the caller's), or None for one share.

    Whole 4-tuples go to a share (by hash bucket). Every share has the same load ``L``; the
    caller's is ``reserve`` packets lighter, as it has that other work: caller ``N0 + reserve
    = L``, worker ``Ni = L``. (A worker analyzes as fast as the caller, as it forks before
    grouping: its arrays are its own. It writes its texts as it makes them; its table columns
    come after the caller has its texts, 1M bench capture.)
    """
    total = len(tr) + reserve
    workers = min(workers, total // MIN_PACKETS_PER_WORKER)
    if workers < 2 or not can_fork():
        return None
    bucket = (tr.tuple_hash() >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)
    weight = np.bincount(bucket, minlength=1 << BUCKET_BITS)
    load = total / workers
    bounds = max(load - reserve, 0.0) + load * np.arange(workers - 1)  # packets before share k+1
    middle = np.cumsum(weight) - weight / 2  # a bucket goes where its middle packet falls
    share_of_bucket = np.searchsorted(bounds, middle, side="right").astype(np.int16)
    if len(np.unique(share_of_bucket[weight > 0])) < 2:
        return None
    # Renumber so the shares are 0..n without holes (an empty share has no worker).
    used = np.unique(share_of_bucket)
    share_of_bucket = np.searchsorted(used, share_of_bucket).astype(np.int16)
    return share_of_bucket[bucket]


def _share_file() -> IO[bytes]:
    """A file for a worker's share: in memory where the platform can (memfd), else in /tmp.

    The worker writes its texts with os.writev: the buffer only serves other platforms.
    """
    if hasattr(os, "memfd_create"):
        with contextlib.suppress(OSError):
            return open(os.memfd_create("analyzer-tcp-share"), "w+b", buffering=1 << 20)
    return tempfile.TemporaryFile(buffering=1 << 20)


def _first_frames(tp: TcpPackets) -> I64:
    frames: I64 = np.sort(tp.frame[tp.starts]) if tp.n_blocks else np.zeros(0, np.int64)
    return frames


def _send_array(fd: int, values: I64) -> None:
    data = np.ascontiguousarray(values, dtype=np.int64).tobytes()
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(fd, view) :]


def _recv_array(fd: int) -> I64:
    size = int.from_bytes(_read_exactly(fd, 8), "little")
    return np.frombuffer(_read_exactly(fd, size), dtype=np.int64)


def _read_exactly(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            raise EOFError(f"pipe closed with {left} of {size} bytes unread")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _write_texts(fh: IO[bytes], facts: TcpFacts) -> tuple[int, int]:
    """Write the records' texts chunk by chunk as they are made, then their index (ids and
    lengths); return both sizes. Layout of the file: texts, index, table columns (later)."""
    ids: list[I64] = []
    lengths: list[I64] = []
    for chunk_ids, texts in record_texts(facts):
        write_all(fh, texts)
        ids.append(chunk_ids)
        lengths.append(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    none = np.zeros(0, np.int64)
    all_ids, all_lengths = (np.concatenate(ids), np.concatenate(lengths)) if ids else (none, none)
    index = pickle.dumps((all_ids, all_lengths), protocol=pickle.HIGHEST_PROTOCOL)
    write_all(fh, [index])
    return int(all_lengths.sum()), len(index)


def _read_share(worker: _Worker, text_size: int, index_size: int) -> _Share:
    """A worker's texts, where they lie in its file (mapped, not copied; the index is never
    empty), and its columns to come."""
    size = text_size + index_size
    blob = memoryview(mmap.mmap(worker.out.fileno(), size, access=mmap.ACCESS_READ))
    ids, lengths = pickle.loads(blob[text_size:size])  # our own worker's file, not input
    ends = np.cumsum(lengths).tolist()
    texts: list[bytes | memoryview] = [blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return _Share(_LateColumns(worker, size), np.asarray(ids, dtype=np.int64), texts)


class _LateColumns:
    """A worker's table columns, read on first call (the worker writes them after its texts)."""

    def __init__(self, worker: _Worker, offset: int) -> None:
        self._worker, self._offset = worker, offset
        self._columns: FlowColumns | None = None
        self._finalizer = weakref.finalize(self, _release, worker)

    def __call__(self) -> FlowColumns:
        if self._columns is None:
            worker = self._worker
            sizes = _receive(worker.from_worker, COLUMNS, _SIZES.size)
            if sizes is None:
                raise RuntimeError(f"TCP worker {worker.pid} ended before sending its table columns")
            size, _ = _SIZES.unpack(sizes)
            table = os.pread(worker.out.fileno(), size, self._offset)
            self._columns = pickle.loads(table)  # our own worker's file, not input
            self._finalizer()
        return self._columns


def _release(worker: _Worker) -> None:
    """Close a handed-over worker's pipe and file; reap it if it has ended."""
    worker.close_pipes()
    worker.out.close()
    if not worker.reaped:
        _UNREAPED.add(worker.pid)
    _reap_finished()


def _reap_finished() -> None:
    """Reap the workers of _UNREAPED that have ended (never waits)."""
    for pid in list(_UNREAPED):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere
            done = pid
        if done:
            _UNREAPED.discard(pid)


def _receive(fd: int, kind: bytes, size: int) -> bytes | None:
    """A ``kind`` message's ``size`` bytes from a worker's pipe; None if it ended without one."""
    try:
        message = _read_exactly(fd, 1 + size)
    except (OSError, EOFError):
        return None
    return message[1:] if message[:1] == kind else None


def _merge(shares: list[_Share]) -> TcpFlows:
    order = np.argsort(np.concatenate([s.ids for s in shares]), kind="stable")
    texts = [t for s in shares for t in s.texts]

    def table() -> pd.DataFrame:
        return flow_table(concat_columns([s.columns() if callable(s.columns) else s.columns for s in shares]))

    return TcpFlows(frame=table, texts=[texts[i] for i in order.tolist()])


__all__ = ["MIN_PACKETS_PER_WORKER", "TcpJob", "can_fork", "plan_shares", "start_tcp"]
