"""The CPUs the decoder's threads and the TCP workers run on: how many, and work on a thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class OnThread(Generic[T]):
    """``fn()`` started on a thread of its own; ``result()`` waits for it and returns its value,
    or raises its exception in the caller's thread. For work that releases the GIL (C, numpy)."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._outcome: list[T | BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._outcome.append(fn())
        except BaseException as exc:  # handed to the caller by result()
            self._outcome.append(exc)

    def result(self) -> T:
        self._thread.join()
        outcome = self._outcome[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
