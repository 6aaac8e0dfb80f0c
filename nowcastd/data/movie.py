"""A radar movie in HDF5 (the layout of the development set's ``movie.h5``) cut into clips.

Layout: dataset ``precip`` (T, H, W) float (mm/h, NaN = no data; ``units`` attribute on the
dataset or the file), optional ``time`` (T,) ISO-8601 UTC strings and ``time_unix`` (T,) int
seconds, root attribute ``timestep_seconds``. Other attributes (``projection``, ...) are kept.

Every frame is prepared by `prepare_frames` (shared with `build`), which is the serving rule
`nowcastd.io.domain.Domain.model_input`: crop ``(row0, col0, height, width)`` in source pixels
(optional), block average by ``block`` over the valid (finite) pixels, the `DataTransform`
(default ``dbz`` for a movie in mm/h, identity for a dimensionless one), and the NaN rule:
blocks without any valid data are 0 in model units, and the validity mask (1 = valid,
0 = missing, fractions for partly covered blocks) says where. When every pixel is valid the
mask is None.

Windows of ``total_length`` frames start every ``stride`` frames; a window that spans a gap in
``time_unix`` (a step other than the time step) is skipped. The frames are held in memory in
model units (T × h × w float32); cut a long archive into a ``.npy`` with `build` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nowcastd.data.clips import ClipSet, WindowedClips
from nowcastd.errors import DataError
from nowcastd.io.domain import Domain
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)

RATE_UNITS = ("mm/h", "mm h-1", "mm hr-1", "mm/hr")
DIMENSIONLESS_UNITS = ("1", "", "dimensionless")
_CHUNK_FRAMES = 32


def _attr_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def default_transform(units: str, where: str) -> DataTransform:
    """dbz for a rain rate, identity for dimensionless data; DataError otherwise."""
    if units in RATE_UNITS:
        return DataTransform(kind="dbz")
    if units in DIMENSIONLESS_UNITS:
        return DataTransform(kind="identity")
    raise DataError(
        f"{where}: precip units {units!r} are neither a rain rate {RATE_UNITS} nor "
        "dimensionless: pass a transform explicitly"
    )


def check_geometry(
    shape: tuple[int, int], crop: tuple[int, int, int, int] | None, block: int, where: str
) -> Domain:
    """The `Domain` of `crop` and `block` on an (H, W) field; DataError naming `where` if bad."""
    try:
        return Domain.from_crop(shape, crop, block=block)
    except ValueError as e:
        raise DataError(f"{where}: crop {str(e).removeprefix('Domain.')}") from e


def prepare_frames(
    fields: np.ndarray,
    *,
    crop: tuple[int, int, int, int] | None,
    block: int,
    transform: DataTransform,
    where: str = "frames",
) -> tuple[np.ndarray, np.ndarray]:
    """Physical fields (T, H, W) -> model-unit frames (T, h, w, 1) and validity (T, h, w, 1).

    The serving rule, frame by frame: `Domain.model_input`.
    """
    if fields.ndim != 3:
        raise DataError(f"{where}: expected fields (T, H, W), got shape {fields.shape}")
    domain = check_geometry(fields.shape[1:], crop, block, where)
    model, valid = domain.model_input(fields, transform, name=where)
    return model[..., None], valid[..., None]


def window_starts(
    n_frames: int,
    total_length: int,
    stride: int,
    time_unix: np.ndarray | None,
    timestep_seconds: int | None,
) -> np.ndarray:
    """Starts of the `total_length` windows every `stride` frames that span no time gap."""
    if total_length < 1 or stride < 1:
        raise DataError(f"total_length {total_length} and stride {stride} must be >= 1")
    starts = np.arange(0, max(n_frames - total_length + 1, 0), stride, dtype=np.int64)
    if time_unix is None or n_frames < 2 or starts.size == 0:
        return starts
    steps = np.diff(np.asarray(time_unix, dtype=np.int64))
    step = int(timestep_seconds) if timestep_seconds else time_step(time_unix)
    bad = np.concatenate([[0], np.cumsum(steps != step)])  # gaps before each frame
    keep = bad[starts + total_length - 1] == bad[starts]
    if not keep.all():
        logger.info("skipping %d windows that span a time gap", int((~keep).sum()))
    kept: np.ndarray = starts[keep]
    return kept


def time_step(time_unix: np.ndarray) -> int:
    """The time step of frames valid at `time_unix` (increasing, at least two): the most
    common step between consecutive frames, the smallest of equally common ones; a gap or a
    missing scan does not move it. The one rule for movies, scan directories and builds."""
    steps, counts = np.unique(np.diff(np.asarray(time_unix, dtype=np.int64)), return_counts=True)
    if steps.size == 0:
        raise DataError("time step: expected at least two frame times, got fewer")
    return int(steps[np.argmax(counts)])


def open_precip(h: h5py.File, where: str) -> tuple[h5py.Dataset, str]:
    """The movie's ``precip`` (T, H, W) dataset and its units; DataError if there is none."""
    if "precip" not in h or h["precip"].ndim != 3:
        raise DataError(f"{where}: expected a dataset 'precip' (T, H, W)")
    ds = h["precip"]
    return ds, _attr_str(ds.attrs.get("units", h.attrs.get("units", "")))


