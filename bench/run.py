"""Side-by-side benchmark of our decoders against tshark, scapy and dpkt; writes BENCHMARKS.md.

Owns the benchmark procedure: which tools run on which files, how a run is timed (a whole fresh
process, file already in the page cache, wall time and peak RSS), how the runs are interleaved
(round after round over every file and tool, so background load hits all tools alike), and the
report. Speed is quoted as a ratio to ``tshark -r F -q -z conv,tcp`` on the same file, taken per
round and then the median, because the absolute numbers on a shared 2-core machine are noisy.

Files come from ``bench/gen.py`` (same seed every time) and are made on first use in bench/data/.
A tool that cannot run (not installed, not written yet, failing) is skipped with a note and tried
once more after the last round. The analyzer measured is a snapshot of HEAD (exported with
``git archive``, C extension built in place) so that teammates' edits in the shared working tree
cannot change the code between runs; ``--live`` measures the working tree instead.

    python bench/run.py                 # 3 rounds, 100k and 1M packets, writes BENCHMARKS.md
    python bench/run.py --runs 5 --only native,tshark-conv
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# Where the analyzer under test is imported from (cwd of every run): a snapshot of HEAD unless --live.
TREE = ROOT
PY = sys.executable
TIME = "/usr/bin/time"
SEED = 1
SIZES = {"100k": 100_000, "1m": 1_000_000}

# The loops below stand for "decode every packet's headers in Python with this library".
DPKT_LOOP = """
import sys, dpkt
n = 0
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.Reader(f):
        ip = dpkt.ethernet.Ethernet(buf).data
        l4 = ip.data
        if isinstance(l4, dpkt.tcp.TCP):
            x = (ip.src, l4.sport, l4.dport, l4.flags, l4.seq, l4.ack, len(l4.data))
        elif isinstance(l4, dpkt.udp.UDP):
            x = (ip.src, l4.sport, l4.dport, len(l4.data))
        n += 1
print(n)
"""
SCAPY_RAW_LOOP = """
import sys
from scapy.utils import RawPcapReader
n = 0
for data, meta in RawPcapReader(sys.argv[1]):
    n += 1
print(n)
"""
SCAPY_DISSECT_LOOP = """
import sys
from scapy.utils import PcapReader
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
n = 0
for p in PcapReader(sys.argv[1]):
    ip = p.getlayer(IP) or p.getlayer(IPv6)
    t = p.getlayer(TCP)
    if t is not None:
        x = (ip.src, t.sport, t.dport, int(t.flags), t.seq, t.ack, len(t.payload))
    else:
        u = p.getlayer(UDP)
        x = (ip.src, u.sport, u.dport, len(u.payload)) if u is not None else None
    n += 1
print(n)
"""
# Fallback when /usr/bin/time is absent: a fresh wrapper per run, so RUSAGE_CHILDREN is that run's.
RUSAGE_WRAPPER = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL)
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(r.returncode)
"""
NATIVE = "import analyzer, sys; analyzer.read_packets(sys.argv[1])"
TSHARK_FIELDS = ["frame.number", "ip.src", "tcp.srcport", "tcp.flags", "tcp.len"]


@dataclass
class BenchFile:
    key: str  # e.g. "1m.pcap"
    path: Path
    fmt: str
    packets: int
    size: int = 0
    manifest: dict[str, object] = field(default_factory=dict)


@dataclass
class Tool:
    name: str
    label: str  # how the table names it
    argv: Callable[[Path], list[str]]
    files: tuple[str, ...]  # BenchFile keys it runs on
    baseline: bool = False
    extrapolate: bool = False  # only run at 100k; scale to 1M in the report
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    tool: str
    file: str
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # per-round tshark-conv wall / this wall
    error: str = ""
    tree_pss_kib: int = 0  # peak PSS summed over the process tree (one sampled run), 0 = not measured


