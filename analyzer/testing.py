"""pytest plugin (entry point ``pytest11``): capture loopback traffic in a test, then check it.

::

    def test_my_server(loopback_capture):
        server = start_my_server(port=0)                      # bind first: the port must be known
        with loopback_capture(ports=[server.port]) as cap:
            talk_to(server)                                   # runs while the capture is on
        cap.expect(tcp=[{"server_port": server.port, "handshake": "complete", "time_wait": "client"}])
        assert cap.analysis.tcp_records[0]["data"]["client_to_server"]["bytes"] == 5

``cap.expect`` takes the same tables as an ``analyzer verify`` file (as dicts, as TOML text or
as the path of a ``.toml`` file) and runs the same engine (``analyzer.checks``); a failed check
raises ``AssertionError`` listing each failure, expected against observed. ``cap.analysis`` is
the ``Analysis`` of the capture file ``cap.path``.

Capturing uses the backends of ``analyzer run`` (dumpcap, tcpdump, scapy; the first usable) on
``lo`` of the network namespace the test runs in: the host's ``lo`` needs root or CAP_NET_RAW
(run the suite under ``unshare -rn`` to get a private, capturable ``lo`` without root). When no
backend can capture there, the test is skipped with the reason; set
``ANALYZER_REQUIRE_CAPTURE=1`` to make that a failure instead (CI machines that must capture).
After the block, the capture waits until the backend has written every frame an independent
packet socket counted (or, without CAP_NET_RAW for that socket, for the backend's settle time),
then stops; a frame dropped by the kernel fails the test.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from analyzer.analysis import Analysis
    from analyzer.capture.base import Backend, CaptureStats
    from analyzer.capture.witness import Witness
    from analyzer.checks import Check, Spec

Proto = Literal["tcp", "udp", "any"]
REQUIRE_ENV = "ANALYZER_REQUIRE_CAPTURE"
QUIET_S = 0.1  # the capture stops once no matching frame arrived for this long
QUIET_LIMIT_S = 2.0
START_TIMEOUT_S = 10.0

__all__ = ["LoopbackCapture", "loopback_capture"]


def _isolation() -> str:
    """``host``, or ``userns`` inside a user namespace (where tcpdump cannot drop privileges)."""
    try:
        first = Path("/proc/self/uid_map").read_text().split("\n", 1)[0].split()
    except OSError:
        return "host"
    return "host" if first[:3] == ["0", "0", "4294967295"] else "userns"


def _bpf(proto: Proto, ports: Sequence[int]) -> str:
    from analyzer.capture import filters

    if proto != "any":
        return filters.bpf(proto, list(ports))
    return f"({filters.bpf('tcp', list(ports))}) or {filters.bpf('udp', list(ports))}"


class LoopbackCapture:
    """A capture of ``lo`` filtered to ``ports``, on while its ``with`` block runs."""

    def __init__(
        self,
        ports: Sequence[int],
        path: Path,
        *,
        proto: Proto = "any",
        backend: str | None = None,
        msl: float = 30.0,
        iface: str = "lo",
    ) -> None:
        if not ports or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
            raise ValueError(f"ports must be a non-empty list of port numbers, not {ports!r}")
        if proto not in ("tcp", "udp", "any"):
            raise ValueError(f"proto must be 'tcp', 'udp' or 'any', not {proto!r}")
        self.ports = list(ports)
        self.path = path
        self.proto: Proto = proto
        self.requested = backend
        self.msl = msl
        self.iface = iface
        self.stats: CaptureStats | None = None
        self.witnessed: int | None = None
        self._backend: Backend | None = None
        self._witnesses: list[Witness] = []
        self._analysis: Analysis | None = None

    # -- the with block ---------------------------------------------------------------------

    def __enter__(self) -> LoopbackCapture:
        from analyzer import capture
        from analyzer.capture.witness import Witness
        from analyzer.errors import EnvironmentProblem

        try:
            name = capture.choose(self.requested, _isolation())
            protos = ["tcp", "udp"] if self.proto == "any" else [self.proto]
            for proto in protos:
                witness = Witness(self.iface, proto, self.ports)
                if witness.open():
                    self._witnesses.append(witness)
            backend = capture.create(
                name,
                iface=self.iface,
                bpf=_bpf(self.proto, self.ports),
                path=self.path,
                proto="udp" if self.proto == "udp" else "tcp",
                ports=self.ports,
            )
            # tcpdump writes pcap, the others pcapng: name the file after what it holds.
            self.path = backend.path = self.path.with_suffix("." + backend.file_format)
            try:
                backend.start(timeout=START_TIMEOUT_S)
            except BaseException:
                backend.abort()
                raise
            self._backend = backend
        except EnvironmentProblem as exc:
            self._close_witnesses()
            reason = f"cannot capture on {self.iface}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
            if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
                pytest.fail(f"{reason}; {REQUIRE_ENV} is set, so this is a failure", pytrace=False)
            pytest.skip(reason)
        except BaseException:
            self._close_witnesses()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        backend = self._backend
        if backend is None:
            return
        self._backend = None
        if exc_type is not None:
            # The test body failed: stop quietly, its exception is the one to see.
            backend.abort()
            self._close_witnesses()
            return
        try:
            self._flush(backend)
            self.stats = backend.stop(timeout=5.0)
        except BaseException:
            backend.abort()
            raise
        finally:
            self._close_witnesses()
        self._check_complete()

    def _flush(self, backend: Backend) -> None:
        """Wait for the last frames (a final ACK follows close()) and for the backend to write them."""
        if not self._witnesses:
            time.sleep(backend.settle_s + QUIET_S)
            return
        # Quiet since the block ended *and* since the last frame: the witness thread may not
        # have read the last frames yet when the block ends.
        body_end = time.monotonic()
        deadline = body_end + QUIET_LIMIT_S
        while time.monotonic() < deadline:
            last = max(body_end, *(w.snapshot()[1] for w in self._witnesses))
            if time.monotonic() - last >= QUIET_S:
                break
            time.sleep(0.02)
        frames = sum(w.snapshot()[0] for w in self._witnesses)
        backend.wait_captured(frames, timeout=5.0)

    def _close_witnesses(self) -> None:
        if self._witnesses:
            self.witnessed = sum(w.close() for w in self._witnesses)
        self._witnesses = []

    def _check_complete(self) -> None:
        from analyzer.capture.pcapfile import count_frames
        from analyzer.errors import CaptureError

        stats = self.stats
        if stats is not None and stats.dropped:
            raise CaptureError(
                f"the capture of {self.iface} dropped {stats.dropped} frames: the analysis would be wrong",
                hint="run the test again on a less loaded machine",
            )
        if self.witnessed is not None and self.path.exists():
            written = count_frames(self.path).frames
            if written < self.witnessed:
                raise CaptureError(
                    f"{self.path} holds {written} frames but {self.witnessed} passed the filter",
                    hint="the capture backend lost the tail; choose another with backend=...",
                )

    # -- afterwards -------------------------------------------------------------------------

    @property
    def analysis(self) -> Analysis:
        """The ``Analysis`` of the capture (made once, after the ``with`` block)."""
        if self._backend is not None:
            raise RuntimeError("the capture is still running: use cap.analysis after the with block")
        if self._analysis is None:
            from analyzer.analysis import analyze

            self._analysis = analyze(self.path, msl=self.msl)
        return self._analysis

    def checks(
        self,
        spec: Spec | str | os.PathLike[str] | None = None,
        *,
        tcp: Sequence[Mapping[str, Any]] | Mapping[str, Any] = (),
        udp: Sequence[Mapping[str, Any]] | Mapping[str, Any] = (),
        port_map: Mapping[int, int] | None = None,
    ) -> list[Check]:
        """Evaluate a spec (tables, TOML text, a .toml path or a ``Spec``); never raises on failure.

        ``port_map`` rewrites the ports the spec's selectors name, so a file written for fixed
        ports (``server_port = 13``) checks a run on the port the test got (``{13: port}``).
        """
        from analyzer.checks import evaluate

        return evaluate(_spec(spec, tcp, udp), self.analysis, port_map=port_map)

    def expect(
        self,
        spec: Spec | str | os.PathLike[str] | None = None,
        *,
        tcp: Sequence[Mapping[str, Any]] | Mapping[str, Any] = (),
        udp: Sequence[Mapping[str, Any]] | Mapping[str, Any] = (),
        port_map: Mapping[int, int] | None = None,
    ) -> list[Check]:
        """Like ``checks``, but raise ``AssertionError`` listing every failed check."""
        __tracebackhide__ = True
        from analyzer.checks import assertion_message, failures

        checks = self.checks(spec, tcp=tcp, udp=udp, port_map=port_map)
        if failures(checks):
            raise AssertionError(assertion_message(checks, str(self.path)))
        return checks


def _spec(
    spec: Spec | str | os.PathLike[str] | None,
    tcp: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    udp: Sequence[Mapping[str, Any]] | Mapping[str, Any],
) -> Spec:
    from analyzer.checks import Spec, load_spec, parse_spec, spec_from_tables

    if spec is not None and (tcp or udp):
        raise TypeError("pass either a spec or tcp=/udp= tables, not both")
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, str) and ("\n" in spec or "[[" in spec):
        return parse_spec(spec, "<expect>")
    if spec is not None:
        return load_spec(spec)
    tcp_tables = [tcp] if isinstance(tcp, Mapping) else list(tcp)
    udp_tables = [udp] if isinstance(udp, Mapping) else list(udp)
    return spec_from_tables(tcp=tcp_tables, udp=udp_tables, source="expect")


@pytest.fixture
def loopback_capture(tmp_path: Path) -> Iterator[Callable[..., LoopbackCapture]]:
    """A factory: ``with loopback_capture(ports=[8080]) as cap:`` captures ``lo`` meanwhile.

    Options: ``proto`` (``"tcp"``, ``"udp"`` or ``"any"``, the default), ``backend``
    (``"dumpcap"``, ``"tcpdump"`` or ``"scapy"``; default the first usable), ``msl`` (seconds).
    The capture file is ``cap.path`` in the test's ``tmp_path``.
    """
    made: list[LoopbackCapture] = []

    def factory(
        ports: Sequence[int], *, proto: Proto = "any", backend: str | None = None, msl: float = 30.0
    ) -> LoopbackCapture:
        cap = LoopbackCapture(
            ports, tmp_path / f"loopback-{len(made) + 1}.pcapng", proto=proto, backend=backend, msl=msl
        )
        made.append(cap)
        return cap

    yield factory
    for cap in made:
        if cap._backend is not None:  # a with block left by os._exit or a generator never closed
            with contextlib.suppress(Exception):
                cap._backend.abort()
        cap._close_witnesses()
