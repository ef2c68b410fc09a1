"""CSV and Parquet export of the analysis tables: ``packets.*``, ``tcp.*`` and ``udp.*`` in a directory.

``packets`` is the PACKETS frame (``analyzer/schema.py``, docs/PACKETS.md) plus the TCP stream
columns a reader needs to follow a connection (``tcp_stream``, ``tcp_dir``, ``tcp_rel_seq``,
``tcp_rel_ack``; -1 on non-TCP rows), ``tcp`` one row per connection (``TCP_FLOWS`` in
``analyzer.flows.tcp``), ``udp`` one row per conversation.

Serialisation: categories are written as their values; object columns that hold lists, tuples,
dicts or arrays become JSON text (CSV has no nested values, and one encoding for both formats
means a Parquet reader and a CSV reader see the same strings); missing values are empty in CSV
and null in Parquet; floats keep full precision (``repr``-exact in CSV).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzer.analysis import Analysis
from analyzer.errors import UsageError

__all__ = ["TABLE_NAMES", "export_tables", "serialisable", "tables"]

TABLE_NAMES = ("packets", "tcp", "udp")
FORMATS = ("csv", "parquet")


def tables(analysis: Analysis) -> dict[str, pd.DataFrame]:
    """The three tables as written (see the module docstring)."""
    return {
        "packets": _packets_with_streams(analysis.packets),
        "tcp": analysis.tcp,
        "udp": analysis.udp,
    }


def _packets_with_streams(packets: pd.DataFrame) -> pd.DataFrame:
    from analyzer.flows.tcp_rows import tcp_packet_rows

    rows = tcp_packet_rows(packets)
    n = len(packets)
    extra: dict[str, np.ndarray[Any, Any]] = {}
    idx = rows["row"].to_numpy()
    for name, col, dtype in (
        ("tcp_stream", "stream", np.int64),
        ("tcp_dir", "dir", np.int8),
        ("tcp_rel_seq", "rel_seq", np.int64),
        ("tcp_rel_ack", "rel_ack", np.int64),
    ):
        values = np.full(n, -1, dtype=dtype)
        values[idx] = rows[col].to_numpy().astype(dtype)
        extra[name] = values
    return packets.assign(**extra)


def serialisable(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with nested values (lists, dicts, arrays) in object columns turned into JSON text."""
    out = {}
    for name in df.columns:
        col = df[name]
        if col.dtype == object and col.map(_nested).any():
            out[name] = col.map(_json)
    return df.assign(**out) if out else df


def _nested(value: Any) -> bool:
    return isinstance(value, list | tuple | dict | set | np.ndarray)


def _json(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, set):
        value = sorted(value)
    if _nested(value):
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def export_tables(analysis: Analysis, directory: Path, fmt: str) -> list[Path]:
    """Write ``packets.<fmt>``, ``tcp.<fmt>`` and ``udp.<fmt>`` into ``directory``; return the paths."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown table format {fmt!r}", hint="use csv or parquet")
    if directory.exists() and not directory.is_dir():
        raise UsageError(
            f"{directory} is a file; --format {fmt} writes three tables into a directory",
            hint="pass a directory with -o (it is created when missing)",
        )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables(analysis).items():
        path = directory / f"{name}.{fmt}"
        data = serialisable(df)
        if fmt == "csv":
            data.to_csv(path, index=False, lineterminator="\n")
        else:
            data.to_parquet(path, index=False)
        written.append(path)
    return written