def _load_gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gen", BENCH / "gen.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_gen"] = mod
    spec.loader.exec_module(mod)
    return mod


def _prepare_files(data: Path, sizes: list[str], seed: int) -> dict[str, BenchFile]:
    """Generate each benchmark file unless an identical one (same gen.py, seed, size) exists."""
    gen = _load_gen()
    stamp = hashlib.sha256((BENCH / "gen.py").read_bytes()).hexdigest()[:16]
    files: dict[str, BenchFile] = {}
    for size in sizes:
        n = SIZES[size]
        for fmt, name in (
            ("pcap", f"bench-{size}.pcap"),
            ("pcapng", f"bench-{size}.pcapng"),
            ("sll2", f"bench-{size}-sll2.pcap"),
        ):
            path = data / name
            side = path.with_suffix(path.suffix + ".json")
            meta: dict[str, object] = {}
            if path.exists() and side.exists():
                meta = json.loads(side.read_text())
            if meta.get("gen") != stamp or meta.get("seed") != seed or meta.get("packets") != n:
                t0 = time.perf_counter()
                m = gen.write(path, fmt, n, seed=seed)
                meta = {"gen": stamp, "seed": seed, "packets": n, "manifest": m.as_dict()}
                side.write_text(json.dumps(meta, indent=1) + "\n")
                print(f"generated {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            manifest = meta["manifest"]
            assert isinstance(manifest, dict)
            files[f"{size}.{fmt}"] = BenchFile(f"{size}.{fmt}", path, fmt, n, path.stat().st_size, manifest)
    return files


def _analyzer_cmd() -> list[str]:
    # The console script of this interpreter's environment: a ``which`` hit may be a wrapper
    # (pyenv's shim costs ~60 ms of bash per run) or another environment's install.
    beside = Path(PY).parent / "analyzer"
    exe = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("analyzer")
    # The console script imports the installed package, not the snapshot; ``-m`` imports from cwd.
    return [exe] if exe and TREE == ROOT else [PY, "-m", "analyzer"]


def _snapshot(dest: Path) -> str:
    """Export HEAD's package into ``dest`` and build its optional C extension there.

    The working tree is shared with engineers editing it while the benchmark runs; a snapshot
    keeps every run on the same, committed code. Returns the commit measured.
    """
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    paths = [p for p in ("analyzer", "setup.py", "pyproject.toml", "README.md") if (ROOT / p).exists()]
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", head, *paths], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    if (dest / "setup.py").exists():
        # Optional extension: a failed build leaves the pure-Python fallback, which _machine reports.
        subprocess.run([PY, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest, capture_output=True)
    return head


def _tools(sizes: list[str]) -> list[Tool]:
    every = tuple(f"{s}.{f}" for s in sizes for f in ("pcap", "pcapng", "sll2"))
    pcaps = tuple(f"{s}.pcap" for s in sizes)
    small = ("100k.pcap",) if "100k" in sizes else ()
    an = _analyzer_cmd()
    fields = [a for x in TSHARK_FIELDS for a in ("-e", x)]

    def engine(name: str) -> str:
        return NATIVE.replace("])", f"], engine={name!r})")

    return [
        Tool(
            "tshark-conv",
            "`tshark -r F -q -z conv,tcp`",
            lambda f: ["tshark", "-r", str(f), "-q", "-z", "conv,tcp"],
            every,
            baseline=True,
        ),
        Tool("native", "native `read_packets` (whole process)", lambda f: [PY, "-c", NATIVE, str(f)], every),
        Tool(
            "native-py",
            "native, pure-Python record walk",
            lambda f: [PY, "-c", NATIVE, str(f)],
            pcaps,
            note="`ANALYZER_PURE_PYTHON=1`: what an install without a C compiler gets",
            env={"ANALYZER_PURE_PYTHON": "1"},
        ),
        Tool(
            "analyze",
            "`analyzer analyze F --format json`",
            lambda f: [*an, "analyze", str(f), "--format", "json"],
            pcaps,
        ),
        Tool(
            "tshark-fields",
            "`tshark -T fields` (5 fields)",
            lambda f: ["tshark", "-r", str(f), "-T", "fields", *fields],
            pcaps,
            note="fields: " + ", ".join(TSHARK_FIELDS) + " (ip.src is empty on IPv6 rows)",
        ),
        Tool("dpkt", "dpkt decode loop", lambda f: [PY, "-c", DPKT_LOOP, str(f)], pcaps),
        Tool(
            "scapy-raw",
            "scapy `RawPcapReader` loop (records only)",
            lambda f: [PY, "-c", SCAPY_RAW_LOOP, str(f)],
            small,
            extrapolate=True,
        ),
        Tool(
            "scapy-dissect",
            "scapy `PcapReader` dissecting loop",
            lambda f: [PY, "-c", SCAPY_DISSECT_LOOP, str(f)],
            small,
            extrapolate=True,
        ),
        Tool(
            "engine-scapy",
            'our `read_packets(engine="scapy")`',
            lambda f: [PY, "-c", engine("scapy"), str(f)],
            small,
            extrapolate=True,
        ),
        Tool(
            "engine-tshark",
            'our `read_packets(engine="tshark")`',
            lambda f: [PY, "-c", engine("tshark"), str(f)],
            small,
            extrapolate=True,
        ),
    ]


def _warm(path: Path) -> None:
    """Read the whole file so every tool starts with it in the page cache."""
    buf = bytearray(8 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def _run_once(argv: list[str], timeout: float, env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS KiB of the largest process, error text or "")."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss, tempfile.TemporaryFile("w+") as err:
        if os.access(TIME, os.X_OK):
            cmd = [TIME, "-f", "%M", "-o", rss.name, *argv]
        else:
            cmd = [PY, "-c", RUSAGE_WRAPPER, rss.name, *argv]
        t0 = time.perf_counter()
        try:
            r = subprocess.run(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=TREE,
                timeout=timeout,
                env={**os.environ, **env},
            )
        except subprocess.TimeoutExpired:
            return time.perf_counter() - t0, 0, f"timed out after {timeout:.0f} s"
        except OSError as e:
            return 0.0, 0, str(e)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            err.seek(0)
            lines = [
                ln.strip() for ln in err.read().splitlines() if ln.strip() and "Command exited" not in ln
            ]
            return wall, 0, f"exit {r.returncode}: {lines[-1] if lines else 'no message'}"[:300]
        text = Path(rss.name).read_text().strip().splitlines()
        return wall, int(text[-1]) if text else 0, ""


PSS_FILE = "1m.pcap"  # the file whose process-tree memory is sampled (the targets' file)
PSS_INTERVAL = 0.02  # seconds between samples


def _tree(pid: int) -> list[int]:
    """``pid`` and every descendant (via /proc/PID/task/TID/children)."""
    out = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    out += _tree(int(child))
    except OSError:  # exited meanwhile
        pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pss_peak(argv: list[str], timeout: float, env: dict[str, str]) -> int:
    """Peak PSS (KiB) summed over the process tree of one run, sampled every PSS_INTERVAL.

    ``/usr/bin/time %M`` gives the largest single process; a tool that forks workers shares
    pages between them copy-on-write, so their RSS would count those twice: proportional set
    size (PSS) splits shared pages among the processes, and its sum is the memory they use.
    Sampled in a separate run: reading smaps costs CPU the timed runs should not pay.
    """
    if not Path("/proc/self/smaps_rollup").exists():
        return 0
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=TREE, env={**os.environ, **env}
    )
    peak, deadline = 0, time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        peak = max(peak, sum(_pss_kib(p) for p in _tree(proc.pid)))
        time.sleep(PSS_INTERVAL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return peak if proc.returncode == 0 else 0


def _measure(
    tools: list[Tool], files: dict[str, BenchFile], runs: int, timeout: float
) -> dict[tuple[str, str], Result]:
    results: dict[tuple[str, str], Result] = {}
    for t in tools:
        for k in t.files:
            if k in files:
                results[(t.name, k)] = Result(t.name, k)

    def one_round(rnd: int, only: set[tuple[str, str]] | None) -> None:
        for key, bf in files.items():
            todo = [t for t in tools if (t.name, key) in results and (only is None or (t.name, key) in only)]
            todo = [t for t in todo if not results[(t.name, key)].error or only is not None]
            if not todo:
                continue
            _warm(bf.path)
            base = None
            for t in todo:
                res = results[(t.name, key)]
                wall, rss, error = _run_once(t.argv(bf.path), timeout, t.env)
                label = f"round {rnd} {t.name:14} {key:12}"
                if error:
                    res.error = error
                    print(f"{label} FAILED {error}", file=sys.stderr)
                    continue
                res.error = ""
                res.walls.append(wall)
                res.rss_kib.append(rss)
                if t.baseline:
                    base = wall
                if base is not None:
                    res.ratios.append(base / wall)
                print(f"{label} {wall:8.2f} s {rss / 1024:8.0f} MiB", file=sys.stderr)

    for rnd in range(1, runs + 1):
        one_round(rnd, None)
    failed = {k for k, r in results.items() if r.error}
    if failed:
        # The tool may have appeared meanwhile (another engineer landing it): one more chance, and
        # if it works now, the full number of runs, each next to a fresh baseline run.
        print(f"retrying {len(failed)} failed tool/file pairs", file=sys.stderr)
        for rnd in range(1, runs + 1):
            retry = failed | {
                (t.name, k) for t in tools if t.baseline for _, k in failed if (t.name, k) in results
            }
            one_round(rnd, retry)
            failed = {k for k in failed if not results[k].error}
            if not failed:
                break
    for (name, key), res in results.items():
        if key == PSS_FILE and res.walls and name in ("tshark-conv", "native", "analyze"):
            tool = next(t for t in tools if t.name == name)
            res.tree_pss_kib = _tree_pss_peak(tool.argv(files[key].path), timeout, tool.env)
            print(f"memory {name:14} {key:12} {res.tree_pss_kib / 1024:8.0f} MiB PSS", file=sys.stderr)
    return results


def _machine() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=TREE).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "absent"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    versions = []
    for mod in ("numpy", "pandas", "scapy", "dpkt"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} absent")
    where = (
        out([PY, "-c", "import os, analyzer; print(os.path.dirname(analyzer.__file__))"]) or "not importable"
    )
    walker = out(
        [PY, "-c", "import importlib.util as u; print(u.find_spec('analyzer.decode._walk') is not None)"]
    )
    walker = "C record walker built" if walker == "True" else "no C record walker (pure-Python walk)"
    head = out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if TREE != ROOT:
        measured = f"commit {head} (a snapshot of HEAD: uncommitted edits are not measured)"
    else:
        dirty = out(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "analyzer"])
        measured = f"the working tree at commit {head}" + (
            " with uncommitted changes in analyzer/" if dirty else ""
        )
    return {
        "cpu": f"{os.cpu_count()} cores, {cpu}, {mem} RAM",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({', '.join(versions)})",
        "tshark": (out(["tshark", "--version"]).splitlines() or ["absent"])[0],
        "analyzer": f"{measured}, imported from {where}; {walker}",
    }


def _fmt_ratio(r: Result, extrap: float | None = None) -> str:
    if extrap is not None:
        return f"{extrap:.2f}x (est.)"
    if not r.ratios:
        return "-"
    return f"{statistics.median(r.ratios):.2f}x"


def _report(
    tools: list[Tool],
    files: dict[str, BenchFile],
    results: dict[tuple[str, str], Result],
    runs: int,
    command: str,
    machine: dict[str, str],
    load: tuple[str, str],
    started: dt.datetime,
) -> str:
    by_name = {t.name: t for t in tools}
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py` (do not edit by hand; re-run it). Every number is a whole fresh process",
        "(interpreter start-up and imports included) on a file already in the page cache: wall time is the",
        f"median of {runs} runs, peak RSS the largest process's maximum resident set (`/usr/bin/time %M`);",
        f"for the {PSS_FILE} file, one more run of tshark, native and analyze samples the PSS of the whole",
        "process tree (`analyze` forks a worker per CPU; PSS counts pages they share once).",
        "Runs are interleaved round by round over all tools, so background load hits them alike;",
        "**x tshark** is the median over rounds of (wall of `tshark -r F -q -z conv,tcp` on the same file",
        "in the same round) / (this tool's wall): above 1 means faster than tshark.",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command}`",
        f"- machine: {machine['cpu']}; {machine['os']}; load average {load[0]} at start, {load[1]} at end",
        "  (other engineers share the machine: absolute times are noisy, ratios less so)",
        f"- python {machine['python']}",
        f"- {machine['tshark']}",
        f"- analyzer: {machine['analyzer']}",
        "",
        "## Files",
        "",
        "Generated by `python bench/gen.py --packets N --format pcap|pcapng|sll2 --seed 1` (deterministic).",
        "",
        "| file | format | packets | size MB | TCP connections | UDP exchanges |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for bf in files.values():
        m = bf.manifest
        lines.append(
            f"| {bf.path.name} | {bf.fmt} | {bf.packets:,} | {bf.size / 1e6:.1f} | "
            f"{m.get('tcp_connections', 0):,} | {m.get('udp_exchanges', 0):,} |"
        )
    lines += [
        "",
        "## Results",
        "",
        "| tool | file | packets | wall s | packets/s | peak RSS MiB | x tshark conv,tcp |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    for key, bf in files.items():
        for t in tools:
            r = results.get((t.name, key))
            if r is None:
                continue
            if r.error or not r.walls:
                notes.append(f"{t.label} on {bf.path.name}: skipped ({r.error or 'no successful run'})")
                continue
            wall = statistics.median(r.walls)
            rss = max(r.rss_kib) / 1024
            n = "" if len(r.walls) == runs else f" (n={len(r.walls)})"
            lines.append(
                f"| {t.label} | {bf.path.name} | {bf.packets:,} | {wall:.2f}{n} | {bf.packets / wall:,.0f} | "
                f"{rss:,.0f} | {_fmt_ratio(r)} |"
            )
    # 100k-only tools, scaled to the 1M file: their cost is per packet, start-up aside.
    ext = []
    base_1m = results.get(("tshark-conv", "1m.pcap"))
    for t in tools:
        r = results.get((t.name, "100k.pcap"))
        if not t.extrapolate or r is None or not r.walls or base_1m is None or not base_1m.walls:
            continue
        est = statistics.median(r.walls) * 10
        ext.append(
            f"| {t.label} | bench-1m.pcap (est.) | 1,000,000 | ~{est:.0f} | ~{1e6 / est:,.0f} | - | "
            f"{_fmt_ratio(r, statistics.median(base_1m.walls) / est)} |"
        )
    if ext:
        lines += [
            "",
            "Too slow to run on 1M packets: the 100k wall time x 10, against tshark's measured 1M time:",
            "",
            "| tool | file | packets | wall s | packets/s | peak RSS MiB | x tshark conv,tcp |",
            "|---|---|---:|---:|---:|---:|---:|",
            *ext,
        ]
    # Linear scaling and container overhead.
    scal = []
    for t in tools:
        a, b = results.get((t.name, "100k.pcap")), results.get((t.name, "1m.pcap"))
        if a and b and a.walls and b.walls:
            wa, wb = statistics.median(a.walls), statistics.median(b.walls)
            scal.append(
                f"| {t.label} | {wa:.2f} | {wb:.2f} | {wb / wa:.1f} | "
                f"{(wb - wa) / 0.9:.2f} | {max(a.rss_kib) / 1024:,.0f} / {max(b.rss_kib) / 1024:,.0f} |"
            )
    if scal:
        lines += [
            "",
            "## Scaling 100k -> 1M (Ethernet pcap)",
            "",
            "Linear cost means wall = start-up + per-packet x N: the 1M/100k ratio is below 10 by the",
            "start-up share; the per-million column, (wall(1M) - wall(100k)) / 0.9, is the marginal cost.",
            "",
            "| tool | 100k wall s | 1M wall s | ratio | s per extra 1M packets | peak RSS MiB 100k / 1M |",
            "|---|---:|---:|---:|---:|---:|",
            *scal,
        ]
    fmt_rows = []
    for size in SIZES:
        p = results.get(("native", f"{size}.pcap"))
        if not p or not p.walls:
            continue
        for fmt in ("pcapng", "sll2"):
            q = results.get(("native", f"{size}.{fmt}"))
            if q and q.walls:
                wq, wp = statistics.median(q.walls), statistics.median(p.walls)
                fmt_rows.append(f"| {size} | {fmt} | {wq:.2f} | {wp:.2f} | {_paired(q, p):.2f} |")
    if fmt_rows:
        lines += [
            "",
            "## Native engine: pcapng and SLL2 against Ethernet pcap",
            "",
            "Ratio: median over rounds of this format's wall / the Ethernet pcap's wall in the same round.",
            "",
            "| size | format | wall s | pcap wall s | ratio to pcap |",
            "|---|---|---:|---:|---:|",
            *fmt_rows,
        ]
    lines += ["", "## Targets (issues 2 and 3)", ""]
    lines += _targets(results)
    tool_notes = [f"- {t.label}: {t.note}" for t in tools if t.note]
    if tool_notes or notes:
        lines += ["", "## Notes", "", *tool_notes, *[f"- {n}" for n in notes]]
    if "analyze" in by_name:
        lines.append(
            f"- `analyzer` ran as `{machine['analyzer_cmd']}`; stdout of every tool went to /dev/null."
        )
    lines += [
        "",
        "## Every run",
        "",
        "Wall seconds per round, to judge the noise (rounds after a retry are listed after the others).",
        "",
        "| tool | file | wall s per run | x tshark per run |",
        "|---|---|---|---|",
    ]
    for (name, key), r in results.items():
        if r.walls:
            walls = ", ".join(f"{w:.2f}" for w in r.walls)
            ratios = ", ".join(f"{x:.2f}" for x in r.ratios)
            lines.append(f"| {by_name[name].label} | {files[key].path.name} | {walls} | {ratios} |")
    return "\n".join(lines) + "\n"


def _paired(a: Result, b: Result) -> float:
    """Median of a's wall / b's wall round by round (medians' ratio when the rounds don't pair up)."""
    if len(a.walls) == len(b.walls):
        return statistics.median(x / y for x, y in zip(a.walls, b.walls, strict=True))
    return statistics.median(a.walls) / statistics.median(b.walls)


def _targets(results: dict[tuple[str, str], Result]) -> list[str]:
    out = []
    tsh = results.get(("tshark-conv", "1m.pcap"))
    tsh_rss = max(tsh.rss_kib) / 1024 if tsh and tsh.walls else None

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for name, need, what in (
        ("native", 6.0, "native `read_packets` on the 1M Ethernet pcap"),
        ("analyze", 3.0, "`analyzer analyze --format json` on the 1M Ethernet pcap"),
    ):
        r = results.get((name, "1m.pcap"))
        if r is None or not r.walls or tsh_rss is None:
            out.append(f"- {what}: not measured ({r.error if r else 'not run'})")
            continue
        ratio = statistics.median(r.ratios)
        rss = max(r.rss_kib) / 1024
        pss = r.tree_pss_kib / 1024
        tsh_pss = tsh.tree_pss_kib / 1024 if tsh else 0.0
        ok = ratio >= need and rss < tsh_rss and (not pss or not tsh_pss or pss < tsh_pss)
        tree = f"; process tree PSS {pss:,.0f} MiB vs {tsh_pss:,.0f} MiB" if pss and tsh_pss else ""
        out.append(
            f"- {what}: {ratio:.2f}x tshark (target >= {need:.0f}x), peak {rss:,.0f} MiB vs tshark's "
            f"{tsh_rss:,.0f} MiB{tree} (target below): **{verdict(ok)}**"
        )
    p, q = results.get(("native", "1m.pcap")), results.get(("native", "1m.pcapng"))
    if p and q and p.walls and q.walls:
        ratio = _paired(q, p)
        out.append(f"- native pcapng within 1.3x of pcap (1M): {ratio:.2f}x: **{verdict(ratio <= 1.3)}**")
    return out


RUN_DEMO_BEGIN = "<!-- RUN-DEMO:BEGIN -->"  # markers of bench/run_demo.py's section
RUN_DEMO_END = "<!-- RUN-DEMO:END -->"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3, help="runs per tool and file; the median is reported")
    ap.add_argument("--sizes", default="100k,1m", help="comma-separated subset of: " + ", ".join(SIZES))
    ap.add_argument("--only", help="comma-separated tool names (tshark-conv is always added)")
    ap.add_argument("--data", default=str(BENCH / "data"), help="where the generated captures live")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before one run is abandoned")
    ap.add_argument(
        "--live", action="store_true", help="measure the working tree as it is, not a snapshot of HEAD"
    )
    ap.add_argument(
        "-o", "--output", default=str(ROOT / "BENCHMARKS.md"), help="report file ('-' for stdout)"
    )
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    load0 = f"{os.getloadavg()[0]:.2f}"
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        ap.error(f"unknown size(s) {', '.join(sorted(unknown))}")
    if shutil.which("tshark") is None:
        print("tshark is not installed: ratios cannot be computed (apt-get install tshark)", file=sys.stderr)
    files = _prepare_files(Path(args.data), sizes, args.seed)
    global TREE
    with tempfile.TemporaryDirectory(prefix="analyzer-bench-") as snap:
        if not args.live:
            TREE = Path(snap)
            _snapshot(TREE)
        tools = _tools(sizes)
        if args.only:
            wanted = set(args.only.split(",")) | {"tshark-conv"}
            tools = [t for t in tools if t.name in wanted]
        machine = _machine()
        machine["analyzer_cmd"] = " ".join(_analyzer_cmd())
        results = _measure(tools, files, args.runs, args.timeout)
        TREE = ROOT
    command = "python bench/run.py" + (
        "".join(" " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    )
    text = _report(
        tools, files, results, args.runs, command, machine, (load0, f"{os.getloadavg()[0]:.2f}"), started
    )
    if args.output == "-":
        sys.stdout.write(text)
    else:
        out = Path(args.output)
        old = out.read_text() if out.exists() else ""
        if RUN_DEMO_BEGIN in old and RUN_DEMO_END in old:  # bench/run_demo.py's section survives
            kept = RUN_DEMO_BEGIN + old.split(RUN_DEMO_BEGIN, 1)[1].split(RUN_DEMO_END, 1)[0] + RUN_DEMO_END
            text = text.rstrip("\n") + "\n\n" + kept + "\n"
        out.write_text(text)
        raw = Path(args.data) / "results.json"
        raw.write_text(
            json.dumps({f"{k[0]} {k[1]}": r.__dict__ for k, r in results.items()}, indent=1) + "\n"
        )
        print(f"wrote {args.output} and {raw}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
