"""The one value every radar reader returns: a `Scan` on a described grid (`GridInfo`).

Conventions shared by all readers:

- `Scan.field` is float32 (H, W) rain rate in mm/h; NaN means "no data" (outside coverage,
  blocked, missing). Zero means "measured, no rain".
- `Scan.valid_time` is a timezone-aware UTC datetime; for accumulations it is the END of the
  accumulation window.
- Row 0 is the northern edge (`GridInfo.yorigin == "upper"`) unless a reader says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from nowcastd.io.readers.guard import DEFAULT_POLICY, ReadPolicy, open_hdf5, refusing

__all__ = ["GridInfo", "Scan", "as_text", "rain_rate_from_dbz"]

_YORIGINS = ("upper", "lower")


@dataclass(frozen=True, kw_only=True)
class GridInfo:
    """Where the pixels of a field are.

    Lengths are metres. `x1, y1, x2, y2` are the outer edges of the grid (not pixel centres),
    like pysteps' metadata: x1 west, x2 east, y1 south, y2 north. Anything a source does not
    state is None. `corners_lonlat` holds the (lon, lat) of the corner pixels in ODIM order
    LL, UL, UR, LR when the file gives them.
    """

    shape: tuple[int, int]
    projection: str | None = None
    xpixelsize: float | None = None
    ypixelsize: float | None = None
    x1: float | None = None
    y1: float | None = None
    x2: float | None = None
    y2: float | None = None
    yorigin: str = "upper"
    corners_lonlat: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if len(shape) != 2 or not all(
            isinstance(n, int | np.integer) and not isinstance(n, bool) and n > 0 for n in shape
        ):
            raise ValueError(f"GridInfo.shape: expected two positive ints, got {self.shape!r}")
        object.__setattr__(self, "shape", (int(shape[0]), int(shape[1])))
        if self.yorigin not in _YORIGINS:
            raise ValueError(f"GridInfo.yorigin: expected one of {_YORIGINS}, got {self.yorigin!r}")
        for name in ("xpixelsize", "ypixelsize"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"GridInfo.{name}: expected a positive length in m, got {value!r}")
        edges = (self.x1, self.y1, self.x2, self.y2)
        if any(e is not None for e in edges):
            if any(e is None or not math.isfinite(e) for e in edges):
                raise ValueError(
                    f"GridInfo extent: expected all of x1, y1, x2, y2 finite or all None, "
                    f"got {edges!r}"
                )
            extent = self.extent
            if extent is not None and not (extent[0] < extent[2] and extent[1] < extent[3]):
                raise ValueError(f"GridInfo extent: expected x1 < x2 and y1 < y2, got {edges!r}")
        if self.corners_lonlat is not None:
            corners = tuple((float(lon), float(lat)) for lon, lat in self.corners_lonlat)
            if len(corners) != 4:
                raise ValueError(
                    f"GridInfo.corners_lonlat: expected 4 (lon, lat) pairs, got {len(corners)}"
                )
            object.__setattr__(self, "corners_lonlat", corners)

    @property
    def has_extent(self) -> bool:
        return self.x1 is not None

    @property
    def extent(self) -> tuple[float, float, float, float] | None:
        """(x1, y1, x2, y2), the grid's outer edges in metres; None when they are not known."""
        if self.x1 is None or self.y1 is None or self.x2 is None or self.y2 is None:
            return None
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True, kw_only=True, eq=False)
class Scan:
    """One radar frame in mm/h on its native grid. Compared by identity (it holds an array)."""

    field: np.ndarray = field(repr=False)
    valid_time: datetime
    grid: GridInfo
    path: Path
    source_format: str

    def __post_init__(self) -> None:
        if not isinstance(self.field, np.ndarray) or self.field.dtype != np.float32:
            got = getattr(self.field, "dtype", type(self.field).__name__)
            raise ValueError(f"Scan.field: expected a float32 ndarray, got {got}")
        if self.field.shape != self.grid.shape:
            raise ValueError(
                f"Scan.field: expected shape {self.grid.shape} from grid, got {self.field.shape}"
            )
        offset = self.valid_time.utcoffset()  # None for a naive datetime
        if offset is None or offset.total_seconds() != 0:
            raise ValueError(
                f"Scan.valid_time: expected a timezone-aware UTC datetime, got {self.valid_time!r}"
            )
        object.__setattr__(self, "valid_time", self.valid_time.astimezone(UTC))
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name


def as_text(value: object) -> str:
    """Decode an HDF5 string attribute (bytes, numpy bytes, 1-element array) to `str`."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected a single string, got an array of shape {value.shape}")
        value = value.reshape(()).item()
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).split(b"\0", 1)[0].decode("ascii", errors="strict").strip()
    if isinstance(value, str):
        return value.strip()
    raise TypeError(f"expected a string attribute, got {type(value).__name__}")


def rain_rate_from_dbz(dbz: np.ndarray, *, zr_a: float, zr_b: float) -> np.ndarray:
    """Invert Z = a * R**b (Z in mm^6 m^-3, R in mm/h). NaN stays NaN."""
    if not (zr_a > 0 and zr_b > 0):
        raise ValueError(f"Z-R relation: expected zr_a > 0 and zr_b > 0, got {zr_a}, {zr_b}")
    z = np.power(10.0, np.asarray(dbz, dtype=np.float64) / 10.0)
    return np.power(z / zr_a, 1.0 / zr_b)


def read_hdf5_scan(
    decode: Callable[..., tuple[np.ndarray, datetime, GridInfo]],
    path: str | Path,
    what: str,
    source_format: str,
    policy: ReadPolicy,
    opened: h5py.File | None = None,
    **kwargs: object,
) -> Scan:
    """The `Scan` of an HDF5 reader's `decode(path, h5file, **kwargs)` -> (rain rate, valid time,
    grid), the file opened under `policy` (or `opened`, the file already opened by
    `open_hdf5` under that policy); any failure that the file's bytes provoke becomes one
    ScanRefused naming the file and what it should have been (`guard.refusing`)."""
    path = Path(path)
    with refusing(path, f"a readable {what}"):
        if opened is not None:
            field, valid_time, grid = decode(path, opened, policy=policy, **kwargs)
        else:
            with open_hdf5(path, policy) as h:
                field, valid_time, grid = decode(path, h, policy=policy, **kwargs)
        return Scan(
            field=field.astype(np.float32, copy=False),
            valid_time=valid_time,
            grid=grid,
            path=path,
            source_format=source_format,
        )


def hdf5_reader(
    decode: Callable[..., tuple[np.ndarray, datetime, GridInfo]], what: str, source_format: str
) -> Callable[..., Scan]:
    """The reader `read(path, *, zr_a=200.0, zr_b=1.6, policy=DEFAULT_POLICY, opened=None)
    -> Scan` of an HDF5 format that `decode` understands (`read_hdf5_scan`); `opened`: the
    file already opened by `open_hdf5` under `policy` (format detection's)."""

    def read(
        path: str | Path,
        *,
        zr_a: float = 200.0,
        zr_b: float = 1.6,
        policy: ReadPolicy = DEFAULT_POLICY,
        opened: h5py.File | None = None,
    ) -> Scan:
        return read_hdf5_scan(
            decode, path, what, source_format, policy, opened, zr_a=zr_a, zr_b=zr_b
        )

    read.__doc__ = f"Read a {what} into a `Scan` (mm/h, NaN = no data)."
    return read
