"""The model domain: a crop window on the radar's native grid, optionally block-averaged.

A scan on any other grid is rejected, never resampled. Block averaging of a `block` x `block`
tile ignores NaN pixels: the result is the mean of the tile's valid pixels, and NaN only when
every pixel of the tile is NaN. So coverage edges keep their rain and the NaN mask shrinks a
little; callers that need "fully covered" tiles can derive that from the native NaN mask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nowcastd.errors import ScanError
from nowcastd.io.readers.scan import GridInfo, Scan

__all__ = ["Domain"]


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class Domain:
    """Crop `[row0:row0+height, col0:col0+width]` of `native_shape`, then average `block`^2 tiles.

    The model grid is `(height // block, width // block)`; height and width must be multiples
    of `block`.
    """

    native_shape: tuple[int, int]
    row0: int
    col0: int
    height: int
    width: int
    block: int = 1

    def __post_init__(self) -> None:
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
    def full(cls, shape: tuple[int, int], *, block: int = 1) -> Domain:
        """The whole native grid (block-averaged if `block` > 1)."""
        return cls(
            native_shape=tuple(shape), row0=0, col0=0, height=shape[0], width=shape[1], block=block
        )

    @property
    def model_shape(self) -> tuple[int, int]:
        return (self.height // self.block, self.width // self.block)

    def apply(self, scan_or_field: Scan | np.ndarray, *, name: str | None = None) -> np.ndarray:
        """Crop and block-average a native-grid field to a float32 model-grid array."""
        if isinstance(scan_or_field, Scan):
            field = scan_or_field.field
            name = name or scan_or_field.name
        else:
            field = np.asarray(scan_or_field)
            name = name or "<array>"
        if field.shape != self.native_shape:
            raise ScanError(f"scan {name}: expected grid {self.native_shape}, got {field.shape}")
        window = field[self.row0 : self.row0 + self.height, self.col0 : self.col0 + self.width]
        window = window.astype(np.float32, copy=False)
        if self.block == 1:
            return np.array(window, dtype=np.float32)
        h, w = self.model_shape
        tiles = window.reshape(h, self.block, w, self.block).astype(np.float64)
        valid = ~np.isnan(tiles)
        count = valid.sum(axis=(1, 3))
        total = np.where(valid, tiles, 0.0).sum(axis=(1, 3))
        out = np.full((h, w), np.nan, dtype=np.float64)
        np.divide(total, count, out=out, where=count > 0)
        return out.astype(np.float32)

    def crop_grid(self, grid: GridInfo) -> GridInfo:
        """The GridInfo of the model grid (extent and pixel size moved with the crop/block)."""
        if grid.shape != self.native_shape:
            raise ScanError(f"grid: expected native shape {self.native_shape}, got {grid.shape}")
        identity = self.model_shape == self.native_shape
        changes: dict[str, object] = {"shape": self.model_shape}
        if not identity:
            changes["corners_lonlat"] = None
        for key in ("xpixelsize", "ypixelsize"):
            value = getattr(grid, key)
            changes[key] = None if value is None else value * self.block
        if grid.has_extent:
            dx = (grid.x2 - grid.x1) / grid.shape[1]
            dy = (grid.y2 - grid.y1) / grid.shape[0]
            x1 = grid.x1 + self.col0 * dx
            if grid.yorigin == "upper":
                y2 = grid.y2 - self.row0 * dy
                y1 = y2 - self.height * dy
            else:
                y1 = grid.y1 + self.row0 * dy
                y2 = y1 + self.height * dy
            changes.update(x1=x1, x2=x1 + self.width * dx, y1=y1, y2=y2)
        return dataclasses.replace(grid, **changes)
