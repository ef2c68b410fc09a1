"""Printable previews of payload bytes, shared by the TCP and UDP reports.

A preview shows text as text: printable ASCII and printable non-ASCII UTF-8 characters as they
are, ``⏎`` for a newline (``\\r\\n`` counts as one newline), ``\\xNN`` for every other byte, and an
ellipsis ``…`` when the payload is longer than the preview. The conversion runs in C
(``bytes.translate`` to test, ``bytes.decode`` with ``backslashreplace``, ``str.replace``) so that
previewing a hundred thousand streams and datagrams stays cheap.
"""

from __future__ import annotations

PREVIEW_BYTES = 64  # bytes of payload a preview shows before it is cut with an ellipsis
ELLIPSIS = "…"
NEWLINE = "⏎"


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x80):
        ch = chr(code)
        if not ch.isprintable():
            table[code] = f"\\x{code:02x}"
    table[0x0A] = NEWLINE
    # Undecodable bytes come back from the "surrogateescape" handler as U+DC80..U+DCFF.
    for byte in range(0x80, 0x100):
        table[0xDC00 + byte] = f"\\x{byte:02x}"
    return table


_TABLE = _build_table()
# Bytes a preview shows as themselves (and the newline, shown as NEWLINE): payloads made only of
# these (most text protocols) skip the per-character translation, the costly step.
_PLAIN = bytes(range(0x20, 0x7F)) + b"\n"
# Every byte but the ASCII controls: deleting these leaves the controls a payload holds.
_NOT_CONTROL = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))


def preview(data: bytes, limit: int = PREVIEW_BYTES) -> str:
    """Printable rendering of the first ``limit`` bytes of ``data`` (see the module docstring)."""
    head = (data[:limit] if len(data) > limit else data).replace(b"\r\n", b"\n")
    if not head.translate(None, _PLAIN):
        text = head.decode("ascii").replace("\n", NEWLINE)
    else:
        # Undecodable bytes become \xNN in C; then one replace per distinct control byte present
        # (binary payloads hold a few): far cheaper than translating character by character.
        text = head.decode("utf-8", "backslashreplace")
        for code in set(head.translate(None, _NOT_CONTROL)):
            text = text.replace(chr(code), _TABLE[code])
        if not text.isprintable():
            text = "".join(_escape_char(ch) for ch in text)
    if len(data) > limit:
        text += ELLIPSIS
    return text


def _escape_char(ch: str) -> str:
    """Escape a non-ASCII character that is valid UTF-8 but not printable (C1 controls, U+2028...)."""
    if ch.isprintable():
        return ch
    return "".join(f"\\x{b:02x}" for b in ch.encode("utf-8"))
