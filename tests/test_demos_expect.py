"""analyzer.demos.expect: the TOML expectation format (issue 5's keys) and its evaluation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from analyzer.demos.expect import evaluate, load_spec
from analyzer.demos.scenarios import SCENARIOS
from analyzer.errors import UsageError

ISSUE5_EXAMPLE = r"""
[[tcp]]                       # each table matches flows, then asserts on each match
server_port = 13              # selectors: client/server ip or port, id
count = 1                     # how many flows must match (default: at least 1)
handshake = "complete"
teardown = "fin-4way"         # or a list of accepted kinds
first_fin = "server"
time_wait = "server"
client_to_server_bytes = 0
server_to_client = { min_bytes = 20, regex = '^\d{4}-\d{2}-\d{2} ' }
max_retransmissions = 0
[[udp]]
server_port = 7
exchanges = 5
echo = true
"""


def tcp_flow(**over: Any) -> dict[str, Any]:
    flow: dict[str, Any] = {
        "id": 0,
        "client": {"ip": "127.0.0.1", "port": 40864},
        "server": {"ip": "127.0.0.1", "port": 13},
        "handshake": {"state": "complete"},
        "data": {
            "client_to_server": {"bytes": 0, "preview": ""},
            "server_to_client": {"bytes": 20, "preview": "2026-11-26 22:14:03⏎"},
            "retransmissions": 0,
        },
        "teardown": {"kind": "fin-4way", "first_fin": "server"},
        "time_wait": {"holder": "server"},
    }
    for path, value in over.items():
        section, _, key = path.partition("__")
        if key:
            flow[section][key] = value
        else:
            flow[section] = value
    return flow


def udp_flow(**over: Any) -> dict[str, Any]:
    flow = {
        "id": 0,
        "client": {"ip": "127.0.0.1", "port": 57401},
        "server": {"ip": "127.0.0.1", "port": 7},
        "exchanges": 5,
        "echo": True,
        "icmp_unreachable": [],
    }
    flow.update(over)
    return flow


def failed(checks: list[Any]) -> list[tuple[str, Any]]:
    return [(c.field, c.observed) for c in checks if not c.passed]


def test_issue5_example_passes_on_a_matching_report() -> None:
    rules = load_spec(ISSUE5_EXAMPLE, "example.toml")
    checks = evaluate(rules, {"tcp": [tcp_flow()], "udp": [udp_flow()]})
    assert failed(checks) == []
    fields = {c.field for c in checks}
    assert {
        "handshake",
        "time_wait",
        "server_to_client.regex",
        "server_to_client.min_bytes",
        "echo",
    } <= fields


def test_each_mismatch_is_reported_with_expected_and_observed() -> None:
    rules = load_spec(ISSUE5_EXAMPLE)
    flow = tcp_flow(time_wait__holder="client", teardown__kind="fin-3way")
    flow["data"]["server_to_client"] = {"bytes": 5, "preview": "hello"}
    flow["data"]["retransmissions"] = {"client_to_server": 1, "server_to_client": 2}
    checks = evaluate(rules, {"tcp": [flow], "udp": [udp_flow(exchanges=4, echo=False)]})
    assert sorted(failed(checks)) == sorted(
        [
            ("time_wait", "client"),
            ("teardown", "fin-3way"),
            ("server_to_client.min_bytes", 5),
            ("server_to_client.regex", "hello"),
            ("max_retransmissions", 3),
            ("exchanges", 4),
            ("echo", False),
        ]
    )
    bad = next(c for c in checks if c.field == "time_wait")
    assert (bad.expected, bad.selector, bad.flow) == ("server", "tcp[0] server_port=13", 0)


def test_count_and_selectors() -> None:
    rules = load_spec('[[tcp]]\nserver_port = 13\ncount = 2\n[[tcp]]\nclient_ip = "::1"\n')
    other = tcp_flow(id=1)
    other["server"] = {"ip": "127.0.0.1", "port": 80}
    checks = evaluate(rules, {"tcp": [tcp_flow(), other]})
    counts = [(c.selector, c.expected, c.observed, c.passed) for c in checks if c.field == "count"]
    assert counts == [("tcp[0] server_port=13", 2, 1, False), ("tcp[1] client_ip=::1", ">= 1", 0, False)]
    v6 = tcp_flow()
    v6["client"] = {"ip": "0:0::1", "port": 1}
    assert failed(evaluate(load_spec('[[tcp]]\nclient_ip = "::1"\n'), {"tcp": [v6]})) == []


def test_lists_accept_any_listed_value_and_port_map_rewrites_selectors() -> None:
    rules = load_spec('[[tcp]]\nserver_port = 13\nteardown = ["fin-4way", "fin-3way"]\n')
    flow = tcp_flow(teardown__kind="fin-3way")
    flow["server"]["port"] = 10013
    assert failed(evaluate(rules, {"tcp": [flow]})) == [("count", 0)]
    checks = evaluate(rules, {"tcp": [flow]}, port_map={13: 10013})
    assert failed(checks) == []
    assert checks[0].selector == "tcp[0] server_port=10013"


def test_udp_icmp_unreachable_and_first_fin_none() -> None:
    rules = load_spec("[[udp]]\nserver_port = 9\nicmp_unreachable = true\n")
    flow = udp_flow(server={"ip": "127.0.0.1", "port": 9}, icmp_unreachable=[{"frame": 2}])
    assert failed(evaluate(rules, {"udp": [flow]})) == []
    flow["icmp_unreachable"] = []
    assert failed(evaluate(rules, {"udp": [flow]})) == [("icmp_unreachable", False)]
    rst = tcp_flow(teardown__first_fin=None)
    assert failed(evaluate(load_spec('[[tcp]]\nfirst_fin = "none"\n'), {"tcp": [rst]})) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[tcp]]\nserver_port = 13\nholder = 'x'\n", "spec.toml:3: unknown key 'holder' in [[tcp]]"),
        ("[[tcp]]\nserver_port = '13'\n", "spec.toml:2: server_port must be int"),
        ("[[tcp]]\ncount = true\n", "spec.toml:2: count must be int"),
        ("[[tcp]]\nteardown = [1]\n", "spec.toml:2: teardown must be a string or a list of strings"),
        ("[[udp]]\necho = 1\n", "spec.toml:2: echo must be bool"),
        (
            "[[tcp]]\nserver_to_client = { regex = '(' }\n",
            "spec.toml:2: server_to_client.regex is not a valid",
        ),
        ("[[tcp]]\nserver_to_client = { max = 1 }\n", "spec.toml:2: unknown key 'max' in server_to_client"),
        ("[[icmp]]\nx = 1\n", "spec.toml: unknown table 'icmp'"),
        ("[[tcp]\n", "spec.toml: invalid TOML"),
    ],
)
def test_invalid_specs_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        load_spec(text, "spec.toml")
    assert info.value.message.startswith(message)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_bundled_expectation_file_is_valid_and_selects_its_port(name: str) -> None:
    scenario = SCENARIOS[name]
    rules = load_spec(scenario.expect_text(), scenario.expect_file)
    assert rules, f"{scenario.expect_file} has no table"
    for rule in rules:
        assert rule.kind == scenario.proto
        assert rule.select == {"server_port": scenario.port}


def test_a_report_is_not_modified_by_evaluation() -> None:
    report = {"tcp": [tcp_flow()], "udp": [udp_flow()]}
    before = copy.deepcopy(report)
    evaluate(load_spec(ISSUE5_EXAMPLE), report)
    assert report == before
