"""Hostile scan files, each built in a staging directory and named for the watch directory.

Each builder writes what a broken feed, a careless script or an attacker could drop next to real
scans, and names the rejection reason the daemon must count for it (None: nothing to count,
the file must simply not stop, hang or blind the daemon).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np

from tests.nowcastd.io.readers.odim_helper import write_odim
from tests.nowcastd.serve.daemon import NATIVE, T0, _scan_bytes

Builder = Callable[[Path, int], bytes]  # (staging dir, index of the next good scan) -> name


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def _time(i: int, seconds: int = 0) -> datetime:
    return T0 + timedelta(minutes=5 * i, seconds=seconds)


def fifo(stage: Path, i: int) -> bytes:
    os.mkfifo(stage / "fifo")
    return f"scan_{_time(i):%Y%m%d%H%M}.npy".encode()


def symlink_outside(stage: Path, i: int) -> bytes:
    target = stage / "elsewhere.npy"
    target.write_bytes(_scan_bytes(i))
    os.symlink(target, stage / "fifo")
    return f"scan_{_time(i):%Y%m%d%H%M}.npy".encode()


def huge_hdf5(stage: Path, i: int) -> bytes:
    with h5py.File(stage / "fifo", "w") as h:  # a few KB declaring 100 000 x 100 000
        h.create_dataset(
            "image1/image_data", shape=(100_000, 100_000), dtype=np.uint16, chunks=(1000, 1000)
        )
        h["image1/calibration"] = 0
        h["image1/calibration"].attrs["calibration_formulas"] = b"GEO=0.01*PV+0.0"
        h["overview"] = 0
        h["overview"].attrs["product_datetime_end"] = (
            _time(i).strftime("%d-%b-%Y;%H:%M:%S").encode()
        )
    return b"huge.h5"


def huge_npy_header(stage: Path, i: int) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)}
    )
    (stage / "fifo").write_bytes(header.getvalue())  # declares 37 GiB, holds none of it
    return f"scan_{_time(i):%Y%m%d%H%M}.npy".encode()


def sparse_80gb_npy(stage: Path, i: int) -> bytes:
    path = stage / "fifo"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (NATIVE, NATIVE)}
    )
    with path.open("wb") as f:
        f.write(header.getvalue())
        f.truncate(80 << 30)
    return f"scan_{_time(i):%Y%m%d%H%M}.npy".encode()


def _odim(path: Path, i: int, **kwargs) -> None:
    rain = np.add.outer(np.arange(NATIVE), np.arange(NATIVE)) % 40  # 0..3.9 mm/h, not constant
    raw = kwargs.pop("raw", rain.astype(np.uint8))
    write_odim(
        path,
        raw=raw,
        quantity="RATE",
        gain=kwargs.pop("gain", 0.1),
        nominal_time=_time(i),
        end_time=_time(i),
        **kwargs,
    )


def odim_scan(path: Path, i: int) -> None:
    """A good ODIM_H5 composite of the native grid, valid at the `i`-th timestep."""
    _odim(path, i)


def external_link_fifo(stage: Path, i: int) -> bytes:
    os.mkfifo(stage / "pipe")
    _odim(stage / "fifo", i)
    with h5py.File(stage / "fifo", "a") as h:
        h["sneaky"] = h5py.ExternalLink(str(stage / "pipe"), "/data")
    return b"linked.h5"


def external_link_file(stage: Path, i: int) -> bytes:
    _odim(stage / "other.h5", i)
    _odim(stage / "fifo", i)
    with h5py.File(stage / "fifo", "a") as h:
        del h["dataset1/data1/data"]
        h["dataset1/data1/data"] = h5py.ExternalLink(
            str(stage / "other.h5"), "/dataset1/data1/data"
        )
    return b"elsewhere.h5"


def external_storage_passwd(stage: Path, i: int) -> bytes:
    _odim(stage / "fifo", i)
    with h5py.File(stage / "fifo", "a") as h:
        del h["dataset1/data1/data"]
        h["dataset1/data1"].create_dataset(
            "data", shape=(NATIVE, NATIVE), dtype=np.uint8, external=[("/etc/passwd", 0, NATIVE**2)]
        )
    return b"passwd.h5"


def virtual_dataset(stage: Path, i: int) -> bytes:
    _odim(stage / "other.h5", i)
    _odim(stage / "fifo", i)
    layout = h5py.VirtualLayout(shape=(NATIVE, NATIVE), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(stage / "other.h5"), "dataset1/data1/data", (NATIVE, NATIVE))
    with h5py.File(stage / "fifo", "a") as h:
        del h["dataset1/data1/data"]
        h["dataset1/data1"].create_virtual_dataset("data", layout)
    return b"virtual.h5"


def year_2099(stage: Path, i: int) -> bytes:
    (stage / "fifo").write_bytes(_scan_bytes(i))
    return b"scan_209901010000.npy"


def off_cadence(stage: Path, i: int) -> bytes:
    (stage / "fifo").write_bytes(_scan_bytes(i))
    return f"scan_{_time(i - 1, seconds=60):%Y%m%d%H%M%S}.npy".encode()


def absurd_gain(stage: Path, i: int) -> bytes:
    _odim(stage / "fifo", i, gain=1e30)
    return b"gain.h5"


def int8_data(stage: Path, i: int) -> bytes:
    _odim(stage / "fifo", i, raw=np.full((NATIVE, NATIVE), 3, np.int8))
    return b"int8.h5"


def absurd_rain(stage: Path, i: int) -> bytes:
    (stage / "fifo").write_bytes(_npy(np.full((NATIVE, NATIVE), 1e6, np.float32)))
    return f"scan_{_time(i):%Y%m%d%H%M}.npy".encode()


def pickled_npy(stage: Path, i: int) -> bytes:
    (stage / "fifo").write_bytes(_npy(np.array([[{"boom": 1}]], dtype=object)))
    return f"scan_{_time(i):%Y%m%d%H%M}.npy".encode()


def forged_log_line(stage: Path, i: int) -> bytes:
    (stage / "fifo").write_bytes(b"not a scan")
    return b"x\nERROR nowcastd.serve.service: FORGED LINE.h5"


def zero_length(stage: Path, i: int) -> bytes:
    (stage / "fifo").write_bytes(b"")
    return b"empty.h5"


def wrong_grid(stage: Path, i: int) -> bytes:
    (stage / "fifo").write_bytes(_npy(np.zeros((48, 48), np.float32)))
    return f"scan_{_time(i):%Y%m%d%H%M}.npy".encode()


def odim_bad_time(stage: Path, i: int) -> bytes:
    _odim(stage / "fifo", i)
    with h5py.File(stage / "fifo", "a") as h:
        del h["what"].attrs["time"]
        h["what"].attrs["time"] = np.bytes_(b"25:99")
        for key in ("enddate", "endtime"):
            if key in h["dataset1/what"].attrs:
                del h["dataset1/what"].attrs[key]
    return b"badtime.h5"


#: name, builder, the rejection reason it must be counted under
CASES: tuple[tuple[str, Builder, str], ...] = (
    ("fifo", fifo, "not_regular"),
    ("symlink_outside", symlink_outside, "symlink"),
    ("huge_hdf5", huge_hdf5, "wrong_grid"),
    ("huge_npy_header", huge_npy_header, "wrong_grid"),
    ("sparse_80gb_npy", sparse_80gb_npy, "too_large"),
    ("external_link_fifo", external_link_fifo, "external_reference"),
    ("external_link_file", external_link_file, "external_reference"),
    ("external_storage_passwd", external_storage_passwd, "external_reference"),
    ("virtual_dataset", virtual_dataset, "external_reference"),
    ("year_2099", year_2099, "future"),
    ("off_cadence", off_cadence, "off_cadence"),
    ("absurd_gain", absurd_gain, "implausible_calibration"),
    ("int8_data", int8_data, "unsupported_dtype"),
    ("absurd_rain", absurd_rain, "implausible_rain"),
    ("pickled_npy", pickled_npy, "unsupported_dtype"),
    ("forged_log_line", forged_log_line, "unknown_format"),
    ("zero_length", zero_length, "unknown_format"),
    ("wrong_grid", wrong_grid, "wrong_grid"),
    ("odim_bad_time", odim_bad_time, "corrupt"),
)


def odim_hhmm_scan(path: Path, i: int) -> None:
    """A good ODIM scan whose endtime is written HHMM ("0015"), not HHmmss."""
    _odim(path, i)
    with h5py.File(path, "a") as h:
        what = h["dataset1/what"].attrs
        del what["endtime"]
        what["endtime"] = np.bytes_(f"{_time(i):%H%M}".encode())
