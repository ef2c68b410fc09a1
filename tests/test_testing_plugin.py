"""analyzer.testing, the pytest plugin: ``loopback_capture`` around real Python socket pairs,
``cap.expect`` with the same checks as a spec file, and (through ``pytester``) what a user's
test run shows: passes, readable failures, a skip when capturing is impossible."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import analyzer
from analyzer.demos.programs import command
from analyzer.demos.scenarios import SCENARIOS
from analyzer.errors import UsageError
from analyzer.kernel import read_sockets
from analyzer.testing import LoopbackCapture

pytest_plugins = ["pytester"]

Factory = Callable[..., LoopbackCapture]
EXPECT = Path(analyzer.__file__).parent / "demos" / "expect"
# Inner runs without the cache and hypothesis' plugin (it alone takes over a second to set up).
QUIET_RUN = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


@contextmanager
def greeter(greeting: bytes) -> Iterator[int]:
    """A TCP server on 127.0.0.1 (port chosen by the kernel) that sends ``greeting`` and closes."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        thread.join(timeout=10)
        srv.close()


def read_all(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        data = b""
        while chunk := client.recv(4096):
            data += chunk
        return data


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("analyzer") == "analyzer.testing"


def test_tcp_socket_pair_is_captured_and_checked(loopback_capture: Factory) -> None:
    with greeter(b"hello, tester\n") as port, loopback_capture(ports=[port], proto="tcp") as cap:
        assert read_all(port) == b"hello, tester\n"
    assert cap.path.exists() and cap.stats is not None and not cap.stats.dropped
    (flow,) = cap.analysis.tcp_records
    assert flow["server"] == {"ip": "127.0.0.1", "port": port}
    checks = cap.expect(
        tcp=[
            {
                "server_port": port,
                "count": 1,
                "handshake": "complete",
                "teardown": ["fin-4way", "fin-3way"],
                "first_fin": "server",
                "time_wait": "server",
                "client_to_server_bytes": 0,
                "server_to_client": {"bytes": 14, "regex": r"^hello, tester\n\Z"},
                "max_retransmissions": 0,
            }
        ]
    )
    assert all(c.passed for c in checks) and len(checks) == 9
    # The same as TOML text and as a file.
    toml = f"[[tcp]]\nserver_port = {port}\ntime_wait = 'server'\n"
    assert len(cap.expect(toml)) == 2
    spec = cap.path.with_name("spec.toml")
    spec.write_text(toml)
    assert len(cap.expect(spec)) == 2
    assert len(cap.expect(str(spec))) == 2


def test_failed_expectations_raise_a_readable_diff(loopback_capture: Factory) -> None:
    with greeter(b"bye\n") as port, loopback_capture(ports=[port]) as cap:
        read_all(port)
    with pytest.raises(AssertionError) as info:
        cap.expect(tcp={"server_port": port, "teardown": "rst", "time_wait": "server"})
    lines = str(info.value).splitlines()
    assert lines[0] == f"1 of 3 checks failed on {cap.path}:"
    assert lines[1] == f"  tcp[0] server_port={port} teardown  [expect: tcp[0].teardown]"
    assert lines[2] == "    - expected: 'rst'"
    assert lines[3] in ("    + observed: 'fin-4way'", "    + observed: 'fin-3way'")
    checks = cap.checks(tcp={"server_port": port, "teardown": "rst"})  # the same, without raising
    assert [c.passed for c in checks] == [True, False]
    with pytest.raises(UsageError, match=r"expect: tcp\[0\]\.tear_down: unknown key"):
        cap.expect(tcp={"tear_down": "rst"})
    with pytest.raises(TypeError):
        cap.expect("[[tcp]]\n", tcp={"server_port": port})


def test_udp_echo_pair(loopback_capture: Factory) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    with server, client, loopback_capture(ports=[port]) as cap:
        for i in range(3):
            client.sendto(f"ping {i}".encode(), ("127.0.0.1", port))
            data, peer = server.recvfrom(100)
            server.sendto(data, peer)
            assert client.recvfrom(100)[0] == data
    cap.expect(
        udp=[{"server_port": port, "count": 1, "exchanges": 3, "echo": True, "icmp_unreachable": False}],
    )
    cap.expect(udp={"server_port": port, "client_to_server": {"datagrams": 3, "regex": "^ping [0-2]$"}})


def test_analysis_is_refused_while_capturing(loopback_capture: Factory) -> None:
    with loopback_capture(ports=[9]) as cap, pytest.raises(RuntimeError, match="still running"):
        cap.analysis  # noqa: B018


def test_bad_arguments_are_refused(loopback_capture: Factory) -> None:
    with pytest.raises(ValueError, match="ports"):
        loopback_capture(ports=[])
    with pytest.raises(ValueError, match="proto"):
        loopback_capture(ports=[80], proto="sctp")


# -- a user's test run, through pytester --------------------------------------------------------

USER_TESTS = """
import socket, threading

def serve_once(greeting):
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    def run():
        conn, _ = srv.accept(); conn.sendall(greeting); conn.close()
    t = threading.Thread(target=run); t.start()
    return srv, t

def exchange(loopback_capture):
    srv, t = serve_once(b"time is now\\n")
    port = srv.getsockname()[1]
    with loopback_capture(ports=[port]) as cap:
        with socket.create_connection(("127.0.0.1", port)) as c:
            while c.recv(100):
                pass
    t.join(); srv.close()
    return cap, port

def test_server_closes_first(loopback_capture):
    cap, port = exchange(loopback_capture)
    cap.expect(tcp=[{"server_port": port, "handshake": "complete", "first_fin": "server",
                     "server_to_client": {"regex": "^time is now$"}}])

def test_expects_an_abort(loopback_capture):
    cap, port = exchange(loopback_capture)
    cap.expect(tcp=[{"server_port": port, "teardown": "rst", "time_wait": "none"}])
"""


@pytest.fixture
def can_capture(loopback_capture: Factory) -> None:
    """Skip (the reason says why) where this machine cannot capture lo at all."""
    with loopback_capture(ports=[9]):
        pass


@pytest.mark.usefixtures("can_capture")
def test_user_run_shows_passes_and_readable_failures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest(*QUIET_RUN)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: 2 of 3 checks failed on *loopback-1.pcap*:",
            "*tcp[[]0[]] server_port=* teardown  [[]expect: tcp[[]0[]].teardown[]]",
            "*- expected: 'rst'",
            "*+ observed: 'fin-*way'",
            "*tcp[[]0[]] server_port=* time_wait  [[]expect: tcp[[]0[]].time_wait[]]",
            "*- expected: 'none'",
            "*+ observed: 'server'",
        ]
    )


