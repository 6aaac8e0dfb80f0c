"""Each thing a file can do wrong is refused by name: bounded decompression (`chunks`),
geometry checked where it is read (`geometry`), and the readers' one boundary (`refusing`)."""

import shutil
import zlib
from datetime import UTC, datetime

import h5py
import numpy as np
import pytest

from nowcastd.errors import ScanError
from nowcastd.io.readers import ReadPolicy, read_scan
from nowcastd.io.readers.chunks import MAX_CHUNKS
from nowcastd.io.readers.guard import DEFAULT_POLICY
from tests.paths import FIXTURES
from tests.reliability.mutations import bomb, knmi_scan, odim_scan

KNMI = FIXTURES / "knmi" / "RAD_NL25_RAP_5min_201008260000.h5"
T = datetime(2026, 1, 1, tzinfo=UTC)
SHAPE = (64, 64)


def _refused(path, reason, match, policy=DEFAULT_POLICY):
    with pytest.raises(ScanError, match=match) as info:
        read_scan(path, policy=policy)
    assert info.value.reason == reason, str(info.value)
    assert str(info.value).startswith(path.name + ": ")


def _odim(tmp_path, name="o.h5"):
    path = tmp_path / name
    odim_scan(path, SHAPE, T)
    return path


def _replace_image(path, image, **kwargs):
    with h5py.File(path, "a") as h:
        del h[image]
        return h.create_dataset(image, **kwargs).id.get_create_plist().get_nfilters()


def test_a_gzip_bomb_of_one_gib_in_a_one_mb_file_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.h5"
    shutil.copyfile(KNMI, path)
    with h5py.File(path, "a") as h:  # the real 765 x 700 frame, its one chunk a 1 GiB stream
        del h["image1/image_data"]
        ds = h["image1"].create_dataset(
            "image_data", shape=(765, 700), dtype=np.uint16, chunks=(765, 700), compression="gzip"
        )
        ds.id.write_direct_chunk((0, 0), bomb(1024))
    assert path.stat().st_size < 1.2e6
    _refused(path, "too_large", r"expected the chunk at \(0, 0\) to inflate to 1071000 bytes")


@pytest.mark.parametrize("filters", [{"compression": "gzip"}, {"fletcher32": True}])
def test_a_chunk_stored_larger_than_its_stream_can_be_is_refused(tmp_path, filters):
    path = _odim(tmp_path)
    _replace_image(path, "dataset1/data1/data", shape=SHAPE, dtype=np.uint8, **filters)
    with h5py.File(path, "a") as h:
        ds = h["dataset1/data1/data"]
        ds.id.write_direct_chunk((0, 0), zlib.compress(bytes(4096)) + bytes(100_000))
    _refused(path, "too_large", r"expected stored chunks of at most \d+ bytes, got 100")


def test_a_damaged_gzip_chunk_is_corrupt(tmp_path):
    path = _odim(tmp_path)
    with h5py.File(path, "a") as h:
        h["dataset1/data1/data"].id.write_direct_chunk((0, 0), b"\x78\x9c not deflate")
    _refused(path, "corrupt", r"expected a gzip stream in the chunk at \(0, 0\)")


def test_shuffled_and_checksummed_chunks_are_still_read(tmp_path):
    path = _odim(tmp_path)
    raw = np.arange(64 * 64, dtype=np.uint16).reshape(SHAPE) % 250
    filters = _replace_image(
        path, "dataset1/data1/data", data=raw, compression="gzip", shuffle=True, fletcher32=True
    )
    assert filters == 3
    np.testing.assert_allclose(read_scan(path).field, np.where(raw == 0, 0, raw * 0.1), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"compression": "lzf"}, r"expected compression of bounded output.*got \['lzf'\]"),
        (
            {"chunks": (1, 1)},
            rf"expected at most {MAX_CHUNKS} chunks, got 4160 of \(1, 1\)",
        ),
    ],
    ids=["unbounded filter", "tiny chunks"],
)
def test_filters_and_chunkings_whose_cost_is_unbounded_are_too_large(tmp_path, kwargs, match):
    path = _odim(tmp_path)  # 65 x 64 chunks of one pixel: one row more than the bound
    _replace_image(path, "dataset1/data1/data", shape=(65, 64), dtype=np.uint8, **kwargs)
    _refused(path, "too_large", match)


def test_a_chunk_larger_than_the_grid_is_too_large(tmp_path):
    path = _odim(tmp_path)  # a resizable dataset may declare chunks beyond its grid
    _replace_image(
        path, "dataset1/data1/data", shape=SHAPE, maxshape=(None, None), chunks=(128, 128),
        dtype=np.uint8, compression="gzip",
    )  # fmt: skip
    _refused(path, "too_large", r"expected chunks within the grid \(64, 64\), got \(128, 128\)")


