"""TCP analysis on several cores: the connections split by 4-tuple, one share per process.

Why processes: the stages are numpy passes plus Python per distinct event pattern, and the JSON
text is built in Python; under the GIL threads would take turns on one core. Zeek and Suricata
scale the same way, flows hashed to workers. Here:

* the connections are grouped once, in the calling process (``build_tcp_packets``), so ids are
  global and the split cannot change them;
* the blocks (in 4-tuple order) are cut where a 4-tuple begins, into shares of about equal
  cost (``share_cuts``): every stage looks only at the connections of one 4-tuple (port reuse,
  TIME_WAIT reuse, RST into TIME_WAIT), so a share analyzes exactly as inside the whole;
* a forked worker analyzes every share but the first and writes its table rows and its records'
  JSON text to an unlinked temporary file; the caller analyzes the first share itself, after
  whatever it does meanwhile (``analysis.analyze`` runs the UDP analysis there), and merges the
  texts (the tables only when the table is read).

The merged ``TcpFlows`` has the same ``table`` and JSON text as ``analyze_tcp`` (tests compare
them); its records are parsed back from that text, and it carries no stream index
(``stream_bytes`` needs ``analyze_tcp``). A worker that fails is not fatal: its share is
analyzed again in the caller, with a warning.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import signal
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.decode.source import CaptureBytes
from analyzer.flows.tcp import TcpFlows, analyze_connections
from analyzer.flows.tcp_json import record_texts
from analyzer.flows.tcp_streams import TcpPackets, build_tcp_packets

I64 = npt.NDArray[np.int64]

# Below this many TCP packets per process a fork costs more than it saves.
MIN_PACKETS_PER_WORKER = 50_000
NOT_FORKED = -1  # the pid of a share whose fork failed (the caller analyzes it)
# A forked worker's time per packet relative to the caller's: its first writes to memory it
# shares with the caller are page copies, and it writes its share out (measured on the 1M
# bench capture: 1.56 us against 1.38 us per packet, plus ~0.07 s of writing).
WORKER_SLOWDOWN = 1.2


def can_fork() -> bool:
    """Forking is safe here: the platform has fork and no other thread is running."""
    return hasattr(os, "fork") and sys.platform != "win32" and threading.active_count() == 1


@dataclass
class TcpJob:
    """TCP analysis under way: the workers run from ``start_tcp``; ``result()`` finishes it."""

    tp: TcpPackets
    payloads: CaptureBytes | None
    msl: float
    cuts: list[int]  # share k is blocks cuts[k]:cuts[k+1]; share 0 is the caller's
    pids: list[int] = field(default_factory=list)  # worker of share k + 1
    files: list[IO[bytes]] = field(default_factory=list)

    def result(self) -> TcpFlows:
        """The caller's share, then the workers' shares, merged (blocks until they are done)."""
        if len(self.cuts) == 2:
            return analyze_connections(self.tp, self.payloads, msl=self.msl)
        shares = [self._analyze(0)]
        for k, (pid, fh) in enumerate(zip(self.pids, self.files, strict=True), start=1):
            shares.append(self._collect(k, pid, fh))
        return _merge(shares)

    def close(self) -> None:
        """Stop and reap the workers not collected yet (after an error in the caller)."""
        for pid, fh in zip(self.pids, self.files, strict=True):
            if fh.closed:  # collected
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            fh.close()

    def _analyze(self, k: int) -> _Share:
        sub = self.tp.blocks(self.cuts[k], self.cuts[k + 1])
        flows = analyze_connections(sub, self.payloads, msl=self.msl)
        ids: list[I64] = []
        texts: list[bytes | memoryview] = []
        if flows.facts is not None:
            for chunk_ids, chunk_texts in record_texts(flows.facts):
                ids.append(chunk_ids)
                texts.extend(chunk_texts)
        return _Share(flows.table, np.concatenate(ids) if ids else np.zeros(0, np.int64), texts)

    def _collect(self, k: int, pid: int, fh: IO[bytes]) -> _Share:
        if pid == NOT_FORKED:
            return self._analyze(k)
        _, status = os.waitpid(pid, 0)
        try:
            if os.waitstatus_to_exitcode(status) == 0:
                fh.seek(0)
                return _read_share(fh)
            warnings.warn(
                f"TCP worker for share {k} failed (status {status}); analyzing it here instead",
                RuntimeWarning,
                stacklevel=3,
            )
        finally:
            fh.close()
        return self._analyze(k)

    def run_worker(self, k: int, fh: IO[bytes]) -> None:
        """In a forked worker: analyze share ``k``, write it to ``fh`` and exit, never return."""
        code = 1
        try:
            _write_share(fh, self._analyze(k))
            code = 0
        except BaseException:  # the caller re-analyzes the share; say why on stderr
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)


@dataclass(frozen=True)
class _Share:
    table: pd.DataFrame  # TCP_FLOWS rows, in id order
    ids: I64  # connection id of each text
    texts: list[bytes | memoryview]  # JSON text of each record, in id order


def start_tcp(
    packets: pd.DataFrame,
    payloads: CaptureBytes | None,
    *,
    msl: float = 30.0,
    workers: int = 1,
    reserve: int = 0,
) -> TcpJob:
    """Group the TCP connections and start analyzing them on ``workers`` processes.

    ``reserve``: packets' worth of other work the caller does before ``result()`` (its own
    share is made that much smaller). With one worker, a small capture, or where forking is not
    safe, ``result()`` analyzes everything in the calling process.
    """
    tp = build_tcp_packets(packets)
    job = TcpJob(tp, payloads, msl, share_cuts(tp, workers, reserve))
    if len(job.cuts) > 2:
        for out in (sys.stdout, sys.stderr):  # a fork would write buffered output twice
            out.flush()
        for k in range(1, len(job.cuts) - 1):
            # closed by TcpJob._collect; a large buffer: the worker writes ~10^5 small texts
            fh = tempfile.TemporaryFile(buffering=1 << 20)  # noqa: SIM115
            try:
                pid = os.fork()
            except OSError as exc:  # no fork here (process limit, sandbox): the caller does it
                warnings.warn(f"cannot fork a TCP worker ({exc}); analyzing its share here", stacklevel=2)
                fh.close()
                pid = NOT_FORKED
            if pid == 0:
                job.run_worker(k, fh)
            job.pids.append(pid)
            job.files.append(fh)
    return job


def share_cuts(tp: TcpPackets, workers: int, reserve: int = 0) -> list[int]:
    """Block boundaries of the shares (``[0, nb]`` for one share): 4-tuple starts, equal load.

    The caller's share (the first) is ``reserve`` packets lighter, as it has that other work;
    a worker's packets weigh WORKER_SLOWDOWN each. With ``L`` the load of every share:
    caller ``N0 + reserve = L``, worker ``WORKER_SLOWDOWN * Ni = L``, ``sum(Ni) = packets``.
    """
    nb = tp.n_blocks
    total = tp.n_packets + reserve
    workers = min(workers, total // MIN_PACKETS_PER_WORKER)
    if workers < 2 or not can_fork():
        return [0, nb]
    load = total / (1 + (workers - 1) / WORKER_SLOWDOWN)
    first = max(load - reserve, 0.0)
    targets = first + (load / WORKER_SLOWDOWN) * np.arange(workers - 1)  # packets before cut k
    starts = tp.tuple_starts()[:-1]
    pos = np.searchsorted(tp.starts[starts], targets)  # the first 4-tuple at or past each target
    cuts = sorted({0, *starts[pos[pos < len(starts)]].tolist(), nb})
    return cuts if len(cuts) > 2 else [0, nb]


def _write_share(fh: IO[bytes], share: _Share) -> None:
    lengths = np.fromiter((len(t) for t in share.texts), dtype=np.int64, count=len(share.texts))
    header = pickle.dumps((share.table, share.ids, lengths), protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(len(header).to_bytes(8, "little"))
    fh.write(header)
    fh.writelines(share.texts)
    fh.flush()


def _read_share(fh: IO[bytes]) -> _Share:
    size = int.from_bytes(fh.read(8), "little")
    table, ids, lengths = pickle.loads(fh.read(size))  # our own worker's file, not input
    # The texts are used where they lie: mapped, not copied (the mapping outlives the file).
    end = os.fstat(fh.fileno()).st_size
    mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if end > 8 + size else b""
    blob = memoryview(mapped)[8 + size :]
    ends = np.cumsum(lengths).tolist()
    texts: list[bytes | memoryview] = [blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return _Share(table, ids, texts)


def _merge(shares: list[_Share]) -> TcpFlows:
    order = np.argsort(np.concatenate([s.ids for s in shares]), kind="stable")
    texts = [t for s in shares for t in s.texts]
    tables = [s.table for s in shares]
    return TcpFlows(frame=lambda: _merge_tables(tables), texts=[texts[i] for i in order.tolist()])


def _merge_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The shares' tables as one, in id order (each is in id order)."""
    table = pd.concat(tables, ignore_index=True)
    table = table.iloc[np.argsort(table["id"].to_numpy(), kind="stable")].reset_index(drop=True)
    for name in table.columns:
        kinds = {str(t[name].dtype) for t in tables}
        if "category" in kinds and table[name].dtype != "category":
            # Shares with different categories concatenate to object; analyze_tcp's column is a
            # categorical of all the values (sorted categories), which this rebuilds.
            table[name] = pd.Categorical(table[name].to_numpy(dtype=object))
    return table


__all__ = ["MIN_PACKETS_PER_WORKER", "TcpJob", "can_fork", "share_cuts", "start_tcp"]
