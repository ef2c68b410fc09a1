"""The failure classes of analyzer; the only place where exit codes are defined.

Every error a user can cause (a bad file, a missing tool, an invalid spec) is an
``AnalyzerError`` subclass carrying its exit code and a hint. The CLI catches them in
one handler (``analyzer.cli._errors``) and prints ``error: <message>`` + ``hint: <fix>``.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0  # everything analyzed / every check passed
EXIT_VERIFY_FAILED = 1  # a verification check failed
EXIT_USAGE = 2  # bad command line or invalid expectation spec
EXIT_ENVIRONMENT = 3  # missing tool or permission
EXIT_INPUT = 4  # the capture cannot be read


class AnalyzerError(Exception):
    """Base of every error analyzer reports to users."""

    exit_code: ClassVar[int] = EXIT_VERIFY_FAILED
    default_hint: ClassVar[str | None] = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint


class VerificationFailed(AnalyzerError):
    """One or more expectations did not hold."""

    exit_code = EXIT_VERIFY_FAILED


class UsageError(AnalyzerError):
    """A command-line value or an expectation file is invalid."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(AnalyzerError):
    """The machine lacks a tool or a permission we need."""

    exit_code = EXIT_ENVIRONMENT


class ToolNotFoundError(EnvironmentProblem):
    """An external program (tshark, dumpcap, a C compiler) is not installed."""


class CapturePermissionError(EnvironmentProblem):
    """Capturing on the interface is not permitted."""

    default_hint = "run as root, or give dumpcap CAP_NET_RAW, or allow unprivileged user namespaces"


class InputError(AnalyzerError):
    """The input capture cannot be read."""

    exit_code = EXIT_INPUT


class CaptureFormatError(InputError):
    """Not a pcap/pcapng file, or its file header/blocks are broken."""

    default_hint = "pass a pcap or pcapng file (optionally gzip-compressed)"


class SchemaError(Exception):
    """A stage produced a frame that does not follow its documented schema (a bug, not bad input)."""


class CaptureError(EnvironmentProblem):
    """The capture tool could not start, died during a run, or lost frames."""


class DemoError(EnvironmentProblem):
    """A demo program failed while running a scenario (port in use, no start, timeout)."""
