"""Rendering and filtering of the packet table for ``analyzer packets``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd

from analyzer.errors import UsageError
from analyzer.flags import flags_to_str

TABLE_COLUMNS = ("frame", "ts", "src", "sport", "dst", "dport", "proto", "flags", "seq", "ack", "len", "note")


def select(df: pd.DataFrame, expr: str) -> pd.DataFrame:
    """Rows of ``df`` matching the pandas query ``expr``; a bad expression is a usage error."""
    try:
        out = df.query(expr, engine="python")
    except Exception as exc:  # pandas raises many types for a bad expression
        raise UsageError(
            f"invalid --query {expr!r}: {exc}",
            hint="use pandas query syntax over the packet columns, e.g. 'proto == \"tcp\" and dport == 80'",
        ) from None
    if not isinstance(out, pd.DataFrame):
        raise UsageError(f"invalid --query {expr!r}: it does not select rows")
    return out


def _table_frame(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frame": df["frame"],
            "ts": df["ts"].map(lambda t: f"{t:.6f}"),
            "src": df["src"].astype(object).fillna(""),
            "sport": df["sport"],
            "dst": df["dst"].astype(object).fillna(""),
            "dport": df["dport"],
            "proto": df["proto"],
            "flags": df["tcp_flags"].map(flags_to_str),
            "seq": df["seq"],
            "ack": df["ack"],
            "len": df["payload_len"],
            "note": df["note"].astype(object).fillna(""),
        }
    )


def _jsonable(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(
        **{
            c: df[c].astype(object).where(df[c].notna(), None)
            for c in df.columns
            if isinstance(df[c].dtype, pd.CategoricalDtype)
        }
    )


def render_packets(df: pd.DataFrame, fmt: str, output: Path | None) -> None:
    """Write ``df`` in ``fmt`` (table, csv, json, parquet) to ``output`` or stdout."""
    if fmt == "parquet":
        if output is None:
            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            sys.stdout.buffer.write(buf.getvalue())
        else:
            df.to_parquet(output, index=False)
        return
    if fmt == "csv":
        text = df.to_csv(index=False)
    elif fmt == "json":
        text = _jsonable(df).to_json(orient="records", lines=True)
    else:
        text = _table_frame(df).to_string(index=False) + "\n" if len(df) else "(no packets)\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
