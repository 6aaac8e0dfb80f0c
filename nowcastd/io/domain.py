"""The model domain: a crop window on the radar's native grid, optionally block-averaged.

The one implementation of how a physical field becomes model input, for serving (one scan) and
for training (a movie's frames, a dataset build) alike:

1. crop ``[row0:row0+height, col0:col0+width]``; a field on any other grid is rejected, never
   resampled;
2. block average (`block_average`): a pixel without a finite value has no data; a
   `block` x `block` tile's value is the mean of its valid pixels, NaN only when none is
   valid, and its validity the fraction of valid pixels. So coverage edges keep their rain;
3. the `DataTransform` to model units;
4. the NaN rule (`Domain.model_input`): tiles without any valid data are 0 in model units, and
   the validity fraction (1 = valid, 0 = no data) says where.

The halo (`halo_km`, `Domain.halo` model pixels, `Domain.with_halo`): a margin of the native
scan on every side of the window, from which a Lagrangian model takes its motion and advection
(`nowcastd.nowcast`). Unset, it is what the scan offers: the widest margin that fits inside the
native grid on every side, at most half the model grid's shorter side (`HALO_CAP`); 0 is off.
A margin in km needs the native pixel size (`extent`), and must fit inside the native grid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nowcastd.errors import ScanError
from nowcastd.io.readers.guard import ScanRefused, printable
from nowcastd.io.readers.scan import GridInfo, Scan
from nowcastd.io.transform import DataTransform

__all__ = ["HALO_CAP", "Domain", "block_average"]

#: The default halo is at most this fraction of the model grid's shorter side: the motion and
#: the advection then run on at most (2 x 2) times the model grid's pixels.
HALO_CAP = 0.5


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def block_average(fields: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(..., H, W) -> the mean of each tile's finite pixels and their fraction, both float32.

    H and W must be multiples of `block`. The mean is NaN where a tile has no finite pixel. It
    is summed in float32 in numpy's `mean` order, so a fully valid tile gives exactly
    `tile.mean()` (the development set's 2x2 pooling).
    """
    x = np.asarray(fields, dtype=np.float32)
    *lead, height, width = x.shape
    tiles = x.reshape(*lead, height // block, block, width // block, block)
    valid = np.isfinite(tiles)
    count = valid.sum(axis=(-3, -1), dtype=np.float32)
    total = np.where(valid, tiles, np.float32(0.0)).sum(axis=(-3, -1))
    mean = np.full(count.shape, np.nan, dtype=np.float32)
    np.divide(total, count, out=mean, where=count > 0)
    return mean, count / np.float32(block * block)


@dataclass(frozen=True, kw_only=True)
class Domain:
    """Crop `[row0:row0+height, col0:col0+width]` of `native_shape`, then average `block`^2 tiles.

    The model grid is `(height // block, width // block)`; height and width must be multiples
    of `block`. `projection` (proj4) and `extent` (x1, y1, x2, y2: the native grid's outer edges
    in metres, row 0 north) describe the native grid for scans that do not (`.npy`).
    `halo_km`: the margin around the window a Lagrangian model takes its motion and advection
    from (module docstring); None: what the scan offers, 0: none.
    """

    native_shape: tuple[int, int]
    row0: int
    col0: int
    height: int
    width: int
    block: int = 1
    projection: str | None = None
    extent: tuple[float, float, float, float] | None = None
    halo_km: float | None = None

    def __post_init__(self) -> None:
        if self.extent is not None:
            edges = tuple(float(v) for v in self.extent)
            if len(edges) != 4 or not (edges[0] < edges[2] and edges[1] < edges[3]):
                raise ValueError(
                    "Domain.extent: expected x1, y1, x2, y2 in metres with x1 < x2 and y1 < y2, "
                    f"got {self.extent!r}"
                )
            object.__setattr__(self, "extent", edges)
        shape = tuple(self.native_shape)
        if len(shape) != 2 or not all(_is_int(n) and n > 0 for n in shape):
            raise ValueError(
                f"Domain.native_shape: expected two positive ints, got {self.native_shape!r}"
            )
        object.__setattr__(self, "native_shape", (int(shape[0]), int(shape[1])))
        for name in ("row0", "col0"):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 0):
                raise ValueError(f"Domain.{name}: expected an int >= 0, got {value!r}")
        for name in ("height", "width", "block"):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 1):
                raise ValueError(f"Domain.{name}: expected an int >= 1, got {value!r}")
        for name, start, size, limit in (
            ("height", self.row0, self.height, shape[0]),
            ("width", self.col0, self.width, shape[1]),
        ):
            if start + size > limit:
                origin = "row0" if name == "height" else "col0"
                raise ValueError(
                    f"Domain.{name}: expected {origin} + {name} <= {limit} (native grid), "
                    f"got {start} + {size} = {start + size}"
                )
            if size % self.block:
                raise ValueError(
                    f"Domain.{name}: expected a multiple of block={self.block}, got {size}"
                )
        self._check_halo()

    def _check_halo(self) -> None:
        km = self.halo_km
        if km is None or km == 0:
            return
        if not (isinstance(km, int | float) and np.isfinite(km) and km > 0):
            raise ValueError(f"Domain.halo_km: expected a number of km >= 0, got {km!r}")
        if self.extent is None:
            raise ValueError(
                f"Domain.halo_km: expected extent too (the native pixel size turns {km:g} km "
                "into pixels), got none; leave halo_km unset for what the scan offers"
            )
        if self.halo > self.fitting_halo:
            size = self.block * self.native_pixel_km
            raise ValueError(
                f"Domain.halo_km: expected at most {self.fitting_halo * size:g} km (the widest "
                f"margin of {size:g} km pixels inside the native grid on every side), got {km:g}"
            )

    @classmethod
    def from_crop(
        cls, shape: tuple[int, int], crop: tuple[int, int, int, int] | None, *, block: int = 1
    ) -> Domain:
        """The domain of `crop` = (row0, col0, height, width) of `shape`; None: the whole grid."""
        if crop is None:
            return cls.full(shape, block=block)
        row0, col0, height, width = crop
        return cls(
            native_shape=shape, row0=row0, col0=col0, height=height, width=width, block=block
        )

    @classmethod
    def full(cls, shape: tuple[int, int], *, block: int = 1) -> Domain:
        """The whole native grid (block-averaged if `block` > 1)."""
        return cls(native_shape=shape, row0=0, col0=0, height=shape[0], width=shape[1], block=block)

    @property
    def model_shape(self) -> tuple[int, int]:
        return (self.height // self.block, self.width // self.block)

    @property
    def crop(self) -> tuple[int, int, int, int]:
        return (self.row0, self.col0, self.height, self.width)

    @property
    def fitting_halo(self) -> int:
        """The widest margin, in model pixels, inside the native grid on every side."""
        rows, cols = self.native_shape
        bottom, right = rows - self.row0 - self.height, cols - self.col0 - self.width
        return min(self.row0, self.col0, bottom, right) // self.block

    @property
    def native_pixel_km(self) -> float:
        """The native pixel's side in km (the geometric mean of its two), from `extent`."""
        if self.extent is None:
            raise ValueError("Domain.native_pixel_km: expected an extent, got none")
        x1, y1, x2, y2 = self.extent
        rows, cols = self.native_shape
        return float(np.sqrt((x2 - x1) / cols * (y2 - y1) / rows)) / 1000.0

    @property
    def halo(self) -> int:
        """The halo in model pixels on every side (`halo_km`; module docstring)."""
        if self.halo_km is None:
            return min(self.fitting_halo, int(HALO_CAP * min(self.model_shape)))
        if self.halo_km == 0:
            return 0
        return round(self.halo_km / (self.block * self.native_pixel_km))

    def with_halo(self) -> Domain:
        """The window grown by the halo on every side (itself without one): the padded grid
        `(height // block + 2 halo, width // block + 2 halo)`, whose inner model grid is this
        domain's, tile for tile."""
        m = self.halo * self.block
        if m == 0:
            return self
        return dataclasses.replace(
            self,
            row0=self.row0 - m,
            col0=self.col0 - m,
            height=self.height + 2 * m,
            width=self.width + 2 * m,
            halo_km=0.0,
        )

    def _window(self, scan_or_field: Scan | np.ndarray, name: str | None) -> np.ndarray:
        if isinstance(scan_or_field, Scan):
            field = scan_or_field.field
            name = name or scan_or_field.name
        else:
            field = np.asarray(scan_or_field)
            name = name or "<array>"
        if field.shape[-2:] != self.native_shape:
            raise ScanError(f"scan {name}: expected grid {self.native_shape}, got {field.shape}")
        return field[..., self.row0 : self.row0 + self.height, self.col0 : self.col0 + self.width]

    def apply(self, scan_or_field: Scan | np.ndarray, *, name: str | None = None) -> np.ndarray:
        """Crop and block-average a native-grid field (or a (..., H, W) stack) to float32.

        Physical units in and out; NaN where a model pixel has no valid data.
        """
        return block_average(self._window(scan_or_field, name), self.block)[0]

    def model_input(
        self,
        scan_or_field: Scan | np.ndarray,
        transform: DataTransform,
        *,
        name: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A native-grid field (or stack) -> (model units, valid fraction), float32 model grid.

        The NaN rule: model pixels without any valid data are 0, with valid fraction 0.
        """
        mean, valid = block_average(self._window(scan_or_field, name), self.block)
        model = np.nan_to_num(transform.to_model(mean), nan=0.0)
        return model.astype(np.float32), valid

    def crop_grid(self, grid: GridInfo, *, name: str = "grid") -> GridInfo:
        """The GridInfo of the model grid (extent and pixel size moved with the crop/block).

        ScanError for another native shape; ScanRefused "bad_geometry" when the scan's
        geometry does not survive the crop (a pixel size that the block makes infinite, an
        extent that overflows): `name` (the scan's) is named in both."""
        if grid.shape != self.native_shape:
            raise ScanError(
                f"{printable(name)}: expected native shape {self.native_shape}, got {grid.shape}"
            )
        try:
            return self._cropped(self._described(grid))
        except (ValueError, ArithmeticError) as e:
            raise ScanRefused(
                "bad_geometry",
                f"{printable(name)}: expected a grid geometry that survives the crop to the "
                f"domain {self.crop} block {self.block}, got {e}",
            ) from e

    def _cropped(self, grid: GridInfo) -> GridInfo:
        identity = self.model_shape == self.native_shape
        extent = grid.extent
        x1, y1, x2, y2 = (
            (None, None, None, None) if extent is None else self._crop_extent(grid, extent)
        )

        def scaled(size: float | None) -> float | None:
            return None if size is None else size * self.block

        return dataclasses.replace(
            grid,
            shape=self.model_shape,
            corners_lonlat=grid.corners_lonlat if identity else None,
            xpixelsize=scaled(grid.xpixelsize),
            ypixelsize=scaled(grid.ypixelsize),
            x1=x1,
            y1=y1,
            x2=x2,
            y2=y2,
        )

    def _crop_extent(
        self, grid: GridInfo, extent: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        """The outer edges (x1, y1, x2, y2) of the window of `grid`, whose edges are `extent`."""
        west, south, east, north = extent
        dx = (east - west) / grid.shape[1]
        dy = (north - south) / grid.shape[0]
        x1 = west + self.col0 * dx
        if grid.yorigin == "upper":
            y2 = north - self.row0 * dy
            y1 = y2 - self.height * dy
        else:
            y1 = south + self.row0 * dy
            y2 = y1 + self.height * dy
        return x1, y1, x1 + self.width * dx, y2

    def _described(self, grid: GridInfo) -> GridInfo:
        """`grid` with the projection and extent of the settings where the scan has none."""
        if grid.projection is None and self.projection:
            grid = dataclasses.replace(grid, projection=self.projection)
        if not grid.has_extent and self.extent is not None:
            x1, y1, x2, y2 = self.extent
            grid = dataclasses.replace(
                grid,
                x1=x1,
                y1=y1,
                x2=x2,
                y2=y2,
                yorigin="upper",
                xpixelsize=(x2 - x1) / grid.shape[1],
                ypixelsize=(y2 - y1) / grid.shape[0],
            )
        return grid
