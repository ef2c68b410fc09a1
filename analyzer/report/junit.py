"""JUnit XML for CI servers: one ``<testsuite>`` per capture, one ``<testcase>`` per check.

The layout is the common Ant/Jenkins one (Jenkins xunit-plugin's ``junit-10.xsd``, which
GitLab, GitHub test reporters and ``junitparser`` read): a ``<testsuites>`` root with totals;
per capture a ``<testsuite name=CAPTURE tests failures errors skipped time timestamp>`` with
``<properties>`` (spec, MSL, engine, analyzer version); per check a ``<testcase
classname=SELECTOR name=FIELD>`` and, when it failed, ``<failure message="expected ...,
observed ..." type="analyzer.check">`` whose text repeats the facts one per line.

Captured payload text can reach the XML (a regex check shows what it saw). XML 1.0 cannot hold
most control characters even as references, so those are written as ``\\xNN``.
"""

from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from analyzer.checks.engine import Check, observed_text
from analyzer.checks.spec import show

FAILURE_TYPE = "analyzer.check"
# Characters XML 1.0 does not allow (https://www.w3.org/TR/xml/#charsets), surrogates included.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Suite:
    """The checks of one capture."""

    name: str  # the capture file, as given
    checks: Sequence[Check]
    time_s: float = 0.0  # seconds spent analyzing and checking
    timestamp: datetime | None = None  # when the run started (UTC)
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(not c.passed for c in self.checks)


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 forbids written as ``\\xNN``."""
    return _NOT_XML.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    return "".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))


def _attr(el: ET.Element, name: str, value: str) -> None:
    el.set(name, xml_text(value))


def _time(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"


def failure_message(check: Check) -> str:
    return f"expected {check.expected_text or show(check.expected)}, observed {observed_text(check.observed)}"


def failure_text(check: Check) -> str:
    lines = [
        f"selector: {check.selector}",
        f"field:    {check.field}",
        f"expected: {check.expected_text or show(check.expected)}",
        f"observed: {observed_text(check.observed)}",
    ]
    if check.flows:
        lines.append(f"flows:    {', '.join(map(str, check.flows))}")
    if check.note:
        lines.append(f"note:     {check.note}")
    if check.where:
        lines.append(f"spec:     {check.where}")
    return "\n".join(lines) + "\n"


def build(suites: Sequence[Suite], *, name: str = "analyzer verify") -> ET.Element:
    """The ``<testsuites>`` element for ``suites``."""
    root = ET.Element("testsuites")
    _attr(root, "name", name)
    root.set("tests", str(sum(len(s.checks) for s in suites)))
    root.set("failures", str(sum(s.failures for s in suites)))
    root.set("errors", "0")
    root.set("time", _time(sum(s.time_s for s in suites)))
    host = socket.gethostname()
    for i, suite in enumerate(suites):
        el = ET.SubElement(root, "testsuite")
        _attr(el, "name", suite.name)
        el.set("tests", str(len(suite.checks)))
        el.set("failures", str(suite.failures))
        el.set("errors", "0")
        el.set("skipped", "0")
        el.set("time", _time(suite.time_s))
        stamp = suite.timestamp or datetime.now(UTC)
        el.set("timestamp", stamp.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"))
        _attr(el, "hostname", host)
        el.set("id", str(i))
        if suite.properties:
            props = ET.SubElement(el, "properties")
            for key, value in suite.properties.items():
                prop = ET.SubElement(props, "property")
                _attr(prop, "name", key)
                _attr(prop, "value", value)
        for check in suite.checks:
            case = ET.SubElement(el, "testcase")
            _attr(case, "classname", check.selector)
            _attr(case, "name", check.field)
            case.set("time", "0.000")
            if not check.passed:
                fail = ET.SubElement(case, "failure")
                _attr(fail, "message", failure_message(check))
                fail.set("type", FAILURE_TYPE)
                fail.text = xml_text(failure_text(check))
    return root


def render_junit(suites: Sequence[Suite], *, name: str = "analyzer verify") -> bytes:
    """The JUnit XML document (UTF-8, with an XML declaration, indented)."""
    root = build(suites, name=name)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def write_junit(
    suites: Sequence[Suite], path: str | os.PathLike[str], *, name: str = "analyzer verify"
) -> None:
    """Write the document to ``path`` (through a temporary file, so a reader never sees half of it)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(render_junit(suites, name=name))
    os.replace(tmp, target)
