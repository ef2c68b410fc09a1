"""analyzer.checks: the spec format (TOML and dicts), strict validation with line numbers, and
evaluation on report dicts and on analyses of crafted captures (regex on reassembled bytes)."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from tcp_craft import CLIENT, SERVER, Capture, Conv

import analyzer
from analyzer.checks import (
    Check,
    Payloads,
    as_text,
    assertion_message,
    evaluate,
    failures,
    load_spec,
    parse_spec,
    spec_from_tables,
    summary,
)
from analyzer.checks import payload as payload_mod
from analyzer.checks.locate import key_lines
from analyzer.errors import EXIT_USAGE, UsageError

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


def tcp_flow(id_: int = 0, **over: Any) -> dict[str, Any]:
    """A report record with the fields the checks read (values of a daytime exchange)."""
    flow: dict[str, Any] = {
        "id": id_,
        "client": {"ip": "127.0.0.1", "port": 40864 + id_},
        "server": {"ip": "127.0.0.1", "port": 13},
        "packets": 8,
        "handshake": {"state": "complete", "rtt_ms": 0.05, "syn_retransmits": 0, "options": {}},
        "data": {
            "client_to_server": {"bytes": 0, "segments": 0, "sha256": None, "dup_acks": 0, "zero_windows": 0},
            "server_to_client": {
                "bytes": 20,
                "segments": 1,
                "sha256": None,
                "dup_acks": 1,
                "zero_windows": 0,
            },
            "retransmissions": 0,
            "out_of_order": 0,
        },
        "teardown": {"kind": "fin-4way", "first_fin": "server", "rst_by": None, "bytes_after_first_fin": 0},
        "time_wait": {"holder": "server", "hold_s": 60.0, "reused_by_syn": None, "rst_in_time_wait": False},
        "zeek": {"conn_state": "SF", "history": "ShAdfFa"},
        "completeness": 31,
        "anomalies": [],
    }
    for path, value in over.items():
        node = flow
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return flow


def udp_flow(id_: int = 0, **over: Any) -> dict[str, Any]:
    datagrams = []
    for i in range(3):
        datagrams.append({"dir": "c2s", "ts": 1.0 + i, "bytes": 5, "sha256": None, "preview": ""})
        datagrams.append({"dir": "s2c", "ts": 1.1 + i, "bytes": 5, "sha256": None, "preview": ""})
    flow: dict[str, Any] = {
        "id": id_,
        "client": {"ip": "127.0.0.1", "port": 50000},
        "server": {"ip": "127.0.0.1", "port": 7},
        "datagrams": datagrams,
        "pairs": [{"request": 2 * i, "reply": 2 * i + 1, "latency_ms": 0.25 * (i + 1)} for i in range(3)],
        "exchanges": 3,
        "echo": True,
        "icmp_unreachable": [],
    }
    flow.update(over)
    return flow


def report(
    tcp: list[dict[str, Any]] | None = None, udp: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"schema": "analyzer.report/1", "capture": {"file": ""}, "tcp": tcp or [], "udp": udp or []}


def by_field(checks: list[Check]) -> dict[str, Check]:
    return {c.field: c for c in checks}


def spec_error(text: str, source: str = "spec.toml") -> UsageError:
    with pytest.raises(UsageError) as info:
        parse_spec(text, source)
    assert info.value.exit_code == EXIT_USAGE
    return info.value


# -- loading ----------------------------------------------------------------------------------


def test_issue_example_loads() -> None:
    spec = parse_spec(ISSUE5_EXAMPLE, "x.toml")
    tcp, udp = spec.rules
    assert (tcp.kind, tcp.index, dict(tcp.select)) == ("tcp", 0, {"server_port": 13})
    assert [a.key for a in tcp.assertions] == [
        "handshake",
        "teardown",
        "first_fin",
        "time_wait",
        "client_to_server_bytes",
        "server_to_client",
        "max_retransmissions",
    ]
    assert tcp.count.describe() == "1" and tcp.count_where == "x.toml:4"
    assert [a.where for a in tcp.assertions][:2] == ["x.toml:5", "x.toml:6"]
    assert udp.count.describe() == ">= 1"  # the default
    assert udp.describe() == "udp[0] server_port=7"


def test_load_spec_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(ISSUE5_EXAMPLE, encoding="utf-8")
    spec = load_spec(path)
    assert spec.source == str(path) and spec.name == "spec"
    with pytest.raises(UsageError, match="no such expectation file"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(UsageError, match="is a directory"):
        load_spec(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[[tcp]]\nhistory = "\xe9"\n')
    with pytest.raises(UsageError, match="not UTF-8"):
        load_spec(bad)


def test_dict_tables_are_the_same_spec() -> None:
    from_toml = parse_spec(ISSUE5_EXAMPLE)
    from_dicts = spec_from_tables(
        tcp=[
            {
                "server_port": 13,
                "count": 1,
                "handshake": "complete",
                "teardown": "fin-4way",
                "first_fin": "server",
                "time_wait": "server",
                "client_to_server_bytes": 0,
                "server_to_client": {"min_bytes": 20, "regex": r"^\d{4}-\d{2}-\d{2} "},
                "max_retransmissions": 0,
            }
        ],
        udp={"server_port": 7, "exchanges": 5, "echo": True},  # one table without the list
    )
    doc = report([tcp_flow()], [udp_flow(exchanges=5)])
    strip = [(c.name, c.expected, c.observed, c.passed) for c in evaluate(from_toml, doc)]
    assert strip == [(c.name, c.expected, c.observed, c.passed) for c in evaluate(from_dicts, doc)]


# -- validation: every error names the file, the line and the fix ---------------------------


@pytest.mark.parametrize(
    ("text", "line", "problem", "hint"),
    [
        ('[[tcp]]\nserver_port = 13\nhandhsake = "complete"\n', 3, "unknown key", "did you mean 'handshake'"),
        ("[[tcp]]\nserver_port = '13'\n", 2, "must be an integer 0..65535", "server_port = 13"),
        ("[[tcp]]\nserver_port = 70000\n", 2, "must be an integer 0..65535", "server_port = 13"),
        (
            '[[tcp]]\nhandshake = "compelte"\n',
            2,
            "'compelte' is not a handshake state",
            "did you mean 'complete'",
        ),
        ("[[tcp]]\nhandshake = 3\n", 2, "must be a string or an array of strings", "handshake ="),
        (
            '[[tcp]]\n\nteardown = [\n  "fin-4way",\n  "fin-5way",\n]\n',
            5,
            "'fin-5way' is not a teardown kind",
            "fin-3way",
        ),
        ("[[tcp]]\nx = 1\n[[tcp]]\nserver_to_client = { min_bytes = 2, regx = 'a' }\n", 2, "unknown key", ""),
        (
            "[[tcp]]\nserver_port = 1\n[[tcp]]\n# c\nserver_to_client = { min_bytes = 2, regx = 'a' }\n",
            5,
            "unknown key in the server_to_client table",
            "did you mean 'regex'",
        ),
        ("[[tcp]]\nclient_to_server.regex = '(unclosed'\n", 2, "invalid regular expression", "Python re"),
        ("[[tcp]]\nserver_to_client = { regex = 5 }\n", 2, "must be a string", "quotes"),
        ("[[tcp]]\nserver_to_client = { sha256 = 'abc' }\n", 2, "sha256 digest", "sha256sum"),
        ("[[tcp]]\nserver_to_client = 20\n", 2, "must be a table, not an integer", "min_bytes"),
        ("[[tcp]]\nserver_to_client = {}\n", 2, "an empty table checks nothing", "regex"),
        ("[[tcp]]\ncount = true\n", 2, "must be an integer, not a boolean", "count = 3"),
        ("[[tcp]]\ncount = -1\n", 2, "-1 is out of range", ">= 0"),
        ("[[tcp]]\ncount = { min = 3, max = 1 }\n", 2, "min 3 is above max 1", "swap"),
        ("[[tcp]]\ncount = { least = 3 }\n", 2, "unknown key 'least' in a range", "min = 1"),
        ("[[tcp]]\ncount = []\n", 2, "an empty array accepts nothing", "list"),
        ("[[tcp]]\ncompleteness = 64\n", 2, "64 is out of range", "0..63"),
        ("[[tcp]]\nmax_rtt_ms = 'fast'\n", 2, "must be a number", "max_rtt_ms"),
        ("[[tcp]]\nmax_retransmissions = [0, 1]\n", 2, "must be a number, not an array", "= 0"),
        ("[[tcp]]\nrst_in_time_wait = 'yes'\n", 2, "must be true or false", "= true"),
        ("[[tcp]]\nanomalies = 'none'\n", 2, "must be an array of names", "anomalies = []"),
        ('[[tcp]]\nserver_ip = "localhost"\n', 2, "is not an IP address", "::1"),
        ("[[tcp]]\nid = 1.5\n", 2, "must be an integer >= 0", "id = 13"),
        ("[[tcp]]\ncount = 0\nhandshake = 'complete'\n", 2, "count = 0 says no flow matches", "min = 0"),
        ("[[udp]]\necho = 'yes'\n", 2, "must be true or false", "echo = true"),
        ("[[udp]]\nhandshake = 'complete'\n", 2, "unknown key in the [[udp]] table", "exchanges"),
        ("[[udp]]\nclient_to_server = { segments = 1 }\n", 2, "unknown key", "datagrams"),
        ("[[tpc]]\nserver_port = 1\n", 1, "unknown table or key", "did you mean [[tcp]]"),
        ("[tcp]\nserver_port = 1\n", 1, "must be an array of tables, not a table", "write [[tcp]]"),
        ('title = "x"\n[[tcp]]\n', 1, "unknown table or key", "[[tcp]] and [[udp]]"),
        (
            '[[tcp]]\nserver_port = 1\n\n[tcp.fields]\n"handshake.rtt" = 1\n',
            5,
            "'handshake.rtt' is not a scalar field of a tcp flow",
            "did you mean 'handshake.rtt_ms'",
        ),
        (
            '[[tcp]]\nfields = { "handshake.state" = "done" }\n',
            2,
            "'done' cannot be a value of handshake.state",
            "one of 'complete'",
        ),
        ('[[tcp]]\nfields = { "handshake.rtt_ms" = "slow" }\n', 2, "cannot be a value", "number or null"),
        ('[[tcp]]\nfields = { "zeek.history" = { min = 1 } }\n', 2, "range needs a numeric field", "string"),
        ('[[udp]]\nfields = { "handshake.state" = "complete" }\n', 2, "not a scalar field of a udp flow", ""),
    ],
)
def test_invalid_specs_name_file_line_and_fix(text: str, line: int, problem: str, hint: str) -> None:
    err = spec_error(text)
    assert err.message.startswith(f"spec.toml:{line}: "), err.message
    assert problem in err.message
    assert err.hint is not None and hint in err.hint


def test_toml_syntax_errors_keep_tomllib_position() -> None:
    err = spec_error("[[tcp]]\nserver_port = = 13\n")
    assert err.message.startswith("spec.toml: invalid TOML: ")
    assert "line 2" in err.message


def test_empty_spec_is_invalid() -> None:
    err = spec_error("# nothing here\n")
    assert "nothing to verify" in err.message


def test_dict_spec_errors_name_the_key_path() -> None:
    with pytest.raises(UsageError) as info:
        spec_from_tables(tcp=[{"server_port": 13}, {"teardown": ["fin-4way", "fin"]}])
    assert info.value.message.startswith("expect: tcp[1].teardown[1]: 'fin' is not a teardown kind")


def test_key_lines_follow_every_toml_layout() -> None:
    text = (
        '# comment [[tcp]]\n[[tcp]]\nserver_port = 13\nhistory = """\n[[udp]]\n"""\n'
        "[tcp.fields]\n'zeek.history' = 'x'\n[[ udp ]]\necho = true\n[[tcp]]\na.b = 1\n"
        'c = { d = [1,\n 2], e = "#" } # x = 1\n'
    )
    lines = key_lines(text)
    assert lines[("tcp", 0)] == 2
    assert lines[("tcp", 0, "server_port")] == 3
    assert lines[("tcp", 0, "history")] == 4
    assert ("udp", 1) not in lines  # the [[udp]] inside the multi-line string is text
    assert lines[("tcp", 0, "fields", "zeek.history")] == 8
    assert lines[("udp", 0, "echo")] == 10
    assert lines[("tcp", 1, "a", "b")] == 12
    assert lines[("tcp", 1, "c", "d", 1)] == 14
    assert lines[("tcp", 1, "c", "e")] == 14
    assert tomllib.loads(text)["tcp"][1]["c"] == {"d": [1, 2], "e": "#"}  # the text is valid TOML
    assert ("tcp", 1, "x") not in lines


@pytest.mark.parametrize("path", sorted((Path(analyzer.__file__).parent / "demos" / "expect").glob("*.toml")))
def test_every_scenario_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.rules
    for rule in spec.rules:
        assert rule.count.describe() == "1"  # every scenario expects exactly its one flow
        assert all(re.fullmatch(rf"{re.escape(str(path))}:\d+", a.where) for a in rule.assertions)


# -- evaluation on report dicts ---------------------------------------------------------------


def test_passing_and_failing_checks_say_expected_and_observed() -> None:
    spec = parse_spec(ISSUE5_EXAMPLE, "x.toml")
    doc = report([tcp_flow(teardown__kind="fin-3way")], [udp_flow()])
    checks = evaluate(spec, doc)
    failed = {c.name: c for c in failures(checks)}
    assert set(failed) == {"tcp[0].teardown", "tcp[0].server_to_client.regex", "udp[0].exchanges"}
    teardown = failed["tcp[0].teardown"]
    assert (teardown.expected, teardown.observed, teardown.flows, teardown.where) == (
        "fin-4way",
        "fin-3way",
        (0,),
        "x.toml:6",
    )
    assert teardown.describe() == (
        "tcp[0] server_port=13 teardown: expected 'fin-4way', observed 'fin-3way' (flow 0)"
    )
    # The regex needs the stream's bytes; the dict names no capture file to read them from.
    assert "no capture file" in failed["tcp[0].server_to_client.regex"].note
    assert summary(checks) == f"{len(checks) - 3} of {len(checks)} checks passed"
    json.dumps([c.to_dict() for c in checks])  # JSON-able as the report's "checks"


def test_count_default_exact_range_and_zero() -> None:
    doc = report([tcp_flow(0), tcp_flow(1), tcp_flow(2, server__port=80)])
    counts = [
        c.passed
        for c in evaluate(
            parse_spec(
                "[[tcp]]\nserver_port = 13\n"  # default: at least one
                "[[tcp]]\nserver_port = 13\ncount = 2\n"
                "[[tcp]]\nserver_port = 13\ncount = [1, 3]\n"
                "[[tcp]]\ncount = { min = 3, max = 3 }\n"
                "[[tcp]]\nserver_port = 25\ncount = 0\n"
                "[[tcp]]\nserver_port = 25\n"
            ),
            doc,
        )
    ]
    assert counts == [True, True, False, True, True, False]


def test_no_matching_flow_fails_assertions_unless_count_allows_zero() -> None:
    doc = report([tcp_flow()])
    checks = evaluate(parse_spec("[[tcp]]\nserver_port = 25\nhandshake = 'complete'\n"), doc)
    count, hs = checks
    assert not count.passed and "127.0.0.1:40864 -> 127.0.0.1:13" in count.note
    assert not hs.passed and hs.observed is None and hs.note == "no flow matched the selectors"
    checks = evaluate(
        parse_spec("[[tcp]]\nserver_port = 25\ncount = { min = 0 }\nhandshake = 'complete'\n"), doc
    )
    assert all(c.passed for c in checks)


def test_several_flows_each_must_hold() -> None:
    doc = report([tcp_flow(0), tcp_flow(1, time_wait__holder="client"), tcp_flow(2)])
    checks = by_field(evaluate(parse_spec("[[tcp]]\ntime_wait = 'server'\nhandshake = 'complete'\n"), doc))
    tw = checks["time_wait"]
    assert not tw.passed and tw.flows == (0, 1, 2)
    assert tw.observed == {"0": "server", "1": "client", "2": "server"}
    assert tw.note == "fails for flow 1"
    assert checks["handshake"].passed and checks["handshake"].observed == "complete"


def test_selectors_ips_ports_ids_and_port_map() -> None:
    v6 = tcp_flow(1, client__ip="::1", server__ip="::1")
    doc = report([tcp_flow(0), v6])

    def matched(text: str, port_map: dict[int, int] | None = None) -> tuple[int, ...]:
        return evaluate(parse_spec(text), doc, port_map=port_map)[0].flows

    assert matched('[[tcp]]\nserver_ip = "0:0::0001"\n') == (1,)
    assert matched('[[tcp]]\nclient_ip = "127.0.0.1"\nclient_port = 40864\n') == (0,)
    assert matched("[[tcp]]\nid = 1\n") == (1,)
    assert matched("[[tcp]]\nserver_port = 3\n", {3: 13}) == (0, 1)
    assert evaluate(parse_spec("[[tcp]]\nserver_port = 3\n"), doc, port_map={3: 13})[0].selector == (
        "tcp[0] server_port=13"
    )


def test_every_tcp_key_reads_its_report_field() -> None:
    flow = tcp_flow(
        teardown__first_fin=None,
        teardown__rst_by="client",
        anomalies=[{"name": "zero-window"}, {"name": "zero-window"}, {"name": "keep-alive"}],
    )
    text = """