NO_BACKEND = """
import pytest
from analyzer import capture
from analyzer.errors import ToolNotFoundError

@pytest.fixture(autouse=True)
def no_backend(monkeypatch):
    def refuse(requested, isolation):
        raise ToolNotFoundError("no capture backend is usable: dumpcap is not installed",
                                hint="apt install tshark")
    monkeypatch.setattr(capture, "choose", refuse)

def test_needs_a_capture(loopback_capture):
    with loopback_capture(ports=[8080]) as cap:
        raise AssertionError("the body must not run")
"""


def test_no_capture_means_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nobackend=NO_BACKEND)
    result = pytester.runpytest("-rs", *QUIET_RUN)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*SKIPPED*cannot capture on lo: no capture backend is usable*apt install tshark*"]
    )


def test_required_capture_fails_instead_of_skipping(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANALYZER_REQUIRE_CAPTURE", "1")
    pytester.makepyfile(test_nobackend=NO_BACKEND)
    result = pytester.runpytest(*QUIET_RUN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot capture on lo*ANALYZER_REQUIRE_CAPTURE is set*"])


def test_capture_files_live_in_the_test_tmp_path(loopback_capture: Factory, tmp_path: Path) -> None:
    with loopback_capture(ports=[9]) as first:
        pass
    with loopback_capture(ports=[9], proto="udp") as second:
        pass
    assert first.path.parent == tmp_path == second.path.parent
    assert first.path != second.path
    assert first.path.suffix in (".pcap", ".pcapng") and first.path.exists()


# -- the demo scenarios of `analyzer run`, checked through the plugin -------------------------


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_bound(proto: str, port: int, server: subprocess.Popen[bytes]) -> None:
    files = ("/proc/net/tcp",) if proto == "tcp" else ("/proc/net/udp",)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}")
        if any(s.local_port == port and (proto == "udp" or s.state == "LISTEN") for s in read_sockets(files)):
            return
        time.sleep(0.01)
    raise AssertionError(f"nothing bound {proto} port {port} within 10 s")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, sc in SCENARIOS.items() if not sc.barrier])
def test_demo_scenarios_meet_their_expectation_files(name: str, loopback_capture: Factory) -> None:
    """Each scenario's demo pair (the Python programs), on the host's lo under the plugin's
    capture, meets the scenario's own expectation file with its port mapped to ours."""
    sc = SCENARIOS[name]
    port = free_port(socket.SOCK_STREAM if sc.proto == "tcp" else socket.SOCK_DGRAM)
    server = None
    if sc.server is not None:
        argv = [*command(sc.server[0], "python"), "127.0.0.1", str(port), *sc.server[1:]]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if server is not None:
            wait_bound(sc.proto, port, server)
        with loopback_capture(ports=[port], proto=sc.proto) as cap:
            argv = [*command(sc.client[0], "python"), "127.0.0.1", str(port), *sc.client[1:]]
            client = subprocess.run(argv, capture_output=True, timeout=30, check=False)
            assert client.returncode in sc.client_exits, client.stderr
            if server is not None:
                server.wait(timeout=10)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
    cap.expect(EXPECT / sc.expect_file, port_map={sc.port: port})
