"""Hostile scan files generated from real ones: mutated ODIM_H5, KNMI HDF5 and .npy scans.

`hostile(draw, path, kind, shape, valid_time)` writes a good scan of `kind` ("odim", "knmi",
"npy"), then damages it: one to three structural mutations of an HDF5 file (attribute types
and values, the image's dtype, shape, chunks and filters with corrupt or bomb chunks, links
soft, external and hard to odd places, groups, named types) and, often, byte damage (flips,
zeroed ranges, truncation). It returns what it did, one label per mutation.

Every choice goes through a `Draw`: `HypothesisDraw` (hypothesis's `st.data()`, so failures
shrink) in the property tests, `RandomDraw` (a seeded `random.Random`) in
bench/fuzz_readers.py. The KNMI files keep the layout and attributes of the bundled sample
scans; the ODIM files follow the spec (`odim_helper.write_odim`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import random
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import h5py
import numpy as np

from tests.nowcastd.io.readers.odim_helper import write_odim
from tests.paths import REPO

_T = TypeVar("_T")
KINDS = ("odim", "knmi", "npy")
KNMI_SAMPLE = REPO / "nowcastd" / "sample" / "knmi" / "RAD_NL25_RAP_5min_201008260440.h5"
_IMAGE = {"odim": "dataset1/data1/data", "knmi": "image1/image_data"}


class Draw(Protocol):
    def integer(self, low: int, high: int) -> int: ...

    def pick(self, options: Sequence[_T]) -> _T: ...


class RandomDraw:
    """Choices from a seeded `random.Random`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def pick(self, options: Sequence[_T]) -> _T:
        return options[self.rng.randrange(len(options))]


