"""Radar sequences to evaluate on: an HDF5 movie or a directory of scans, on the model grid.

A `RadarSequence` holds T frames of rain rate in mm/h (NaN = no data) on the model grid, with
their valid times and the time step. Both sources are cropped and block-averaged by a `Domain`
(`Domain.apply`: a block is the mean of its valid pixels, NaN only when all of them are NaN).

- `read_movie_sequence`: the layout of the development movie (`precip` (T, H, W) mm/h, `time`
  or `time_unix`, root attribute `timestep_seconds`), with an optional crop and block factor.
- `read_scan_sequence`: every radar file in a directory (`io.scan_directory.ScanDirectory`:
  format detected from content unless the `[reader]` table says otherwise), on serve's
  `[domain]`. Files that are no radar scan, or damaged, are skipped (and counted); a scan on
  another grid than the domain's is an error. The sequence names the files (`files`).

The time step, unless the movie states it, is `data.movie.time_step` (the most common step).

`RadarSequence.starts(length)` gives every start of `length` consecutive frames that spans no
time gap.

With a halo (`Domain.halo`, `[domain] halo_km`; by default what the data offers around the
crop), `RadarSequence.padded` holds the frames on the grid grown by it on every side, the
window every method forecasts from (`verification.comparison`); `precip` is its model grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.data.movie import (
    RATE_UNITS,
    check_geometry,
    open_movie,
    read_times,
    time_step,
    window_starts,
)
from nowcastd.errors import ConfigError, DataError, ScanError
from nowcastd.io.domain import Domain
from nowcastd.io.readers.scan import GridInfo, Scan
from nowcastd.io.scan_directory import ScanDirectory
from nowcastd.io.scan_settings import ReaderConfig, read_scan_settings

logger = logging.getLogger(__name__)

__all__ = [
    "RadarSequence",
    "ScanFile",
    "open_sequence",
    "read_movie_sequence",
    "read_scan_sequence",
]


@dataclass(frozen=True, kw_only=True)
class ScanFile:
    """One scan file a sequence's frame came from."""

    path: Path
    valid_time: datetime


@dataclass(frozen=True, kw_only=True, eq=False)
class RadarSequence:
    """T frames of rain rate (mm/h, NaN = no data) on the model grid, oldest first; `files`:
    the scan file of each frame (none for a movie); `pixel_km`: the model grid's pixel size
    (the geometric mean of its two sides; None when the data does not state it); `padded`:
    the same frames with the domain's halo on every side (None: no halo)."""

    precip: np.ndarray  # (T, H, W) float32
    time_unix: np.ndarray  # (T,) int64 seconds, increasing
    timestep_seconds: int
    source: str
    domain: Domain
    files: tuple[ScanFile, ...] = ()
    pixel_km: float | None = None  # the model grid's pixel size, when the data states it
    padded: np.ndarray | None = None  # (T, H + 2 halo, W + 2 halo) float32

    def __post_init__(self) -> None:
        precip = np.asarray(self.precip, dtype=np.float32)
        times = np.asarray(self.time_unix, dtype=np.int64)
        if precip.ndim != 3 or times.shape != precip.shape[:1]:
            raise ValueError(
                f"RadarSequence: expected precip (T, H, W) and time_unix (T,), got "
                f"{precip.shape} and {times.shape}"
            )
        if precip.shape[1:] != self.domain.model_shape:
            raise ValueError(
                f"RadarSequence: frames {precip.shape[1:]} differ from the domain's model grid "
                f"{self.domain.model_shape}"
            )
        if self.timestep_seconds < 1:
            raise ValueError(
                f"RadarSequence.timestep_seconds: expected >= 1, got {self.timestep_seconds}"
            )
        object.__setattr__(self, "precip", precip)
        object.__setattr__(self, "time_unix", times)
        if self.padded is not None:
            m, (h, w) = self.domain.halo, self.grid
            if self.padded.shape != (precip.shape[0], h + 2 * m, w + 2 * m):
                raise ValueError(
                    f"RadarSequence.padded: expected {(precip.shape[0], h + 2 * m, w + 2 * m)} "
                    f"(the frames with a halo of {m}), got {self.padded.shape}"
                )

    @property
    def grid(self) -> tuple[int, int]:
        return self.domain.model_shape

    @property
    def margin(self) -> int:
        """The halo of `padded` (0 without one)."""
        return 0 if self.padded is None else self.domain.halo

    @property
    def window_frames(self) -> np.ndarray:
        """The frames forecasts start from: `padded` with a halo, else `precip`."""
        return self.precip if self.padded is None else self.padded

    def starts(self, length: int) -> np.ndarray:
        """Indices of every window of `length` frames one time step apart."""
        return window_starts(self.precip.shape[0], length, 1, self.time_unix, self.timestep_seconds)

    def iso_time(self, index: int) -> str:
        t = datetime.fromtimestamp(int(self.time_unix[index]), UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix_from_iso(iso: tuple[str, ...], where: str) -> np.ndarray:
    try:
        stamps = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in iso]
    except ValueError as e:
        raise DataError(f"{where}: 'time' is not ISO-8601: {e}") from e
    return np.array(
        [int((s if s.tzinfo else s.replace(tzinfo=UTC)).timestamp()) for s in stamps], np.int64
    )


