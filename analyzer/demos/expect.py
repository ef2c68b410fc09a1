"""Expectation files (TOML, the format of ``analyzer verify``) and their evaluation on a report.

A file holds ``[[tcp]]`` and ``[[udp]]`` tables. Each table first selects flows of an
``analyzer.report/1`` document (``id``, ``client_ip``, ``client_port``, ``server_ip``,
``server_port``), then asserts on every selected flow. Keys::

    count                      how many flows must match (default: at least one)
    handshake, teardown,       a value or a list of accepted values
    first_fin, time_wait
    client_to_server_bytes,    exact payload bytes of that direction
    server_to_client_bytes
    client_to_server,          { min_bytes = N, regex = '...' } (regex searched in the preview)
    server_to_client
    max_retransmissions        upper bound
    exchanges, echo,           UDP: request/reply pairs, every reply equals its request,
    icmp_unreachable           an ICMP port unreachable answered the client

The bundled scenarios ship their files in ``analyzer/demos/expect/``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from analyzer.errors import UsageError

SELECTORS: dict[str, type] = {
    "id": int,
    "client_ip": str,
    "client_port": int,
    "server_ip": str,
    "server_port": int,
}
CHOICE_KEYS = ("handshake", "teardown", "first_fin", "time_wait")
TCP_KEYS: dict[str, tuple[type, ...]] = {
    "count": (int,),
    **dict.fromkeys(CHOICE_KEYS, (str, list)),
    "client_to_server_bytes": (int,),
    "server_to_client_bytes": (int,),
    "client_to_server": (dict,),
    "server_to_client": (dict,),
    "max_retransmissions": (int,),
}
UDP_KEYS: dict[str, tuple[type, ...]] = {
    "count": (int,),
    "exchanges": (int,),
    "echo": (bool,),
    "icmp_unreachable": (bool, int),
}
DIRECTION_KEYS: dict[str, tuple[type, ...]] = {"min_bytes": (int,), "regex": (str,)}


@dataclass(frozen=True)
class Rule:
    kind: str  # tcp or udp
    index: int  # position among the file's tables of that kind
    select: dict[str, Any]
    asserts: dict[str, Any]

    def describe(self, port_map: dict[int, int] | None = None) -> str:
        parts = [f"{k}={_mapped(k, v, port_map)}" for k, v in self.select.items()]
        return f"{self.kind}[{self.index}]" + (f" {' '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class Check:
    selector: str
    flow: int | None
    field: str
    expected: Any
    observed: Any
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "flow": self.flow,
            "field": self.field,
            "expected": self.expected,
            "observed": self.observed,
            "passed": self.passed,
        }


def _line_of(text: str, kind: str, index: int, key: str | None) -> int:
    """1-based line of table ``[[kind]]`` number ``index`` (or of ``key`` inside it)."""
    lines = text.splitlines()
    seen = -1
    for no, line in enumerate(lines, 1):
        if line.strip().startswith(f"[[{kind}]]"):
            seen += 1
            if seen == index and key is None:
                return no
        elif seen == index and key is not None and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return no
    return 0


def load_spec(text: str, source: str = "<spec>") -> list[Rule]:
    """Parse and validate an expectation file; UsageError names the file, line and key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: invalid TOML: {exc}", hint="fix the syntax at that line") from None
    rules: list[Rule] = []
    for top, tables in doc.items():
        if top not in ("tcp", "udp") or not isinstance(tables, list):
            raise UsageError(f"{source}: unknown table {top!r}", hint="use [[tcp]] and [[udp]] tables")
        allowed = TCP_KEYS if top == "tcp" else UDP_KEYS
        for index, table in enumerate(tables):
            select: dict[str, Any] = {}
            asserts: dict[str, Any] = {}
            for key, value in table.items():
                where = f"{source}:{_line_of(text, top, index, key)}"
                if key in SELECTORS:
                    if not isinstance(value, SELECTORS[key]) or isinstance(value, bool):
                        raise UsageError(f"{where}: {key} must be {SELECTORS[key].__name__}")
                    select[key] = value
                elif key in allowed:
                    _check_value(where, key, value, allowed[key])
                    asserts[key] = value
                else:
                    keys = ", ".join([*SELECTORS, *allowed])
                    raise UsageError(f"{where}: unknown key {key!r} in [[{top}]]", hint=f"known keys: {keys}")
            rules.append(Rule(top, index, select, asserts))
    return rules