[[tcp]]
first_fin = "none"
rst_by = "client"
zeek_conn_state = ["SF", "S1"]
history = "ShAdfFa"
completeness = { min = 16 }
packets = 8
bytes_after_first_fin = 0
max_out_of_order = 0
max_dup_acks = 1
max_zero_windows = 0
max_syn_retransmits = 0
max_rtt_ms = 0.05
rst_in_time_wait = false
reused_in_time_wait = false
anomalies = ["keep-alive", "zero-window"]
[tcp.fields]
"time_wait.hold_s" = { min = 59.5, max = 60.5 }
"teardown.first_fin" = "none"
"handshake.state" = ["complete", "partial"]
"""
    checks = evaluate(parse_spec(text), report([flow]))
    assert [c.field for c in failures(checks)] == [], [c.describe() for c in failures(checks)]
    assert by_field(checks)["first_fin"].observed == "none"
    assert by_field(checks)["anomalies"].observed == ["keep-alive", "zero-window"]
    # and each one fails when the report differs
    worse = tcp_flow(
        teardown__first_fin="client",
        teardown__rst_by=None,
        zeek__conn_state="RSTO",
        zeek__history="ShR",
        completeness=7,
        packets=9,
        teardown__bytes_after_first_fin=4,
        data__out_of_order=1,
        data__client_to_server__dup_acks=1,
        time_wait__rst_in_time_wait=True,
        time_wait__reused_by_syn=3,
        time_wait__hold_s=120.0,
        handshake__rtt_ms=0.06,
        handshake__state="refused",
        handshake__syn_retransmits=1,
        anomalies=[],
    )
    worse["data"]["client_to_server"]["zero_windows"] = 1
    worse["data"]["server_to_client"]["zero_windows"] = 0
    failed = {c.field for c in failures(evaluate(parse_spec(text), report([worse])))}
    assert failed == {
        "first_fin", "rst_by", "zeek_conn_state", "history", "completeness", "packets",
        "bytes_after_first_fin", "max_out_of_order", "max_dup_acks", "max_zero_windows",
        "max_syn_retransmits", "max_rtt_ms", "rst_in_time_wait", "reused_in_time_wait", "anomalies",
        "fields.time_wait.hold_s", "fields.teardown.first_fin", "fields.handshake.state",
    }  # fmt: skip


def test_every_udp_key_reads_its_report_field() -> None:
    flow = udp_flow()
    text = """
