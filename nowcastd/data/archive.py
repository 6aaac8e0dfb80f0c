"""A radar archive: every scan of a directory tree in one chunked, compressed HDF5 movie.

Layout (the movie layout `nowcastd.data.movie` and the training sequences read):

* ``precip`` (T, H, W) float32 mm/h, NaN = no data; chunks of one frame's tile
  (`TILE` × `TILE` pixels), LZF-compressed with byte shuffle (both ship with h5py), so a
  random crop reads only the tiles it covers;
* ``time_unix`` (T,) int64, seconds since 1970 UTC, strictly increasing; gaps are kept as
  they are (no frame is invented);
* root attributes: ``format`` (`ARCHIVE_FORMAT`), ``timestep_seconds`` (`data.movie.time_step`),
  the grid (``projection`` proj4, ``x1 y1 x2 y2`` outer edges in metres, ``xpixelsize``,
  ``ypixelsize``, ``yorigin``) and the domain that cut it (``domain_native_shape``,
  ``domain_crop``, ``domain_block``); with a projection, a CF grid-mapping variable ``crs``.

Scans are read as serve reads them: `ReaderConfig.read` (the `[reader]` table) and, with a
`[domain]`, `Domain.apply` (crop and NaN-aware block mean in mm/h), so a frame of the archive
is the field serve would see. Files are walked in path order and the frames stored in time
order. `workers` processes read and compress the frames (`nowcastd.data.archive_frames`); this
one stores their compressed tiles as they are, so the archive is the same for any number of
workers. A file that cannot be read (damaged, not a scan, another grid) is skipped and named; a
scan whose time is already stored is a duplicate; on `append`, a scan older than the archive's
newest frame is skipped too (the archive only grows at its end).

Nothing half-written is ever visible: a build writes a temporary file beside the archive and
renames it into place; `append` copies the archive to a temporary file (compressed chunks are
copied as bytes, nothing is decoded), appends there and renames, so a crash at any moment
leaves the old archive as it was. The next run removes a temporary file a killed one left.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import h5py
import numpy as np

from nowcastd.data.archive_frames import (
    TILE,
    ArchiveFrame,
    ReadJob,
    Unreadable,
    precip_layout,
    read_frames,
)
from nowcastd.data.movie import time_step
from nowcastd.errors import DataError
from nowcastd.io.atomic import atomic_path, is_ignored_name
from nowcastd.io.domain import Domain
from nowcastd.io.grid_mapping import grid_mapping_attrs
from nowcastd.io.readers import GridInfo
from nowcastd.io.scan_settings import ReaderConfig

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHIVE_FORMAT",
    "TILE",
    "ArchiveSummary",
    "build_archive",
    "default_workers",
    "scan_files",
]

ARCHIVE_FORMAT = "nowcastd-archive"
ARCHIVE_VERSION = 1
#: Frames the archive grows by at a time (trimmed to the frames written at the end).
GROW = 256
#: Files per worker process by default (`default_workers`).
FILES_PER_WORKER = 64
TIME_UNITS = "seconds since 1970-01-01 00:00:00 UTC"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArchiveSummary:
    """What a build or append did: frames added, files skipped (by name, with the reason for
    unreadable ones) and the archive's extent afterwards."""

    path: Path
    frames: int
    added: int
    first_unix: int
    last_unix: int
    timestep_seconds: int
    gaps: int
    duplicates: tuple[str, ...]
    older: tuple[str, ...]
    unreadable: tuple[tuple[str, str], ...]


