"""Geometry attributes of a scan, validated where they are read.

A pixel size, a corner or an offset is one finite number within plausible bounds, or the scan
is refused (`ScanRefused("bad_geometry")`) naming the attribute, what it should be and what it
is: a pixel is 1 m to 100 km wide (`PIXEL_METRES`), projected coordinates lie within 20 000 km
of the projection's origin (`EXTENT_METRES`, half the Earth's circumference), longitudes within
-360..360 degrees and latitudes within -90..90. So no grid that reaches the daemon can turn
into infinities when it is cropped or coarsened.
"""

from __future__ import annotations

import math

import numpy as np

from nowcastd.io.readers.guard import ScanRefused, printable

__all__ = ["EXTENT_METRES", "PIXEL_METRES", "check_extent", "corner", "number", "pixel_size"]

PIXEL_METRES = (1.0, 100_000.0)
EXTENT_METRES = 2.0e7
_LON, _LAT = (-360.0, 360.0), (-90.0, 90.0)


def _shown(value: object) -> str:
    array = np.asarray(value)
    if array.size != 1:
        return f"an array of shape {array.shape}"
    return printable(repr(array.reshape(-1)[0]))[:80]


def _scalar(value: object) -> float | None:
    """`value` as one finite float, or None when it is no single finite number."""
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "iuf":
        return None
    result = float(array.reshape(-1)[0])
    return result if math.isfinite(result) else None


def _refuse(name: str, key: str, expected: str, value: object) -> ScanRefused:
    return ScanRefused(
        "bad_geometry", f"{printable(name)}: expected {key} {expected}, got {_shown(value)}"
    )


def number(name: str, key: str, value: object, bounds: tuple[float, float], unit: str) -> float:
    """The one finite number `value` of the attribute `key` of the file `name`, within
    `bounds`; ScanRefused("bad_geometry") otherwise."""
    result = _scalar(value)
    low, high = bounds
    if result is None or not low <= result <= high:
        raise _refuse(name, key, f"one number in {low:g}..{high:g} {unit}".rstrip(), value)
    return result


def pixel_size(name: str, key: str, value: object, metres_per_unit: float = 1.0) -> float:
    """A pixel size in metres from `value` in units of `metres_per_unit` (its sign dropped:
    KNMI writes the y size negative)."""
    result = _scalar(value)
    size = None if result is None else abs(result) * metres_per_unit
    low, high = PIXEL_METRES
    if size is None or not low <= size <= high:
        unit = "m" if metres_per_unit == 1 else f"units of {metres_per_unit:g} m"
        expected = f"a pixel of {low:g}..{high:g} m, one number in {unit}"
        raise _refuse(name, key, expected, value)
    return size


def corner(name: str, key: str, value: object, latitude: bool) -> float:
    """A corner's longitude or latitude in degrees."""
    return number(name, key, value, _LAT if latitude else _LON, "degrees")


def check_extent(name: str, edges: tuple[float, float, float, float]) -> None:
    """Refuse grid edges (x1, y1, x2, y2, metres) beyond `EXTENT_METRES` of the origin."""
    if not all(math.isfinite(e) and abs(e) <= EXTENT_METRES for e in edges):
        raise ScanRefused(
            "bad_geometry",
            f"{printable(name)}: expected a grid within {EXTENT_METRES:g} m of the projection's "
            f"origin, got edges {tuple(round(e, 1) for e in edges)}",
        )