[[udp]]
exchanges = 3
echo = true
icmp_unreachable = false
datagrams = 6
client_to_server_bytes = 15
server_to_client_bytes = { max = 15 }
client_to_server = { datagrams = 3, bytes = 15, min_bytes = 15, max_bytes = 15 }
max_latency_ms = 0.75
fields = { "echo" = true, "exchanges" = { min = 1 } }
"""
    assert failures(evaluate(parse_spec(text), report(udp=[flow]))) == []
    icmp = udp_flow(echo=False, pairs=[], exchanges=0, icmp_unreachable=[{"type": 3}, {"type": 3}])
    failed = {c.field: c for c in failures(evaluate(parse_spec(text), report(udp=[icmp])))}
    assert set(failed) == {"exchanges", "echo", "icmp_unreachable", "max_latency_ms", "fields.echo",
                           "fields.exchanges"}  # fmt: skip
    assert failed["max_latency_ms"].observed is None
    counted = evaluate(parse_spec("[[udp]]\nicmp_unreachable = 2\n"), report(udp=[icmp]))
    assert counted[1].passed and counted[1].observed == 2


def test_booleans_and_numbers_never_stand_for_each_other() -> None:
    doc = report(udp=[udp_flow(exchanges=1, echo=True)])
    checks = evaluate(parse_spec("[[udp]]\nfields = { echo = true, exchanges = 1 }\n"), doc)
    assert all(c.passed for c in checks)
    with pytest.raises(UsageError, match="cannot be a value of echo"):
        parse_spec("[[udp]]\nfields = { echo = 1 }\n")
    checks = evaluate(parse_spec("[[udp]]\nexchanges = 1\n"), report(udp=[udp_flow(exchanges=True)]))
    assert not checks[1].passed


def test_assertion_message_is_a_readable_diff() -> None:
    spec = parse_spec("[[tcp]]\nserver_port = 13\nteardown = ['rst']\ntime_wait = 'server'\n", "t.toml")
    text = assertion_message(evaluate(spec, report([tcp_flow()])), "cap.pcapng")
    assert text.splitlines() == [
        "1 of 3 checks failed on cap.pcapng:",
        "  tcp[0] server_port=13 teardown  [t.toml:3]",
        "    - expected: 'rst'",
        "    + observed: 'fin-4way'",
    ]


# -- evaluation on captures: the bytes come from the reassembled stream -------------------------


LONG_REPLY = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 100 + b"\r\n\r\nbody \xff\xfe end"


@pytest.fixture(scope="module")
def http_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One connection whose reply is longer than the preview and not valid UTF-8, sent in three
    segments, the middle one retransmitted, so only reassembly gives the bytes in order."""
    cap = Capture()
    c = Conv(cap, client=("127.0.0.1", 50000), server=("127.0.0.1", 8080))
    c.handshake(options=True)
    c.send(CLIENT, b"GET / HTTP/1.1\r\n\r\n")
    c.ack(SERVER)
    first, second, third = LONG_REPLY[:40], LONG_REPLY[40:90], LONG_REPLY[90:]
    c.send(SERVER, first)
    seq = c.nxt[SERVER]
    c.send(SERVER, second)
    c.pkt(SERVER, "PA", second, seq=seq)  # retransmission
    c.send(SERVER, third)
    c.ack(CLIENT)
    c.close_4way(first=SERVER)
    return cap.write(tmp_path_factory.mktemp("http") / "http.pcap")


