"""Training progress: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

logger = logging.getLogger(__name__)


class Progress:
    def __init__(self, *, total: int, start: int = 0) -> None:
        self.total, self.start = total, start
        self._t0 = time.perf_counter()
        self._bar = None
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} it/s"),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(
                "train", total=total, completed=start, loss="-", rate="-"
            )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, traceback)

    def advance(self, itr: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=itr)

    def show(self, itr: int, loss: float) -> None:
        elapsed = time.perf_counter() - self._t0
        rate = (itr - self.start) / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, loss=f"{loss:.5f}", rate=f"{rate:.2f}")
            return
        eta = (self.total - itr) / rate if rate > 0 else float("nan")
        logger.info(
            "iteration %d/%d loss %.6f %.2f it/s eta %.0fs", itr, self.total, loss, rate, eta
        )