@contextmanager
def open_movie(path: Path, where: str) -> Iterator[tuple[h5py.File, h5py.Dataset, str]]:
    """The movie file open for reading, its ``precip`` (T, H, W) and their units; DataError
    naming `where` if there is no such dataset or the file (or a read in the block) fails."""
    try:
        with h5py.File(path, "r") as h:
            ds, units = open_precip(h, where)
            yield h, ds, units
    except OSError as e:
        raise DataError(f"{where}: cannot read as HDF5: {e}") from e


def read_times(h: h5py.File) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """(time_unix, ISO strings) from the file, each None when absent."""
    unix = np.asarray(h["time_unix"][:], dtype=np.int64) if "time_unix" in h else None
    iso = None
    if "time" in h:
        iso = tuple(_attr_str(s) for s in h["time"][:])
    elif unix is not None:
        iso = tuple(f"{s}Z" for s in np.datetime_as_string(unix.astype("datetime64[s]"), unit="s"))
    return unix, iso


def _frame_range(
    unix: np.ndarray | None, n_frames: int, time_range: tuple[int, int] | None, where: str
) -> tuple[int, int]:
    """The frames [first, end) valid within `time_range` (all without one)."""
    if time_range is None:
        return 0, n_frames
    if unix is None or np.any(np.diff(unix) <= 0):
        raise DataError(f"{where}: a time range needs increasing 'time_unix', found none")
    first = int(np.searchsorted(unix, time_range[0], side="left"))
    end = int(np.searchsorted(unix, time_range[1], side="right"))
    if end <= first:
        span = f"{_iso(int(unix[0]))} to {_iso(int(unix[-1]))}" if len(unix) else "no frames"
        raise DataError(
            f"{where}: expected frames from {_iso(time_range[0])} to {_iso(time_range[1])}, "
            f"the file holds {span}"
        )
    return first, end


def _iso(unix: int) -> str:
    return f"{np.datetime_as_string(np.datetime64(unix, 's'), unit='s')}Z"


def _times_in_range(
    h: h5py.File, n_frames: int, time_range: tuple[int, int] | None, where: str
) -> tuple[int, int, np.ndarray | None, tuple[str, ...] | None]:
    """The frames [first, end) valid within `time_range`, and their times (see `read_times`)."""
    unix, iso = read_times(h)
    first, end = _frame_range(unix, n_frames, time_range, where)
    if time_range is not None:
        unix = unix[first:end] if unix is not None else None
        iso = iso[first:end] if iso is not None else None
    return first, end, unix, iso


def _prepare_range(
    ds: h5py.Dataset,
    first: int,
    end: int,
    *,
    crop: tuple[int, int, int, int] | None,
    block: int,
    transform: DataTransform,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames [first, end) of `ds` through `prepare_frames`, read a chunk at a time.

    Raises:
        DataError: no frames in the range.
    """
    chunks = [
        prepare_frames(
            ds[t0 : min(t0 + _CHUNK_FRAMES, end)],
            crop=crop,
            block=block,
            transform=transform,
            where=where,
        )
        for t0 in range(first, end, _CHUNK_FRAMES)
    ]
    if not chunks:
        raise DataError(f"{where}: 'precip' holds no frames")
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def read_movie(
    path: str | Path,
    *,
    total_length: int,
    stride: int = 1,
    transform: DataTransform | None = None,
    crop: tuple[int, int, int, int] | None = None,
    block: int = 1,
    time_range: tuple[int, int] | None = None,
) -> ClipSet:
    """Open an HDF5 movie as an unsplit ClipSet of sliding windows (see the module docstring).

    ``meta`` holds ``frame_starts`` and ``n_frames`` so the loader can split by time.
    `time_range` (first, last) in Unix seconds, both included: only the frames valid then are
    read (say, the last month of an archive of years), by ``time_unix``.

    Raises:
        DataError: unreadable file, no ``precip`` (T, H, W), bad units, crop or block.
    """
    path = Path(path)
    where = f"movie {path.name}"
    with open_movie(path, where) as (h, ds, units):
        chosen = transform or default_transform(units, where)
        step = h.attrs.get("timestep_seconds")
        step = int(step) if step is not None else None
        first, end, unix, iso = _times_in_range(h, ds.shape[0], time_range, where)
        n_frames, field_shape = end - first, tuple(ds.shape[1:])
        frames, valid = _prepare_range(
            ds, first, end, crop=crop, block=block, transform=chosen, where=where
        )
        attrs = {k: _attr_str(v) for k, v in h.attrs.items() if np.ndim(v) == 0}
    starts = window_starts(n_frames, total_length, stride, unix, step)
    missing = float(1.0 - valid.mean())
    if missing > 0:
        logger.info("%s: %.2f %% of pixels have no data (0 in model units)", where, 100 * missing)
    return ClipSet(
        clips=WindowedClips([(frames, starts, total_length)]),
        valid_mask=WindowedClips([(valid, starts, total_length)]) if missing > 0 else None,
        transform=chosen,
        times=tuple(iso[s] for s in starts) if iso is not None else None,
        timestep_seconds=step,
        source=f"{path.name} (hdf5 movie)",
        meta={
            "format": "hdf5-movie",
            "frame_starts": starts.tolist(),
            "n_frames": int(n_frames),
            "stride": int(stride),
            "crop": list(check_geometry(field_shape, crop, block, where).crop),
            "block": int(block),
            "units": units,
            "missing_fraction": missing,
            "attrs": attrs,
        },
    )
