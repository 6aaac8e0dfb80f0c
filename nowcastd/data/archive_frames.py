"""The frames of an archive build: each scan file read as serve reads it and encoded into the
archive's compressed tiles, in worker processes so that every core reads.

A file is read by `ReaderConfig.read` and cut by `Domain.apply` and `Domain.crop_grid` (serve's
code path; whatever one file raises there makes it `Unreadable`, named with why), and its
frame is encoded by h5py itself: `TileEncoder` writes it into a one-frame dataset of the
archive's layout (`precip_layout`) in an in-memory HDF5 file and reads each chunk back as the
stored bytes (LZF after byte shuffle), which the archive stores with `write_direct_chunk`. The
archive then decodes to exactly the frames that writing them into it gives (LZF's bytes for a
tile may differ by run, as between two h5py writes of it), and the process that writes it
only copies bytes.

`read_frames` yields one `ArchiveFrame` or `Unreadable` per file, in the order of the files.
With more than one worker, a pool of spawned processes reads a few files ahead (at most two per
worker in flight, so memory stays flat). A worker that dies (a file that crashes the HDF5 library, a
process killed) breaks the pool: the files then in flight are read again one by one, each in a
process of its own; the file whose process dies again is unreadable, and a new pool goes on
with the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import h5py
import numpy as np

from nowcastd.errors import DataError, ScanError
from nowcastd.io.domain import Domain
from nowcastd.io.readers import GridInfo, printable
from nowcastd.io.scan_settings import ReaderConfig

logger = logging.getLogger(__name__)

__all__ = [
    "TILE",
    "ArchiveFrame",
    "ReadJob",
    "TileEncoder",
    "Unreadable",
    "precip_layout",
    "read_frames",
]

TILE = 128
#: Files in flight per worker: enough to keep it busy while the writer takes a result.
AHEAD = 2
#: Tiles of one value whose compressed bytes an encoder keeps (NaN and 0 in every edge shape).
UNIFORM_KEPT = 64


def precip_layout(shape: tuple[int, int]) -> dict[str, object]:
    """The `create_dataset` settings of `precip` for frames of `shape` (H, W): chunks of one
    frame's `TILE` x `TILE` tile, LZF with byte shuffle, NaN where nothing was written."""
    h, w = shape
    return {
        "dtype": np.float32,
        "chunks": (1, min(h, TILE), min(w, TILE)),
        "compression": "lzf",
        "shuffle": True,
        "fillvalue": np.nan,
    }


@dataclasses.dataclass(frozen=True)
class ArchiveFrame:
    """A scan read and encoded: its file's name, valid time, the grid of the frame (the
    domain's, cropped by `Domain.crop_grid`, when there is one) and the frame's stored tiles
    `(row, col, filter_mask, bytes)`."""

    name: str
    unix: int
    shape: tuple[int, int]
    grid: GridInfo
    source_format: str
    tiles: tuple[tuple[int, int, int, bytes], ...]


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """A file that is no usable scan, and why (the reader's message)."""

    name: str
    reason: str


class TileEncoder:
    """The stored bytes of a frame's tiles, made by h5py's own filters (`precip_layout`) in an
    in-memory HDF5 file, one per frame shape.

    The frame is written into the file's chunk cache, which holds all of it, and a tile is
    compressed when its stored bytes are read (`read_direct_chunk` flushes that chunk). A tile
    of one value throughout (no data outside the radar's coverage, no rain) is compressed once:
    the bytes of the first such tile are kept for every later tile of that value and shape
    (for the first `UNIFORM_KEPT` values and shapes met, so memory stays bounded).
    """

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], tuple[h5py.File, h5py.Dataset]] = {}
        self._uniform: dict[tuple[int, tuple[int, ...]], tuple[int, bytes]] = {}

    def _dataset(self, shape: tuple[int, int]) -> h5py.Dataset:
        if shape not in self._files:
            frame_bytes = shape[0] * shape[1] * 4
            h = h5py.File(
                f"frame-{len(self._files)}",
                "w",
                driver="core",
                backing_store=False,
                rdcc_nbytes=2 * frame_bytes + (4 << 20),  # the frame's tiles with their edges
                rdcc_nslots=10007,
            )
            ds = h.create_dataset("precip", shape=(1, *shape), **precip_layout(shape))
            self._files[shape] = (h, ds)
        return self._files[shape][1]

    def tiles(self, field: np.ndarray) -> tuple[tuple[int, int, int, bytes], ...]:
        shape = (int(field.shape[0]), int(field.shape[1]))
        ds = self._dataset(shape)
        ds[0] = field
        bits = np.ascontiguousarray(field, np.float32).view(np.uint32)
        _, th, tw = ds.chunks
        out = []
        for row in range(0, shape[0], th):
            for col in range(0, shape[1], tw):
                tile = bits[row : row + th, col : col + tw]
                first = int(tile[0, 0])
                key = (first, tile.shape) if (tile == first).all() else None
                stored = self._uniform.get(key) if key is not None else None
                if stored is None:
                    mask, data = ds.id.read_direct_chunk((0, row, col))
                    stored = (int(mask), bytes(data))
                    if key is not None and len(self._uniform) < UNIFORM_KEPT:
                        self._uniform[key] = stored
                out.append((row, col, *stored))
        return tuple(out)

    def close(self) -> None:
        for h, _ in self._files.values():
            h.close()
        self._files.clear()
        self._uniform.clear()


