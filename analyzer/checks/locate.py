"""Line numbers of the keys of a TOML document, which ``tomllib`` does not report.

``key_lines(text)`` maps every key path to the 1-based line where it is written. A path is a
tuple of table names, array-of-tables indexes and keys, as ``tomllib`` nests them:
``("tcp", 0, "server_to_client", "regex")`` is the ``regex`` of the first ``[[tcp]]`` table's
``server_to_client``, whether written as an inline table, a dotted key or a ``[tcp.x]`` table.
Array elements get their index too (``("tcp", 0, "teardown", 1)``).

The scanner runs only on text ``tomllib`` has already accepted, so it needs no error handling
of its own: it tokenizes strings (all four kinds), comments and punctuation, and walks headers,
keys and values with a small recursive descent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

Path = tuple[str | int, ...]

_TOKEN = re.compile(
    r"""
    (?P<ml_basic>\"\"\"(?:\\.|[^\\])*?\"\"\"\"{0,2})
  | (?P<ml_literal>'''.*?'''(?:'{0,2}))
  | (?P<basic>"(?:\\.|[^"\\\n])*")
  | (?P<literal>'[^'\n]*')
  | (?P<comment>\#[^\n]*)
  | (?P<newline>\n)
  | (?P<space>[ \t\r]+)
  | (?P<punct>[\[\]{}=,])
  | (?P<bare>[^\s\[\]{}=,\#"']+)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # "str", "bare", "punct", "nl"
    text: str
    line: int


def _tokens(text: str) -> Iterator[_Tok]:
    line = 1
    for m in _TOKEN.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "newline":
            yield _Tok("nl", "\n", line)
        elif kind in ("basic", "literal", "ml_basic", "ml_literal"):
            yield _Tok("str", _unquote(kind, value), line)
        elif kind in ("punct", "bare"):
            yield _Tok(str(kind), value, line)
        line += value.count("\n")


def _unquote(kind: str, value: str) -> str:
    if kind == "literal":
        return value[1:-1]
    if kind == "basic":
        return re.sub(
            r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)",
            lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) > 1 else _ESCAPES.get(m.group(1), ""),
            value[1:-1],
        )
    return value  # multi-line strings are only ever values, never keys


class _Scanner:
    def __init__(self, text: str) -> None:
        self.toks = list(_tokens(text))
        self.pos = 0
        self.lines: dict[Path, int] = {}
        self.arrays: dict[Path, int] = {}  # array-of-tables path -> elements so far

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def skip_newlines(self) -> None:
        while (tok := self.peek()) is not None and tok.kind == "nl":
            self.pos += 1

    def record(self, path: Path, line: int) -> None:
        self.lines.setdefault(path, line)

    def key(self, stop: str) -> list[str]:
        """Key parts up to (and consuming) the punctuation ``stop``."""
        parts: list[str] = []
        while (tok := self.take()).text != stop or tok.kind != "punct":
            if tok.kind == "str":
                parts.append(tok.text)
            elif tok.kind == "bare":
                parts.extend(p for p in tok.text.split(".") if p)
        return parts

    def resolve(self, parts: list[str]) -> Path:
        """A header's dotted name with the current index of every array of tables on the way."""
        path: Path = ()
        for part in parts:
            path = (*path, part)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def run(self) -> dict[Path, int]:
        table: Path = ()
        while (tok := self.peek()) is not None:
            if tok.kind == "nl":
                self.pos += 1
            elif tok.kind == "punct" and tok.text == "[":
                self.pos += 1
                nxt = self.peek()
                if nxt is not None and nxt.kind == "punct" and nxt.text == "[":
                    self.pos += 1
                    parts = self.key("]")
                    self.pos += 1  # the second ]
                    base = (*self.resolve(parts[:-1]), parts[-1])
                    self.arrays[base] = self.arrays.get(base, 0) + 1
                    table = (*base, self.arrays[base] - 1)
                    self.record(base, tok.line)
                else:
                    table = self.resolve(self.key("]"))
                self.record(table, tok.line)
            else:
                self.pair(table)
        return self.lines

    def pair(self, table: Path) -> None:
        line = self.peek().line  # type: ignore[union-attr]
        parts = self.key("=")
        for i in range(1, len(parts) + 1):
            self.record((*table, *parts[:i]), line)
        self.value((*table, *parts))

    def value(self, path: Path) -> None:
        tok = self.take()
        if tok.kind == "punct" and tok.text == "{":
            while True:
                nxt = self.peek()
                if nxt is None:
                    return
                if nxt.kind == "punct" and nxt.text in ",}":
                    self.pos += 1
                    if nxt.text == "}":
                        return
                    continue
                self.pair(path)
        elif tok.kind == "punct" and tok.text == "[":
            index = 0
            while True:
                self.skip_newlines()
                nxt = self.peek()
                if nxt is None:
                    return
                if nxt.kind == "punct" and nxt.text in ",]":
                    self.pos += 1
                    if nxt.text == "]":
                        return
                    continue
                self.record((*path, index), nxt.line)
                self.value((*path, index))
                index += 1
        else:
            # A scalar: a date-time may be two bare tokens ("1979-05-27 07:32:00").
            while (nxt := self.peek()) is not None and nxt.kind == "bare":
                self.pos += 1


def key_lines(text: str) -> dict[Path, int]:
    """Every key path of the (valid) TOML ``text`` mapped to the line it is written on."""
    return _Scanner(text).run()


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``, or of its nearest written ancestor (an inline table's key)."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
