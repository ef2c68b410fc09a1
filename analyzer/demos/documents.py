"""The documents of ``analyzer run --format md|html|junit``: the run's verdicts around the
reports of ``analyzer analyze`` (``analyzer.report``), one section per scenario.

The per-capture reports come from the report renderers unchanged: Markdown and HTML render each
scenario's analysis with the run's records (so the ladders show the kernel's TIME_WAIT
observation) and this module nests them under the scenario's heading, verdict and checks.
Nesting means two mechanical edits: headings move down (the run owns the top levels), and the
HTML anchors (``tcp-0``...) get the scenario's name as a prefix so they stay unique in one page.
Both are safe because every string a renderer takes from a capture is escaped: a capture cannot
produce a heading, an ``id`` or a tag. JUnit has one ``<testsuite>`` per scenario (through
``analyzer.report.junit``), one ``<testcase>`` per check.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from analyzer import __version__
from analyzer.checks import Check, summary

if TYPE_CHECKING:
    from analyzer.demos.session import RunResult, ScenarioResult


def verdict(result: ScenarioResult) -> str:
    if result.interrupted:
        return "STOPPED"
    if not result.worker:
        return "NOT RUN"
    return "PASS" if result.passed else "FAIL"


def problems(result: ScenarioResult) -> list[str]:
    """What went wrong besides failed checks: the worker's error, an interruption, no capture."""
    error = result.worker.get("error")
    return ([str(error["message"])] if error else []) + list(result.problems)


def run_checks(result: ScenarioResult) -> list[Check]:
    """The scenario's checks, plus one failing check per problem so a CI server sees it."""
    extra = [
        Check(
            name=f"run.problem[{i}]",
            selector="run",
            field="problem",
            expected="none",
            observed=text,
            passed=False,
            expected_text="no problem",
        )
        for i, text in enumerate(problems(result))
    ]
    if not result.checks and not extra:
        extra.append(
            Check(
                name="run.checked",
                selector="run",
                field="checked",
                expected=True,
                observed=False,
                passed=False,
                note="the scenario was not judged",
            )
        )
    return list(result.checks) + extra


def _scenario_title(result: ScenarioResult) -> str:
    return f"{result.name} · {result.scenario.summary}"


def _kernel_lines(result: ScenarioResult) -> list[str]:
    from analyzer.demos.render import kernel_line

    sample_ts = ((result.worker.get("kernel") or {}).get("sample") or {}).get("ts")
    return [kernel_line(f, sample_ts) for f in (result.report or {}).get("tcp", [])]


def _facts(run: RunResult) -> list[tuple[str, str]]:
    from analyzer.demos.render import ISOLATION

    passed = sum(r.passed for r in run.results)
    return [
        ("verdict", f"{'PASS' if run.passed else 'FAIL'}: {passed} of {len(run.results)} scenarios passed"),
        ("tool", f"analyzer {__version__}, {run.options.impl} programs, MSL {run.options.msl:g} s"),
        ("isolation", ISOLATION.get(run.isolation, run.isolation)),
        ("capture", f"{run.backend} on lo"),
        ("output", f"{run.out_dir}/"),
        ("time", f"{run.seconds:.1f} s"),
    ]


# -- JUnit ------------------------------------------------------------------------------------


def run_junit(run: RunResult) -> bytes:
    """One ``<testsuite>`` per scenario, named after it, one ``<testcase>`` per check."""
    from analyzer.report.junit import Suite, render_junit

    started = datetime.fromtimestamp(run.started, UTC) if run.started else datetime.now(UTC)
    suites = []
    for r in run.results:
        # The worker's last milestone (seconds since it started the scenario).
        seconds = max((v for v in (r.worker.get("timings") or {}).values()), default=0.0)
        props = {
            "scenario": r.name,
            "capture": str(r.capture_path or ""),
            "spec": f"analyzer/demos/expect/{r.scenario.expect_file}",
            "isolation": run.isolation,
            "capture_backend": run.backend,
            "impl": run.options.impl,
            "msl_s": f"{run.options.msl:g}",
            "analyzer": __version__,
        }
        suites.append(
            Suite(
                name=r.name,
                checks=run_checks(r),
                time_s=float(seconds),
                timestamp=started,
                properties=props,
            )
        )
    return render_junit(suites, name="analyzer run")