def _pixel_km(attrs: Mapping[str, Any], block: int) -> float | None:
    """The model pixel in km from a movie's `xpixelsize`/`ypixelsize` (metres, or degrees with
    `cartesian_unit` "degrees": km at the grid's middle latitude from `y1`, `y2`)."""
    try:
        dx, dy = float(attrs["xpixelsize"]), float(attrs["ypixelsize"])
    except (KeyError, TypeError, ValueError):
        return None
    unit = attrs.get("cartesian_unit", "m")
    unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    if unit.startswith("deg"):
        lat = 0.5 * (float(attrs.get("y1", 0.0)) + float(attrs.get("y2", 0.0)))
        dx, dy = dx * 111.32 * math.cos(math.radians(lat)), dy * 110.57
        return block * math.sqrt(dx * dy)
    scale = 1.0 if unit == "km" else 1e-3
    return block * math.sqrt(dx * dy) * scale


def read_movie_sequence(
    path: str | Path,
    *,
    crop: tuple[int, int, int, int] | None = None,
    block: int = 1,
    frames: slice | None = None,
) -> RadarSequence:
    """An HDF5 radar movie in mm/h (see the module docstring) on the cropped, averaged grid;
    `frames`: only these frames (every 2nd, the last 20, ...)."""
    path = Path(path)
    where = f"movie {path.name}"
    chosen = frames or slice(None)
    with open_movie(path, where) as (h, ds, units):
        if units not in RATE_UNITS:
            raise DataError(
                f"{where}: expected precip units a rain rate {RATE_UNITS}, got {units!r}"
            )
        unix, iso = read_times(h)
        step = h.attrs.get("timestep_seconds")
        picked = range(len(ds))[chosen]
        if len(picked) == 0:
            raise DataError(f"{where}: 'precip' holds no frames")
        domain = check_geometry(tuple(ds.shape[1:]), crop, block, where)
        padded = domain.with_halo()
        fields = np.stack([padded.apply(ds[t], name=f"{where} frame {t}") for t in picked])
        pixel_km = _pixel_km(h.attrs, block)
    if unix is None and iso is not None:
        unix = _unix_from_iso(iso, where)
    if frames is not None:
        unix = None if unix is None else unix[chosen]
        step = None if chosen.step not in (None, 1) else step
    if step is None and unix is not None and len(unix) > 1:
        step = time_step(unix)
    if step is None:
        raise DataError(f"{where}: expected a root attribute 'timestep_seconds' or frame times")
    step = int(step)
    if unix is None:
        unix = np.arange(fields.shape[0], dtype=np.int64) * step
    return RadarSequence(
        precip=_inner(fields, domain.halo),
        time_unix=unix,
        timestep_seconds=step,
        source=str(path),
        domain=domain,
        pixel_km=pixel_km,
        padded=fields if domain.halo else None,
    )


def _inner(fields: np.ndarray, margin: int) -> np.ndarray:
    """The model grid of (..., H, W) frames with a halo of `margin` (the same tiles: the halo
    is whole blocks)."""
    return fields[..., margin : fields.shape[-2] - margin, margin : fields.shape[-1] - margin]


