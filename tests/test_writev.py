"""analyzer.writev: buffers written in order, to a file by os.writev (short writes included),
to anything else through its write()."""

from __future__ import annotations

import io
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.writev import Gather, write_all, write_stream


@given(
    pieces=st.lists(st.binary(max_size=40), max_size=60),
    most=st.integers(min_value=1, max_value=200),
    per_call=st.integers(min_value=1, max_value=8),
)
@settings(max_examples=100, deadline=None)
def test_property_every_piece_in_order_despite_short_writes(
    pieces: list[bytes], most: int, per_call: int
) -> None:
    """``os.writev`` may write less than asked (a signal, a full pipe): the rest still goes out."""
    real = os.writev

    def short(fd: int, buffers: list[bytes]) -> int:
        data = b"".join(bytes(b) for b in buffers[:per_call])[:most]
        return real(fd, [data])

    with tempfile.TemporaryFile() as fh:
        fh.write(b"head:")  # buffered: must reach the file before the pieces
        original, os.writev = os.writev, short  # type: ignore[assignment]
        try:
            write_all(fh, list(pieces))
        finally:
            os.writev = original  # type: ignore[assignment]
        fh.seek(0)
        assert fh.read() == b"head:" + b"".join(pieces)


@pytest.mark.parametrize("real_file", [True, False])
def test_a_stream_of_buffers_and_gathers(real_file: bool) -> None:
    items: list[bytes | memoryview | Gather] = [
        b"a",
        Gather([b"b", memoryview(b"xcx")[1:2], b""]),
        *[bytes([65 + k % 26]) for k in range(3000)],  # more than one writev batch
        Gather([]),
        b"z",
    ]
    expected = b"".join(i.joined() if isinstance(i, Gather) else bytes(i) for i in items)
    if real_file:
        with tempfile.TemporaryFile() as fh:
            write_stream(fh, items)
            fh.seek(0)
            assert fh.read() == expected
    else:
        out = io.BytesIO()
        write_stream(out, items)
        assert out.getvalue() == expected
