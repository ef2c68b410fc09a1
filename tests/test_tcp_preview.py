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


def reference_preview(data: bytes, limit: int = PREVIEW_BYTES) -> str:
    """The module docstring's rule applied character by character (slow, obviously right)."""
    text = data[:limit].replace(b"\r\n", b"\n").decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\n":
            out.append("⏎")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8")))
    return "".join(out) + (ELLIPSIS if len(data) > limit else "")


def test_preview_agrees_with_the_rule_on_random_payloads() -> None:
    # The fast paths (plain ASCII; decode with backslashreplace + one replace per control byte)
    # against the per-character rule: text fragments, controls, valid/invalid/cut UTF-8.
    import random

    rng = random.Random(7)
    parts = [b"a", b" ", b"\r", b"\n", b"\r\n", b"~", b"\\", b"\x7f", b"\x00", b"\t", b"\xc3\xa9", b"\xff"]
    parts += [b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80", b"\x80"]
    for _ in range(20_000):
        data = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 80)))
        assert preview(data) == reference_preview(data), data
        assert preview(data, 5) == reference_preview(data, 5), data
    for _ in range(2_000):
        data = rng.randbytes(rng.randint(0, 100))
        assert preview(data) == reference_preview(data), data
