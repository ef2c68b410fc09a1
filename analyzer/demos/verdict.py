"""Judge one scenario attempt: analyze its capture, put the kernel's TIME_WAIT view beside the
capture's prediction, and evaluate the scenario's expectation file.

Every verdict is a check (``analyzer.demos.expect.Check``): the expectation file's checks, one
``time_wait.kernel`` check per TCP connection (a disagreement fails the run), and the capture's
own health (no drops; the file holds every frame the witness counted; the kernel settled).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from analyzer.demos.expect import Check, evaluate, load_spec
from analyzer.demos.scenarios import Scenario


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
    checks = [Check("capture", None, "dropped", 0, cap.get("dropped"), not cap.get("dropped"))]
    witness, frames = cap.get("witness"), cap.get("frames_in_file")
    if witness is not None:
        checks.append(Check("capture", None, "frames", witness, frames, frames == witness))
    if proto == "tcp":
        settled = (worker.get("kernel") or {}).get("settled")
        checks.append(Check("kernel", None, "settled", True, settled, settled is True))
    return checks


def judge(
    scenario: Scenario, worker: dict[str, Any], report: dict[str, Any], port_map: dict[int, int] | None
) -> list[Check]:
    """All checks for one analyzed attempt; adds ``time_wait.kernel`` to each TCP flow of ``report``."""
    checks = health_checks(worker, scenario.proto)
    sockets = ((worker.get("kernel") or {}).get("sample") or {}).get("sockets", [])
    for flow in report.get("tcp", []):
        view, holder = kernel_view(flow, sockets)
        flow.setdefault("time_wait", {})["kernel"] = view
        predicted = flow["time_wait"].get("holder")
        checks.append(Check("kernel", flow.get("id"), "time_wait.kernel", predicted, holder, view["agrees"]))
    rules = load_spec(scenario.expect_text(), f"analyzer/demos/expect/{scenario.expect_file}")
    checks.extend(evaluate(rules, report, port_map))
    return checks