# -- Markdown ---------------------------------------------------------------------------------


def _demote_md(text: str, levels: int) -> list[str]:
    """Markdown headings ``levels`` deeper (at most ``######``), code fences left alone."""
    out = []
    fence = ""
    for line in text.splitlines():
        m = re.match(r"(`{3,}|~{3,})", line)
        if m and (not fence or (m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence))):
            fence = "" if fence else m.group(1)
        elif not fence and (h := re.match(r"(#{1,6}) ", line)):
            line = "#" * min(6, len(h.group(1)) + levels) + line[len(h.group(1)) :]
        out.append(line)
    return out


def run_markdown(run: RunResult) -> str:
    from analyzer.report.markdown import md_text, render_markdown

    out = ["# analyzer run", ""]
    out += [f"- **{k}**: {md_text(v)}" for k, v in _facts(run)]
    out += ["", "| scenario | what it shows | verdict | checks |", "|---|---|---|---|"]
    for r in run.results:
        out.append(
            f"| [{md_text(r.name)}](#{_slug(r.name)}) | {md_text(r.scenario.summary)} | {verdict(r)} "
            f"| {summary(r.checks) if r.checks else 'none'} |"
        )
    for r in run.results:
        out += [
            "",
            f'<a id="{_slug(r.name)}"></a>',
            "",
            f"## {md_text(_scenario_title(r))} · {verdict(r)}",
            "",
        ]
        if r.capture_path is not None:
            out.append(f"- **capture**: {md_text(str(r.capture_path))}")
        out += [f"- **kernel**: {md_text(line)}" for line in _kernel_lines(r)]
        if r.attempts > 1:
            out.append(f"- **tries**: {r.attempts} (the FINs crossed on the last one)")
        out += [f"- **problem**: {md_text(p)}" for p in problems(r)]
        if r.checks:
            out += [
                "",
                f"{summary(r.checks)}:",
                "",
                "| check | expected | observed | result |",
                "|---|---|---|---|",
            ]
            for c in r.checks:
                observed = _observed(c)
                out.append(
                    f"| {md_text(f'{c.selector} {c.field}')} | {md_text(_expected(c))} | {md_text(observed)} "
                    f"| {'pass' if c.passed else '**FAIL**'} |"
                )
        if r.analysis is not None:
            doc = render_markdown(r.analysis, tcp_records=_records(r, "tcp"), udp_records=_records(r, "udp"))
            lines = _demote_md(doc, 2)
            if lines and lines[0].startswith("### analyzer report"):
                lines[0] = "### The capture"
            out += ["", *lines]
    return "\n".join(out).rstrip("\n") + "\n"


def _slug(name: str) -> str:
    return "scenario-" + re.sub(r"[^a-z0-9-]+", "-", name.lower())


def _records(r: ScenarioResult, kind: str) -> list[dict[str, Any]] | None:
    return None if r.report is None else list(r.report.get(kind) or [])


def _expected(c: Check) -> str:
    from analyzer.checks.spec import show

    return c.expected_text or show(c.expected)


def _observed(c: Check) -> str:
    from analyzer.checks.engine import observed_text

    text = observed_text(c.observed)
    return f"{text} ({c.note})" if c.note and not c.passed else text


# -- HTML -------------------------------------------------------------------------------------

RUN_CSS = """
nav.scenarios td.pass, span.pass { color: #1b5e20; font-weight: 600; }
nav.scenarios td.fail, span.fail { color: #c62828; font-weight: 600; }
section.scenario { border-top: 4px solid #ddd; margin-top: 2.5rem; }
section.scenario > h2 { border: 0; font-size: 1.35rem; }
tr.failed td { background: #fdecea; }
.capture-report { margin-left: .8rem; }
"""

