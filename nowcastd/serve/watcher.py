"""Watching the scan directory: complete files in, one queue out.

A file is handed on once it is complete:

- inotify (default): renamed within the directory (`IN_MOVED_TO` with its source) at once: a
  file renamed into place is complete the moment it appears; closed after writing in place
  (`IN_CLOSE_WRITE`) after `debounce_seconds` of quiet, since a writer may reopen it; or moved
  in from elsewhere, which inotify reports as a creation that is never closed: such a file is
  handed on once `settle_seconds` have passed without another event for it.
- polling (`poll=True`, for network file systems): every `poll_interval_seconds`; a file is
  handed on once its size and mtime have not changed for `settle_seconds`.

Hidden and temporary names (`.*`, `*.tmp`, `*.part`, `*~`) are ignored, so a writer that
writes `.scan.tmp` and renames it yields one event for the final name. A file that vanished
before its quiet time ended is forgotten. The observer threads only queue `ScanEvent`s; one
worker takes them from `ScanWatcher.queue`.

The flusher thread sleeps until the earliest pending deadline (woken by every new event), not
on a fixed tick, so a file is handed on within a millisecond or so of its quiet time ending.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from nowcastd.errors import ConfigError
from nowcastd.io.atomic import IGNORED_PATTERNS, is_ignored_name
from nowcastd.io.readers import printable

__all__ = ["IGNORED_PATTERNS", "ScanEvent", "ScanWatcher"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanEvent:
    """A complete file, and when it was last seen changing (`time.monotonic()`)."""

    path: Path
    event_time: float


@dataclass
class _Pending:
    deadline: float
    last_event: float
    closed: bool
    stat: tuple[int, int] | None


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


class ScanWatcher(FileSystemEventHandler):
    """A watchdog observer on one directory feeding a `queue.Queue` of `ScanEvent`s."""

    def __init__(
        self,
        directory: Path,
        *,
        poll: bool = False,
        poll_interval_seconds: float = 5.0,
        settle_seconds: float = 2.0,
        debounce_seconds: float = 0.5,
        events: queue.Queue[ScanEvent] | None = None,
    ) -> None:
        super().__init__()
        self.directory = Path(directory).resolve()
        self.poll = poll
        self.poll_interval_seconds = poll_interval_seconds
        self.settle_seconds = settle_seconds
        self.debounce_seconds = debounce_seconds
        self.queue: queue.Queue[ScanEvent] = events if events is not None else queue.Queue()
        self._pending: dict[Path, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Condition(self._lock)
        self._observer = (
            PollingObserver(timeout=poll_interval_seconds) if poll else Observer(timeout=0.1)
        )
        self._flusher = threading.Thread(target=self._flush_loop, name="scan-debounce", daemon=True)

    # -- lifetime ----------------------------------------------------------------------------

    def start(self) -> None:
        if not self.directory.is_dir():
            raise ConfigError(f"watch_dir {self.directory}: expected a directory, got none")
        self._observer.schedule(self, str(self.directory), recursive=False)
        self._observer.start()
        self._flusher.start()
        mode = f"polling every {self.poll_interval_seconds} s" if self.poll else "inotify"
        logger.info("watching %s (%s)", self.directory, mode)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify()
        if self._observer.is_alive():  # not started when start() failed
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._flusher.is_alive():
            self._flusher.join(timeout=5)

    # -- events (observer thread) ------------------------------------------------------------

    def _wanted(self, path_text: str | bytes) -> Path | None:
        path = Path(os.fsdecode(path_text))
        if path.parent.resolve() != self.directory:
            return None
        if is_ignored_name(path.name):
            return None
        return path

    def _note(self, path: Path | None, *, closed: bool, renamed: bool = False) -> None:
        """A file event; `closed`: written and closed, `renamed`: renamed into place."""
        if path is None:
            return
        now = time.monotonic()
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                entry = self._pending[path] = _Pending(now, now, False, None)
            entry.last_event = now
            entry.closed = entry.closed or closed
            if self.poll or not entry.closed:
                quiet = self.settle_seconds
            else:
                quiet = 0.0 if renamed else self.debounce_seconds
            entry.deadline = now + quiet
            entry.stat = _stat(path)
            self._wake.notify()

    def on_closed(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._note(self._wanted(event.src_path), closed=True)

    def _forget(self, path: Path | None) -> None:
        if path is not None:
            with self._lock:
                self._pending.pop(path, None)

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._forget(self._wanted(event.src_path))
            self._note(self._wanted(event.dest_path), closed=True, renamed=True)

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._note(self._wanted(event.src_path), closed=False)

    def on_modified(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        path = self._wanted(event.src_path)
        with self._lock:
            known = path in self._pending
        # A write in progress pushes the deadline out; in polling mode it also starts one.
        if known or self.poll:
            self._note(path, closed=False)

    def on_deleted(self, event: FileSystemEvent) -> None:
        self._forget(self._wanted(event.src_path))

    # -- debounce (flusher thread) -----------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                deadlines = [entry.deadline for entry in self._pending.values()]
                wait = min(deadlines) - time.monotonic() if deadlines else None
                if wait is None or wait > 0:
                    self._wake.wait(wait)  # until the next deadline, a new event or stop()
                    continue
            self.flush()

    def flush(self, now: float | None = None) -> list[ScanEvent]:
        """Queue every pending file whose quiet time has passed; returns what it queued."""
        now = time.monotonic() if now is None else now
        ready: list[ScanEvent] = []
        with self._lock:
            for path, entry in list(self._pending.items()):
                if entry.deadline > now:
                    continue
                stat = _stat(path)
                if stat is None:
                    logger.debug("%s vanished before it settled; ignored", printable(path.name))
                    del self._pending[path]
                    continue
                if stat != entry.stat:  # still changing without telling us (e.g. NFS)
                    entry.stat = stat
                    entry.deadline = now + (self.settle_seconds if not entry.closed else 0.0)
                    if not entry.closed:
                        continue
                del self._pending[path]
                ready.append(ScanEvent(path=path, event_time=entry.last_event))
        ready.sort(key=lambda e: e.event_time)
        for item in ready:
            logger.debug("queued %s", printable(item.path.name))
            self.queue.put(item)
        return ready
