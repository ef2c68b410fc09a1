"""The TCP part of the report: every issue-3 key in every record, JSON-ready values, the table
schema, and arbitrary packet soups analyzed without exceptions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcp_craft import SCENARIOS, Capture, Conv, analyze_path, analyze_scenario, build

import analyzer
from analyzer.flows.tcp import TCP_FLOW_COLUMNS, TCP_FLOWS, analyze_tcp

# The field list of issue 3 ("tcp" entries of analyzer.report/1).
ISSUE_KEYS: dict[str, Any] = {
    "id": None,
    "client": {"ip": None, "port": None},
    "server": {"ip": None, "port": None},
    "first_ts": None,
    "last_ts": None,
    "packets": None,
    "handshake": {
        "state": None,
        "rtt_ms": None,
        "client_isn": None,
        "server_isn": None,
        "syn_retransmits": None,
        "options": None,
    },
    "data": {
        "client_to_server": {"bytes": None, "segments": None, "sha256": None, "preview": None},
        "server_to_client": {"bytes": None, "segments": None, "sha256": None, "preview": None},
        "retransmissions": None,
        "out_of_order": None,
    },
    "teardown": {
        "kind": None,
        "first_fin": None,
        "fins_acked": {"client": None, "server": None},
        "rst_by": None,
        "bytes_after_first_fin": None,
    },
    "time_wait": {"holder": None, "start_ts": None, "until_ts": None, "hold_s": None},
    "states": {"client": None, "server": None},
    "zeek": {"conn_state": None, "history": None},
    "completeness": None,
    "anomalies": None,
}
SCHEMA = Path(__file__).resolve().parents[1] / "analyzer" / "report" / "schemas" / "report-1.schema.json"


def assert_has_keys(record: dict[str, Any], spec: dict[str, Any], where: str = "") -> None:
    for key, sub in spec.items():
        assert key in record, f"missing {where}{key}"
        if sub is not None:
            assert isinstance(record[key], dict), f"{where}{key} is not an object"
            assert_has_keys(record[key], sub, f"{where}{key}.")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_records_carry_every_issue_key_and_are_json(tmp_path: Path, scenario: str) -> None:
    flows = analyze_scenario(scenario, tmp_path)
    assert len(flows.records) == len(flows.table)
    for i, rec in enumerate(flows.records):
        assert rec["id"] == i
        assert_has_keys(rec, ISSUE_KEYS)
        json.dumps(rec, allow_nan=False)  # plain Python values only, no NaN
        for side in ("client", "server"):
            for entry in rec["states"][side]:
                assert isinstance(entry, list) and len(entry) == 3


def test_records_validate_against_the_report_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.exists():
        pytest.skip("report schema not present")
    schema = json.loads(SCHEMA.read_text())
    flow_schema = {"$defs": schema["$defs"], **schema["$defs"]["tcp_flow"]}
    validator = jsonschema.Draft202012Validator(flow_schema)
    for scenario in sorted(SCENARIOS):
        for rec in analyze_scenario(scenario, tmp_path).records:
            errors = sorted(validator.iter_errors(rec), key=str)
            assert not errors, f"{scenario}: {errors[0].message} at {list(errors[0].path)}"


def test_table_follows_its_schema(tmp_path: Path) -> None:
    table = analyze_scenario("reuse_ok_isn", tmp_path).table
    assert tuple(table.columns) == TCP_FLOW_COLUMNS
    for col in TCP_FLOWS:
        dtype = table[col.name].dtype
        if col.dtype == "category":
            assert isinstance(dtype, pd.CategoricalDtype), col.name
        elif col.dtype == "object":
            assert dtype == np.dtype(object) or pd.api.types.is_string_dtype(dtype), col.name
        else:
            assert dtype == np.dtype(col.dtype), col.name
    assert table["time_wait_reused_by"].tolist() == [1, -1]


def test_table_and_records_agree(tmp_path: Path) -> None:
    flows = analyze_path(build("two_connections", tmp_path))
    for rec, (_, row) in zip(flows.records, flows.table.iterrows(), strict=True):
        assert rec["id"] == row["id"]
        assert rec["teardown"]["kind"] == row["teardown"]
        assert rec["data"]["client_to_server"]["bytes"] == row["c2s_bytes"]
        assert rec["zeek"]["history"] == row["history"]


def test_no_tcp_packets_gives_empty_results(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    cap = Capture()
    cap.add(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2), 10)
    flows = analyze_path(cap.write(tmp_path / "udp.pcap"))
    assert flows.records == []
    assert tuple(flows.table.columns) == TCP_FLOW_COLUMNS
    assert len(flows.table) == 0


_FLAGS = ["S", "SA", "A", "PA", "FA", "R", "RA", "F", "SF", "FR", ""]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(
            st.booleans(),  # from the client?
            st.sampled_from(_FLAGS),
            st.integers(0, 2**32 - 1) | st.sampled_from([1000, 1001, 1005, 5000, 5001]),
            st.integers(0, 2**32 - 1) | st.sampled_from([1001, 5001, 5006]),
            st.binary(max_size=12),
            st.integers(0, 3),  # 4-tuple choice
            st.integers(0, 65535),  # window
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_packet_soup_is_analyzed_without_exceptions(
    tmp_path_factory: pytest.TempPathFactory, pkts: list[tuple[bool, str, int, int, bytes, int, int]]
) -> None:
    # Arbitrary flags, sequence numbers, payloads and windows on a few 4-tuples: the analysis
    # must never raise, and its output must stay self-consistent and JSON-ready.
    cap = Capture()
    convs = [Conv(cap, client=("10.0.0.1", 40000 + k), server=("10.0.0.2", 80 + k % 2)) for k in range(4)]
    for from_client, flags, seq, ack, data, k, win in pkts:
        convs[k].pkt("client" if from_client else "server", flags, data, seq=seq, ack=ack, win=win)
    path = cap.write(tmp_path_factory.mktemp("soup") / "soup.pcap")
    flows = analyze_path(path)
    packets = analyzer.read_packets(path)
    assert flows.table["packets"].sum() == int((packets["proto"] == "tcp").sum())
    json.dumps(flows.records, allow_nan=False)
    for rec in flows.records:
        for d in ("client_to_server", "server_to_client"):
            assert rec["data"][d]["bytes"] >= 0
            assert rec["data"][d]["missing_bytes"] <= rec["data"][d]["bytes"]
    # the same packets without payload access give the same verdicts
    bare = analyze_tcp(packets, None)
    assert bare.table["teardown"].tolist() == flows.table["teardown"].tolist()
