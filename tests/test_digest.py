"""The optional C helper for stream digests (analyzer/flows/_digest.c) against hashlib.

tcp_data hashes every reassembled direction with ``_digest.sha256_runs`` and takes its preview
bytes from ``_digest.heads`` when the extension is built; ``ANALYZER_PURE_PYTHON=1`` (or a
missing extension) gives the hashlib path. Both must give the same report.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bench_gen import gen

from analyzer.analysis import analyze
from analyzer.flows import tcp_data
from analyzer.report.json_report import render_json


def _module() -> ModuleType:
    if tcp_data._digest is None:
        pytest.skip("the optional _digest extension is not built (or libcrypto lacks SHA256_*)")
    return tcp_data._digest


def _arrays(*values: list[int]) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.int64) for v in values]


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_digest_helper_is_built_where_a_compiler_exists() -> None:
    assert tcp_data._digest is not None, "setup.py's optional _digest extension failed to build"


@settings(max_examples=150, deadline=None)
@given(
    st.binary(min_size=0, max_size=3000),
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 400)), max_size=30),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=12),
    st.integers(0, 300),
)
def test_runs_hash_and_head_like_hashlib(
    buf: bytes, pieces: list[tuple[int, int]], runs: list[tuple[int, int]], want: int
) -> None:
    mod = _module()
    # pieces clipped into the buffer, runs into the pieces
    offs = [min(o, len(buf)) for o, _ in pieces]
    lens = [min(n, len(buf) - o) for o, (_, n) in zip(offs, pieces, strict=True)]
    starts = [min(a, b, len(pieces)) for a, b in runs]
    ends = [min(max(a, b), len(pieces)) for a, b in runs]
    offsets, lengths, s, e = _arrays(offs, lens, starts, ends)
    streams = [
        b"".join(buf[offs[i] : offs[i] + lens[i]] for i in range(a, b))
        for a, b in zip(starts, ends, strict=True)
    ]
    assert mod.sha256_runs(buf, offsets, lengths, s, e) == b"".join(
        hashlib.sha256(x).digest() for x in streams
    )
    assert mod.heads(buf, offsets, lengths, s, e, want) == [x[:want] for x in streams]


@pytest.mark.parametrize(
    ("offsets", "lengths", "starts", "ends", "message"),
    [
        ([0, 8], [4, 4], [0], [2], "outside the buffer"),  # 8 + 4 > 10
        ([-1], [1], [0], [1], "outside the buffer"),
        ([0], [2], [0], [2], "outside the pieces"),
        ([0], [2], [1], [0], "outside the pieces"),
        ([0, 1], [2], [0], [1], "equal size"),
    ],
)
def test_bad_pieces_or_runs_are_errors_not_reads(
    offsets: list[int], lengths: list[int], starts: list[int], ends: list[int], message: str
) -> None:
    mod = _module()
    args = _arrays(offsets, lengths, starts, ends)
    for call in (lambda: mod.sha256_runs(bytes(10), *args), lambda: mod.heads(bytes(10), *args, 5)):
        with pytest.raises(ValueError, match=message):
            call()


def test_c_and_hashlib_give_the_same_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every teardown kind, retransmissions and gaps: both paths, one report."""
    _module()
    path = tmp_path / "mix.pcap"
    gen.write(path, "pcap", 3000, seed=11)
    fast = render_json(analyze(path))
    monkeypatch.setenv("ANALYZER_PURE_PYTHON", "1")
    assert render_json(analyze(path)) == fast
