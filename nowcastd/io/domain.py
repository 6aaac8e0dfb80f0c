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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nowcastd.errors import ScanError
from nowcastd.io.readers.guard import ScanRefused, printable
from nowcastd.io.readers.scan import GridInfo, Scan
from nowcastd.io.transform import DataTransform

__all__ = ["Domain", "block_average"]


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
    """

    native_shape: tuple[int, int]
    row0: int
    col0: int
    height: int
    width: int
    block: int = 1
    projection: str | None = None
    extent: tuple[float, float, float, float] | None = None

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
