"""Printable previews of payload bytes, shared by the TCP and UDP reports.

A preview shows text as text: printable ASCII and printable non-ASCII UTF-8 characters as they
are, ``⏎`` for a newline (``\\r\\n`` counts as one newline), ``\\xNN`` for every other byte, and an
ellipsis ``…`` when the payload is longer than the preview. ``preview`` renders one payload in C
(``bytes.translate`` to test, ``bytes.decode`` with ``backslashreplace``, ``str.replace``);
``json_bodies`` renders a whole batch of payloads at once with numpy, straight to the JSON text
of the report, for the UDP datagrams (one preview each: 10^5 per capture is common).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import orjson

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


# -- many payloads at once --------------------------------------------------------------------
#
# ``json_bodies`` applies the rule byte by byte over the concatenated heads. Every byte becomes
# either one byte ("narrow": printable ASCII but the quote and the backslash, a byte of a
# printable multibyte character, the NUL ending each head) or a five-byte token ("wide": the
# JSON text of a \xNN escape; ⏎, \" and \\ padded with FILLER bytes; nothing but FILLER for
# the \r of a \r\n). With two widths only, a byte's output position is its position plus 4 per
# wide byte before it, i.e. arithmetic on its rank among its kind instead of a prefix sum; one
# C-level pass then deletes the (rare) FILLER bytes.

U8 = npt.NDArray[np.uint8]
Head = bytes | memoryview
I64 = npt.NDArray[np.int64]
FILLER = 0xFF  # never part of UTF-8 text, so never in a rendered preview
SEPARATOR = 0x00  # ends every rendered head (a NUL byte of a payload renders as \x00)
_WIDE = 5
_DROP = 256  # token code of the \r of a \r\n
_CUT = 257  # token code of the NUL ending a head whose payload goes on: ellipsis, NUL


def _build_tokens() -> U8:
    """The five bytes of every wide token, by code (a byte value, _DROP or _CUT)."""
    pad = bytes([FILLER]) * _WIDE
    tokens = [orjson.dumps(f"\\x{b:02x}")[1:-1] for b in range(256)]
    tokens[0x0A] = NEWLINE.encode()
    tokens[0x22] = b'\\"'
    tokens[0x5C] = b"\\\\"
    tokens += [b"", ELLIPSIS.encode() + pad[:1] + bytes([SEPARATOR])]
    return np.frombuffer(b"".join((t + pad)[:_WIDE] for t in tokens), dtype=np.uint8).reshape(-1, _WIDE)


_TOKENS = _build_tokens()


def json_bodies(
    heads: Sequence[Head], lengths: npt.NDArray[np.integer], cut: npt.NDArray[np.bool_]
) -> list[bytes]:
    """``orjson.dumps(preview(...))`` without its quotes, for a batch of payload heads.

    ``heads[i]`` holds the first ``lengths[i]`` bytes of a payload (at most the preview's limit)
    and ``cut[i]`` tells whether the payload goes on (the preview then ends with the ellipsis).
    """
    if not len(heads):
        return []
    # Three more NULs after the last head's: a multibyte sequence is read without bounds checks.
    y: U8 = np.frombuffer(b"\0".join(heads) + b"\0\0\0\0", dtype=np.uint8)
    ends = np.cumsum(lengths.astype(np.int64) + 1) - 1
    if len(y) != int(ends[-1]) + 4:
        raise ValueError("json_bodies: lengths do not match the heads")
    body = y[:-3]
    wide = (body < 0x20) | (body >= 0x7F) | (body == 0x22) | (body == 0x5C)
    wide[ends] = cut
    wide[_printable_multibyte(y)] = False
    w = np.flatnonzero(wide)
    narrow = np.flatnonzero(~wide)
    out = np.empty(len(body) + 4 * len(w), dtype=np.uint8)
    out[5 * narrow - np.arange(0, 4 * len(narrow), 4)] = body[narrow]
    pos = w + np.arange(0, 4 * len(w), 4)
    values = body[w]
    _write_escapes(out, pos, values)
    cr = np.flatnonzero(values == 0x0D)
    crlf = cr[y[w[cr] + 1] == 0x0A]
    _write_specials(out, pos, values, crlf, np.searchsorted(w, ends[cut]))
    return out.tobytes().replace(bytes([FILLER]), b"").split(bytes([SEPARATOR]))[:-1]


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HI = _HEX[np.arange(256) >> 4]
_LO = _HEX[np.arange(256) & 15]


def _write_escapes(out: U8, pos: I64, values: U8) -> None:
    """The \\\\xNN token of every wide byte (the other wide tokens are written over it)."""
    for k, byte in enumerate(orjson.dumps("\\x")[1:-1]):
        out[k:][pos] = byte
    out[3:][pos] = _HI.take(values)
    out[4:][pos] = _LO.take(values)


def _write_specials(out: U8, pos: I64, values: U8, dropped: I64, cut: I64) -> None:
    """The wide tokens that are not escapes, over their escapes: newlines, quotes, backslashes,
    the \\r of a \\r\\n (``dropped``), and the end of a cut head (``cut``). ``pos`` and
    ``values`` are by wide byte; ``dropped`` and ``cut`` are ranks among the wide bytes."""
    named = np.flatnonzero((values == 0x0A) | (values == 0x22) | (values == 0x5C))
    ranks = np.concatenate([named, dropped, cut])
    if not len(ranks):
        return
    codes = np.concatenate([values[named], np.full(len(dropped), _DROP), np.full(len(cut), _CUT)])
    tokens = _TOKENS[codes]
    at = pos[ranks]
    for k in range(_WIDE):
        out[k:][at] = tokens[:, k]


# Printability of the code points of 2-byte UTF-8 characters (the common multibyte ones).
_PRINTABLE_BELOW_800 = np.array([chr(c).isprintable() for c in range(0x800)], dtype=bool)


def _printable_multibyte(y: U8) -> I64:
    """Positions of the bytes of printable multibyte UTF-8 characters in ``y``.

    ``y`` ends with three NULs, so every sequence can be read whole; the NUL ending every head
    keeps sequences from running into the next head.
    """
    lead = np.flatnonzero((y[:-3] - np.uint8(0xC2)) < np.uint8(0xF5 - 0xC2))
    b0, b1, b2, b3 = (y[lead + k] for k in range(4))
    size = np.where(b0 < 0xE0, 2, np.where(b0 < 0xF0, 3, 4))
    cont1, cont2, cont3 = ((b & 0xC0) == 0x80 for b in (b1, b2, b3))
    valid = cont1 & ((size < 3) | cont2) & ((size < 4) | cont3)
    # UTF-8's narrower second-byte ranges: no overlong forms, surrogates or code points > U+10FFFF.
    valid &= ~((b0 == 0xE0) & (b1 < 0xA0)) & ~((b0 == 0xED) & (b1 >= 0xA0))
    valid &= ~((b0 == 0xF0) & (b1 < 0x90)) & ~((b0 == 0xF4) & (b1 >= 0x90))
    lead, size = lead[valid], size[valid]
    code = b0[valid].astype(np.int64) & (0x7F >> size)
    for k, b in enumerate((b1, b2, b3), start=2):
        code = np.where(size >= k, (code << 6) | (b[valid] & 0x3F), code)
    printable = _PRINTABLE_BELOW_800[np.minimum(code, 0x7FF)]
    wider = np.flatnonzero(code >= 0x800)
    if len(wider):
        distinct, which = np.unique(code[wider], return_inverse=True)
        printable[wider] = np.array([chr(c).isprintable() for c in distinct.tolist()], dtype=bool)[
            which.ravel()
        ]
    lead, size = lead[printable], size[printable]
    return np.concatenate([lead[size > k] + k for k in range(4)])


def texts(bodies: Sequence[bytes]) -> list[str]:
    """The previews whose ``json_bodies`` are ``bodies`` (one JSON parse for all of them)."""
    if not bodies:
        return []
    parsed: list[str] = orjson.loads(b'["' + b'","'.join(bodies) + b'"]')
    return parsed