def test_a_grid_larger_than_max_pixels_is_too_large_before_reading(tmp_path):
    path = _odim(tmp_path)
    _refused(path, "too_large", r"expected at most 1000 pixels, got \(64, 64\)",
             ReadPolicy(max_pixels=1000))  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("yscale", 1e308, r"where/yscale a pixel of 1\.\.100000 m.*got np.float64\(1e\+308\)"),
        ("xscale", 0.0, r"where/xscale a pixel of 1\.\.100000 m"),
        ("xscale", np.array([1000.0, 1000.0]), r"got an array of shape \(2,\)"),
        ("yscale", np.bytes_(b"1000"), r"where/yscale .*got np.bytes_"),
        ("xsize", np.float64(np.inf), r"where/xsize one number in 64\.\.64 pixels"),
        ("ysize", 65, r"where/ysize one number in 64\.\.64 pixels.*got np.int64\(65\)"),
        ("LL_lat", 91.0, r"where/LL_lat one number in -90\.\.90 degrees"),
        ("UR_lon", np.nan, r"where/UR_lon one number in -360\.\.360 degrees"),
    ],
)
def test_odim_geometry_is_checked_where_it_is_read(tmp_path, key, value, match):
    path = _odim(tmp_path)
    with h5py.File(path, "a") as h:
        del h["where"].attrs[key]
        h["where"].attrs[key] = value
    _refused(path, "bad_geometry", match)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("geo_pixel_size_y", np.float32(1e30), r"geo_pixel_size_y a pixel of 1\.\.100000 m"),
        ("geo_pixel_size_x", np.float32(1e-5), r"geo_pixel_size_x a pixel .* units of 1000 m"),
        ("geo_row_offset", np.float32(np.inf), r"geo_row_offset one number"),
        ("geo_column_offset", np.float32(1e6), r"expected a grid within 2e\+07 m"),
        ("geo_product_corners", np.zeros(3, np.float32), r"geo_product_corners as 8 numbers"),
    ],
)
def test_knmi_geometry_is_checked_where_it_is_read(tmp_path, key, value, match):
    path = tmp_path / "k.h5"
    knmi_scan(path, SHAPE, T)
    with h5py.File(path, "a") as h:
        h["geographic"].attrs[key] = value
    _refused(path, "bad_geometry", match)


def test_a_named_type_where_the_image_should_be_is_corrupt(tmp_path):
    path = _odim(tmp_path)
    with h5py.File(path, "a") as h:
        del h["dataset1/data1/data"]
        h["dataset1/data1/data"] = np.dtype("u1")
    _refused(path, "corrupt", r"expected a dataset, got Datatype")


def test_an_infinite_missing_value_is_corrupt_not_an_overflow(tmp_path):
    path = tmp_path / "k.h5"
    knmi_scan(path, SHAPE, T)
    with h5py.File(path, "a") as h:
        h["image1/calibration"].attrs["calibration_missing_data"] = np.float64(np.inf)
    _refused(path, "corrupt", r"calibration_missing_data as at most 16 raw values")


@pytest.mark.parametrize("signature", [b"SNOD", b"TREE", b"HEAP"])
def test_damaged_group_structures_are_corrupt_not_a_link_visitation_error(tmp_path, signature):
    path = _odim(tmp_path)
    data = path.read_bytes()
    at = data.index(signature)  # a symbol table node, a B-tree or a local heap of a group
    path.write_bytes(data[:at] + bytes(8) + data[at + 8 :])
    _refused(path, "corrupt", r"unreadable .*or \.npy scan, got RuntimeError: Link visitation")


def test_too_many_links_are_too_large(tmp_path):
    path = _odim(tmp_path)
    with h5py.File(path, "a") as h:
        group = h.create_group("extra")
        for i in range(10_001):
            group[f"l{i}"] = h5py.SoftLink("/what")
    _refused(path, "too_large", r"expected at most 10000 HDF5 links .* got 10001 links")


@pytest.mark.parametrize(
    ("count", "size", "match"),
    [(10_001, 1, r"got \d+ links and 100\d\d attributes"), (2, 10 << 20, r"of 2097\d{4} bytes")],
    ids=["many", "large"],
)
def test_too_many_or_too_large_attributes_are_too_large_before_any_is_read(
    tmp_path, count, size, match
):
    path = _odim(tmp_path)
    with h5py.File(path, "a", libver="latest") as h:  # attributes over 64 KB: dense storage
        group = h.create_group("extra")
        for i in range(count):
            group.attrs.create(f"a{i}", np.zeros(size, np.uint8))
    _refused(path, "too_large", match, ReadPolicy(allow_external=True))


def test_a_non_float_npy_is_an_unsupported_dtype_with_its_reason(tmp_path):
    path = tmp_path / "scan_202601010000.npy"
    np.save(path, np.zeros(SHAPE, np.float32))
    data = bytearray(path.read_bytes())
    data[6] = 9  # format version 9.0
    path.write_bytes(bytes(data))
    _refused(path, "corrupt", r"expected \.npy format version 1\.0 or 2\.0, got \(9, 0\)")
