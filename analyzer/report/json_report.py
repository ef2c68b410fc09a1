"""The ``analyzer.report/1`` JSON document: rendering, and its JSON Schema.

Layout: one top-level key per line and one flow per line inside ``tcp`` and ``udp``, so reports
diff flow by flow and grep well. Keys keep the order in which the records define them (the order
of issue 3's field list), so the output is stable. Encoding is orjson's (UTF-8; NaN and infinities
become ``null``, numpy scalars plain numbers): a 1M-packet capture gives a ~200 MB report, which
the standard library's encoder takes several seconds to write. ``write_json`` streams flow by
flow instead of building the whole text in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import IO, Any

import numpy as np
import orjson

from analyzer.analysis import Analysis, LazyRecords
from analyzer.writev import Gather, write_stream

SCHEMA_RESOURCE = "schemas/report-1.schema.json"
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
RECORD_SEPARATOR = b",\n    "  # between the flows of a list (one per line)


def render_json(report: Analysis | dict[str, Any]) -> str:
    """The report as JSON text (ends with a newline)."""
    return b"".join(c.joined() if isinstance(c, Gather) else c for c in iter_json(report)).decode("utf-8")


def write_json(report: Analysis | dict[str, Any], out: IO[bytes]) -> None:
    """Write the report to a binary stream, one flow at a time (``writev`` batches to a file)."""
    write_stream(out, iter_json(report))


def iter_json(report: Analysis | dict[str, Any]) -> Iterator[bytes | memoryview | Gather]:
    """The report's JSON text in chunks (one per line; a ``Gather`` is buffers back to back)."""
    # Records not built yet are written straight from the flow tables (LazyRecords.json_chunks).
    doc = report.document() if isinstance(report, Analysis) else report
    items = list(doc.items())
    yield b"{\n"
    for i, (key, value) in enumerate(items):
        comma = b",\n" if i < len(items) - 1 else b"\n"
        name = b"  " + _dumps(str(key)) + b": "
        if (
            isinstance(value, LazyRecords)
            and value.json_chunks is not None
            and len(value)
            and not value.built
        ):
            yield name + b"[\n    "
            for k, chunk in enumerate(value.json_chunks()):
                if k:  # a separate item: prepending it would copy the (megabytes long) chunk
                    yield RECORD_SEPARATOR
                yield chunk
            yield b"\n  ]" + comma
            continue
        if isinstance(value, LazyRecords):
            value = list(value)
        if isinstance(value, list) and value:
            yield name + b"[\n"
            last = len(value) - 1
            for k, item in enumerate(value):
                yield b"    " + _dumps(item) + (b",\n" if k < last else b"\n")
            yield b"  ]" + comma
        else:
            yield name + _dumps(value) + comma
    yield b"}\n"


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # a type orjson does not know (e.g. a numpy scalar inside a tuple key)
        return orjson.dumps(jsonable(value), option=_OPTIONS)


def jsonable(value: Any) -> Any:
    """``value`` with NaN/inf -> None, numpy scalars/arrays -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@cache
def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of analyzer.report/1, shipped in the package."""
    text = resources.files("analyzer.report").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
