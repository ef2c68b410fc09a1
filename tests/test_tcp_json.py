"""The columnar JSON writer of the ``tcp`` records (analyzer.flows.tcp_json) against the records.

``TcpFlows.json_chunks`` writes the records from the per-connection facts without building
them; its text must be exactly orjson's text of ``TcpFlows.records``, for every crafted
scenario, the captures under captures/, and payloads that stress JSON escaping and ``%``.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from tcp_craft import CLIENT, SCENARIOS, SERVER, Conv, analyze_capture, analyze_path, build

import analyzer
from analyzer.analysis import LazyRecords
from analyzer.flows.tcp import TcpFlows, analyze_tcp
from analyzer.flows.tcp_json import RECORD_SEPARATOR
from analyzer.report.json_report import render_json

CAPTURES = sorted((Path(__file__).parent.parent / "captures").glob("*.pcapng"))


def expected_text(flows: TcpFlows) -> bytes:
    return RECORD_SEPARATOR.join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) for r in flows.records)


def columnar_text(flows: TcpFlows, per_chunk: int = 4096) -> bytes:
    return RECORD_SEPARATOR.join(flows.json_chunks(per_chunk))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_matches_the_records(name: str, tmp_path: Path) -> None:
    flows = analyze_path(build(name, tmp_path))
    text = columnar_text(flows)  # before the records exist: written from the facts alone
    assert text == expected_text(flows)


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_real_captures_match_the_records(path: Path) -> None:
    flows = analyze_path(path)
    assert columnar_text(flows) == expected_text(flows)


def test_escaping_and_percent_signs_in_previews(tmp_path: Path) -> None:
    # Quotes, backslashes, commas and the '","' sequence inside a preview; '%' must not be
    # taken for a format directive; non-ASCII and control bytes take the escaped preview path.
    c = Conv()
    c.handshake(options=True)
    c.send(CLIENT, b'say "hi","there" \\ 100%d %s %% %b, \x00\x1b\xff caf\xc3\xa9')
    c.ack(SERVER)
    c.send(SERVER, b'","\\","')
    c.ack(CLIENT)
    c.close_4way(SERVER)
    flows = analyze_capture(c.cap, tmp_path)
    assert columnar_text(flows) == expected_text(flows)
    assert orjson.loads(b"[" + columnar_text(flows) + b"]") == flows.records


def test_chunks_split_anywhere(tmp_path: Path) -> None:
    flows = analyze_path(build("two_connections", tmp_path))
    assert len(flows.records) == 2
    assert columnar_text(flows, per_chunk=1) == expected_text(flows)


def test_without_payload_access(tmp_path: Path) -> None:
    # sha256 and preview are null for every direction: the string columns hold only None.
    flows = analyze_tcp(analyzer.read_packets(build("fin_4way", tmp_path)), None)
    assert columnar_text(flows) == expected_text(flows)


def test_analysis_keeps_records_lazy_and_to_dict_whole(tmp_path: Path) -> None:
    a = analyzer.analyze(build("two_connections", tmp_path))
    records = a.tcp_records
    assert isinstance(records, LazyRecords) and len(records) == 2 and not records.built
    text = render_json(a)
    assert not records.built  # the report was written from the flow tables
    doc = a.to_dict()
    assert records.built and isinstance(doc["tcp"], list)
    assert text == render_json(doc)
    assert records == doc["tcp"] and records[1]["id"] == 1
