"""The record filler of the TCP JSON writer: the C helper (analyzer/flows/_fill.c), the ``%``
fallback, and the blob columns they read.

The whole report is compared on both paths in tests/test_digest.py (ANALYZER_PURE_PYTHON=1
switches both helpers off); here each piece is checked against a plain Python model.
"""

from __future__ import annotations

import shutil
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.flows import tcp_json
from analyzer.flows.tcp_json import _Blob, _fill_c, _fill_percent, _Ints, _Local, _Low, _numbers, _strings


def _module() -> ModuleType:
    if tcp_json._fill is None:
        pytest.skip("the optional _fill extension is not built")
    return tcp_json._fill


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_fill_helper_is_built_where_a_compiler_exists() -> None:
    assert tcp_json._fill is not None, "setup.py's optional _fill extension failed to build"


fragments = st.binary(max_size=12)  # "%" included: the fallback must escape the literal parts only


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_c_and_percent_fill_match_a_plain_model(data: st.DataObject) -> None:
    nb = data.draw(st.integers(1, 12))
    blocks = np.array(data.draw(st.lists(st.integers(0, nb - 1), min_size=1, max_size=10)), dtype=np.int64)
    kinds = data.draw(st.lists(st.sampled_from("dcbB"), max_size=6))
    columns: list[Any] = []
    model: list[list[bytes]] = []  # per column, the fragment of each row of ``blocks``
    for kind in kinds:
        if kind == "d":
            ints = np.array(data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=nb, max_size=nb)))
            columns.append(_Ints(ints))
            model.append([b"%d" % ints[b] for b in blocks.tolist()])
        elif kind == "c":
            frags = data.draw(st.lists(fragments, min_size=1, max_size=4))
            codes = np.array(data.draw(st.lists(st.integers(0, len(frags) - 1), min_size=nb, max_size=nb)))
            columns.append(_Low(codes, frags))
            model.append([frags[codes[b]] for b in blocks.tolist()])
        else:
            n = nb if kind == "b" else len(blocks)
            values = data.draw(st.lists(fragments, min_size=n, max_size=n))
            blob = _Blob(
                b"".join(values),
                np.cumsum([0, *map(len, values[:-1])]).astype(np.int64),
                np.cumsum([len(v) for v in values]).astype(np.int64),
            )
            if kind == "B":
                columns.append(_Local(blob.blob, blob.starts, blob.ends))
                model.append(values)
            else:
                columns.append(blob)
                model.append([values[b] for b in blocks.tolist()])
    parts = data.draw(st.lists(st.binary(max_size=6), min_size=len(kinds) + 1, max_size=len(kinds) + 1))
    expected = [
        parts[0] + b"".join(model[k][i] + parts[k + 1] for k in range(len(kinds))) for i in range(len(blocks))
    ]
    assert _fill_percent(parts, columns, blocks) == expected
    if tcp_json._fill is not None:
        assert _fill_c(parts, columns, blocks) == expected


ZERO, ONE = np.array([0], np.int64), np.array([1], np.int64)


@pytest.mark.parametrize(
    ("parts", "columns", "modes", "rows", "error", "message"),
    [
        ([b"", b""], [(b"ab", ZERO, np.array([2], np.int64))], b"x", [0], ValueError, "mode"),
        ([b""], [], b"", [-1], ValueError, "rows must be"),
        ([b"", b""], [], b"", [0], ValueError, "len\\(parts\\)"),
        ([b"", 1], [np.zeros(1, np.int64)], b"d", [0], TypeError, "parts must be bytes"),
        ([b"", b""], [np.zeros(1, np.int64)], b"d", [1], ValueError, "shorter than the rows"),
        ([b"", b""], [([b"a"], np.array([1], np.int64))], b"c", [0], ValueError, "outside its fragments"),
        ([b"", b""], [(["a"], np.array([0], np.int64))], b"c", [0], ValueError, "not bytes"),
        ([b"", b""], [(b"ab", ONE, np.array([3], np.int64))], b"b", [0], ValueError, "blob"),
        ([b"", b""], [(b"ab", np.array([2], np.int64), ONE)], b"B", [0], ValueError, "blob"),
        ([b"", b""], [(b"ab", ZERO)], b"b", [0], ValueError, "must be"),
    ],
)
def test_bad_columns_are_errors_not_reads(
    parts: list[Any], columns: list[Any], modes: bytes, rows: list[int], error: type[Exception], message: str
) -> None:
    mod = _module()
    with pytest.raises(error, match=message):
        mod.fill(parts, columns, modes, np.array(rows, dtype=np.int64))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.floats()), max_size=20))
def test_number_blobs_split_like_orjson(values: list[Any]) -> None:
    import orjson

    blob = _numbers(values)
    expected = [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY) for v in values]
    assert blob.values.tolist() == expected
    missing = np.array([i % 3 == 0 for i in range(len(values))], dtype=bool)
    assert blob.with_null(missing).values.tolist() == [
        b"null" if m else e for m, e in zip(missing, expected, strict=True)
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=20))
def test_string_blobs_split_like_orjson(values: list[str | None]) -> None:
    """Quotes, commas, backslashes and NULs inside strings do not move the boundaries."""
    import orjson

    assert _strings(values).values.tolist() == [orjson.dumps(v) for v in values]


@pytest.mark.parametrize("tricky", [",", 'say "hi",', '",', '","'])
def test_strings_that_look_like_boundaries(tricky: str) -> None:
    """'","' inside an encoded string (a preview ending in a quote and comma) is no boundary."""
    import orjson

    values = ["a", tricky, None, tricky]
    assert _strings(values).values.tolist() == [orjson.dumps(v) for v in values]
    assert _strings([tricky]).values.tolist() == [orjson.dumps(tricky)]


def test_split_refuses_a_wrong_count() -> None:
    with pytest.raises(ValueError, match="separators"):
        _Blob.split(b"1,2,3", b",", 2)
    assert _Blob.split(b"", b",", 0).values.tolist() == []
    assert _Blob.split(b"x", b",", 1).values.tolist() == [b"x"]
    assert _Blob.split(b"a],[b", b"],[", 2).values.tolist() == [b"a", b"b"]