class HypothesisDraw:
    """Choices from hypothesis's `st.data()`."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(self.st.integers(low, high))

    def pick(self, options: Sequence[_T]) -> _T:
        return options[self.data.draw(self.st.integers(0, len(options) - 1))]


# -- good scans ----------------------------------------------------------------------------


def rain(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A plausible rain field in mm/h: gamma-distributed, dry in a corner."""
    field = np.random.default_rng(seed).gamma(0.6, 3.0, shape)
    field[: shape[0] // 8, : shape[1] // 8] = 0.0
    return field


def odim_scan(path: Path, shape: tuple[int, int], valid_time: datetime, seed: int = 0) -> None:
    raw = np.clip(np.round(rain(shape, seed) * 10), 0, 254).astype(np.uint8)
    write_odim(
        path, raw=raw, quantity="RATE", gain=0.1, nodata=255, undetect=0,
        nominal_time=valid_time, end_time=valid_time,
    )  # fmt: skip


def knmi_scan(path: Path, shape: tuple[int, int], valid_time: datetime, seed: int = 0) -> None:
    """The bundled KNMI sample's layout and attributes, its image replaced (5-min accumulation
    in 0.01 mm) and its times set to end at `valid_time`."""
    path.write_bytes(KNMI_SAMPLE.read_bytes())
    raw = np.round(rain(shape, seed) * 100 / 12).astype(np.uint16)
    with h5py.File(path, "a") as h:
        del h["image1/image_data"]
        h["image1"].create_dataset("image_data", data=raw, compression="gzip")
        for key, when in (("start", valid_time - timedelta(minutes=5)), ("end", valid_time)):
            text = when.strftime("%d-%b-%Y;%H:%M:%S.000").upper().encode()
            h["overview"].attrs[f"product_datetime_{key}"] = np.bytes_(text)
        h["geographic"].attrs["geo_number_rows"] = np.array([shape[0]], np.int32)
        h["geographic"].attrs["geo_number_columns"] = np.array([shape[1]], np.int32)


def npy_scan(path: Path, shape: tuple[int, int], valid_time: datetime, seed: int = 0) -> None:
    del valid_time  # in the name
    out = io.BytesIO()
    np.save(out, rain(shape, seed).astype(np.float32))
    path.write_bytes(out.getvalue())


GOOD: dict[str, Callable[..., None]] = {"odim": odim_scan, "knmi": knmi_scan, "npy": npy_scan}


def scan_name(kind: str, valid_time: datetime, tag: str = "") -> str:
    suffix = ".npy" if kind == "npy" else ".h5"
    return f"{kind}{tag}_{valid_time:%Y%m%d%H%M}{suffix}"


# -- what a mutation puts in ------------------------------------------------------------------

_COMPOUND = np.dtype([("a", "<i4"), ("b", "<f8")])
ODD_VALUES: tuple[object, ...] = (
    np.float64(1e308), np.float64(-1e308), np.float64(np.nan), np.float64(np.inf),
    np.float64(-np.inf), np.float64(0.0), np.float64(-1.0), np.float64(1e-300),
    np.int64(2**62), np.int8(-5), np.float16(3.0), np.bool_(True), np.uint64(2**64 - 1),
    np.array([1.0, 2.0, 3.0]), np.array([], np.float64), np.zeros((2, 2), np.int32),
    np.bytes_(b"garbage"), np.bytes_(b""), np.bytes_(b"\xff\xfe\x00"), np.bytes_(b"20261301"),
    np.bytes_(b"999999"), np.bytes_(b"ODIM_H5/V9"), np.bytes_(b"GEO=1e308*PV+1e308"),
    np.bytes_(b"+proj=stere +a=inf +x_0=nan"), np.bytes_(b"31-FEB-2026;25:61:61.000"),
    np.array([b"a", b"b"]), np.array((1, 2.0), dtype=_COMPOUND), "unicode \u00e9\u2028",
)  # fmt: skip
ATTRIBUTES = {
    "odim": (
        ("/", "Conventions"), ("what", "object"), ("what", "date"), ("what", "time"),
        ("where", "xscale"), ("where", "yscale"), ("where", "xsize"), ("where", "ysize"),
        ("where", "LL_lon"), ("where", "LL_lat"), ("where", "UR_lon"), ("where", "projdef"),
        ("dataset1/what", "enddate"), ("dataset1/what", "endtime"),
        ("dataset1/what", "startdate"), ("dataset1/what", "prodpar"),
        ("dataset1/data1/what", "quantity"), ("dataset1/data1/what", "gain"),
        ("dataset1/data1/what", "offset"), ("dataset1/data1/what", "nodata"),
        ("dataset1/data1/what", "undetect"),
    ),
    "knmi": (
        ("geographic", "geo_pixel_size_x"), ("geographic", "geo_pixel_size_y"),
        ("geographic", "geo_column_offset"), ("geographic", "geo_row_offset"),
        ("geographic", "geo_dim_pixel"), ("geographic", "geo_product_corners"),
        ("geographic/map_projection", "projection_proj4_params"),
        ("image1/calibration", "calibration_formulas"),
        ("image1/calibration", "calibration_missing_data"),
        ("image1/calibration", "calibration_out_of_image"),
        ("image1", "image_geo_parameter"), ("overview", "product_datetime_start"),
        ("overview", "product_datetime_end"),
    ),
}  # fmt: skip
GROUPS = {
    "odim": ("what", "where", "how", "dataset1", "dataset1/what", "dataset1/data1",
             "dataset1/data1/what"),
    "knmi": ("geographic", "geographic/map_projection", "image1", "image1/calibration",
             "overview"),
}  # fmt: skip
DTYPES = ("u1", "u2", ">u2", "f4", ">f8", "i1", "i8", "f2", "c8", "?", "S4", _COMPOUND)
FILTERS: tuple[dict[str, object], ...] = (
    {}, {"compression": "gzip"}, {"compression": "gzip", "shuffle": True},
    {"compression": "gzip", "shuffle": True, "fletcher32": True}, {"fletcher32": True},
    {"compression": "lzf"}, {"scaleoffset": 0}, {"compression": "gzip", "compression_opts": 9},
)  # fmt: skip


@functools.cache
def bomb(mebibytes: int) -> bytes:
    """A zlib stream of `mebibytes` MiB of zeros (about a thousandth of that)."""
    z = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(z.compress(block) for _ in range(mebibytes)) + z.flush()


def _odd_number(draw: Draw) -> object:
    if draw.integer(0, 1):
        return draw.pick(ODD_VALUES)
    return np.float64(draw.pick((1, -1)) * 10.0 ** draw.integer(-320, 308))


# -- HDF5 mutations: each changes the open file and names what it did -----------------------


def _attribute(draw: Draw, h: h5py.File, kind: str) -> str:
    group, name = draw.pick(ATTRIBUTES[kind])
    attrs = h[group].attrs
    if draw.integer(0, 4) == 0:
        if name in attrs:
            del attrs[name]
        return f"del {group}@{name}"
    value = _odd_number(draw)
    if name in attrs:
        del attrs[name]
    attrs[name] = value
    return f"{group}@{name}={value!r:.40}"


def _chunk_bytes(draw: Draw, n: int, mebibytes: int) -> bytes:
    pick = draw.integer(0, 3)
    if pick == 0:
        return bomb(mebibytes)
    if pick == 1:
        return bytes(draw.integer(0, 255) for _ in range(draw.integer(0, 64)))
    stream = zlib.compress(bytes(n))
    return stream[: draw.integer(0, len(stream))] if pick == 2 else b""


def _dataset(draw: Draw, h: h5py.File, kind: str, bomb_mib: int) -> str:
    path = _IMAGE[kind]
    old = h[path]
    n, m = old.shape if isinstance(old, h5py.Dataset) and old.ndim == 2 else (64, 64)
    dtype = np.dtype(draw.pick(DTYPES))
    shape = draw.pick(((n, m), (n, m), (n * m,), (n, m, 2), (1, 1), (n + 1, m), (0, m)))
    filters = dict(draw.pick(FILTERS))
    chunks = draw.pick((None, shape, (1, m), (8, 8), (n, 1)))
    if filters or chunks is not None:
        chunks = shape if chunks is None or len(chunks) != len(shape) else chunks
        chunks = tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True))
    if 0 in shape:
        chunks, filters = None, {}
    del h[path]
    try:
        ds = h.create_dataset(path, shape=shape, dtype=dtype, chunks=chunks, **filters)
        if dtype.kind in "uif" and 0 not in shape:
            ds[...] = np.random.default_rng(draw.integer(0, 9)).integers(0, 200, shape)
    except (ValueError, TypeError, OSError):
        ds = h.create_dataset(path, shape=shape, dtype=dtype)
        filters = {}
    label = f"data {dtype} {shape} chunks {chunks} {filters}"
    if ds.chunks is not None and filters and draw.integer(0, 1):
        stored = _chunk_bytes(draw, ds.dtype.itemsize * int(np.prod(ds.chunks)), bomb_mib)
        ds.id.write_direct_chunk((0,) * ds.ndim, stored)
        label += f", chunk 0 = {len(stored)} bytes"
    return label


