"""Expectation specs: the keys, their value kinds, and strict validation of TOML files and dicts.

A spec is a list of ``[[tcp]]`` and ``[[udp]]`` tables (the key reference is in
``analyzer.checks``'s docstring and README). ``load_spec(path)`` / ``parse_spec(text)`` read TOML
with ``tomllib``; ``spec_from_tables(tcp=[...], udp=[...])`` takes the same tables as Python
dicts (the pytest plugin). Both go through one validator: an unknown key, a value of the wrong
type, an unknown enum value or a bad regex raise ``UsageError`` (exit 2) whose message names the
file and the line of the offending key and whose hint says the fix.

Values are normalized into small frozen "expectation" objects (``OneOf``, ``Count``, ``AtMost``
...) that know how to compare an observed report value and how to describe themselves; the
evaluator (``analyzer.checks.engine``) only walks the report and calls them.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from analyzer.checks.locate import Path as KeyPath
from analyzer.checks.locate import key_lines, line_of
from analyzer.errors import UsageError

KINDS = ("tcp", "udp")
SIDES_OR_NONE = ("client", "server", "none")


# -- expectations: one per value kind ---------------------------------------------------------


def show(value: Any) -> str:
    """A value as the text reports print it (strings quoted, None as none)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Expectation:
    """What one key expects; ``raw`` is the value as written (JSON-able)."""

    raw: Any

    def test(self, observed: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class OneOf(Expectation):
    """Equal to one of ``values``; JSON null is written and shown as the string ``"none"``."""

    values: tuple[str | int | float | bool, ...]
    raw: Any

    def test(self, observed: Any) -> bool:
        value = "none" if observed is None else observed
        return any(_same(value, v) for v in self.values)

    def describe(self) -> str:
        if len(self.values) == 1:
            return show(self.values[0])
        return "one of " + ", ".join(show(v) for v in self.values)


def _same(a: Any, b: Any) -> bool:
    # true == 1 in Python; a report's boolean never equals a spec's number, nor the reverse.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


@dataclass(frozen=True)
class Count(Expectation):
    """A number: exactly one of ``exact``, or within [``low``, ``high``] (either may be open)."""

    exact: tuple[float, ...] | None
    low: float | None
    high: float | None
    raw: Any

    def test(self, observed: Any) -> bool:
        if isinstance(observed, bool) or not isinstance(observed, int | float):
            return False
        if self.exact is not None:
            return observed in self.exact
        return (self.low is None or observed >= self.low) and (self.high is None or observed <= self.high)

    def allows_zero(self) -> bool:
        return self.test(0)

    def describe(self) -> str:
        if self.exact is not None:
            if len(self.exact) == 1:
                return show(self.exact[0])
            return "one of " + ", ".join(show(v) for v in self.exact)
        if self.low is not None and self.high is not None:
            return f"{show(self.low)}..{show(self.high)}"
        if self.low is not None:
            return f">= {show(self.low)}"
        return f"<= {show(self.high)}"


AT_LEAST_ONE = Count(exact=None, low=1, high=None, raw={"min": 1})


@dataclass(frozen=True)
class Flag(Expectation):
    raw: bool

    def test(self, observed: Any) -> bool:
        return isinstance(observed, bool) and observed is self.raw

    def describe(self) -> str:
        return show(self.raw)


@dataclass(frozen=True)
class Names(Expectation):
    """Exactly this set of names (``[]``: none at all)."""

    names: frozenset[str]
    raw: list[str]

    def test(self, observed: Any) -> bool:
        return isinstance(observed, list) and set(observed) == self.names

    def describe(self) -> str:
        return "[" + ", ".join(show(n) for n in sorted(self.names)) + "]"


@dataclass(frozen=True)
class Regex(Expectation):
    pattern: re.Pattern[str]
    raw: str

    def test(self, observed: Any) -> bool:
        return isinstance(observed, str) and self.pattern.search(observed) is not None

    def describe(self) -> str:
        return f"matches '{self.raw}'"


@dataclass(frozen=True)
class Digest(Expectation):
    raw: str  # lowercase hex

    def test(self, observed: Any) -> bool:
        return isinstance(observed, str) and observed == self.raw

    def describe(self) -> str:
        return show(self.raw)


# -- the key set ------------------------------------------------------------------------------

Parser = Callable[["_Ctx", Any, KeyPath], Expectation]


@dataclass(frozen=True)
class Key:
    """One assertion key: how to parse its value and what it checks (for the docs and hints)."""

    parse: Parser
    doc: str


@dataclass(frozen=True)
class Assertion:
    key: str  # "handshake", "server_to_client.regex", "fields.handshake.rtt_ms"
    expect: Expectation
    where: str  # "spec.toml:7" (or the key path for a dict spec)


@dataclass(frozen=True)
class Rule:
    """One ``[[tcp]]``/``[[udp]]`` table: which flows it selects, how many, what each must show."""

    kind: str
    index: int  # position among the spec's tables of that kind, from 0
    select: Mapping[str, str | int]
    count: Count
    count_where: str
    assertions: tuple[Assertion, ...]
    where: str  # the table header's location

    @property
    def label(self) -> str:
        return f"{self.kind}[{self.index}]"

    def describe(self, port_map: Mapping[int, int] | None = None) -> str:
        """``tcp[0] server_port=13`` (ports rewritten by ``port_map``, as evaluated)."""
        parts = [f"{k}={mapped_port(k, v, port_map)}" for k, v in self.select.items()]
        return " ".join([self.label, *parts])


@dataclass(frozen=True)
class Spec:
    source: str  # the file name, or "<expect>" for a dict spec
    rules: tuple[Rule, ...] = field(default=())

    @property
    def name(self) -> str:
        return Path(self.source).stem if self.source.endswith(".toml") else self.source


def mapped_port(key: str, value: Any, port_map: Mapping[int, int] | None) -> Any:
    if port_map and key.endswith("_port") and isinstance(value, int):
        return port_map.get(value, value)
    return value


# -- validation context -----------------------------------------------------------------------


class _Ctx:
    """Where values come from, so that errors can say ``file:line``."""

    def __init__(self, source: str, lines: dict[KeyPath, int] | None) -> None:
        self.source = source
        self.lines = lines

    def where(self, path: KeyPath) -> str:
        if self.lines is None:
            return f"{self.source}: {_dotted(path)}"
        line = line_of(self.lines, path)
        return f"{self.source}:{line}" if line is not None else self.source

    def fail(self, path: KeyPath, problem: str, hint: str) -> UsageError:
        where = self.source if self.lines is None else self.where(path)
        return UsageError(f"{where}: {_dotted(path)}: {problem}", hint=hint)


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


# -- value parsers ----------------------------------------------------------------------------


def one_of(choices: Sequence[str] | None, what: str) -> Parser:
    """A string or a non-empty array of strings, each one of ``choices`` (any when None)."""

    def parse(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            example = f'"{choices[0]}"' if choices else '"..."'
            raise ctx.fail(
                path,
                f"must be a string or an array of strings, not {_type_name(value)}",
                hint=f"write it like {path[-1]} = {example} or {path[-1]} = [{example}, ...]",
            )
        for i, v in enumerate(values):
            if choices is not None and v not in choices:
                close = difflib.get_close_matches(v, choices, n=1)
                did = f"did you mean {close[0]!r}? " if close else ""
                sub = (*path, i) if isinstance(value, list) else path
                raise ctx.fail(sub, f"{v!r} is not a {what}", hint=f"{did}{what}s: {', '.join(choices)}")
        return OneOf(values=tuple(values), raw=value)

    return parse


def count(low_bound: int = 0, high_bound: int | None = None, floats: bool = False) -> Parser:
    """N, an array of accepted Ns, or a table ``{ min = N, max = M }`` (either may be left out)."""
    number = _is_number if floats else _is_int
    kind = "a number" if floats else "an integer"

    def check_bound(ctx: _Ctx, v: Any, path: KeyPath) -> float:
        if not number(v):
            raise ctx.fail(
                path,
                f"must be {kind}, not {_type_name(v)}",
                hint=f"write {path[-1]} = 3, [1, 2] or {{ min = 1, max = 5 }}",
            )
        if v < low_bound or (high_bound is not None and v > high_bound):
            limit = f"{low_bound}..{high_bound}" if high_bound is not None else f">= {low_bound}"
            raise ctx.fail(path, f"{v} is out of range", hint=f"use a value {limit}")
        return float(v) if isinstance(v, float) else int(v)

    def parse(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"min", "max"})
            if unknown or not value:
                raise ctx.fail(
                    (*path, unknown[0]) if unknown else path,
                    f"unknown key {unknown[0]!r} in a range" if unknown else "an empty range",
                    hint=f"a range is {{ min = N, max = M }}, e.g. {path[-1]} = {{ min = 1 }}",
                )
            low = check_bound(ctx, value["min"], (*path, "min")) if "min" in value else None
            high = check_bound(ctx, value["max"], (*path, "max")) if "max" in value else None
            if low is not None and high is not None and low > high:
                raise ctx.fail(path, f"min {show(low)} is above max {show(high)}", hint="swap them")
            return Count(exact=None, low=low, high=high, raw=dict(value))
        if isinstance(value, list):
            if not value:
                raise ctx.fail(path, "an empty array accepts nothing", hint="list the accepted values")
            exact = tuple(check_bound(ctx, v, (*path, i)) for i, v in enumerate(value))
            return Count(exact=exact, low=None, high=None, raw=list(value))
        return Count(exact=(check_bound(ctx, value, path),), low=None, high=None, raw=value)

    return parse


def at_least(floats: bool = False) -> Parser:
    """A lower bound: ``min_bytes = 20`` is ``bytes >= 20``."""
    inner = count(floats=floats)

    def parse(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
        if isinstance(value, dict | list):
            raise ctx.fail(path, f"must be a number, not {_type_name(value)}", hint=f"write {path[-1]} = 20")
        exact = inner(ctx, value, path)
        assert isinstance(exact, Count) and exact.exact is not None
        return Count(exact=None, low=exact.exact[0], high=None, raw=value)

    return parse


def at_most(floats: bool = False) -> Parser:
    """An upper bound: ``max_retransmissions = 0`` is ``retransmissions <= 0``."""
    inner = count(floats=floats)

    def parse(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
        if isinstance(value, dict | list):
            raise ctx.fail(path, f"must be a number, not {_type_name(value)}", hint=f"write {path[-1]} = 0")
        exact = inner(ctx, value, path)
        assert isinstance(exact, Count) and exact.exact is not None
        return Count(exact=None, low=None, high=exact.exact[0], raw=value)

    return parse


def flag(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
    if not isinstance(value, bool):
        raise ctx.fail(
            path, f"must be true or false, not {_type_name(value)}", hint=f"write {path[-1]} = true"
        )
    return Flag(raw=value)


def flag_or_count(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
    """``true``/``false`` (any / none), or a count."""
    return flag(ctx, value, path) if isinstance(value, bool) else count()(ctx, value, path)


def names(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.fail(
            path,
            f"must be an array of names, not {_type_name(value)}",
            hint=f'write {path[-1]} = [] (none) or {path[-1]} = ["name", ...]',
        )
    return Names(names=frozenset(value), raw=list(value))


def regex(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
    if not isinstance(value, str):
        raise ctx.fail(
            path, f"must be a string, not {_type_name(value)}", hint="write the pattern in '...' quotes"
        )
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ctx.fail(
            path,
            f"invalid regular expression {value!r}: {exc}",
            hint="fix the pattern (Python re syntax); write it in '...' quotes so backslashes stay as is",
        ) from None
    return Regex(pattern=pattern, raw=value)


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def digest(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ctx.fail(
            path,
            "must be a sha256 digest (64 hex digits)",
            hint="copy it from the report (data.<direction>.sha256) or from sha256sum",
        )
    return Digest(raw=value.lower())


def direction(keys: Mapping[str, Key]) -> Parser:
    """A table of sub-keys about one direction of a flow; parsed into a ``_Direction``."""

    def parse(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
        if not isinstance(value, dict):
            example = next(iter(keys))
            raise ctx.fail(
                path,
                f"must be a table, not {_type_name(value)}",
                hint=f"write {path[-1]} = {{ {example} = ... }}; keys: {', '.join(keys)}",
            )
        if not value:
            raise ctx.fail(path, "an empty table checks nothing", hint=f"keys: {', '.join(keys)}")
        parts = {}
        for sub, sub_value in value.items():
            if sub not in keys:
                raise _unknown(ctx, (*path, sub), keys, f"{path[-1]} table")
            parts[sub] = keys[sub].parse(ctx, sub_value, (*path, sub))
        return _Direction(parts=parts, raw=dict(value))

    return parse


@dataclass(frozen=True)
class _Direction(Expectation):
    parts: dict[str, Expectation]
    raw: dict[str, Any]


def _unknown(ctx: _Ctx, path: KeyPath, keys: Mapping[str, Any], where: str) -> UsageError:
    key = str(path[-1])
    close = difflib.get_close_matches(key, list(keys), n=1)
    did = f"did you mean {close[0]!r}? " if close else ""
    return ctx.fail(path, f"unknown key in the {where}", hint=f"{did}known keys: {', '.join(keys)}")


# -- `fields`: any scalar of the report, by its dotted path -----------------------------------


@cache
def _schema_defs() -> dict[str, Any]:
    from analyzer.report.json_report import report_schema

    defs: dict[str, Any] = report_schema()["$defs"]
    return defs


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(_schema_defs()[ref.removeprefix("#/$defs/")])
    return node


def _scalar_paths(node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every dotted path of ``node``'s schema that leads to a scalar, with its schema."""
    node = _deref(node)
    props = node.get("properties")
    if isinstance(props, dict):
        out: dict[str, dict[str, Any]] = {}
        for name, sub in props.items():
            out.update(_scalar_paths(sub, f"{prefix}{name}."))
        return out
    types = node.get("type")
    kinds = set(types) if isinstance(types, list) else {types} if types else set()
    if "enum" in node or "const" in node or kinds & {"string", "integer", "number", "boolean"}:
        return {prefix.rstrip("."): node}
    return {}


@cache
def field_paths(kind: str) -> dict[str, dict[str, Any]]:
    """Dotted report paths a ``fields`` table may name for ``kind`` (tcp or udp), with schemas."""
    return _scalar_paths(_schema_defs()["tcp_flow" if kind == "tcp" else "udp_flow"])


def _fits(schema: dict[str, Any], value: Any) -> bool:
    if "enum" in schema:
        return any(_same(value, e) or (value == "none" and e is None) for e in schema["enum"])
    types = schema.get("type")
    kinds = set(types) if isinstance(types, list) else {types}
    return (
        ("string" in kinds and isinstance(value, str))
        or ("integer" in kinds and _is_int(value))
        or ("number" in kinds and _is_number(value))
        or ("boolean" in kinds and isinstance(value, bool))
        or ("null" in kinds and value == "none")
    )


def _schema_type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(show(e) for e in schema["enum"])
    types = schema.get("type")
    return " or ".join(types) if isinstance(types, list) else str(types)


def fields_parser(kind: str) -> Parser:
    def parse(ctx: _Ctx, value: Any, path: KeyPath) -> Expectation:
        if not isinstance(value, dict) or not value:
            raise ctx.fail(
                path,
                "must be a non-empty table of report paths",
                hint='write fields = { "handshake.options.client.mss" = 65495 }',
            )
        known = field_paths(kind)
        parts: dict[str, Expectation] = {}
        for name, want in value.items():
            sub = (*path, name)
            schema = known.get(name)
            if schema is None:
                close = difflib.get_close_matches(name, list(known), n=1)
                did = f"did you mean {close[0]!r}? " if close else ""
                raise ctx.fail(
                    sub,
                    f"{name!r} is not a scalar field of a {kind} flow in analyzer.report/1",
                    hint=f"{did}see analyzer/report/schemas/report-1.schema.json for the field names",
                )
            is_range = isinstance(want, dict)
            if is_range:
                if "enum" in schema or not _fits(schema, 0):
                    hint = f"the field is {_schema_type(schema)}"
                    raise ctx.fail(sub, "a { min, max } range needs a numeric field", hint=hint)
                parts[name] = count(floats=True)(ctx, want, sub)
                continue
            values = want if isinstance(want, list) else [want]
            for i, v in enumerate(values):
                if not _fits(schema, v):
                    raise ctx.fail(
                        (*sub, i) if isinstance(want, list) else sub,
                        f"{show(v)} cannot be a value of {name}",
                        hint=f'the field is {_schema_type(schema)} (write JSON null as "none")',
                    )
            if not values:
                raise ctx.fail(sub, "an empty array accepts nothing", hint="list the accepted values")
            parts[name] = OneOf(values=tuple(values), raw=want)
        return _Direction(parts=parts, raw=dict(value))

    return parse


# -- the key tables ---------------------------------------------------------------------------


def _choices(defn: str, *path: str) -> tuple[str, ...]:
    node: dict[str, Any] = _schema_defs()[defn]
    for p in path:
        node = _deref(node["properties"][p])
    return tuple("none" if v is None else str(v) for v in node["enum"])


SELECTORS = ("id", "client_ip", "client_port", "server_ip", "server_port")


def _tcp_direction_keys() -> dict[str, Key]:
    return {
        "bytes": Key(count(), "unique payload bytes (exact, [accepted], or { min, max })"),
        "min_bytes": Key(at_least(), "at least this many payload bytes"),
        "max_bytes": Key(at_most(), "at most this many payload bytes"),
        "segments": Key(count(), "payload segments"),
        "missing_bytes": Key(count(), "stream bytes never captured (gaps)"),
        "regex": Key(regex, "searched in the reassembled stream (UTF-8, else latin-1)"),
        "sha256": Key(digest, "sha256 of the reassembled stream"),
    }


def _udp_direction_keys() -> dict[str, Key]:
    return {
        "datagrams": Key(count(), "datagrams sent that way"),
        "bytes": Key(count(), "payload bytes of all those datagrams"),
        "min_bytes": Key(at_least(), "at least this many payload bytes in all"),
        "max_bytes": Key(at_most(), "at most this many payload bytes in all"),
        "regex": Key(regex, "searched in every datagram of that direction (UTF-8, else latin-1)"),
    }


@cache
def tcp_keys() -> dict[str, Key]:
    sides = SIDES_OR_NONE
    return {
        "count": Key(count(), "how many flows must match (default: at least 1)"),
        "handshake": Key(one_of(_choices("tcp_flow", "handshake", "state"), "handshake state"), ""),
        "teardown": Key(one_of(_choices("tcp_flow", "teardown", "kind"), "teardown kind"), ""),
        "first_fin": Key(one_of(sides, "side"), "the active closer"),
        "time_wait": Key(one_of(_choices("tcp_flow", "time_wait", "holder"), "TIME_WAIT holder"), ""),
        "rst_by": Key(one_of((*sides[:2], "both", "none"), "RST sender"), "who sent a RST"),
        "zeek_conn_state": Key(one_of(_choices("tcp_flow", "zeek", "conn_state"), "Zeek conn_state"), ""),
        "history": Key(one_of(None, "history"), "Zeek history string"),
        "completeness": Key(count(0, 63), "Wireshark tcp.completeness"),
        "packets": Key(count(), "packets in both directions"),
        "client_to_server_bytes": Key(count(), "payload bytes client -> server"),
        "server_to_client_bytes": Key(count(), "payload bytes server -> client"),
        "client_to_server": Key(direction(_tcp_direction_keys()), "the client -> server stream"),
        "server_to_client": Key(direction(_tcp_direction_keys()), "the server -> client stream"),
        "bytes_after_first_fin": Key(count(), "bytes the passive side sent after the first FIN"),
        "max_retransmissions": Key(at_most(), "retransmitted segments, both directions"),
        "max_out_of_order": Key(at_most(), "out-of-order segments, both directions"),
        "max_dup_acks": Key(at_most(), "duplicate ACKs, both directions"),
        "max_zero_windows": Key(at_most(), "zero-window advertisements, both directions"),
        "max_syn_retransmits": Key(at_most(), "SYN retransmissions"),
        "max_rtt_ms": Key(at_most(floats=True), "handshake round-trip time"),
        "rst_in_time_wait": Key(flag, "a RST hit the tuple during TIME_WAIT (RFC 1337)"),
        "reused_in_time_wait": Key(flag, "a new SYN reused the tuple before TIME_WAIT ended"),
        "anomalies": Key(names, "exactly these anomaly names ([] for none)"),
        "fields": Key(fields_parser("tcp"), "any scalar of the flow's report by dotted path"),
    }


@cache
def udp_keys() -> dict[str, Key]:
    return {
        "count": Key(count(), "how many conversations must match (default: at least 1)"),
        "exchanges": Key(count(), "request/reply pairs"),
        "echo": Key(flag, "every request got a reply equal to it"),
        "icmp_unreachable": Key(flag_or_count, "ICMP unreachable errors: true/false, or how many"),
        "datagrams": Key(count(), "datagrams in both directions"),
        "client_to_server_bytes": Key(count(), "payload bytes client -> server"),
        "server_to_client_bytes": Key(count(), "payload bytes server -> client"),
        "client_to_server": Key(direction(_udp_direction_keys()), "the client's datagrams"),
        "server_to_client": Key(direction(_udp_direction_keys()), "the server's datagrams"),
        "max_latency_ms": Key(at_most(floats=True), "slowest request -> reply"),
        "fields": Key(fields_parser("udp"), "any scalar of the conversation's report by dotted path"),
    }


def keys_of(kind: str) -> dict[str, Key]:
    return tcp_keys() if kind == "tcp" else udp_keys()


# -- tables -> rules --------------------------------------------------------------------------


def _selector(ctx: _Ctx, key: str, value: Any, path: KeyPath) -> str | int:
    if key == "id" or key.endswith("_port"):
        top = 65535 if key.endswith("_port") else None
        if not _is_int(value) or value < 0 or (top is not None and value > top):
            limit = "0..65535" if top else ">= 0"
            raise ctx.fail(path, f"must be an integer {limit}, not {show(value)}", hint=f"write {key} = 13")
        return int(value)
    if not isinstance(value, str):
        raise ctx.fail(path, f"must be a string, not {_type_name(value)}", hint=f'write {key} = "127.0.0.1"')
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        raise ctx.fail(
            path, f"{value!r} is not an IP address", hint=f'write {key} = "127.0.0.1" or "::1"'
        ) from None


def _rule(ctx: _Ctx, kind: str, index: int, table: Any) -> Rule:
    path: KeyPath = (kind, index)
    if not isinstance(table, dict):
        raise ctx.fail(
            path, f"must be a table, not {_type_name(table)}", hint=f"write each as a [[{kind}]] table"
        )
    keys = keys_of(kind)
    select: dict[str, str | int] = {}
    assertions: list[Assertion] = []
    want_count = AT_LEAST_ONE
    count_where = ctx.where(path)
    for key, value in table.items():
        sub = (*path, key)
        if key in SELECTORS:
            select[key] = _selector(ctx, key, value, sub)
        elif key == "count":
            parsed = keys["count"].parse(ctx, value, sub)
            assert isinstance(parsed, Count)
            want_count, count_where = parsed, ctx.where(sub)
        elif key in keys:
            assertions.append(Assertion(key, keys[key].parse(ctx, value, sub), ctx.where(sub)))
        else:
            raise _unknown(ctx, sub, {**dict.fromkeys(SELECTORS), **keys}, f"[[{kind}]] table")
    if want_count.exact == (0,) and assertions:
        raise ctx.fail(
            (*path, "count"),
            "count = 0 says no flow matches, so the other keys can never be checked",
            hint="remove the other keys, or allow matches with count = { min = 0 }",
        )
    return Rule(
        kind=kind,
        index=index,
        select=select,
        count=want_count,
        count_where=count_where,
        assertions=tuple(assertions),
        where=ctx.where(path),
    )


def _rules(ctx: _Ctx, doc: Mapping[str, Any]) -> Spec:
    rules: list[Rule] = []
    for top, tables in doc.items():
        if top not in KINDS:
            close = difflib.get_close_matches(top, KINDS, n=1)
            did = f"did you mean [[{close[0]}]]? " if close else ""
            hint = f"{did}a spec holds [[tcp]] and [[udp]] tables"
            raise ctx.fail((top,), "unknown table or key", hint=hint)
        if not isinstance(tables, list):
            problem = f"must be an array of tables, not {_type_name(tables)}"
            raise ctx.fail((top,), problem, hint=f"write [[{top}]], not [{top}]")
        rules.extend(_rule(ctx, top, i, table) for i, table in enumerate(tables))
    if not rules:
        raise UsageError(
            f"{ctx.source}: no [[tcp]] or [[udp]] table: nothing to verify",
            hint='add a table such as [[tcp]] server_port = 80 handshake = "complete"',
        )
    return Spec(source=ctx.source, rules=tuple(rules))


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    """Validate the TOML ``text`` of a spec; ``source`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line N, column M)": keep its position, lead with the file.
        raise UsageError(
            f"{source}: invalid TOML: {exc}", hint="fix the syntax there (https://toml.io/en/v1.0.0)"
        ) from None
    return _rules(_Ctx(source, key_lines(text)), doc)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a spec file (UTF-8 TOML)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such expectation file", hint="check the path given to --expect") from None
    except IsADirectoryError:
        raise UsageError(f"{p}: is a directory, not an expectation file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p}: not UTF-8 text ({exc.reason})", hint="save the file as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the expectation file: {exc.strerror}") from None
    return parse_spec(text, str(path))


def spec_from_tables(
    tcp: Sequence[Mapping[str, Any]] = (), udp: Sequence[Mapping[str, Any]] = (), source: str = "expect"
) -> Spec:
    """A spec from Python dicts shaped like the TOML tables (errors name the key path)."""
    doc: dict[str, Any] = {}
    for kind, tables in (("tcp", tcp), ("udp", udp)):
        if isinstance(tables, Mapping):
            tables = [tables]  # one table given without the list around it
        if tables:
            doc[kind] = [_plain(t) for t in tables]
    return _rules(_Ctx(source, None), doc)


def _plain(value: Any) -> Any:
    """Mappings and tuples from Python callers as the dicts and lists tomllib produces."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
