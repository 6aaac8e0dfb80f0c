"""Write small ODIM_H5 v2.x Cartesian files to the spec, for tests only (not part of nowcastd).

Follows EUMETNET OPERA ODIM_H5 v2.3: root attribute Conventions "ODIM_H5/V2_3"; groups
/what (object, version, date, time, source), /where (projdef, xsize, ysize, xscale, yscale,
LL/UL/UR/LR lon/lat), /how; dataset1/what (product, startdate, starttime, enddate, endtime),
dataset1/data1/what (quantity, gain, offset, nodata, undetect) and dataset1/data1/data with
CLASS "IMAGE" / IMAGE_VERSION "1.2". Strings are fixed-length, null-terminated ASCII; numbers
are 64-bit scalars, as the spec prescribes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

PROJDEF = "+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60 +a=6378137 +b=6356752 +x_0=0 +y_0=0"
CORNERS = {"LL": (0.0, 49.362), "UL": (0.0, 55.974), "UR": (10.856, 55.389), "LR": (9.009, 48.895)}


def set_string(attrs: h5py.AttributeManager, name: str, value: str) -> None:
    """A fixed-length, null-terminated ASCII string attribute (ODIM_H5 section 3)."""
    data = value.encode("ascii")
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(data) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    attrs.create(name, np.array(data, dtype=f"S{len(data) + 1}"), dtype=h5py.Datatype(tid))


def _set(attrs: h5py.AttributeManager, values: dict[str, object]) -> None:
    for name, value in values.items():
        if isinstance(value, str):
            set_string(attrs, name, value)
        elif isinstance(value, bool | int | np.integer):
            attrs.create(name, np.int64(value))
        else:
            attrs.create(name, np.float64(value))


def write_odim(
    path: Path,
    *,
    raw: np.ndarray,
    quantity: str,
    gain: float = 1.0,
    offset: float = 0.0,
    nodata: float | None = None,
    undetect: float | None = None,
    nominal_time: datetime,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    obj: str = "COMP",
    conventions: str = "ODIM_H5/V2_3",
    calibration_in_dataset_what: bool = False,
    prodpar: float | None = None,
    extra_data: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write `raw` as dataset1/data1 (plus dataset1/dataN quantities from `extra_data` first)."""
    ysize, xsize = raw.shape
    with h5py.File(path, "w") as h:
        set_string(h.attrs, "Conventions", conventions)
        what = h.create_group("what")
        _set(
            what.attrs,
            {
                "object": obj,
                "version": "H5rad 2.3",
                "date": nominal_time.strftime("%Y%m%d"),
                "time": nominal_time.strftime("%H%M%S"),
                "source": "NOD:nltst,ORG:99",
            },
        )
        where = h.create_group("where")
        where_attrs: dict[str, object] = {
            "projdef": PROJDEF,
            "xsize": xsize,
            "ysize": ysize,
            "xscale": 1000.0,
            "yscale": 1000.0,
        }
        for corner, (lon, lat) in CORNERS.items():
            where_attrs[f"{corner}_lon"] = lon
            where_attrs[f"{corner}_lat"] = lat
        _set(where.attrs, where_attrs)
        how = h.create_group("how")
        _set(how.attrs, {"software": "nowcastd-tests"})

        dataset = h.create_group("dataset1")
        ds_what: dict[str, object] = {"product": "COMP" if obj == "COMP" else "PCAPPI"}
        for prefix, when in (("start", start_time), ("end", end_time)):
            if when is not None:
                ds_what[f"{prefix}date"] = when.strftime("%Y%m%d")
                ds_what[f"{prefix}time"] = when.strftime("%H%M%S")
        if prodpar is not None:
            ds_what["prodpar"] = prodpar
        calibration: dict[str, object] = {"quantity": quantity, "gain": gain, "offset": offset}
        if nodata is not None:
            calibration["nodata"] = nodata
        if undetect is not None:
            calibration["undetect"] = undetect
        if calibration_in_dataset_what:
            ds_what.update(calibration)
        _set(dataset.create_group("what").attrs, ds_what)

        items = list((extra_data or {}).items()) + [(quantity, raw)]
        for index, (name, array) in enumerate(items, start=1):
            data = dataset.create_group(f"data{index}")
            if array is raw:
                data_what = {} if calibration_in_dataset_what else calibration
            else:
                data_what = {"quantity": name, "gain": 1.0, "offset": 0.0}
            _set(data.create_group("what").attrs, data_what)
            ds = data.create_dataset("data", data=array, compression="gzip")
            set_string(ds.attrs, "CLASS", "IMAGE")
            set_string(ds.attrs, "IMAGE_VERSION", "1.2")
    return path