def _first_domain(
    scan: Scan,
    crop: tuple[int, int, int, int] | None,
    block: int,
    domain_for: Callable[[tuple[int, int]], Domain] | None,
) -> Domain:
    """The domain on the first scan's native shape: `domain_for` it, else `crop` and `block`."""
    shape = scan.field.shape
    if domain_for is not None:
        return domain_for(shape)
    return check_geometry(shape, crop, block, f"scan {scan.path.name}")


def _field_on(
    domain: Domain, scan: Scan, read_already: bool, found: ScanDirectory
) -> np.ndarray | None:
    """The scan's field on `domain` with its halo, or None (logged) for a second scan of a valid time
    `read_already` or a scan of another grid (named in `found.skipped`)."""
    if read_already:
        logger.warning(
            "skipping %s: a scan valid at %s was read already", scan.path.name, scan.valid_time
        )
        return None
    try:
        return domain.with_halo().apply(scan)
    except ScanError as e:  # another grid: this file's refusal, not the evaluation's end
        logger.warning("skipping %s: %s", scan.path.name, e)
        found.skipped.append(scan.path.name)
        return None


def read_scan_sequence(
    directory: str | Path,
    *,
    reader: ReaderConfig | None = None,
    domain: Domain | None = None,
    crop: tuple[int, int, int, int] | None = None,
    block: int = 1,
    domain_for: Callable[[tuple[int, int]], Domain] | None = None,
) -> RadarSequence:
    """Every radar scan in `directory`, sorted by valid time, on `domain` (or crop and block,
    or `domain_for` the first scan's native shape).

    `reader` is serve's ReaderConfig (default: detect the format). Give either `domain` or
    `crop`/`block`, not both.
    """
    directory = Path(directory)
    if domain is not None and (crop is not None or block != 1):
        raise ConfigError("give --crop/--block or a [domain] table, not both")
    found = ScanDirectory(directory=directory, reader=reader or ReaderConfig())
    fields: dict[int, tuple[ScanFile, np.ndarray]] = {}
    pixel_km = None
    for scan in found.scans():
        if domain is None:
            domain = _first_domain(scan, crop, block, domain_for)
        if pixel_km is None:
            pixel_km = _grid_pixel_km(domain, scan.grid)
        stamp = int(scan.valid_time.timestamp())
        field = _field_on(domain, scan, stamp in fields, found)
        if field is not None:
            fields[stamp] = (ScanFile(path=scan.path, valid_time=scan.valid_time), field)
    skipped = len(found.skipped)
    if len(fields) < 2 or domain is None:
        raise DataError(
            f"{directory}: expected at least 2 radar scans, got {len(fields)} "
            f"({skipped} files skipped)"
        )
    times = np.array(sorted(fields), dtype=np.int64)
    step = time_step(times)
    logger.info("%s: %d scans, step %d s, %d files skipped", directory, len(times), step, skipped)
    frames = np.stack([fields[int(t)][1] for t in times])
    return RadarSequence(
        precip=_inner(frames, domain.halo),
        padded=frames if domain.halo else None,
        time_unix=times,
        timestep_seconds=step,
        source=str(directory),
        domain=domain,
        files=tuple(fields[int(t)][0] for t in times),
        pixel_km=pixel_km,
    )


def _grid_pixel_km(domain: Domain, grid: GridInfo) -> float | None:
    """The model pixel in km from a scan's grid (metres), None if it does not say."""
    try:
        model = domain.crop_grid(grid)
    except ScanError:  # a grid the domain cannot describe: the size stays unknown
        return None
    if model.xpixelsize is None or model.ypixelsize is None:
        return None
    return math.sqrt(model.xpixelsize * model.ypixelsize) / 1000.0


def open_sequence(
    path: str | Path,
    *,
    crop: tuple[int, int, int, int] | None = None,
    block: int = 1,
    config: Path | None = None,
) -> RadarSequence:
    """A directory of scans (with the config's [reader] and [domain]) or an HDF5 movie."""
    path = Path(path)
    if path.is_dir():
        reader, domain = read_scan_settings(config)
        return read_scan_sequence(path, reader=reader, domain=domain, crop=crop, block=block)
    if not path.is_file():
        raise DataError(f"{path}: expected an HDF5 movie or a directory of scans, found neither")
    return read_movie_sequence(path, crop=crop, block=block)
