"""Field-by-field comparison of the decoder engines on one capture (``analyzer crosscheck``).

Every PACKETS column is compared frame by frame, exactly: integers and booleans as values, text
columns as text (NaN equals NaN), ``ts`` as the float each engine derived from its exact ``ts_ns``.
``note`` is free text after its first token, so two notes agree when both are empty or both start
with the same token (docs/PACKETS.md).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analyzer.decode import ENGINES, read_packets
from analyzer.errors import UsageError
from analyzer.schema import PACKET_COLUMNS, validate_frame

# Differences kept per pair for the report; the per-column counts are always complete.
MAX_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Difference:
    frame: int
    column: str
    a: object
    b: object


@dataclass(frozen=True, slots=True)
class PairResult:
    """Engine ``a`` against engine ``b``."""

    a: str
    b: str
    frames_a: int
    frames_b: int
    columns: int
    counts: dict[str, int]  # column -> frames that differ (only columns that differ)
    differences: tuple[Difference, ...]  # the first MAX_KEPT, by frame then column order

    @property
    def agree(self) -> bool:
        return self.frames_a == self.frames_b and not self.counts

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class CrosscheckResult:
    path: Path
    engines: tuple[str, ...]
    pairs: tuple[PairResult, ...] = field(default_factory=tuple)

    @property
    def agree(self) -> bool:
        return all(p.agree for p in self.pairs)


def crosscheck_engines(path: str | os.PathLike[str], engines: Sequence[str]) -> CrosscheckResult:
    """Decode ``path`` with each engine and compare every pair of tables."""
    names = tuple(dict.fromkeys(engines))  # keep order, drop repeats
    unknown = [e for e in names if e not in ENGINES]
    if unknown:
        raise UsageError(
            f"unknown engine(s): {', '.join(unknown)}", hint=f"choose from: {', '.join(ENGINES)}"
        )
    if len(names) < 2:
        raise UsageError("crosscheck needs at least two engines", hint="e.g. --engines native,tshark")
    p = Path(path)
    tables: dict[str, pd.DataFrame] = {}
    for name in names:
        df = read_packets(p, engine=name)
        validate_frame(df)
        tables[name] = df
    pairs = tuple(compare_tables(a, tables[a], b, tables[b]) for a, b in itertools.combinations(names, 2))
    return CrosscheckResult(p, names, pairs)


def note_key(value: object) -> str:
    """What two notes must share: "" or the first token ("truncated: TCP header;fragment" -> "truncated")."""
    if not isinstance(value, str):
        return ""
    return value.split(";", 1)[0].split(":", 1)[0].strip()


def _column_values(s: pd.Series) -> npt.NDArray[Any]:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return np.asarray(s.astype(object).to_numpy())
    return np.asarray(s.to_numpy())


def _differs(col: str, a: pd.Series, b: pd.Series) -> npt.NDArray[np.bool_]:
    if col == "note":
        return np.asarray([note_key(x) != note_key(y) for x, y in zip(a, b, strict=True)], dtype=bool)
    va, vb = _column_values(a), _column_values(b)
    if va.dtype == object or vb.dtype == object:
        na_a = np.asarray(pd.isna(va), dtype=bool)
        na_b = np.asarray(pd.isna(vb), dtype=bool)
        ne = np.asarray(va != vb, dtype=bool)
        return np.asarray((ne & ~(na_a & na_b)) | (na_a != na_b), dtype=bool)
    return np.asarray(va != vb, dtype=bool)


def compare_tables(name_a: str, a: pd.DataFrame, name_b: str, b: pd.DataFrame) -> PairResult:
    """Every column of the first min(len) frames; a frame-count difference is reported apart."""
    n = min(len(a), len(b))
    a = a.iloc[:n].reset_index(drop=True)
    b = b.iloc[:n].reset_index(drop=True)
    counts: dict[str, int] = {}
    hits: list[tuple[int, int, str]] = []  # (row, column index, column)
    for ci, col in enumerate(PACKET_COLUMNS):
        mask = _differs(col, a[col], b[col])
        rows = np.flatnonzero(mask)
        if len(rows):
            counts[col] = len(rows)
            hits.extend((int(r), ci, col) for r in rows[:MAX_KEPT])
    hits.sort()
    frames = a["frame"].to_numpy()
    diffs = tuple(
        Difference(int(frames[r]), col, _plain(a[col].iat[r]), _plain(b[col].iat[r]))
        for r, _, col in hits[:MAX_KEPT]
    )
    return PairResult(name_a, name_b, len(a), len(b), len(PACKET_COLUMNS), counts, diffs)


def _plain(v: object) -> object:
    """numpy scalars as Python values, NaN as None (for display and tests)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def _show(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def format_report(result: CrosscheckResult, show: int = 10) -> str:
    """One line per engine pair, and the first ``show`` differences of each pair that disagrees."""
    lines = [f"{result.path}: engines {', '.join(result.engines)}"]
    for pair in result.pairs:
        head = f"{pair.a} vs {pair.b}: "
        if pair.frames_a != pair.frames_b:
            common = min(pair.frames_a, pair.frames_b)
            head += f"{pair.frames_a:,} vs {pair.frames_b:,} frames (first {common:,} compared), "
        else:
            head += f"{pair.frames_a:,} frames, "
        head += f"{pair.columns} columns, "
        if pair.agree:
            lines.append(head + "agree")
            continue
        if not pair.counts:
            lines.append(head + "fields agree on the common frames")
            continue
        per_col = ", ".join(f"{col} {k:,}" for col, k in pair.counts.items())
        lines.append(head + f"{pair.total:,} differing fields in {len(pair.counts)} columns ({per_col})")
        width = max(len(d.column) for d in pair.differences[:show])
        for d in pair.differences[:show]:
            lines.append(
                f"  frame {d.frame:>6}  {d.column:<{width}}  {pair.a}={_show(d.a)}  {pair.b}={_show(d.b)}"
            )
        if pair.total > show:
            lines.append(f"  ... {pair.total - show:,} more (use --show N)")
    verdict = "all engines agree" if result.agree else "engines disagree"
    lines.append(verdict)
    return "\n".join(lines)