@dataclasses.dataclass(frozen=True)
class ReadJob:
    """How a file becomes a frame: the `[reader]` and `[domain]` settings."""

    reader: ReaderConfig
    domain: Domain | None

    def __call__(self, path: Path, name: str, encoder: TileEncoder) -> ArchiveFrame | Unreadable:
        """The frame of the file at `path`, or why it is unreadable: whatever reading, cutting
        or encoding this one file raises is its own refusal, never the build's end."""
        try:
            return self._frame(path, name, encoder)
        except ScanError as e:
            return Unreadable(name, str(e))
        except Exception as e:
            logger.debug("reading %s", printable(path.name), exc_info=True)
            return Unreadable(
                name, f"{printable(path.name)}: unexpected {type(e).__name__} reading it: {e}"
            )

    def _frame(self, path: Path, name: str, encoder: TileEncoder) -> ArchiveFrame:
        scan = self.reader.read(path)
        field, grid = scan.field, scan.grid
        if self.domain is not None:
            grid = self.domain.crop_grid(scan.grid, name=path.name)
            field = self.domain.apply(scan)
        return ArchiveFrame(
            name=name,
            unix=int(scan.valid_time.timestamp()),
            shape=(int(field.shape[0]), int(field.shape[1])),
            grid=grid,
            source_format=scan.source_format,
            tiles=encoder.tiles(field),
        )


_WORKER: tuple[ReadJob, TileEncoder] | None = None


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _start_worker(job: ReadJob) -> None:
    """A worker reads for `job`; it ignores Ctrl-C (the build's to handle) and exits when the
    build's process dies, even by SIGKILL (a pool's worker would wait for work forever)."""
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    _WORKER = (job, TileEncoder())


def _work(path: Path, name: str) -> ArchiveFrame | Unreadable:
    assert _WORKER is not None
    job, encoder = _WORKER
    return job(path, name, encoder)


def _pool(job: ReadJob, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(job,),
    )


def _died(path: Path, name: str) -> Unreadable:
    return Unreadable(name, f"{printable(path.name)}: its reader's process died reading it")


def _started(job: ReadJob) -> ProcessPoolExecutor:
    """A pool of one worker that has run: a worker that cannot even start (say, a main
    module that builds an archive when imported without `if __name__ == "__main__"`) is an
    error of the build, not of the file it was given."""
    pool = _pool(job, 1)
    try:
        pool.submit(_ready).result()
    except BrokenProcessPool as e:
        pool.shutdown(wait=True)
        raise DataError(
            f"cannot start a process to read scans ({e}); with workers=1 this process reads"
        ) from e
    return pool


def _ready() -> bool:
    return _WORKER is not None


def _submit(pool: ProcessPoolExecutor, item: tuple[Path, str]) -> Future[ArchiveFrame | Unreadable]:
    """`item`'s read in `pool`; a failed future when the pool broke before (a worker died
    waiting for work)."""
    try:
        return pool.submit(_work, *item)
    except BrokenProcessPool as e:
        failed: Future[ArchiveFrame | Unreadable] = Future()
        failed.set_exception(e)
        return failed


def _result(future: Future[ArchiveFrame | Unreadable]) -> ArchiveFrame | Unreadable | None:
    """The future's result, or None when the pool broke before it was read."""
    try:
        return future.result()
    except BrokenProcessPool:
        return None


def _alone(
    items: Sequence[tuple[Path, str]], job: ReadJob
) -> Generator[ArchiveFrame | Unreadable, None, None]:
    """Each file read in a process of its own; a file whose process dies is unreadable."""
    pool: ProcessPoolExecutor | None = None
    try:
        for path, name in items:
            while True:
                pool = pool or _started(job)
                try:
                    future = pool.submit(_work, path, name)
                except BrokenProcessPool:  # died waiting, not reading this file: once more
                    pool.shutdown(wait=True)
                    pool = None
                    continue
                break
            result = _result(future)
            if result is None:
                pool.shutdown(wait=True)
                pool = None
                result = _died(path, name)
            yield result
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def read_frames(
    files: Sequence[tuple[Path, str]], job: ReadJob, workers: int
) -> Generator[ArchiveFrame | Unreadable, None, None]:
    """`job` of each `(path, name)` of `files`, in their order; with `workers` > 1 in that
    many spawned processes, else in this one."""
    if workers <= 1 or len(files) <= 1:
        encoder = TileEncoder()
        try:
            for path, name in files:
                yield job(path, name, encoder)
        finally:
            encoder.close()
        return
    workers = min(workers, len(files))
    todo = iter(files)
    ahead: deque[tuple[tuple[Path, str], Future[ArchiveFrame | Unreadable]]] = deque()
    pool = _pool(job, workers)
    try:
        while True:
            for item in todo:
                ahead.append((item, _submit(pool, item)))
                if len(ahead) >= AHEAD * workers:
                    break
            if not ahead:
                return
            item, future = ahead.popleft()
            result = _result(future)
            if result is not None:
                yield result
                continue
            # a worker died: the files in flight that were not read are read one by one
            pool.shutdown(wait=True)
            settled = [(i, _result(f)) for i, f in [(item, future), *ahead]]
            ahead.clear()
            with contextlib.closing(_alone([i for i, r in settled if r is None], job)) as again:
                for _, r in settled:
                    yield next(again) if r is None else r
            pool = _pool(job, workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
