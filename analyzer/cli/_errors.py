"""The single error handler of the CLI: AnalyzerError -> one-line message + exit code."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from analyzer.errors import EXIT_INPUT, AnalyzerError

if TYPE_CHECKING:
    from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")


class _StderrConsole:
    """rich's Console on stderr, made on first use: importing rich costs every command ~15 ms,
    and most never print an error."""

    def __init__(self) -> None:
        self._console: Console | None = None

    def print(self, *objects: object, **kwargs: Any) -> None:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        self._console.print(*objects, **kwargs)


stderr = _StderrConsole()
DEBUG = {"on": False}


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn analyzer errors into ``error: ...`` / ``hint: ...`` on stderr and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except AnalyzerError as exc:
            if DEBUG["on"]:
                raise
            stderr.print(f"error: {exc.message}", markup=False)
            if exc.hint:
                stderr.print(f"hint: {exc.hint}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            # The reader went away (``analyzer analyze F | head``): nothing is wrong, and
            # nothing more can be shown. Point stdout at /dev/null so the final flush is quiet.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except (MemoryError, OSError) as exc:
            # Reading a capture can still fail below our checks (a device error, a file
            # vanishing); it is unreadable input, never a traceback.
            if DEBUG["on"]:
                raise
            stderr.print(f"error: {exc}", markup=False)
            raise typer.Exit(EXIT_INPUT) from None

    return wrapper
