"""Build a ``.npy`` clip file in model units from a radar movie or a stream of scans.

`build_clips` prepares the frames exactly as `nowcastd.data.movie` does (crop, block average,
transform, NaN -> 0 with a validity mask), cuts windows of ``total_length`` every ``stride``
frames (skipping windows across time gaps) and writes, each atomically:

* ``<out>.npy``: (N, T, h, w, 1) float32 in model units;
* ``<stem>_valid_mask.npy``: the validity mask, same shape, only when some pixel is missing;
* ``<stem>.json``: the sidecar that `nowcastd.data.npy_clips` reads (transform, frame times,
  clip start frames and times, crop, block, source, time step).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.data.movie import (
    default_transform,
    open_movie,
    prepare_frames,
    read_times,
    time_step,
    window_starts,
)
from nowcastd.errors import DataError
from nowcastd.io.atomic import atomic_file
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = "nowcastd-clips"
SIDECAR_VERSION = 1
NAN_RULE = (
    "pixels without valid data are 0 in model units; valid_mask gives the valid fraction "
    "(1 = valid) of each pixel or averaged block"
)


def _write_windows(path: Path, frames: np.ndarray, starts: np.ndarray, length: int) -> None:
    """Stream windows of `frames` into a .npy (N, length, ...) float32 without stacking them."""
    shape = (len(starts), length, *frames.shape[1:])
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
        "fortran_order": False,
        "shape": shape,
    }
    with atomic_file(path) as f:
        np.lib.format.write_array_header_1_0(f, header)
        for s in starts:
            f.write(np.ascontiguousarray(frames[s : s + length], dtype="<f4").tobytes())


def _unix(t: Any) -> int:
    """Seconds since 1970 (UTC) from a datetime (naive = UTC), ISO string or number."""
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    if isinstance(t, dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return int(round(t.timestamp()))
    if isinstance(t, np.datetime64):
        return int(t.astype("datetime64[s]").astype(np.int64))
    return int(t)


def _iso(unix: int) -> str:
    return dt.datetime.fromtimestamp(int(unix), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_pairs(pairs: Iterable[tuple[Any, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    items = sorted(
        ((_unix(t), np.asarray(f, dtype=np.float32)) for t, f in pairs), key=lambda p: p[0]
    )
    if not items:
        raise DataError("build: the scan source yielded no (valid_time, field) pairs")
    times = np.array([t for t, _ in items], dtype=np.int64)
    dup = np.flatnonzero(np.diff(times) == 0)
    if dup.size:
        raise DataError(f"build: two scans share the valid time {_iso(times[dup[0]])}")
    shapes = {f.shape for _, f in items}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise DataError(f"build: scans must all be 2-D fields of one shape, got {sorted(shapes)}")
    return times, np.stack([f for _, f in items])


@dataclass(frozen=True)
class _Source:
    """What `build_clips` takes from its source: the frames, their times and what they are."""

    fields: np.ndarray
    unix: np.ndarray | None
    transform: DataTransform
    timestep_seconds: int | None
    name: str
    where: str
    info: dict[str, Any]


def _movie_source(
    src: Path, transform: DataTransform | None, timestep_seconds: int | None
) -> _Source:
    """Fields, times, time step and projection of an HDF5 movie."""
    where = f"movie {src.name}"
    info: dict[str, Any] = {}
    with open_movie(src, where) as (h, ds, units):
        transform = transform or default_transform(units, where)
        fields = ds[:]
        unix, _ = read_times(h)
        if timestep_seconds is None and "timestep_seconds" in h.attrs:
            timestep_seconds = int(h.attrs["timestep_seconds"])
        proj = h.attrs.get("projection")
        if proj is not None:
            info["projection"] = proj.decode() if isinstance(proj, bytes) else str(proj)
    return _Source(fields, unix, transform, timestep_seconds, src.name, where, info)


def _pairs_source(
    pairs: Iterable[tuple[Any, np.ndarray]],
    transform: DataTransform | None,
    timestep_seconds: int | None,
) -> _Source:
    """Fields and times of a stream of (valid_time, field) scans, sorted by time."""
    unix, fields = _from_pairs(pairs)
    name = f"{len(unix)} scans {_iso(unix[0])} .. {_iso(unix[-1])}"
    transform = transform or DataTransform(kind="dbz")
    return _Source(fields, unix, transform, timestep_seconds, name, "scans", {})


def _sidecar(
    src: _Source,
    frames: np.ndarray,
    starts: np.ndarray,
    mask: tuple[str | None, float],
    *,
    total_length: int,
    stride: int,
    crop: tuple[int, int, int, int] | None,
    block: int,
) -> dict[str, Any]:
    """The JSON sidecar `nowcastd.data.npy_clips` reads beside the clip file; `mask`: the
    mask file's name (None without one) and the missing fraction (`_write_mask`)."""
    mask_name, missing = mask
    frame_times = [_iso(t) for t in src.unix] if src.unix is not None else None
    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "layout": "N, T, H, W, C",
        "shape": [int(starts.size), total_length, *map(int, frames.shape[1:])],
        "dtype": "float32",
        "transform": src.transform.to_json(),
        "units": src.transform.units,
        "total_length": int(total_length),
        "stride": int(stride),
        "n_frames": len(frames),
        "start_frame": starts.tolist(),
        "start_time": [frame_times[s] for s in starts] if frame_times else None,
        "frame_time": frame_times,
        "timestep_seconds": src.timestep_seconds,
        "crop": list(crop) if crop is not None else None,
        "block": int(block),
        "field_shape": [int(s) for s in src.fields.shape[1:]],
        "source": src.name,
        "valid_mask": mask_name,
        "missing_fraction": missing,
        "nan_rule": NAN_RULE,
        **src.info,
    }
    if sidecar["start_time"] is None:
        del sidecar["start_time"]
    return sidecar