def default_workers(files: int) -> int:
    """The cores this process may run on, but one worker per `FILES_PER_WORKER` files at
    most (at least one): a worker process's start costs about what reading that many scans
    does, more when the main module imports JAX (the CLI), which each spawned worker
    imports again."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        cores = os.cpu_count() or 1
    return max(1, min(cores, files // FILES_PER_WORKER))


def scan_files(root: Path, *, skip: Path | None = None) -> list[Path]:
    """The regular files under `root`, in path order, without hidden or temporary names."""
    if not root.is_dir():
        raise DataError(f"{root}: expected a directory of radar scans, found none")
    skip = skip.resolve() if skip is not None else None
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(is_ignored_name(p) for p in parts) or not path.is_file():
            continue
        if skip is not None and path.resolve() == skip:
            continue
        found.append(path)
    return found


def _grid_attrs(grid: GridInfo) -> dict[str, object]:
    attrs: dict[str, object] = {"yorigin": grid.yorigin}
    if grid.projection:
        attrs["projection"] = grid.projection
    for key in ("x1", "y1", "x2", "y2", "xpixelsize", "ypixelsize"):
        value = getattr(grid, key)
        if value is not None:
            attrs[key] = float(value)
    return attrs


def _domain_attrs(domain: Domain) -> dict[str, object]:
    return {
        "domain_native_shape": np.asarray(domain.native_shape, np.int64),
        "domain_crop": np.asarray(domain.crop, np.int64),
        "domain_block": int(domain.block),
    }


class _Writer:
    """The archive being written: an open HDF5 file, its frames and their times."""

    def __init__(self, h: h5py.File, domain: Domain | None, where: str) -> None:
        self.h, self.domain, self.where = h, domain, where
        self.precip: h5py.Dataset | None = h.get("precip")
        self.start = 0 if self.precip is None else self.precip.shape[0]
        self.count = self.start  # frames written; the dataset may be longer until `finish`
        self.times: list[int] = []

    def check_domain(self) -> None:
        """The archive's recorded domain must be the one given now (the same frames)."""
        if self.domain is None or self.precip is None:
            return
        saved = tuple(int(v) for v in self.h.attrs.get("domain_crop", ()))
        now = tuple(int(v) for v in self.domain.crop)
        block = int(self.h.attrs.get("domain_block", 1))
        if saved != now or block != self.domain.block:
            raise DataError(
                f"{self.where}: expected the archive's [domain] crop {saved} block {block}, "
                f"got crop {now} block {self.domain.block}"
            )

    def mismatch(self, frame: ArchiveFrame) -> str | None:
        """Why `frame` does not fit the archive's grid, or None."""
        if self.precip is None or frame.shape == self.precip.shape[1:]:
            return None
        return (
            f"scan {Path(frame.name).name}: expected a grid {self.precip.shape[1:]} like the "
            f"archive's, got {frame.shape}"
        )

    def _create(self, frame: ArchiveFrame) -> h5py.Dataset:
        h, w = frame.shape
        grid = frame.grid
        precip = self.h.create_dataset(
            "precip", shape=(0, h, w), maxshape=(None, h, w), **precip_layout((h, w))
        )
        precip.attrs.update({"units": "mm/h", "standard_name": "rainfall_rate"})
        times = self.h.create_dataset(
            "time_unix", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,)
        )
        times.attrs["units"] = TIME_UNITS
        self.h.attrs.update(
            {
                "format": ARCHIVE_FORMAT,
                "format_version": ARCHIVE_VERSION,
                "source_format": frame.source_format,
                **_grid_attrs(grid),
                **_domain_attrs(self.domain or Domain.full(frame.shape)),
            }
        )
        if grid.projection:
            crs = self.h.create_dataset("crs", data=np.int32(0))
            crs.attrs.update(grid_mapping_attrs(grid.projection))
            precip.attrs["grid_mapping"] = "crs"
        return precip

    def add(self, frame: ArchiveFrame) -> None:
        """Store the frame's compressed tiles as they are (the bytes h5py made of them)."""
        if self.precip is None:
            self.precip = self._create(frame)
        n = self.count
        if n >= self.precip.shape[0]:
            self.precip.resize(n + GROW, axis=0)
        for row, col, mask, data in frame.tiles:
            self.precip.id.write_direct_chunk((n, row, col), data, mask)
        self.count = n + 1
        self.times.append(frame.unix)

    def finish(self) -> np.ndarray:
        """Put the new frames in time order (in place, two frames in memory), store the times
        and the time step; the archive's times."""
        if self.precip is None:
            raise DataError(f"{self.where}: no radar scan could be read")
        self.precip.resize(self.count, axis=0)  # the frames written, no more
        order = np.argsort(np.asarray(self.times, np.int64), kind="stable")
        _permute(self.precip, self.start, order)
        times = self.h["time_unix"]
        old = np.asarray(times[:], np.int64)
        new = np.asarray(self.times, np.int64)[order]
        times.resize(len(old) + len(new), axis=0)
        times[len(old) :] = new
        every = np.concatenate([old, new])
        if len(every) < 2:
            raise DataError(
                f"{self.where}: expected at least 2 scans to know the time step, got {len(every)}"
            )
        self.h.attrs["timestep_seconds"] = time_step(every)
        return every


def _permute(ds: h5py.Dataset, start: int, order: np.ndarray) -> None:
    """Frames `start + j` become frames `start + order[j]`, cycle by cycle."""
    done = np.zeros(len(order), dtype=bool)
    for j in range(len(order)):
        if done[j] or order[j] == j:
            continue
        first, cur = ds[start + j], j
        while True:
            src = int(order[cur])
            done[cur] = True
            if src == j:
                ds[start + cur] = first
                break
            ds[start + cur] = ds[start + src]
            cur = src