_BODY = re.compile(r"<body>\n(.*)\n</body>", re.S)
_HEADING = re.compile(r"<(/?)h([1-6])\b")
_ANCHOR = re.compile(r'\b(id="|href="#)([^"]*)"')


def html_available() -> bool:
    try:
        import analyzer.report.html  # noqa: F401
    except ImportError:
        return False
    return True


def _nest_html(document: str, prefix: str) -> str:
    """The body of a report document, headings two levels down, anchors prefixed."""
    m = _BODY.search(document)
    if m is None:
        raise ValueError("the HTML report has no <body> element")
    body = _HEADING.sub(lambda h: f"<{h.group(1)}h{min(6, int(h.group(2)) + 2)}", m.group(1))
    body = body.replace("<h3>analyzer report</h3>", "<h3>The capture</h3>", 1)
    return _ANCHOR.sub(lambda a: f'{a.group(1)}{prefix}-{a.group(2)}"', body)


def run_html(run: RunResult) -> str:
    """The run as one self-contained HTML document (no scripts, no fetches: the analyze report's
    Content-Security-Policy)."""
    from analyzer.report.html import CSS, render_html

    e = _escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>analyzer run · {'PASS' if run.passed else 'FAIL'} · {e(str(run.out_dir))}</title>",
        f"<style>{CSS}{RUN_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        "<h1>analyzer run</h1>",
        _dl(_facts(run)),
        "</header>",
        '<nav class="scenarios"><table><thead><tr><th>scenario</th><th>what it shows</th><th>verdict</th>'
        "<th>checks</th></tr></thead><tbody>",
    ]
    for r in run.results:
        cls = "pass" if r.passed else "fail"
        out.append(
            f'<tr><td><a href="#{_slug(r.name)}">{e(r.name)}</a></td><td>{e(r.scenario.summary)}</td>'
            f'<td class="{cls}">{verdict(r)}</td><td>{e(summary(r.checks) if r.checks else "none")}</td></tr>'
        )
    out.append("</tbody></table></nav>")
    for r in run.results:
        cls = "pass" if r.passed else "fail"
        out.append(f'<section class="scenario" id="{_slug(r.name)}">')
        out.append(f'<h2>{e(_scenario_title(r))} · <span class="{cls}">{verdict(r)}</span></h2>')
        facts = [("capture", str(r.capture_path))] if r.capture_path is not None else []
        facts += [("kernel", line) for line in _kernel_lines(r)]
        if r.attempts > 1:
            facts.append(("tries", f"{r.attempts} (the FINs crossed on the last one)"))
        facts += [("problem", p) for p in problems(r)]
        if facts:
            out.append(
                '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts) + "</dl>"
            )
        if r.checks:
            out.append(f"<h3>Checks: {e(summary(r.checks))}</h3>")
            out.append(
                '<table class="checks"><thead><tr><th>check</th><th>expected</th><th>observed</th>'
                "<th>result</th></tr></thead><tbody>"
            )
            for c in r.checks:
                row = "" if c.passed else ' class="failed"'
                result = '<span class="pass">pass</span>' if c.passed else '<span class="fail">FAIL</span>'
                out.append(
                    f"<tr{row}><td>{e(f'{c.selector} {c.field}')}</td><td>{e(_expected(c))}</td>"
                    f"<td>{e(_observed(c))}</td><td>{result}</td></tr>"
                )
            out.append("</tbody></table>")
        if r.analysis is not None:
            doc = render_html(r.analysis, tcp_records=_records(r, "tcp"), udp_records=_records(r, "udp"))
            out.append('<div class="capture-report">')
            out.append(_nest_html(doc, _slug(r.name)))
            out.append("</div>")
        out.append("</section>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _escape(value: str) -> str:
    return escape(value, quote=True)


def _dl(rows: list[tuple[str, str]]) -> str:
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{_escape(k)}</dt><dd>{_escape(v)}</dd>" for k, v in rows)
        + "</dl>"
    )
