"""The demo programs (Python and their C twins), the C build cache, scenario selection and the
``analyzer demo`` / ``analyzer scenarios`` commands. Traffic stays on 127.0.0.1 / ::1."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer import kernel
from analyzer.cli import app
from analyzer.demos import cbuild
from analyzer.demos.programs import PROGRAMS, command
from analyzer.demos.scenarios import HOST_PORT_OFFSET, SCENARIOS, select
from analyzer.errors import ToolNotFoundError, UsageError

ROOT = Path(__file__).resolve().parent.parent
TIME_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
HAS_CC = cbuild.find_compiler() is not None


@pytest.fixture(scope="module")
def c_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_CC:
        pytest.skip("no C compiler: the C demo programs are skipped")
    return cbuild.build(tmp_path_factory.mktemp("cbuild"))


IMPLS = ["python", pytest.param("c", marks=pytest.mark.skipif(not HAS_CC, reason="no C compiler"))]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def argv(name: str, impl: str, c_dir: Path | None) -> list[str]:
    return command(name, impl, c_dir if impl == "c" else None)


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_bound(port: int, proto: str = "tcp") -> None:
    """Until a socket listens on (TCP) or is bound to (UDP) ``port``, without connecting to it."""
    files = kernel.PROC_FILES if proto == "tcp" else ("/proc/net/udp", "/proc/net/udp6")
    for _ in range(1000):
        if any(
            s.local_port == port for s in kernel.read_sockets(files) if proto == "udp" or s.state == "LISTEN"
        ):
            return
        time.sleep(0.005)
    raise AssertionError(f"nothing is bound to {proto} port {port}")


def start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env(), check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture
def c_dir(request: pytest.FixtureRequest) -> Path | None:
    return request.getfixturevalue("c_bin") if request.node.callspec.params.get("impl") == "c" else None


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_daytime_pair_prints_the_classic_lines(impl: str, host: str, c_dir: Path | None) -> None:
    port = free_port(host=host)
    server = start([*argv("tcp-daytime-server", impl, c_dir), host, str(port), "-n", "1"])
    try:
        wait_bound(port)
        client = run([*argv("tcp-daytime-client", impl, c_dir), host, str(port)])
        assert client.returncode == 0, client.stderr
        assert TIME_LINE.match(client.stdout.rstrip("\n")), client.stdout
        assert client.stdout.endswith("\n") and client.stdout.count("\n") == 1
        out, err = server.communicate(timeout=10)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert re.fullmatch(rf"client {re.escape(host)}\(\d+\) connected\n", out), out


@pytest.mark.parametrize("impl", IMPLS)
def test_half_close_chunks_follow_the_request(impl: str, c_dir: Path | None) -> None:
    port = free_port()
    server = start(
        [*argv("tcp-daytime-server", impl, c_dir), "127.0.0.1", str(port), "-n", "1", "--mode", "half-close"]
    )
    try:
        wait_bound(port)
        client = run(
            [*argv("tcp-daytime-client", impl, c_dir), "127.0.0.1", str(port), "--mode", "half-close"]
        )
    finally:
        server.wait(timeout=10)
    assert client.returncode == 0, client.stderr
    lines = client.stdout.splitlines()
    assert [line[:14] for line in lines] == [f"chunk {i} of 3: " for i in range(1, 4)]
    assert all(TIME_LINE.match(line[14:]) for line in lines)


@pytest.mark.parametrize("impl", IMPLS)
def test_port_in_use_and_refused_have_clear_messages_and_exit_codes(impl: str, c_dir: Path | None) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = run([*argv("tcp-daytime-server", impl, c_dir), "127.0.0.1", str(port), "-n", "1"])
    assert server.returncode == 3
    assert server.stderr.strip() == f"error: cannot listen on 127.0.0.1 port {port}: Address already in use"
    closed = free_port()
    client = run([*argv("tcp-daytime-client", impl, c_dir), "127.0.0.1", str(closed)])
    assert client.returncode == 1
    assert client.stderr.strip() == f"error: connection refused by 127.0.0.1 port {closed}"


@pytest.mark.parametrize("impl", IMPLS)
def test_udp_echo_replies_and_unreachable(impl: str, c_dir: Path | None) -> None:
    port = free_port(socket.SOCK_DGRAM)
    server = start([*argv("udp-echo-server", impl, c_dir), "127.0.0.1", str(port), "-n", "2"])
    try:
        wait_bound(port, "udp")
        client = run(
            [*argv("udp-echo-client", impl, c_dir), "127.0.0.1", str(port)], input="hello\nsecond line\n"
        )
        out, _ = server.communicate(timeout=10)
    finally:
        server.kill()
    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines() == ["reply: hello", "reply: second line"]
    assert [re.sub(r"\(\d+\)", "(P)", line) for line in out.splitlines()] == [
        "127.0.0.1(P): 5 bytes",
        "127.0.0.1(P): 11 bytes",
    ]
    closed = free_port(socket.SOCK_DGRAM)
    lost = run([*argv("udp-echo-client", impl, c_dir), "127.0.0.1", str(closed), "--message", "x"])
    assert lost.returncode == 1
    assert lost.stderr.strip() == f"error: 127.0.0.1 port {closed} is unreachable (ICMP port unreachable)"


def test_c_sources_compile_without_warnings(tmp_path: Path) -> None:
    compiler = cbuild.find_compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    src = Path(cbuild.__file__).with_name("c")
    for program in PROGRAMS.values():
        proc = run(
            [
                compiler,
                *cbuild.CFLAGS,
                "-Werror",
                "-o",
                str(tmp_path / program.module),
                str(src / f"{program.module}.c"),
            ]
        )
        assert proc.returncode == 0, proc.stderr


def test_c_build_is_cached_and_missing_compiler_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not HAS_CC:
        pytest.skip("no C compiler")
    out = cbuild.build(tmp_path)
    binary = out / "tcp_daytime_server"
    stamp = binary.stat().st_mtime_ns
    assert cbuild.build(tmp_path) == out
    assert binary.stat().st_mtime_ns == stamp  # not rebuilt
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolNotFoundError) as info:
        cbuild.build(tmp_path / "other")
    assert "no C compiler found" in info.value.message
    assert "--impl python" in (info.value.hint or "")


def test_scenario_selection() -> None:
    assert [s.name for s in select([], False)] == ["daytime", "half-close", "udp-echo"]
    assert [s.name for s in select([], True)] == list(SCENARIOS)
    assert [s.name for s in select(["refused", "daytime", "refused"], False)] == ["refused", "daytime"]
    with pytest.raises(UsageError) as info:
        select(["nope"], False)
    assert "simultaneous-close" in (info.value.hint or "")
    assert SCENARIOS["daytime"].server_port(True) == 13 + HOST_PORT_OFFSET
    for sc in SCENARIOS.values():
        assert sc.client[0] in PROGRAMS
        assert sc.server is None or sc.server[0] in PROGRAMS


def test_scenarios_command_lists_every_scenario() -> None:
    result = CliRunner().invoke(app, ["scenarios"])
    assert result.exit_code == 0
    for name, sc in SCENARIOS.items():
        line = next(line for line in result.output.splitlines() if f" {name} " in line)
        assert line.startswith("*" if sc.default else " ")
        assert sc.summary in line


def test_demo_command_runs_a_program_and_rejects_unknown_names() -> None:
    port = free_port(socket.SOCK_DGRAM)
    server = start(
        [sys.executable, "-m", "analyzer", "demo", "udp-echo-server", "127.0.0.1", str(port), "-n", "1"]
    )
    try:
        wait_bound(port, "udp")
        client = run(
            [sys.executable, "-m", "analyzer", "demo", "udp-echo-client", "127.0.0.1", str(port), "-m", "hi"]
        )
        server.communicate(timeout=10)
    finally:
        server.kill()
    assert client.returncode == 0, client.stderr
    assert client.stdout == "reply: hi\n"
    bad = CliRunner().invoke(app, ["demo", "tcp-chargen", "127.0.0.1", "19"])
    assert bad.exit_code == 2
    assert "unknown demo program 'tcp-chargen'" in bad.output
