"""The one reader of a directory of radar scans (evaluate, `dataset build`, the demo).

`ScanDirectory(directory, reader).scans()` reads every regular file of the directory in name
order with the `[reader]` settings (format detected from content unless they say otherwise),
skipping hidden and temporary names (`atomic.is_ignored_name`) and the paths in `skip`. A file
that is no radar scan, or a damaged one, is skipped (logged at INFO) and named in `skipped`;
so is one whose reading raises anything else (logged at WARNING with the exception's type, and
its traceback with DEBUG logging): no file can end the run.
The scans come one at a time, so that a long archive need not fit in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nowcastd.errors import DataError, ScanError
from nowcastd.io.atomic import is_ignored_name
from nowcastd.io.readers import Scan, printable
from nowcastd.io.scan_settings import ReaderConfig

__all__ = ["ScanDirectory"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ScanDirectory:
    """The radar scans of `directory` (module docstring); `skipped` fills as `scans` runs."""

    directory: Path
    reader: ReaderConfig = ReaderConfig()
    skip: frozenset[Path] = frozenset()
    skipped: list[str] = field(default_factory=list)

    def paths(self) -> list[Path]:
        """The candidate files, by name; DataError if `directory` is none."""
        if not self.directory.is_dir():
            raise DataError(f"{self.directory}: expected a directory of radar scans, found none")
        return sorted(
            path
            for path in self.directory.iterdir()
            if not is_ignored_name(path.name) and path.is_file() and path.resolve() not in self.skip
        )

    def scans(self) -> Iterator[Scan]:
        """Every readable scan, in name order (the rest skipped and named in `skipped`)."""
        self.skipped.clear()
        for path in self.paths():
            try:
                scan = self.reader.read(path)
            except ScanError as e:
                logger.info("skipping %s: %s", printable(path.name), e)
                self.skipped.append(path.name)
                continue
            except Exception as e:  # whatever one file provokes is that file's, not the run's
                logger.warning(
                    "skipping %s: unexpected %s reading it: %s",
                    printable(path.name),
                    type(e).__name__,
                    e,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                self.skipped.append(path.name)
                continue
            yield scan
