"""The expectation files of ``analyzer run``'s scenarios through analyzer.checks: each passes on
a capture of its scenario and fails on the others; on the reference captures; and, end to end,
``analyzer verify`` agrees with ``analyzer run`` on real captures of every scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from check_captures import BUILDERS, write_scenario
from typer.testing import CliRunner

import analyzer
from analyzer.analysis import Analysis
from analyzer.checks import evaluate, failures, load_spec
from analyzer.cli import app
from analyzer.demos.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
EXPECT = ROOT / "analyzer" / "demos" / "expect"
# Reference captures (made by `analyzer run` on the scenario's own ports; captures/README.md says
# how), with the port map their selectors need; tests/test_reference_captures.py checks them all.
REFERENCES: dict[str, tuple[str, dict[int, int]]] = {"daytime.pcapng": ("daytime", {})}


def spec_path(name: str) -> Path:
    return EXPECT / f"{name}.toml"


def test_every_scenario_has_an_expectation_file_and_a_crafted_capture() -> None:
    assert {p.stem for p in EXPECT.glob("*.toml")} == set(SCENARIOS) == set(BUILDERS)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Analysis]:
    d = tmp_path_factory.mktemp("scenarios")
    return {name: analyzer.analyze(write_scenario(name, d)) for name in BUILDERS}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_spec_passes_on_its_capture(name: str, crafted: dict[str, Analysis]) -> None:
    checks = evaluate(load_spec(spec_path(name)), crafted[name])
    assert failures(checks) == [], [c.describe() for c in failures(checks)]
    assert len(checks) >= 2  # the count and at least one assertion


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_spec_fails_on_every_other_scenario(name: str, crafted: dict[str, Analysis]) -> None:
    spec = load_spec(spec_path(name))
    others = [other for other in SCENARIOS if other != name]
    assert [other for other in others if not failures(evaluate(spec, crafted[other]))] == []


@pytest.mark.parametrize("file", sorted(REFERENCES))
def test_reference_captures_meet_their_scenario(file: str) -> None:
    path = ROOT / "captures" / file
    if not path.exists():
        pytest.skip(f"captures/{file} is not in this checkout")
    name, port_map = REFERENCES[file]
    checks = evaluate(load_spec(spec_path(name)), analyzer.analyze(path), port_map=port_map)
    assert failures(checks) == [], [c.describe() for c in failures(checks)]
    assert checks[0].selector == "tcp[0] server_port=13"


@pytest.mark.live
@pytest.mark.slow
def test_verify_agrees_with_run_on_real_captures(tmp_path: Path) -> None:
    """``analyzer run --all`` captures every scenario; ``analyzer verify`` on each capture with
    the scenario's file gives the verdict run gave, check by check."""
    from livehelp import env, need_namespace

    need_namespace()
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "run", "--all", "--format", "json", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(),
        check=False,
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["passed"], proc.stderr
    runner = CliRunner()
    for sc in doc["scenarios"]:
        capture, spec = sc["capture"], spec_path(sc["name"])
        result = runner.invoke(app, ["verify", capture, "--expect", str(spec), "--format", "json"])
        assert result.exit_code == 0, (sc["name"], result.output)
        ours = json.loads(result.stdout)["checks"]
        run_checks = sc["report"]["checks"]
        # run's checks hold its own health and kernel checks too; the spec's must agree
        by_spec = {
            (c["field"], c["passed"]) for c in run_checks if c["selector"].startswith(("tcp[", "udp["))
        }
        assert {(c["field"], c["passed"]) for c in ours} >= by_spec, sc["name"]
        assert all(c["passed"] for c in ours)