def test_regex_searches_the_whole_reassembled_stream(http_capture: Path) -> None:
    a = analyzer.analyze(http_capture)
    record = a.tcp_records[0]
    assert len(record["data"]["server_to_client"]["preview"]) < len(LONG_REPLY)
    digest = hashlib.sha256(LONG_REPLY).hexdigest()
    spec = parse_spec(
        "[[tcp]]\nserver_port = 8080\n"
        "server_to_client = { regex = '(?s)^HTTP/1\\.1 200 .*\\r\\n\\r\\nbody \\xff\\xfe end\\Z', "
        f"sha256 = '{digest.upper()}', bytes = {len(LONG_REPLY)} }}\n"
        "client_to_server = { regex = '^GET / ' }\n"
        "max_retransmissions = 1\n"
    )
    checks = evaluate(spec, a)
    assert failures(checks) == [], [c.describe() for c in failures(checks)]
    regex = by_field(checks)["server_to_client.regex"]
    assert regex.observed.startswith("HTTP/1.1 200 OK\r\n") and regex.observed.endswith("…")
    # latin-1 because the reply is not UTF-8: one character per byte
    assert as_text(LONG_REPLY) == LONG_REPLY.decode("latin-1")
    assert as_text("é".encode()) == "é"
    failing = evaluate(parse_spec("[[tcp]]\nserver_to_client = { regex = 'body \\xff end' }\n"), a)
    assert not failing[1].passed and failing[1].note == "no match in the stream"


