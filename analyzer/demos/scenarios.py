"""The scenarios of ``analyzer run``: which demo pair to start, how, and what must come out.

Each scenario names its server and client invocations (the same options for the Python and C
programs), the server port it uses inside the private namespace, and its expectation file in
``analyzer/demos/expect/`` (the TOML format of ``analyzer verify``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

from analyzer.errors import UsageError

HOST_PORT_OFFSET = 10000  # --host-loopback: 13 -> 10013, so no root is needed to bind
UDP_MESSAGES = tuple(f"message {i} of 5" for i in range(1, 6))


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    proto: str  # tcp or udp
    port: int  # server port inside the private namespace
    client: tuple[str, ...]  # program name, then options (HOST PORT are inserted after the name)
    server: tuple[str, ...] | None = None  # None: nothing listens (refused, unreachable)
    client_exits: frozenset[int] = field(default_factory=lambda: frozenset({0}))
    barrier: bool = False  # both peers wait for "go DEADLINE" on stdin (simultaneous close)
    kernel_holder: str | None = None  # retry until the kernel shows this TIME_WAIT holder
    attempts: int = 1  # bounded number of tries for kernel_holder
    default: bool = False  # part of a plain `analyzer run`

    @property
    def expect_file(self) -> str:
        return f"{self.name}.toml"

    def expect_text(self) -> str:
        return (resources.files("analyzer.demos") / "expect" / self.expect_file).read_text()

    def server_port(self, host_loopback: bool) -> int:
        return self.port + HOST_PORT_OFFSET if host_loopback else self.port


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "daytime",
            "the server sends the time and closes first: the server holds TIME_WAIT",
            "tcp",
            13,
            client=("tcp-daytime-client",),
            server=("tcp-daytime-server", "-n", "1", "--mode", "close"),
            default=True,
        ),
        Scenario(
            "client-closes-first",
            "the client reads the time and closes first: the client holds TIME_WAIT",
            "tcp",
            13,
            client=("tcp-daytime-client", "--mode", "close-first"),
            server=("tcp-daytime-server", "-n", "1", "--mode", "wait-eof"),
        ),
        Scenario(
            "half-close",
            "the client shuts down its side; the server keeps sending, then closes",
            "tcp",
            13,
            client=("tcp-daytime-client", "--mode", "half-close", "--request", "time, please"),
            server=("tcp-daytime-server", "-n", "1", "--mode", "half-close", "--chunks", "4"),
            default=True,
        ),
        Scenario(
            "simultaneous-close",
            "both sides send FIN at the same instant (two processes): both hold TIME_WAIT",
            "tcp",
            13,
            client=("tcp-daytime-client", "--mode", "simultaneous"),
            server=("tcp-daytime-server", "-n", "1", "--mode", "simultaneous"),
            barrier=True,
            kernel_holder="both",
            attempts=10,
        ),
        Scenario(
            "rst-abort",
            "the server closes with SO_LINGER 0: a RST, no TIME_WAIT on either side",
            "tcp",
            13,
            client=("tcp-daytime-client",),
            server=("tcp-daytime-server", "-n", "1", "--mode", "abort"),
            client_exits=frozenset({0, 1}),  # the client may read the time before the RST, or not
        ),
        Scenario(
            "refused",
            "nothing listens: the SYN is answered by a RST",
            "tcp",
            13,
            client=("tcp-daytime-client",),
            client_exits=frozenset({1}),
        ),
        Scenario(
            "udp-echo",
            "five datagrams, each echoed",
            "udp",
            7,
            client=("udp-echo-client", *[arg for m in UDP_MESSAGES for arg in ("--message", m)]),
            server=("udp-echo-server", "-n", str(len(UDP_MESSAGES))),
            default=True,
        ),
        Scenario(
            "udp-unreachable",
            "a datagram to a closed port draws an ICMP port unreachable",
            "udp",
            9,
            client=("udp-echo-client", "--message", "anyone there?"),
            client_exits=frozenset({1}),
        ),
    )
}


def select(names: list[str], all_: bool) -> list[Scenario]:
    """The scenarios to run: ``--all``, the named ones (in the given order), or the defaults."""
    if all_:
        return list(SCENARIOS.values())
    if not names:
        return [s for s in SCENARIOS.values() if s.default]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise UsageError(
            f"unknown scenario {', '.join(map(repr, unknown))}",
            hint=f"choose from: {', '.join(SCENARIOS)} (see analyzer scenarios)",
        )
    return [SCENARIOS[n] for n in dict.fromkeys(names)]