def _link(draw: Draw, h: h5py.File, kind: str) -> str:
    where = draw.pick((_IMAGE[kind], *GROUPS[kind]))
    link = draw.pick(("soft-missing", "soft-root", "soft-self", "external", "hard-root",
                      "hard-parent", "external-dev"))  # fmt: skip
    parent = where.rsplit("/", 1)[0] if "/" in where else "/"
    target: object = {
        "soft-missing": h5py.SoftLink("/nowhere/at/all"),
        "soft-root": h5py.SoftLink("/"),
        "soft-self": h5py.SoftLink("/" + where),
        "external": h5py.ExternalLink("missing.h5", "/data"),
        "external-dev": h5py.ExternalLink("/dev/zero", "/"),
        "hard-root": h["/"],
        "hard-parent": h[parent],
    }[link]
    del h[where]
    h[where] = target
    return f"{where} -> {link}"


def _group(draw: Draw, h: h5py.File, kind: str) -> str:
    where = draw.pick((_IMAGE[kind], *GROUPS[kind]))
    action = draw.pick(("delete", "as-group", "many", "deep"))
    if action == "delete":
        del h[where]
    elif action == "as-group":
        del h[where]
        h.create_group(where)
    elif action == "many":
        group = h.require_group("extra")
        for i in range(draw.integer(1, 300)):
            group.create_group(f"g{i}").attrs["x"] = i
    else:
        h.create_group("/".join(f"d{i}" for i in range(draw.integer(1, 60))))
    return f"group {action} {where}"


def _named_type(draw: Draw, h: h5py.File, kind: str) -> str:
    path = _IMAGE[kind]
    action = draw.pick(("data-is-type", "typed-data", "typed-attribute"))
    h["named"] = np.dtype(draw.pick(("u1", "u2", "f8")))
    if action == "data-is-type":
        del h[path]
        h[path] = h["named"]
    elif action == "typed-data":
        del h[path]
        h.create_dataset(path, shape=(64, 64), dtype=h["named"])
    else:
        group, name = draw.pick(ATTRIBUTES[kind])
        if name in h[group].attrs:
            del h[group].attrs[name]
        h[group].attrs.create(name, 3, dtype=h["named"])
    return f"named type: {action}"


