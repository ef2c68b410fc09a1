"""Group helpers of analyzer.flows.tcp_seq against naive Python versions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.flows.tcp_seq import (
    NONE,
    factorize_runs,
    first_after,
    first_in_spans,
    first_index_per_group,
    first_row_per_group,
    reduce_per_group,
    segmented_running_max,
    sort_keys,
)

values = st.integers(-(2**40), 2**40) | st.just(int(NONE))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), values), min_size=1, max_size=40), st.booleans())
def test_segmented_running_max(items: list[tuple[bool, int]], inclusive: bool) -> None:
    starts = np.array([s for s, _ in items], dtype=bool)
    vals = np.array([v for _, v in items], dtype=np.int64)
    expected: list[int] = []
    best = int(NONE)
    for i, (start, v) in enumerate(items):
        if start or i == 0:
            best = int(NONE)
        if inclusive:
            best = max(best, v)
            expected.append(best)
        else:
            expected.append(best)
            best = max(best, v)
    assert segmented_running_max(vals, starts, inclusive=inclusive).tolist() == expected


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=30))
def test_first_index_per_group(items: list[tuple[int, bool]]) -> None:
    items = sorted(items, key=lambda x: x[0])  # groups contiguous
    groups = np.array([g for g, _ in items], dtype=np.int64)
    mask = np.array([m for _, m in items], dtype=bool)
    first = first_index_per_group(mask, groups, 6).tolist()
    for g in range(6):
        hits = [i for i, (gg, m) in enumerate(items) if gg == g and m]
        assert first[g] == (hits[0] if hits else -1)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-100, 100)), max_size=30))
def test_reduce_per_group(items: list[tuple[int, int]]) -> None:
    items = sorted(items, key=lambda x: x[0])
    groups = np.array([g for g, _ in items], dtype=np.int64)
    vals = np.array([v for _, v in items], dtype=np.int64)
    got = reduce_per_group(np.maximum, vals, groups, 6, -999).tolist()
    assert got == [max([v for g, v in items if g == k], default=-999) for k in range(6)]


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=30))
def test_first_row_per_group(items: list[tuple[int, bool]]) -> None:
    items = sorted(items, key=lambda x: x[0])
    groups = np.array([g for g, _ in items], dtype=np.int64)
    rows = np.array([i for i, (_, m) in enumerate(items) if m], dtype=np.int64)
    first = first_row_per_group(rows, groups, 6).tolist()
    for g in range(6):
        hits = [i for i, (gg, m) in enumerate(items) if gg == g and m]
        assert first[g] == (hits[0] if hits else -1)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.sets(st.integers(0, 60), max_size=40),
    st.lists(st.tuples(st.integers(-1, 60), st.integers(-1, 62), st.integers(1, 4)), max_size=12),
    st.integers(0, 3),
)
def test_first_after(row_set: set[int], queries: list[tuple[int, int, int]], rounds: int) -> None:
    """Both the round-by-round path and the all-candidates path (rounds=0) against a plain scan."""
    rows = np.array(sorted(row_set), dtype=np.int64)
    after = np.array([a for a, _, _ in queries], dtype=np.int64)
    limit = np.array([lim for _, lim, _ in queries], dtype=np.int64)
    modulus = np.array([m for _, _, m in queries], dtype=np.int64)

    def accept(q: np.ndarray, r: np.ndarray) -> np.ndarray:
        return np.asarray(r % modulus[q] == 0)

    got = first_after(rows, after, limit, accept, rounds=rounds).tolist()
    for k, (a, lim, m) in enumerate(queries):
        hits = [r for r in sorted(row_set) if a < r < lim and r % m == 0]
        assert got[k] == (hits[0] if hits else -1)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.integers(0, 6), max_size=8), max_size=12), st.sampled_from([3, 21]))
def test_factorize_runs(runs: list[list[int]], bits: int) -> None:
    """Codes as pd.factorize gives them for the runs as strings; bits=21 packs only 3 symbols per
    key, so longer runs take the bytes path."""
    symbols = np.array([v for run in runs for v in run], dtype=np.int64)
    lengths = np.array([len(run) for run in runs], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    codes, first = factorize_runs(symbols, starts, lengths, bits)
    expected, _ = pd.factorize(pd.Series([",".join(map(str, run)) for run in runs], dtype=object))
    assert codes.tolist() == list(expected)
    assert first.tolist() == [list(expected).index(c) for c in range(len(first))]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(0, 9), max_size=30),
    st.lists(st.tuples(st.integers(0, 31), st.integers(0, 31)), max_size=10),
    st.integers(0, 3),
)
def test_first_in_spans(values: list[int], spans: list[tuple[int, int]], rounds: int) -> None:
    """Positions of the first even value in each span, on both paths (rounds=0: scan only)."""
    rows = np.array(values, dtype=np.int64)
    lo = np.array([min(a, len(values)) for a, _ in spans], dtype=np.int64)
    hi = np.array([min(b, len(values)) for _, b in spans], dtype=np.int64)

    def even(q: np.ndarray, r: np.ndarray) -> np.ndarray:
        return np.asarray(r % 2 == 0)

    got = first_in_spans(rows, lo, hi, even, rounds=rounds).tolist()
    for k in range(len(spans)):
        hits = [p for p in range(int(lo[k]), int(hi[k])) if values[p] % 2 == 0]
        assert got[k] == (hits[0] if hits else -1)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.integers(0, 2**40 - 1), max_size=10), max_size=5), st.booleans())
def test_sort_keys(parts: list[list[int]], narrow: bool) -> None:
    """Keys below 2**32 take the uint32 sort, wider ones the int64 sort."""
    bound = 1 << (32 if narrow else 40)
    parts = [[v % bound for v in p] for p in parts]
    got = sort_keys([np.array(p, dtype=np.int64) for p in parts], bound)
    assert got.dtype == np.int64
    assert got.tolist() == sorted(v for p in parts for v in p)
