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


def _preview(direction: dict[str, Any]) -> str:
    text = direction.get("preview") or ""
    return f' "{text}"' if text else ""


def tcp_lines(flow: dict[str, Any], sample_ts: float | None, fancy: bool) -> list[str]:
    arrow = "→" if fancy else "->"
    sep = " · " if fancy else "; "
    hs, data, td = flow.get("handshake") or {}, flow.get("data") or {}, flow.get("teardown") or {}
    tw = flow.get("time_wait") or {}
    c2s, s2c = data.get("client_to_server") or {}, data.get("server_to_client") or {}
    rtt = f"{sep}RTT {hs['rtt_ms']:.3f} ms" if isinstance(hs.get("rtt_ms"), (int, float)) else ""
    lines = [
        f"{_ep(flow['client'])} (client) {arrow} {_ep(flow['server'])} (server), tcp flow {flow.get('id')}",
        f"handshake  {hs.get('state')}{rtt}",
        f"data       client{arrow}server {c2s.get('bytes', 0)} B{_preview(c2s)}"
        f"{sep}server{arrow}client {s2c.get('bytes', 0)} B{_preview(s2c)}",
    ]
    first = td.get("first_fin")
    closer = f"{sep}the {first} closed first" if first and first != "none" else ""
    after = td.get("bytes_after_first_fin")
    after_text = f"{sep}{after} B sent after the first FIN" if after else ""
    rst = f"{sep}RST by {td['rst_by']}" if td.get("rst_by") else ""
    lines.append(f"teardown   {td.get('kind')}{closer}{rst}{after_text}")
    lines.append(f"TIME_WAIT  {_time_wait_text(flow, tw, sample_ts)}")
    zeek = flow.get("zeek") or {}
    if zeek:
        lines.append(
            f"interop    Zeek {zeek.get('conn_state')} {zeek.get('history')}"
            f"{sep}Wireshark completeness {flow.get('completeness')}"
        )
    return lines


def _time_wait_text(flow: dict[str, Any], tw: dict[str, Any], sample_ts: float | None) -> str:
    holder = tw.get("holder")
    if holder in (None, "none"):
        predicted = "predicted: none"
    else:
        who = {"server": _ep(flow["server"]), "client": _ep(flow["client"])}.get(holder, "both ends")
        hold = tw.get("hold_s")
        left = ""
        if sample_ts and tw.get("until_ts"):
            left = f", {tw['until_ts'] - sample_ts:.1f} s left at the sample"
        predicted = f"predicted: {holder} {who} in TIME_WAIT until +{hold:g} s{left}" if hold else holder
    view = tw.get("kernel")
    if view is None:
        return predicted
    seen = [f"{o['local']} -> {o['remote']} TIME_WAIT, {o['timer_s']:.0f} s left" for o in view["observed"]]
    kernel = "; ".join(seen) or "no TIME_WAIT socket"
    return f"{predicted} | kernel: {kernel} | {'agree' if view['agrees'] else 'DISAGREE'}"


def udp_lines(flow: dict[str, Any], fancy: bool) -> list[str]:
    arrow = "→" if fancy else "->"
    sep = " · " if fancy else "; "
    grams = flow.get("datagrams") or []
    requests = sum(1 for d in grams if d.get("dir") == "c2s")
    replies = len(grams) - requests
    icmp = flow.get("icmp_unreachable")
    text = f"{_ep(flow['client'])} {arrow} {_ep(flow['server'])}{sep}{requests} requests, {replies} replies"
    if flow.get("echo"):
        text += ", every reply equals its request"
    lines = [text]
    if icmp:
        lines.append("ICMP       port unreachable answered the client")
    lines.append("no handshake, no teardown, no TIME_WAIT: UDP has no connection state")
    return lines


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
    for flow in report.get("tcp", []):
        for line in tcp_lines(flow, sample_ts, fancy):
            console.print(" " + line, markup=False)
    for flow in report.get("udp", []):
        for line in udp_lines(flow, fancy):
            console.print(" " + line, markup=False)
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
            flow = "" if c.flow is None else f" flow {c.flow}"
            console.print(
                f" {mark} {c.selector}{flow} {c.field}: expected {c.expected!r}, observed {c.observed!r}",
                style="red",
                markup=False,
            )
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
    console.print(f"{head}{dot}{run.seconds:.1f} s{dot}report: {run.out_dir / 'report.json'}", markup=False)


def render(run: RunResult, console: Console) -> None:
    header(run, console)
    console.print()
    for result in run.results:
        scenario(result, console)
    footer(run, console)
