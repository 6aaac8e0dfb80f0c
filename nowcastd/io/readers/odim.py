"""ODIM_H5 (EUMETNET OPERA data information model, v2.x) Cartesian products: COMP and IMAGE.

Rules:

- The first `dataset1/dataN` whose `quantity` is RATE, ACRR, DBZH or TH is read.
- `what` attributes are inherited as the spec says: `dataset1/dataN/what` overrides
  `dataset1/what`, which overrides the root `/what`. gain defaults to 1 and offset to 0;
  nodata/undetect are optional.
- physical = raw * gain + offset. raw == nodata -> NaN; raw == undetect -> 0 mm/h.
- RATE is mm/h as stored. DBZH/TH are inverted with Z = a * R**b (Marshall-Palmer a=200,
  b=1.6 unless told otherwise). ACRR (mm) is divided by the accumulation length in hours,
  taken from startdate/starttime -> enddate/endtime; if those are absent, `prodpar` (hours)
  of the dataset `what` is used; with neither the file is rejected.
- valid_time = enddate+endtime (inherited lookup from the data/dataset `what`) if present,
  else the root `what/date` + `what/time`.
- Row 0 is the northern edge (ODIM images are stored upper-left first). `/where` gives
  projdef, pixel sizes (xscale/yscale, m) and corner lon/lat; the projected extent is not
  stored in ODIM and stays unknown (None) in `GridInfo`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import overload

import h5py
import numpy as np

from nowcastd.errors import ScanError
from nowcastd.io.readers import geometry
from nowcastd.io.readers.chunks import checked_dataset
from nowcastd.io.readers.guard import ReadPolicy, check_calibration, printable
from nowcastd.io.readers.scan import GridInfo, as_text, hdf5_reader, rain_rate_from_dbz

__all__ = ["read_odim", "QUANTITIES"]

logger = logging.getLogger(__name__)

QUANTITIES = ("RATE", "ACRR", "DBZH", "TH")
_OBJECTS = ("COMP", "IMAGE")
#: Data types of ODIM_H5 Cartesian products (`dtype.str` without the byte order).
DTYPES = "u1 u2 f4 f8"
_DATA = re.compile(r"^data(\d+)$")
_DATE = re.compile(r"[0-9]{8}")
_HHMMSS = re.compile(r"[0-9]{6}")
_HHMM = re.compile(r"[0-9]{4}")


def _lookup(groups: list[h5py.Group], name: str) -> object | None:
    for group in groups:
        if name in group.attrs:
            value: object = group.attrs[name]
            return value
    return None


@overload
def _number(value: object, default: float) -> float: ...
@overload
def _number(value: object, default: None) -> float | None: ...
def _number(value: object, default: float | None) -> float | None:
    if value is None:
        return default
    return float(np.asarray(value).reshape(-1)[0])


def _odim_time(date: object, time: object) -> datetime:
    """ODIM `YYYYMMDD` + `HHmmss`, strictly; `HHMM` (a common mistake) is read as HH:MM:00
    with a warning, never as HH:00:0M."""
    day, clock = as_text(date), as_text(time)
    if _HHMM.fullmatch(clock):
        logger.warning(
            "ODIM time %r: expected HHmmss, read it as HHMM (%s:%s:00)", clock, clock[:2], clock[2:]
        )
        clock += "00"
    if not (_DATE.fullmatch(day) and _HHMMSS.fullmatch(clock)):
        raise ValueError(f"ODIM date/time: expected YYYYMMDD and HHmmss, got {day!r} and {clock!r}")
    return datetime.strptime(day + clock, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _what_chain(h: h5py.File, data: h5py.Group) -> tuple[list[h5py.Group], list[h5py.Group]]:
    """(data and dataset `what` groups, the same plus the root `what`), innermost first."""
    local = [g["what"] for g in (data, data.parent) if "what" in g]
    return local, local + ([h["what"]] if "what" in h else [])


def _pick_data(path: Path, h: h5py.File) -> tuple[h5py.Group, str]:
    dataset = h["dataset1"]
    numbered = [(int(m.group(1)), n) for n in dataset if (m := _DATA.match(n)) is not None]
    names = [n for _, n in sorted(numbered, key=lambda pair: pair[0])]
    found = []
    for name in names:
        group = dataset[name]
        quantity = _lookup(_what_chain(h, group)[1], "quantity")
        quantity = as_text(quantity).upper() if quantity is not None else "<none>"
        if quantity in QUANTITIES:
            return group, quantity
        found.append(quantity)
    raise ScanError(
        f"{printable(path.name)}: expected a dataset1/dataN with quantity in {QUANTITIES}, "
        f"got quantities {found}"
    )


def _grid(path: Path, h: h5py.File, shape: tuple[int, int]) -> GridInfo:
    """The grid of `/where`, each number checked where it is read (`geometry`)."""
    if "where" not in h:
        return GridInfo(shape=shape)
    where = h["where"].attrs
    name = path.name
    projection = as_text(where["projdef"]) if "projdef" in where else None
    for key, n in (("ysize", shape[0]), ("xsize", shape[1])):
        if key in where:
            geometry.number(name, f"where/{key}", where[key], (n, n), "pixels, as the data")
    corners = None
    keys = [f"{c}_{ll}" for c in ("LL", "UL", "UR", "LR") for ll in ("lon", "lat")]
    if all(k in where for k in keys):
        values = [geometry.corner(name, f"where/{k}", where[k], k.endswith("lat")) for k in keys]
        corners = tuple(zip(values[0::2], values[1::2], strict=True))
    sizes = [
        geometry.pixel_size(name, f"where/{key}", where[key]) if key in where else None
        for key in ("xscale", "yscale")
    ]
    return GridInfo(
        shape=shape,
        projection=projection,
        xpixelsize=sizes[0],
        ypixelsize=sizes[1],
        yorigin="upper",
        corners_lonlat=corners,
    )


def _decode(
    path: Path, h: h5py.File, *, zr_a: float, zr_b: float, policy: ReadPolicy
) -> tuple[np.ndarray, datetime, GridInfo]:
    conventions = as_text(h.attrs.get("Conventions", b""))
    if not conventions.startswith("ODIM_H5"):
        raise ScanError(
            f"{printable(path.name)}: expected Conventions 'ODIM_H5/...', got {conventions!r}"
        )
    obj = as_text(h["what"].attrs["object"]).upper()
    if obj not in _OBJECTS:
        raise ScanError(f"{printable(path.name)}: expected ODIM object in {_OBJECTS}, got {obj!r}")
    group, quantity = _pick_data(path, h)
    local, chain = _what_chain(h, group)
    dataset = checked_dataset(path, group["data"], DTYPES, policy)
    gain = _number(_lookup(chain, "gain"), 1.0)
    offset = _number(_lookup(chain, "offset"), 0.0)
    check_calibration(path.name, gain, offset, policy)
    grid = _grid(path, h, dataset.shape)  # refused before any data is read
    raw = dataset[...]
    nodata = _number(_lookup(chain, "nodata"), None)
    undetect = _number(_lookup(chain, "undetect"), None)
    end_date, end_time = _lookup(local, "enddate"), _lookup(local, "endtime")
    if end_date is not None and end_time is not None:
        valid_time = _odim_time(end_date, end_time)
    else:
        valid_time = _odim_time(h["what"].attrs["date"], h["what"].attrs["time"])
    hours = None
    if quantity == "ACRR":
        start_date, start_time = _lookup(local, "startdate"), _lookup(local, "starttime")
        if start_date is not None and start_time is not None:
            hours = (valid_time - _odim_time(start_date, start_time)).total_seconds() / 3600
        else:
            hours = _number(_lookup(local, "prodpar"), None)
        if hours is None or not hours > 0:
            raise ScanError(
                f"{printable(path.name)}: ACRR needs a positive accumulation length from "
                f"startdate/starttime..enddate/endtime or prodpar (hours), got {hours}"
            )

    value = raw.astype(np.float64) * gain + offset
    if nodata is not None:
        value[raw == nodata] = np.nan
    if quantity == "RATE":
        rate = value
    elif quantity == "ACRR":
        rate = value / hours
    else:
        rate = rain_rate_from_dbz(value, zr_a=zr_a, zr_b=zr_b)
    if undetect is not None:
        rate[(raw == undetect) & ~np.isnan(value)] = 0.0
    logger.debug("read ODIM %s %s valid %s", path.name, quantity, valid_time.isoformat())
    return rate, valid_time, grid


read_odim = hdf5_reader(_decode, "ODIM_H5 image (COMP/IMAGE)", "odim")