def _clone(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` inside the kernel: `copy_file_range` shares the blocks where the
    file system can (XFS, Btrfs: an instant copy of any size) and copies them elsewhere."""
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            left = os.fstat(fin.fileno()).st_size
            while left > 0:
                done = os.copy_file_range(fin.fileno(), fout.fileno(), min(left, 1 << 30))
                if done == 0:
                    raise OSError(f"{src}: copy ended early")
                left -= done
    except OSError:  # no copy_file_range here (an old kernel, another file system)
        shutil.copyfile(src, dst)


def _open_existing(out: Path, tmp: Path) -> h5py.File:
    where = f"archive {out.name}"
    if not out.is_file():
        raise DataError(f"{where}: --append expected an existing archive, found none")
    _clone(out, tmp)
    try:
        h = h5py.File(tmp, "r+")
    except OSError as e:
        raise DataError(f"{where}: cannot read as HDF5: {e}") from e
    fmt = h.attrs.get("format")
    if fmt != ARCHIVE_FORMAT or "precip" not in h or "time_unix" not in h:
        h.close()
        raise DataError(f"{where}: expected a nowcastd archive (format {ARCHIVE_FORMAT!r})")
    if h["precip"].maxshape[0] is not None or h["time_unix"].maxshape[0] is not None:
        h.close()
        raise DataError(f"{where}: expected 'precip' and 'time_unix' extendable in time")
    return h


def _remove_stale(out: Path) -> None:
    """Remove the temporary files a killed build or append of `out` left."""
    for stale in out.parent.glob(f".{out.name}.*.tmp"):
        logger.warning("removing %s, left by an unfinished run", stale.name)
        stale.unlink()


@dataclasses.dataclass
class _Skipped:
    """The scans left out of the archive, by reason."""

    duplicates: list[str] = dataclasses.field(default_factory=list)
    older: list[str] = dataclasses.field(default_factory=list)
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _store(
    writer: _Writer,
    frame: ArchiveFrame | Unreadable,
    seen: set[int],
    newest: int | None,
    skipped: _Skipped,
) -> None:
    """Add `frame` to the archive if it is readable, fits and is new; else note why not.

    `seen`: the times stored (then `frame`'s, if added); `newest`: the archive's newest time
    before this run, older frames are skipped (the archive only grows at its end).
    """
    if isinstance(frame, ArchiveFrame) and (why := writer.mismatch(frame)) is not None:
        frame = Unreadable(frame.name, why)
    if isinstance(frame, Unreadable):
        skipped.unreadable.append((frame.name, frame.reason))
        logger.warning("skipping %s: %s", frame.name, frame.reason)
    elif frame.unix in seen:
        skipped.duplicates.append(frame.name)
    elif newest is not None and frame.unix < newest:
        skipped.older.append(frame.name)
    else:
        writer.add(frame)
        seen.add(frame.unix)


def build_archive(
    root: Path,
    out: Path,
    *,
    reader: ReaderConfig | None = None,
    domain: Domain | None = None,
    append: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> ArchiveSummary:
    """Write (or with `append`, extend) the archive `out` from every scan under `root`.

    `reader`: the `[reader]` settings (default: detect each file's format).
    `progress(done, total)` is called after each file. `workers`: processes that read and
    compress the scans (default: `default_workers`, the cores, one per 64 files at most; 1
    reads in this process). Raises DataError when nothing usable
    is found or `out` is not an archive; a file that cannot be read is only skipped.
    """
    root, out, reader = Path(root), Path(out), reader or ReaderConfig()
    if workers is not None and workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    where = f"archive {out.name}"
    files = scan_files(root, skip=out)
    workers = default_workers(len(files)) if workers is None else workers
    _remove_stale(out)
    skipped = _Skipped()
    with atomic_path(out) as tmp:
        h = _open_existing(out, tmp) if append else h5py.File(tmp, "w")
        with h:
            writer = _Writer(h, domain, where)
            writer.check_domain()
            seen = set(np.asarray(h["time_unix"][:]).tolist()) if append else set()
            newest = max(seen) if seen else None
            named = [(path, str(path.relative_to(root))) for path in files]
            with closing(read_frames(named, ReadJob(reader, domain), workers)) as frames:
                for i, frame in enumerate(frames, 1):
                    _store(writer, frame, seen, newest, skipped)
                    if progress is not None:
                        progress(i, len(files))
            times = writer.finish()
            step = int(h.attrs["timestep_seconds"])
    return ArchiveSummary(
        path=out,
        frames=len(times),
        added=len(writer.times),
        first_unix=int(times[0]),
        last_unix=int(times[-1]),
        timestep_seconds=step,
        gaps=int((np.diff(times) != step).sum()),
        duplicates=tuple(skipped.duplicates),
        older=tuple(skipped.older),
        unreadable=tuple(skipped.unreadable),
    )
