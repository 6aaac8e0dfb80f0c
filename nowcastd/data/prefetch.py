"""Batches made ahead on a background thread, each with the state to resume after it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B")
S = TypeVar("S")

_POLL_SECONDS = 0.1


class Prefetch(Generic[B, S]):
    """`depth` results of `make()` ready ahead, each paired with `snapshot()` taken right after
    it was made (the state from which the next one follows).

    Only the background thread calls `make` and `snapshot` while it runs; `stop` ends it (and
    drops what it made ahead). An exception in `make` is raised by the `next` that reaches it.
    """

    def __init__(self, make: Callable[[], B], snapshot: Callable[[], S], *, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth: expected an int >= 1, got {depth}")
        self._make, self._snapshot = make, snapshot
        self._queue: queue.Queue[tuple[B, S] | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: tuple[B, S] | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: tuple[B, S] | BaseException = (self._make(), self._snapshot())
            except BaseException as e:  # handed to the consumer, raised there
                self._put(e)
                return
            if not self._put(item):
                return

    def next(self) -> tuple[B, S]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.stop()
            raise item
        return item

    def stop(self) -> None:
        """End the thread and drop the batches made ahead."""
        self._stop.set()
        self._thread.join()