def _write_mask(
    out_path: Path, valid: np.ndarray, starts: np.ndarray, length: int
) -> tuple[str | None, float]:
    """Write the validity mask beside `out_path` when some pixel is missing.

    Returns the mask file's name (None when none was written) and the missing fraction.
    """
    missing = float(1.0 - valid.mean())
    if missing <= 0:
        return None, missing
    mask_name = f"{out_path.stem}_valid_mask.npy"
    _write_windows(out_path.with_name(mask_name), valid, starts, length)
    return mask_name, missing


def _clip_starts(
    src: _Source, n_frames: int, total_length: int, stride: int
) -> tuple[_Source, np.ndarray]:
    """The first frame of every clip, and the source with its time step filled in.

    Raises:
        DataError: no run of `total_length` frames without a time gap.
    """
    if src.timestep_seconds is None and src.unix is not None and len(src.unix) > 1:
        src = replace(src, timestep_seconds=time_step(src.unix))
    starts = window_starts(n_frames, total_length, stride, src.unix, src.timestep_seconds)
    if starts.size == 0:
        raise DataError(
            f"build: {src.where} has {n_frames} frames but no run of {total_length} "
            "consecutive frames without a time gap; lower total_length or add scans"
        )
    return src, starts


def build_clips(
    source: str | Path | Iterable[tuple[Any, np.ndarray]],
    out_path: str | Path,
    *,
    total_length: int,
    stride: int = 1,
    crop: tuple[int, int, int, int] | None = None,
    block: int = 1,
    transform: DataTransform | None = None,
    timestep_seconds: int | None = None,
) -> Path:
    """Write a ``.npy`` clip file (+ sidecar, + mask if needed); returns the ``.npy`` path.

    Args:
        source: an HDF5 movie path (``precip`` (T, H, W) in mm/h, see `movie`) or an iterable of
            ``(valid_time, field)`` pairs, field (H, W) in mm/h (NaN = no data) and valid_time a
            datetime (naive = UTC), ISO-8601 string or Unix seconds; sorted by time here.
        out_path: the ``.npy`` to write (must end in ``.npy``).
        total_length: frames per clip; stride: frames between clip starts.
        crop: ``(row0, col0, height, width)`` in source pixels, applied before `block`.
        block: block-average factor (the crop must be a multiple of it).
        transform: physical -> model units; None: dbz for mm/h (scans, or a movie in mm/h).
        timestep_seconds: the nominal time step; None: the movie's attribute or `time_step`.

    Raises:
        DataError: unreadable source, inconsistent scans, bad geometry, no complete window.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".npy":
        raise DataError(f"build: output {out_path.name} must end in .npy")
    if isinstance(source, str | Path):
        src = _movie_source(Path(source), transform, timestep_seconds)
    else:
        src = _pairs_source(source, transform, timestep_seconds)
    frames, valid = prepare_frames(
        src.fields, crop=crop, block=block, transform=src.transform, where=src.where
    )
    src, starts = _clip_starts(src, len(frames), total_length, stride)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mask = _write_mask(out_path, valid, starts, total_length)
    _write_windows(out_path, frames, starts, total_length)
    sidecar = _sidecar(
        src,
        frames,
        starts,
        mask,
        total_length=total_length,
        stride=stride,
        crop=crop,
        block=block,
    )
    with atomic_file(out_path.with_suffix(".json")) as f:
        f.write(json.dumps(sidecar, indent=1).encode())
    logger.info(
        "wrote %s: %d clips %s from %s", out_path.name, starts.size, sidecar["shape"], src.name
    )
    return out_path
