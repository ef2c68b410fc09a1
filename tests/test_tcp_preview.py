"""The shared payload preview (analyzer.flows.preview): text stays text, everything else is escaped."""

from __future__ import annotations

import pytest

from analyzer.flows.preview import ELLIPSIS, PREVIEW_BYTES, preview


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1⏎Host: x⏎⏎"),  # CRLF is one newline
        (b"line1\nline2", "line1⏎line2"),
        (b"\x00\x01\x7f", "\\x00\\x01\\x7f"),  # control bytes
        (b"tab\there", "tab\\x09here"),
        (b"caf\xc3\xa9", "café"),  # printable UTF-8 stays as is
        (b"\xff\xfe", "\\xff\\xfe"),  # invalid UTF-8 bytes are escaped one by one
        (b"\xc2\x85", "\\xc2\\x85"),  # a valid but non-printable C1 control
        (b"", ""),
    ],
)
def test_preview_renders(data: bytes, expected: str) -> None:
    assert preview(data) == expected


def test_preview_cuts_long_payloads_with_an_ellipsis() -> None:
    data = b"a" * (PREVIEW_BYTES + 1)
    assert preview(data) == "a" * PREVIEW_BYTES + ELLIPSIS
    assert preview(b"b" * PREVIEW_BYTES) == "b" * PREVIEW_BYTES
    assert preview(b"abcdef", limit=3) == "abc" + ELLIPSIS