def _check_value(where: str, key: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in types:
        raise UsageError(f"{where}: {key} must be {' or '.join(t.__name__ for t in types)}")
    if not isinstance(value, types):
        raise UsageError(f"{where}: {key} must be {' or '.join(t.__name__ for t in types)}")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a string or a list of strings")
    if isinstance(value, dict):
        for sub, sub_value in value.items():
            if sub not in DIRECTION_KEYS:
                raise UsageError(f"{where}: unknown key {sub!r} in {key}", hint="use min_bytes and regex")
            if not isinstance(sub_value, DIRECTION_KEYS[sub]) or isinstance(sub_value, bool):
                raise UsageError(f"{where}: {key}.{sub} has the wrong type")
            if sub == "regex":
                try:
                    re.compile(str(sub_value))
                except re.error as exc:
                    raise UsageError(f"{where}: {key}.regex is not a valid regex: {exc}") from None


def _mapped(key: str, value: Any, port_map: dict[int, int] | None) -> Any:
    if port_map and key.endswith("_port") and value in port_map:
        return port_map[value]
    return value


def _same_ip(a: Any, b: Any) -> bool:
    try:
        return ipaddress.ip_address(str(a)) == ipaddress.ip_address(str(b))
    except ValueError:
        return str(a) == str(b)


def _selected(flow: dict[str, Any], select: dict[str, Any], port_map: dict[int, int] | None) -> bool:
    for key, value in select.items():
        if key == "id":
            if flow.get("id") != value:
                return False
            continue
        side, attr = key.split("_", 1)
        observed = (flow.get(side) or {}).get(attr)
        if attr == "ip":
            if not _same_ip(observed, value):
                return False
        elif observed != _mapped(key, value, port_map):
            return False
    return True


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, dict):
        return sum(_count(v) for v in value.values())
    return 0


def _tcp_checks(key: str, want: Any, flow: dict[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    data = flow.get("data") or {}
    if key in CHOICE_KEYS:
        section, attr = {
            "handshake": ("handshake", "state"),
            "teardown": ("teardown", "kind"),
            "first_fin": ("teardown", "first_fin"),
            "time_wait": ("time_wait", "holder"),
        }[key]
        got = (flow.get(section) or {}).get(attr)
        got = "none" if got is None and key == "first_fin" else got
        accepted = want if isinstance(want, list) else [want]
        return [(key, want, got, got in accepted)]
    if key.endswith("_bytes"):
        got = (data.get(key.removesuffix("_bytes")) or {}).get("bytes")
        return [(key, want, got, got == want)]
    if key in ("client_to_server", "server_to_client"):
        direction = data.get(key) or {}
        out = []
        if "min_bytes" in want:
            got = direction.get("bytes")
            out.append(
                (f"{key}.min_bytes", want["min_bytes"], got, got is not None and got >= want["min_bytes"])
            )
        if "regex" in want:
            preview = direction.get("preview") or ""
            out.append(
                (f"{key}.regex", want["regex"], preview, re.search(want["regex"], preview) is not None)
            )
        return out
    if key == "max_retransmissions":
        got = _count(data.get("retransmissions"))
        return [(key, want, got, got <= want)]
    raise AssertionError(f"unhandled key {key}")  # load_spec admits only known keys


def _udp_checks(key: str, want: Any, flow: dict[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    got = flow.get(key)
    if key == "echo":
        return [(key, want, got, got is want)]
    if isinstance(want, bool):
        return [(key, want, bool(_count(got)), bool(_count(got)) is want)]
    return [(key, want, _count(got), _count(got) == want)]


def evaluate(
    rules: list[Rule], report: dict[str, Any], port_map: dict[int, int] | None = None
) -> list[Check]:
    """Every check of every rule on ``report``; ``port_map`` rewrites selector ports (host mode)."""
    checks: list[Check] = []
    for rule in rules:
        selector = rule.describe(port_map)
        flows = [f for f in report.get(rule.kind, []) if _selected(f, rule.select, port_map)]
        want_count = rule.asserts.get("count")
        if want_count is None:
            checks.append(Check(selector, None, "count", ">= 1", len(flows), len(flows) >= 1))
        else:
            checks.append(Check(selector, None, "count", want_count, len(flows), len(flows) == want_count))
        per_key = _tcp_checks if rule.kind == "tcp" else _udp_checks
        for flow in flows:
            for key, want in rule.asserts.items():
                if key == "count":
                    continue
                for name, expected, observed, ok in per_key(key, want, flow):
                    checks.append(Check(selector, flow.get("id"), name, expected, observed, ok))
    return checks
