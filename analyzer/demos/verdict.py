"""Judge one scenario attempt: analyze its capture, put the kernel's TIME_WAIT view beside the
capture's prediction, and evaluate the scenario's expectation file.

Every verdict is an ``analyzer.checks.Check``, so ``analyzer run`` and ``analyzer verify`` share
one engine: the expectation file's checks (evaluated by ``analyzer.checks``), one
``time_wait.kernel`` check per TCP connection (a disagreement fails the run), and the capture's
own health (no drops; the file holds every frame the witness counted; the kernel settled).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from analyzer.checks import Check, Payloads, evaluate, parse_spec
from analyzer.demos.scenarios import Scenario

if TYPE_CHECKING:
    from analyzer.analysis import Analysis


def _ep(ip: Any, port: Any) -> tuple[str, int]:
    try:
        norm = ipaddress.ip_address(str(ip))
        if isinstance(norm, ipaddress.IPv6Address) and norm.ipv4_mapped is not None:
            norm = norm.ipv4_mapped
        return norm.compressed, int(port)
    except ValueError:
        return str(ip), int(port)


def kernel_view(flow: dict[str, Any], sockets: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """(``time_wait.kernel`` for ``flow``, the holder the kernel shows) from sampled sockets."""
    client = _ep(flow["client"]["ip"], flow["client"]["port"])
    server = _ep(flow["server"]["ip"], flow["server"]["port"])
    observed = []
    sides = set()
    for s in sockets:
        if s["state"] != "TIME_WAIT":
            continue
        local, remote = _ep(s["local_ip"], s["local_port"]), _ep(s["remote_ip"], s["remote_port"])
        if {local, remote} != {client, server} or local == remote:
            continue
        sides.add("server" if local == server else "client")
        observed.append(
            {
                "local": _text(local),
                "remote": _text(remote),
                "side": "server" if local == server else "client",
                "state": "TIME_WAIT",
                "timer_s": s["timer_s"],
            }
        )
    holder = "both" if len(sides) == 2 else (sides.pop() if sides else "none")
    predicted = (flow.get("time_wait") or {}).get("holder")
    timer = max((o["timer_s"] for o in observed), default=None)
    return {"observed": observed, "timer_s": timer, "agrees": predicted == holder}, holder


def _text(ep: tuple[str, int]) -> str:
    return f"[{ep[0]}]:{ep[1]}" if ":" in ep[0] else f"{ep[0]}:{ep[1]}"


def health_checks(worker: dict[str, Any], proto: str) -> list[Check]:
    """The capture and kernel facts a run must satisfy before any expectation matters."""
    cap = worker.get("capture") or {}
    dropped = cap.get("dropped")
    checks = [
        Check(
            name="capture.dropped",
            selector="capture",
            field="dropped",
            expected=0,
            observed=dropped,
            passed=not dropped,
        )
    ]
    witness, frames = cap.get("witness"), cap.get("frames_in_file")
    if witness is not None:
        checks.append(
            Check(
                name="capture.frames",
                selector="capture",
                field="frames",
                expected=witness,
                observed=frames,
                passed=frames == witness,
                note="" if frames == witness else "the file lacks frames the capture tool counted",
            )
        )
    if proto == "tcp":
        settled = (worker.get("kernel") or {}).get("settled")
        checks.append(
            Check(
                name="kernel.settled",
                selector="kernel",
                field="settled",
                expected=True,
                observed=settled,
                passed=settled is True,
            )
        )
    return checks


def judge(
    scenario: Scenario,
    worker: dict[str, Any],
    report: dict[str, Any],
    port_map: dict[int, int] | None,
    analysis: Analysis | None = None,
    *,
    payloads: Payloads | None = None,
) -> list[Check]:
    """All checks for one analyzed attempt; adds ``time_wait.kernel`` to each TCP flow of ``report``.

    The expectation file's ``regex`` keys read the payload bytes from ``payloads`` (default: from
    ``analysis``, else from the capture file ``report`` names).
    """
    checks = health_checks(worker, scenario.proto)
    sockets = ((worker.get("kernel") or {}).get("sample") or {}).get("sockets", [])
    for flow in report.get("tcp", []):
        view, holder = kernel_view(flow, sockets)
        flow.setdefault("time_wait", {})["kernel"] = view
        predicted = flow["time_wait"].get("holder")
        fid = int(flow.get("id", -1))
        checks.append(
            Check(
                name=f"kernel.tcp[{fid}]",
                selector="kernel",
                field="time_wait.kernel",
                expected=predicted,
                observed=holder,
                passed=view["agrees"],
                flows=(fid,),
                note="" if view["agrees"] else "the kernel's TIME_WAIT sockets differ from the capture's",
            )
        )
    spec = parse_spec(scenario.expect_text(), f"analyzer/demos/expect/{scenario.expect_file}")
    own = payloads is None
    source = payloads if payloads is not None else Payloads.of(analysis if analysis is not None else report)
    try:
        checks.extend(evaluate(spec, report, port_map=port_map, payloads=source))
    finally:
        if own:
            source.close()
    return checks
