"""The service's guards around its directories and its log.

- `check_directories`: at start-up, the watch directory must exist and must not overlap the
  output directory (the daemon would read its own forecasts as scans); the output directory
  must be a directory or not exist yet.
- `remove_litter`: temporary forecast files a killed process left behind
  (`.forecast_*.tmp`, see `nowcastd.io.atomic`) are removed at start-up.
- `DirectoryIdentity`: tells when the watch directory was removed or replaced (a remount, a
  deploy script), which no inotify watch on the old directory reports.
- `EscapeLogLines`: a logging filter that escapes control characters and bytes that are not
  UTF-8 in every message, so a file name cannot forge or break a log line.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from nowcastd.errors import ConfigError
from nowcastd.io.readers import printable

__all__ = [
    "DirectoryIdentity",
    "DirectoryState",
    "EscapeLogLines",
    "check_directories",
    "remove_litter",
]

logger = logging.getLogger(__name__)

#: Temporary names of forecast files being written (`atomic_path`: `.<final>.<random>.tmp`).
LITTER_PATTERN = ".forecast_*.tmp"


def check_directories(watch_dir: Path, output_dir: Path) -> None:
    """ConfigError unless `watch_dir` is a directory apart from `output_dir`, and
    `output_dir` a directory or nothing yet (it is created)."""
    if not watch_dir.is_dir():
        got = "something else" if watch_dir.exists() else "nothing there"
        raise ConfigError(f"watch_dir {printable(watch_dir)}: expected a directory, got {got}")
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(
            f"output_dir {printable(output_dir)}: expected a directory (or nothing: it is "
            "created), got a file"
        )
    watch, out = watch_dir.resolve(), output_dir.resolve()
    if watch == out or watch.is_relative_to(out) or out.is_relative_to(watch):
        raise ConfigError(
            f"watch_dir {printable(watch)} and output_dir {printable(out)}: expected separate "
            "directories (neither inside the other), got overlapping ones"
        )


def remove_litter(output_dir: Path) -> int:
    """Remove temporary forecast files left by a crash; returns how many."""
    removed = 0
    with os.scandir(output_dir) as entries:
        for entry in entries:
            if fnmatch.fnmatchcase(entry.name, LITTER_PATTERN) and entry.is_file(
                follow_symlinks=False
            ):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
    if removed:
        logger.warning("removed %d temporary file(s) left in %s by a crash", removed, output_dir)
    return removed


class DirectoryState(StrEnum):
    """What became of a remembered directory (`DirectoryIdentity.check`)."""

    SAME = "same"
    MISSING = "missing"
    REPLACED = "replaced"  # a different directory under the same path


@dataclass
class DirectoryIdentity:
    """The (device, inode) a directory had; `check` says whether it is still there and the same."""

    path: Path
    identity: tuple[int, int] | None = None

    def current(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def remember(self) -> None:
        self.identity = self.current()

    def check(self) -> DirectoryState:
        """Whether the directory is still the one remembered, missing, or replaced."""
        now = self.current()
        if now is None or not self.path.is_dir():
            return DirectoryState.MISSING
        return DirectoryState.SAME if now == self.identity else DirectoryState.REPLACED


class EscapeLogLines(logging.Filter):
    """Rewrite each record's message as one printable line (see `guard.printable`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = printable(message)
        if safe != message:
            record.msg, record.args = safe, None
        return True