HDF5_MUTATIONS = (_attribute, _attribute, _dataset, _link, _group, _named_type)


# -- byte damage and .npy headers -----------------------------------------------------------


def damage(draw: Draw, path: Path) -> str:
    """Flip, zero or cut bytes of the file at `path`."""
    data = bytearray(path.read_bytes())
    action = draw.pick(("flip", "zero", "truncate", "append"))
    at = draw.integer(0, max(len(data) - 1, 0))
    if action == "flip":
        for _ in range(draw.integer(1, 64)):
            i = draw.integer(0, len(data) - 1)
            data[i] ^= 1 << draw.integer(0, 7)
    elif action == "zero":
        size = draw.integer(1, 4096)
        data[at : at + size] = bytes(len(data[at : at + size]))
    elif action == "truncate":
        del data[at:]
    else:
        data += bytes(draw.integer(0, 255) for _ in range(draw.integer(1, 512)))
    path.write_bytes(bytes(data))
    return f"bytes {action} at {at}"


def _npy_header(draw: Draw, path: Path, shape: tuple[int, int]) -> str:
    descr = draw.pick(("<f4", ">f8", "<i8", "|u1", "<f2", "|O", "<c16", "|S8", "<V4", "garbage"))
    dims = draw.pick((shape, (shape[0],), (*shape, 2), (10**9, 10**9), (0, 0), (-1, 2), "x"))
    fortran = draw.pick(("False", "True", "2"))
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {dims!r}, }}"
    header = text.encode() + b" " * (63 - len(text) % 64) + b"\n"
    head = b"\x93NUMPY" + bytes((draw.pick((1, 2, 3, 9)), 0))
    size = len(header).to_bytes(2 if head[6] == 1 else 4, "little")
    body = np.zeros(shape, np.float32).tobytes()[: draw.pick((0, 100, 1 << 30))]
    path.write_bytes(head + size + header + body)
    return f"npy header {text}"


_NOT_APPLIED = (KeyError, ValueError, TypeError, OSError, RuntimeError, AttributeError)


@contextlib.contextmanager
def _quiet_h5py(collect: bool) -> Iterator[None]:
    """Writing a file this damaged, h5py may fail to release an object when it closes the
    file, which it reports as an unraisable exception: that is the generator's own business
    (the readers are checked on what it wrote), so it is dropped here, and with `collect`
    the objects are collected at once so that none is reported later."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        yield
        if collect:
            gc.collect()
    finally:
        sys.unraisablehook = hook


def _mutate(draw: Draw, path: Path, kind: str, bomb_mib: int, done: list[str]) -> None:
    mutations = [draw.pick(HDF5_MUTATIONS) for _ in range(draw.integer(1, 3))]
    # One link, last: a mutation after a link to a device (/dev/zero) would follow it, and HDF5
    # then keeps an object of that "file" open that it can neither close nor free at exit.
    links = [mutation for mutation in mutations if mutation is _link]
    mutations = [mutation for mutation in mutations if mutation is not _link] + links[:1]
    with h5py.File(path, "a") as h:
        for mutation in mutations:
            try:
                if mutation is _dataset:
                    done.append(_dataset(draw, h, kind, bomb_mib))
                else:
                    done.append(mutation(draw, h, kind))
            except _NOT_APPLIED as e:
                done.append(f"{mutation.__name__} not applied ({type(e).__name__})")


def hostile(
    draw: Draw,
    path: Path,
    kind: str,
    shape: tuple[int, int],
    valid_time: datetime,
    *,
    bomb_mib: int = 64,
    collect: bool = False,
) -> list[str]:
    """Write a mutated scan of `kind` at `path`; the labels of what was done to it. `collect`:
    collect the garbage of each write at once (quiet, but slow beside hypothesis's heap)."""
    GOOD[kind](path, shape, valid_time, draw.integer(0, 1000))
    done: list[str] = []
    if kind == "npy":
        if draw.integer(0, 1):
            done.append(_npy_header(draw, path, shape))
    else:
        with _quiet_h5py(collect):
            _mutate(draw, path, kind, bomb_mib, done)
    if draw.integer(0, 2) == 0 or not done:
        done.append(damage(draw, path))
    return done
