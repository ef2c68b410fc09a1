"""Evaluate a spec against an analysis: select flows, then one ``Check`` per rule and key.

Each rule yields a ``count`` check (how many flows its selectors matched) and one check per
assertion key (a direction or ``fields`` table yields one per sub-key). A check covers every
flow the rule matched: it passes when the value holds for each of them; ``observed`` is the
value when all matched flows agree, else a ``{flow id: value}`` table. With no matching flow an
assertion fails (nothing showed the behaviour), unless ``count`` allows zero flows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any

from analyzer.checks.payload import Payloads, PayloadUnavailable, as_text
from analyzer.checks.spec import (
    Assertion,
    Expectation,
    Flag,
    Regex,
    Rule,
    Spec,
    _Direction,
    mapped_port,
    show,
)

if TYPE_CHECKING:
    from analyzer.analysis import Analysis

EXCERPT = 80  # characters of a stream shown as the observed value of a regex check


@dataclass(frozen=True)
class Check:
    """The verdict on one expectation: what was expected, what the capture showed."""

    name: str  # "tcp[0].server_to_client.regex": unique within a spec
    selector: str  # "tcp[0] server_port=13"
    field: str  # "server_to_client.regex"
    expected: Any  # the value as the spec wrote it (JSON-able)
    observed: Any  # JSON-able; {flow id: value} when the matched flows differ
    passed: bool
    flows: tuple[int, ...] = ()  # ids of the flows the rule matched
    expected_text: str = ""  # "one of 'fin-4way', 'fin-3way'", ">= 20"
    where: str = ""  # "spec.toml:7", the key in the spec
    note: str = ""  # why it failed, when ``observed`` alone does not say it

    def describe(self) -> str:
        """One line: ``tcp[0] server_port=13 teardown: expected 'fin-4way', observed 'rst' (flow 0)``."""
        flows = ""
        if self.flows:
            flows = f" (flow{'s' if len(self.flows) > 1 else ''} {', '.join(map(str, self.flows))})"
        note = f" - {self.note}" if self.note else ""
        return (
            f"{self.selector} {self.field}: expected {self.expected_text or show(self.expected)}, "
            f"observed {observed_text(self.observed)}{flows}{note}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "selector": self.selector,
            "field": self.field,
            "expected": self.expected,
            "expected_text": self.expected_text,
            "observed": self.observed,
            "passed": self.passed,
            "flows": list(self.flows),
            "where": self.where,
            "note": self.note,
        }


def observed_text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"flow {k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return show(value)


# -- reading the report -----------------------------------------------------------------------


def _get(flow: Mapping[str, Any], *path: str) -> Any:
    node: Any = flow
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _sum(flow: Mapping[str, Any], name: str) -> Any:
    values = [_get(flow, "data", d, name) for d in ("client_to_server", "server_to_client")]
    return sum(values) if all(isinstance(v, int) for v in values) else None


def _anomaly_names(flow: Mapping[str, Any]) -> Any:
    items = flow.get("anomalies")
    if not isinstance(items, list):
        return None
    return sorted({str(a.get("name")) for a in items if isinstance(a, Mapping)})


def _datagrams(flow: Mapping[str, Any], direction: str | None = None) -> list[Mapping[str, Any]]:
    items = flow.get("datagrams") or []
    if direction is None:
        return list(items)
    short = "c2s" if direction == "client_to_server" else "s2c"
    return [d for d in items if d.get("dir") == short]


def _udp_bytes(flow: Mapping[str, Any], direction: str) -> int:
    return sum(int(d.get("bytes") or 0) for d in _datagrams(flow, direction))


def _max_latency(flow: Mapping[str, Any]) -> Any:
    pairs = flow.get("pairs") or []
    values = [p.get("latency_ms") for p in pairs if isinstance(p.get("latency_ms"), int | float)]
    return max(values) if values else None


Getter = Callable[[Mapping[str, Any]], Any]

TCP_GETTERS: dict[str, Getter] = {
    "handshake": lambda f: _get(f, "handshake", "state"),
    "teardown": lambda f: _get(f, "teardown", "kind"),
    "first_fin": lambda f: _get(f, "teardown", "first_fin"),
    "time_wait": lambda f: _get(f, "time_wait", "holder"),
    "rst_by": lambda f: _get(f, "teardown", "rst_by"),
    "zeek_conn_state": lambda f: _get(f, "zeek", "conn_state"),
    "history": lambda f: _get(f, "zeek", "history"),
    "completeness": lambda f: f.get("completeness"),
    "packets": lambda f: f.get("packets"),
    "client_to_server_bytes": lambda f: _get(f, "data", "client_to_server", "bytes"),
    "server_to_client_bytes": lambda f: _get(f, "data", "server_to_client", "bytes"),
    "bytes_after_first_fin": lambda f: _get(f, "teardown", "bytes_after_first_fin"),
    "max_retransmissions": lambda f: _get(f, "data", "retransmissions"),
    "max_out_of_order": lambda f: _get(f, "data", "out_of_order"),
    "max_dup_acks": lambda f: _sum(f, "dup_acks"),
    "max_zero_windows": lambda f: _sum(f, "zero_windows"),
    "max_syn_retransmits": lambda f: _get(f, "handshake", "syn_retransmits"),
    "max_rtt_ms": lambda f: _get(f, "handshake", "rtt_ms"),
    "rst_in_time_wait": lambda f: _get(f, "time_wait", "rst_in_time_wait"),
    "reused_in_time_wait": lambda f: _get(f, "time_wait", "reused_by_syn") is not None,
    "anomalies": _anomaly_names,
}

UDP_GETTERS: dict[str, Getter] = {
    "exchanges": lambda f: f.get("exchanges"),
    "echo": lambda f: f.get("echo"),
    "datagrams": lambda f: len(_datagrams(f)),
    "client_to_server_bytes": lambda f: _udp_bytes(f, "client_to_server"),
    "server_to_client_bytes": lambda f: _udp_bytes(f, "server_to_client"),
    "max_latency_ms": _max_latency,
}


# -- per-flow outcomes ------------------------------------------------------------------------


@dataclass
class _Outcome:
    """One (sub-)key on one flow."""

    observed: Any
    passed: bool
    note: str = ""


@dataclass
class _Partial:
    """One check being built across the matched flows."""

    name: str
    expect: Expectation
    where: str
    per_flow: dict[int, _Outcome] = dataclass_field(default_factory=dict)


def _tcp_direction(
    name: str, part: Expectation, flow: Mapping[str, Any], direction: str, payloads: Payloads
) -> _Outcome:
    side = _get(flow, "data", direction) or {}
    if name in ("bytes", "min_bytes", "max_bytes"):
        observed = side.get("bytes")
    elif name == "segments":
        observed = side.get("segments")
    elif name == "missing_bytes":
        observed = side.get("missing_bytes")
    elif name == "sha256":
        observed = side.get("sha256")
        if observed is None:
            return _Outcome(None, False, "not every byte of the stream was captured")
    else:
        assert isinstance(part, Regex)
        try:
            text = as_text(payloads.tcp_stream(dict(flow), direction))
        except PayloadUnavailable as exc:
            return _Outcome(None, False, str(exc))
        return _regex_outcome(part, text)
    return _Outcome(observed, part.test(observed))


def _regex_outcome(part: Regex, text: str) -> _Outcome:
    found = part.pattern.search(text)
    if found is not None:
        return _Outcome(_excerpt(found.group(0)), True)
    return _Outcome(_excerpt(text), False, "no match in the stream" if text else "the stream is empty")


def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"


def _udp_direction(
    name: str, part: Expectation, flow: Mapping[str, Any], direction: str, payloads: Payloads
) -> _Outcome:
    mine = _datagrams(flow, direction)
    if name == "datagrams":
        return _Outcome(len(mine), part.test(len(mine)))
    if name in ("bytes", "min_bytes", "max_bytes"):
        total = _udp_bytes(flow, direction)
        return _Outcome(total, part.test(total))
    assert isinstance(part, Regex)
    if not mine:
        return _Outcome(None, False, "no datagram went that way")
    try:
        every = payloads.udp_datagrams(dict(flow))
    except PayloadUnavailable as exc:
        return _Outcome(None, False, str(exc))
    short = "c2s" if direction == "client_to_server" else "s2c"
    datagrams = [d for d, info in zip(every, _datagrams(flow), strict=True) if info.get("dir") == short]
    for i, data in enumerate(datagrams):
        text = as_text(data)
        if part.pattern.search(text) is None:
            note = f"datagram {i + 1} of {len(datagrams)} that way does not match"
            return _Outcome(_excerpt(text), False, note)
    return _Outcome(len(datagrams), True, "")


def _outcomes(
    assertion: Assertion, kind: str, flow: Mapping[str, Any], payloads: Payloads
) -> list[tuple[str, Expectation, _Outcome]]:
    key, expect = assertion.key, assertion.expect
    if key in ("client_to_server", "server_to_client"):
        assert isinstance(expect, _Direction)
        per_dir = _tcp_direction if kind == "tcp" else _udp_direction
        return [
            (f"{key}.{name}", part, per_dir(name, part, flow, key, payloads))
            for name, part in expect.parts.items()
        ]
    if key == "fields":
        assert isinstance(expect, _Direction)
        out = []
        for path, part in expect.parts.items():
            observed = _get(flow, *path.split("."))
            out.append((f"fields.{path}", part, _Outcome(observed, part.test(observed))))
        return out
    if kind == "udp" and key == "icmp_unreachable":
        hits = len(flow.get("icmp_unreachable") or [])
        count: Any = hits > 0 if isinstance(expect, Flag) else hits
        return [(key, expect, _Outcome(count, expect.test(count)))]
    getter = (TCP_GETTERS if kind == "tcp" else UDP_GETTERS)[key]
    value = getter(flow)
    observed = "none" if value is None and key in ("first_fin", "rst_by") else value
    return [(key, expect, _Outcome(observed, expect.test(value)))]


# -- selection --------------------------------------------------------------------------------


def _same_ip(a: Any, b: Any) -> bool:
    try:
        return ipaddress.ip_address(str(a)) == ipaddress.ip_address(str(b))
    except ValueError:
        return str(a) == str(b)


def selected(flow: Mapping[str, Any], rule: Rule, port_map: Mapping[int, int] | None = None) -> bool:
    for key, want in rule.select.items():
        if key == "id":
            if flow.get("id") != want:
                return False
            continue
        side, attr = key.split("_", 1)
        got = _get(flow, side, attr)
        if attr == "ip":
            if not _same_ip(got, want):
                return False
        elif got != mapped_port(key, want, port_map):
            return False
    return True


# -- the checks -------------------------------------------------------------------------------


def evaluate(
    spec: Spec,
    subject: Analysis | Mapping[str, Any],
    *,
    port_map: Mapping[int, int] | None = None,
    payloads: Payloads | None = None,
) -> list[Check]:
    """Every check of ``spec`` on an ``Analysis`` or its ``analyzer.report/1`` dict.

    ``port_map`` rewrites the ports the selectors name (``analyzer run --host-loopback`` moves
    port 13 to 10013); ``payloads`` gives the bytes for ``regex`` keys (default: from the
    analysis, or from the capture file a report dict names).
    """
    doc: Mapping[str, Any] = subject if isinstance(subject, Mapping) else subject.to_dict()
    own = payloads is None
    source = Payloads.of(subject if not isinstance(subject, Mapping) else dict(subject)) if own else payloads
    assert source is not None
    try:
        checks: list[Check] = []
        for rule in spec.rules:
            checks.extend(_rule_checks(rule, doc.get(rule.kind) or [], port_map, source))
        return checks
    finally:
        if own:
            source.close()


def _rule_checks(
    rule: Rule, flows: Sequence[Mapping[str, Any]], port_map: Mapping[int, int] | None, payloads: Payloads
) -> list[Check]:
    selector = rule.describe(port_map)
    matched = [f for f in flows if selected(f, rule, port_map)]
    ids = tuple(int(f.get("id", -1)) for f in matched)
    checks = [
        Check(
            name=f"{rule.label}.count",
            selector=selector,
            field="count",
            expected=rule.count.raw,
            observed=len(matched),
            passed=rule.count.test(len(matched)),
            flows=ids,
            expected_text=rule.count.describe(),
            where=rule.count_where,
            note="" if rule.count.test(len(matched)) else _seen(rule.kind, flows),
        )
    ]
    partials: dict[str, _Partial] = {}
    order: list[str] = []
    for assertion in rule.assertions:
        if not matched:
            for name, part in _fields_of(assertion):
                partials[name] = _Partial(name, part, assertion.where)
                order.append(name)
        for flow in matched:
            for name, part, outcome in _outcomes(assertion, rule.kind, flow, payloads):
                if name not in partials:
                    partials[name] = _Partial(name, part, assertion.where)
                    order.append(name)
                partials[name].per_flow[int(flow.get("id", -1))] = outcome
    none_allowed = rule.count.allows_zero()
    for name in order:
        checks.append(_combine(rule, selector, partials[name], ids, none_allowed))
    return checks


def _fields_of(assertion: Assertion) -> list[tuple[str, Expectation]]:
    if isinstance(assertion.expect, _Direction):
        return [(f"{assertion.key}.{n}", p) for n, p in assertion.expect.parts.items()]
    return [(assertion.key, assertion.expect)]


def _combine(rule: Rule, selector: str, part: _Partial, ids: tuple[int, ...], none_allowed: bool) -> Check:
    per_flow = part.per_flow
    if not per_flow:
        observed: Any = None
        passed = none_allowed
        note = "no flow matched the selectors"
    else:
        values = [o.observed for o in per_flow.values()]
        first = values[0]
        same = all(type(v) is type(first) and v == first for v in values)
        observed = first if same else {str(k): o.observed for k, o in per_flow.items()}
        passed = all(o.passed for o in per_flow.values())
        failing = [k for k, o in per_flow.items() if not o.passed]
        notes = sorted({o.note for o in per_flow.values() if o.note and not o.passed})
        note = "; ".join(notes)
        if failing and len(per_flow) > 1:
            note = f"fails for flow{'s' if len(failing) > 1 else ''} {', '.join(map(str, failing))}" + (
                f": {note}" if note else ""
            )
    return Check(
        name=f"{rule.label}.{part.name}",
        selector=selector,
        field=part.name,
        expected=part.expect.raw,
        observed=observed,
        passed=passed,
        flows=ids,
        expected_text=part.expect.describe(),
        where=part.where,
        note=note,
    )


def _seen(kind: str, flows: Sequence[Mapping[str, Any]]) -> str:
    """What the capture does hold, so that a selector mistake is visible at once."""
    if not flows:
        return f"the capture has no {kind.upper()} flow"
    shown = [f"{_ep(f.get('client'))} -> {_ep(f.get('server'))}" for f in flows[:5]]
    more = f" and {len(flows) - 5} more" if len(flows) > 5 else ""
    return f"{kind.upper()} flows in the capture: {', '.join(shown)}{more}"


def _ep(end: Any) -> str:
    if not isinstance(end, Mapping):
        return "?"
    ip = str(end.get("ip"))
    return f"[{ip}]:{end.get('port')}" if ":" in ip else f"{ip}:{end.get('port')}"


# -- summaries --------------------------------------------------------------------------------


def failures(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]


def summary(checks: Sequence[Check]) -> str:
    """``7 of 8 checks passed``."""
    passed = sum(c.passed for c in checks)
    return f"{passed} of {len(checks)} check{'s' if len(checks) != 1 else ''} passed"


def assertion_message(checks: Sequence[Check], capture: str = "") -> str:
    """The text of the AssertionError the pytest plugin raises: each failure, expected vs observed."""
    failed = failures(checks)
    head = f"{len(failed)} of {len(checks)} checks failed" + (f" on {capture}" if capture else "")
    lines = [head + ":"]
    for c in failed:
        lines.append(f"  {c.selector} {c.field}" + (f"  [{c.where}]" if c.where else ""))
        lines.append(f"    - expected: {c.expected_text or show(c.expected)}")
        lines.append(f"    + observed: {observed_text(c.observed)}")
        if c.note:
            lines.append(f"      ({c.note})")
    return "\n".join(lines)
