"""KNMI's own radar HDF5 ("hdftag 3.5", e.g. RAD_NL25_RAP_5min), which is NOT ODIM_H5.

Layout used (checked on RAD_NL25_RAP_5min_201008260000.h5):

- `image1/image_data`: uint16 (765, 700), row 0 north.
- `image1/calibration` attr `calibration_formulas`: "GEO=0.01*PV+0.0" (any spacing/signs);
  `calibration_missing_data` / `calibration_out_of_image`: raw values meaning no data. 65535 is
  always treated as missing too.
- `image1` attr `image_geo_parameter`: "ACCUMULATED_PRECIPITATION_[MM]" (mm in the window) or
  "REFLECTIVITY_[DBZ]" (converted with Z = a R^b).
- `overview` attrs `product_datetime_start/end`: "26-AUG-2010;00:00:00.000". The valid time is
  the end; an accumulation in mm is divided by (end - start) to give mm/h. If either is missing
  the accumulation is assumed to be 5 min (valid time then must come from the end attribute).
- `geographic`: `geo_column_offset`, `geo_row_offset`, `geo_pixel_size_x/y` in the unit of
  `geo_dim_pixel` ("KM,KM"); the outer top-left corner is at
  (col_offset * size_x, row_offset * size_y), i.e. (0, -3650 km) here. `geo_product_corners`
  are (lon, lat) of LL, UL, UR, LR. `map_projection/projection_proj4_params` is in km; GridInfo
  carries it converted to metres (a, b, R, x_0, y_0 times 1000, `+units=m`).
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from nowcastd.errors import ScanError
from nowcastd.io.readers import geometry
from nowcastd.io.readers.chunks import checked_dataset
from nowcastd.io.readers.guard import ReadPolicy, ScanRefused, check_calibration, printable
from nowcastd.io.readers.scan import GridInfo, as_text, hdf5_reader, rain_rate_from_dbz

__all__ = ["read_knmi", "proj4_km_to_m"]

logger = logging.getLogger(__name__)

_MISSING = 65535
_DEFAULT_ACCUMULATION_MINUTES = 5.0
_UNSIGNED = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FORMULA = re.compile(
    rf"^\s*GEO\s*=\s*([-+]?{_UNSIGNED})\s*\*\s*PV\s*(?:([-+])\s*({_UNSIGNED}))?\s*$"
)
_LENGTH_PARAMS = ("a", "b", "R", "x_0", "y_0")
#: Data types of KNMI radar images (`dtype.str` without the byte order).
DTYPES = "u1 u2"


def parse_calibration(formula: str) -> tuple[float, float]:
    """ "GEO = 0.010000 * PV + 0.000000" -> (gain, offset)."""
    match = _FORMULA.match(formula)
    if match is None:
        raise ValueError(f"expected a calibration like 'GEO=0.01*PV+0.0', got {formula!r}")
    gain = float(match.group(1))
    offset = float(match.group(3) or 0.0)
    if match.group(2) == "-":
        offset = -offset
    return gain, offset


def parse_knmi_time(text: str) -> datetime:
    """ "26-AUG-2010;00:00:00.000" -> aware UTC datetime."""
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y;%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return datetime.strptime(text.strip(), "%d-%b-%Y;%H:%M:%S").replace(tzinfo=UTC)


def proj4_km_to_m(proj4: str) -> str:
    """Rewrite a proj4 string whose lengths are km into metres (adds `+units=m`)."""
    out = []
    for token in proj4.split():
        key, sep, value = token.lstrip("+").partition("=")
        if sep and key in _LENGTH_PARAMS:
            metres = float(value) * 1000.0
            if not math.isfinite(metres):
                raise ValueError(f"proj4 +{key}: expected a finite length in km, got {value!r}")
            token = f"+{key}={metres:.10g}"
        elif sep and key == "units":
            continue
        out.append(token)
    return " ".join(out + ["+units=m"])


def _raw_values(path: Path, key: str, value: object) -> list[int]:
    """The raw values (integers of 0..65535) that the calibration attribute `key` names."""
    values = np.asarray(value).reshape(-1)
    if values.size > 16 or values.dtype.kind not in "iuf" or not np.all(np.isfinite(values)):
        raise ScanRefused(
            "corrupt",
            f"{printable(path.name)}: expected {key} as at most 16 raw values, "
            f"got {values.size} of type {values.dtype}",
        )
    return [int(v) for v in values]


def _calibrated(dtype: np.dtype, gain: float, offset: float, missing: set[int]) -> np.ndarray:
    """The value (float64, NaN for `missing`) of every raw value of the unsigned `dtype`: a
    table that `np.take(table, raw)` looks up, element for element `raw * gain + offset`."""
    size = int(np.iinfo(dtype).max) + 1
    table = np.arange(size, dtype=np.float64) * gain + offset
    table[[v for v in missing if 0 <= v < size]] = np.nan
    return table


def _grid(path: Path, h: h5py.File, shape: tuple[int, int]) -> GridInfo:
    """The grid of `geographic`, each number checked where it is read (`geometry`)."""
    if "geographic" not in h:
        return GridInfo(shape=shape)
    geo = h["geographic"].attrs
    name = path.name
    units = as_text(geo["geo_dim_pixel"]).upper() if "geo_dim_pixel" in geo else "KM,KM"
    factor = 1000.0 if units.startswith("KM") else 1.0
    size_x = geometry.pixel_size(name, "geo_pixel_size_x", geo["geo_pixel_size_x"], factor)
    size_y = geometry.pixel_size(name, "geo_pixel_size_y", geo["geo_pixel_size_y"], factor)
    bound = (-geometry.EXTENT_METRES, geometry.EXTENT_METRES)
    x1 = (
        geometry.number(name, "geo_column_offset", geo["geo_column_offset"], bound, "pixels")
        * size_x
    )
    y2 = geometry.number(name, "geo_row_offset", geo["geo_row_offset"], bound, "pixels") * -size_y
    edges = (x1, y2 - shape[0] * size_y, x1 + shape[1] * size_x, y2)
    geometry.check_extent(name, edges)
    corners = None
    if "geo_product_corners" in geo:
        c = np.asarray(geo["geo_product_corners"])
        if c.size != 8:
            raise ScanRefused(
                "bad_geometry",
                f"{printable(name)}: expected geo_product_corners as 8 numbers, got {c.shape}",
            )
        # float32 in the file: keep the shortest decimal that round-trips (55.974, not 55.97399)
        corners = tuple(
            (
                geometry.corner(name, "geo_product_corners", float(str(lon)), latitude=False),
                geometry.corner(name, "geo_product_corners", float(str(lat)), latitude=True),
            )
            for lon, lat in c.reshape(4, 2)
        )
    projection = None
    if "map_projection" in h["geographic"]:
        mp = h["geographic/map_projection"].attrs
        if "projection_proj4_params" in mp:
            projection = as_text(mp["projection_proj4_params"])
            if factor == 1000.0:
                projection = proj4_km_to_m(projection)
    return GridInfo(
        shape=shape,
        projection=projection,
        xpixelsize=size_x,
        ypixelsize=size_y,
        x1=edges[0],
        x2=edges[2],
        y1=edges[1],
        y2=edges[3],
        yorigin="upper",
        corners_lonlat=corners,
    )


def _decode(
    path: Path, h: h5py.File, *, zr_a: float, zr_b: float, policy: ReadPolicy
) -> tuple[np.ndarray, datetime, GridInfo]:
    dataset = checked_dataset(path, h["image1/image_data"], DTYPES, policy)
    cal = h["image1/calibration"].attrs
    gain, offset = parse_calibration(as_text(cal["calibration_formulas"]))
    check_calibration(path.name, gain, offset, policy)
    grid = _grid(path, h, dataset.shape)  # refused before any data is read
    raw = dataset[...]
    missing = {_MISSING}
    for name in ("calibration_missing_data", "calibration_out_of_image"):
        if name in cal:
            missing.update(_raw_values(path, name, cal[name]))
    parameter = as_text(h["image1"].attrs.get("image_geo_parameter", b"")).upper()
    overview = h["overview"].attrs
    end = parse_knmi_time(as_text(overview["product_datetime_end"]))
    if "product_datetime_start" in overview:
        start = parse_knmi_time(as_text(overview["product_datetime_start"]))
        minutes = (end - start).total_seconds() / 60.0
    else:
        minutes = _DEFAULT_ACCUMULATION_MINUTES

    table = _calibrated(raw.dtype, gain, offset, missing)
    if "REFLECTIVITY" in parameter:
        rate = rain_rate_from_dbz(np.take(table, raw), zr_a=zr_a, zr_b=zr_b)
    elif parameter == "" or "PRECIPITATION" in parameter:
        if minutes <= 0:
            raise ScanError(
                f"{printable(path.name)}: expected product end after start, got {minutes} min"
            )
        rate = np.take((table * (60.0 / minutes)).astype(np.float32), raw)
    else:
        raise ScanError(
            f"{printable(path.name)}: expected image_geo_parameter ACCUMULATED_PRECIPITATION or "
            f"REFLECTIVITY, got {parameter!r}"
        )
    logger.debug("read KNMI %s valid %s", path.name, end.isoformat())
    return rate, end, grid


read_knmi = hdf5_reader(_decode, "KNMI radar HDF5 file", "knmi")