def test_regex_on_a_report_dict_reads_the_capture_it_names(http_capture: Path, tmp_path: Path) -> None:
    doc = analyzer.analyze(http_capture).to_dict()
    spec = parse_spec("[[tcp]]\nserver_to_client = { regex = 'end$' }\n")
    assert evaluate(spec, doc)[1].passed
    # Another file under the same name: the bytes do not match the report, so the check says so.
    other = tmp_path / "other.pcap"
    cap = Capture()
    c = Conv(cap, client=("127.0.0.1", 50000), server=("127.0.0.1", 8080))
    c.handshake()
    c.send(SERVER, b"something else end")
    other = cap.write(other)
    doc["capture"]["file"] = str(other)
    check = evaluate(spec, doc)[1]
    assert not check.passed and "another file" in check.note
    doc["capture"]["file"] = str(tmp_path / "gone.pcap")
    check = evaluate(spec, doc)[1]
    assert not check.passed and "no such file" in check.note


def test_many_flows_use_one_whole_reanalysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = Capture()
    n = payload_mod.WHOLE_RUN_AFTER + 5
    for i in range(n):
        c = Conv(cap, client=("127.0.0.1", 40000 + i), server=("127.0.0.1", 7000))
        c.handshake()
        c.send(CLIENT, f"hello from client {i}\n".encode())
        c.close_3way(first=CLIENT)
    a = analyzer.analyze(cap.write(tmp_path / "many.pcap"))
    calls: list[int] = []
    real = payload_mod.Payloads._one_connection

    def counting(self: Payloads, flow: dict[str, Any]) -> Any:
        calls.append(flow["id"])
        return real(self, flow)

    monkeypatch.setattr(payload_mod.Payloads, "_one_connection", counting)
    tables = "".join(
        f"[[tcp]]\nclient_port = {40000 + i}\nclient_to_server = {{ regex = '^hello from client {i}$' }}\n"
        for i in range(n)
    )
    checks = evaluate(parse_spec(tables), a)
    assert failures(checks) == [] and len(checks) == 2 * n
    assert len(calls) == payload_mod.WHOLE_RUN_AFTER


def test_udp_regex_applies_to_every_datagram(tmp_path: Path) -> None:
    from check_captures import write_scenario

    a = analyzer.analyze(write_scenario("udp-echo", tmp_path))
    ok = evaluate(parse_spec("[[udp]]\nserver_to_client = { regex = '^message [1-5] of 5$' }\n"), a)
    assert ok[1].passed and ok[1].observed == 5
    bad = evaluate(parse_spec("[[udp]]\nserver_to_client = { regex = '^message [1-4] of' }\n"), a)[1]
    assert not bad.passed and bad.observed == "message 5 of 5"
    assert bad.note == "datagram 5 of 5 that way does not match"


def test_the_readme_spec_example_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(# x\.toml\n.*?)```", readme, re.S)
    assert block is not None
    spec = parse_spec(block.group(1), "README.md")
    assert [a.key for a in spec.rules[0].assertions][:2] == ["handshake", "teardown"]
