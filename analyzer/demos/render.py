"""The text report of ``analyzer run``: one block per scenario with the flow summary, the kernel
cross-check of TIME_WAIT and the expected-vs-observed verdicts (layout after ../shared/UX.md).

Colour and box drawing on a terminal; plain ASCII when piped or with NO_COLOR.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.text import Text

from analyzer import __version__
from analyzer.demos.session import RunResult, ScenarioResult

ISOLATION = {
    "netns": "private network namespace",
    "userns": "private user + network namespace",
    "host": "host loopback",
}


def make_console(file: Any = None) -> Console:
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(file=file, highlight=False, no_color=plain, soft_wrap=True)


def _fancy(console: Console) -> bool:
    return console.is_terminal and not os.environ.get("NO_COLOR")


def header(run: RunResult, console: Console) -> None:
    dot = " · " if _fancy(console) else " - "
    parts = [
        f"analyzer {__version__}",
        ISOLATION.get(run.isolation, run.isolation),
        f"capture: {run.backend} on lo",
        f"{run.options.impl} programs",
        f"{run.out_dir}/",
    ]
    console.print(dot.join(parts), markup=False)


def _rule(title: str, verdict: str, console: Console) -> Text:
    fancy = _fancy(console)
    bar = "━" if fancy else "="
    width = max(console.width, 60)
    left = f"{bar * 2} {title} "
    fill = max(3, width - len(left) - len(verdict) - 1)
    style = {"PASS": "bold green", "FAIL": "bold red"}.get(verdict, "bold yellow")
    return Text.assemble((left + bar * fill + " ", "bold"), (verdict, style))


def _ep(ep: dict[str, Any]) -> str:
    ip = str(ep.get("ip"))
    return f"[{ip}]:{ep.get('port')}" if ":" in ip else f"{ip}:{ep.get('port')}"


def kernel_line(flow: dict[str, Any], sample_ts: float | None) -> str:
    """``predicted: server 127.0.0.1:13 in TIME_WAIT until +60 s | kernel: ... 59 s left | agree``."""
    tw = flow.get("time_wait") or {}
    holder = tw.get("holder")
    if holder in (None, "none"):
        predicted = "predicted: no TIME_WAIT"
    else:
        who = {"server": _ep(flow["server"]), "client": _ep(flow["client"])}.get(holder, "both ends")
        left = ""
        if sample_ts and tw.get("until_ts"):
            left = f" ({tw['until_ts'] - sample_ts:.1f} s left at the sample)"
        predicted = f"predicted: {holder} {who} in TIME_WAIT until +{tw.get('hold_s', 0):g} s{left}"
    view = tw.get("kernel")
    if view is None:
        return predicted
    seen = [f"{o['local']} -> {o['remote']} TIME_WAIT, {o['timer_s']:.0f} s left" for o in view["observed"]]
    kernel = "; ".join(seen) or "no TIME_WAIT socket"
    return f"{predicted} | kernel: {kernel} | {'agree' if view['agrees'] else 'DISAGREE'}"


def _flows(result: ScenarioResult, console: Console, fancy: bool) -> None:
    """The analysis' own per-flow summary (``analyzer analyze``), without its capture title line."""
    from analyzer.report.text import render_text

    if result.analysis is None:
        return
    text = render_text(result.analysis, color=fancy, width=console.width)
    lines = text.rstrip("\n").split("\n")[1:]  # the run's header already names tool and file
    if fancy:
        console.print(Text.from_ansi("\n".join(lines)))
    else:
        console.print("\n".join(lines), markup=False)


def scenario(result: ScenarioResult, console: Console) -> None:
    fancy = _fancy(console)
    verdict = "PASS" if result.passed else "FAIL"
    if result.interrupted:
        verdict = "STOPPED"
    elif not result.worker:
        verdict = "NOT RUN"
    dot = " · " if fancy else " - "
    console.print(_rule(f"{result.name}{dot}{result.scenario.summary}", verdict, console))
    kernel = result.worker.get("kernel") or {}
    sample_ts = (kernel.get("sample") or {}).get("ts")
    report = result.report or {}
    _flows(result, console, fancy)
    tcp = report.get("tcp", [])
    for flow in tcp:
        label = "kernel" if len(tcp) == 1 else f"kernel {flow.get('id')}"
        console.print(f" {label:<10} {kernel_line(flow, sample_ts)}", markup=False)
    if result.attempts > 1:
        console.print(f" tries      {result.attempts} (the FINs crossed on the last one)", markup=False)
    watch = kernel.get("watch") or {}
    if watch.get("measured_hold_s") is not None:
        console.print(
            f" measured   the kernel released TIME_WAIT after {watch['measured_hold_s']:.1f} s"
            f" (±{watch.get('resolution_s', 0):.2f} s)",
            markup=False,
        )
    passed = sum(c.passed for c in result.checks)
    if result.checks:
        console.print(f" checks     {passed} of {len(result.checks)} passed", markup=False)
    mark = "✗" if fancy else "x"
    for c in result.checks:
        if not c.passed:
            console.print(f" {mark} {c.describe()}", style="red", markup=False)
    error = result.worker.get("error")
    if error:
        console.print(f" {mark} {error['message']}", style="red", markup=False)
    for problem in result.problems:
        console.print(f" {mark} {problem}", style="red", markup=False)
    console.print()


def footer(run: RunResult, console: Console) -> None:
    done = [r for r in run.results if r.worker]
    passed = sum(r.passed for r in run.results)
    dot = " · " if _fancy(console) else " - "
    if run.passed:
        head = f"{len(run.results)} scenario{'s' if len(run.results) != 1 else ''} passed"
    else:
        head = f"{passed} of {len(run.results)} passed, {len(run.results) - len(done)} not run"
        if run.interrupted:
            head += " (interrupted)"
    report = run.html_report or run.out_dir / "report.json"
    console.print(f"{head}{dot}{run.seconds:.1f} s{dot}report: {report}", markup=False)


def render(run: RunResult, console: Console) -> None:
    header(run, console)
    console.print()
    for result in run.results:
        scenario(result, console)
    footer(run, console)
