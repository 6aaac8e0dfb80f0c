import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowcastd.errors import ScanError
from nowcastd.io.readers import detect_format, read_scan
from nowcastd.io.readers.knmi import parse_calibration, proj4_km_to_m, read_knmi
from tests.paths import FIXTURES, SHARED

FIXTURES = FIXTURES / "knmi"
FILES = sorted(FIXTURES.glob("RAD_NL25_RAP_5min_*.h5"))
FIRST = FIXTURES / "RAD_NL25_RAP_5min_201008260000.h5"
# ../shared next to the repository, as in the project layout; golden test skipped without it.
MOVIE = SHARED / "data" / "radar" / "movie.h5"


def _copy(tmp_path: Path, name: str = "copy.h5") -> Path:
    target = tmp_path / name
    shutil.copyfile(FIRST, target)
    return target


def test_fixtures_are_present():
    assert len(FILES) == 4


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_knmi_real_file_decodes_to_mm_per_hour(path):
    scan = read_scan(path)
    with h5py.File(path, "r") as h:
        raw = h["image1/image_data"][...]
    assert scan.source_format == "knmi"
    assert scan.field.dtype == np.float32 and scan.field.shape == (765, 700)
    missing = raw == 65535
    np.testing.assert_array_equal(np.isnan(scan.field), missing)
    assert 0.73 < missing.mean() < 0.75
    np.testing.assert_allclose(scan.field[~missing], raw[~missing] * 0.01 * 12, rtol=1e-6)
    stamp = path.stem.rsplit("_", 1)[1]
    assert scan.valid_time == datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC)
    assert 0 < np.nanmax(scan.field) < 50


def test_knmi_times_are_consecutive_five_minute_ends():
    times = [read_knmi(p).valid_time for p in FILES]
    assert times[0] == datetime(2010, 8, 26, 0, 0, tzinfo=UTC)
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)] == [300] * 3


def test_knmi_grid_is_polar_stereographic_in_metres():
    grid = read_knmi(FIRST).grid
    assert grid.shape == (765, 700)
    assert grid.xpixelsize == grid.ypixelsize == 1000.0
    assert (grid.x1, grid.x2, grid.y1, grid.y2) == (0.0, 700_000.0, -4_415_000.0, -3_650_000.0)
    assert "+a=6378137 " in grid.projection and "+b=6356752 " in grid.projection
    assert grid.projection.endswith("+units=m")
    assert grid.corners_lonlat[1] == (0.0, 55.974)
    assert grid.yorigin == "upper"


@pytest.mark.skipif(not MOVIE.exists(), reason="shared movie.h5 not next to the repository")
def test_knmi_matches_shared_movie_crop():
    with h5py.File(MOVIE, "r") as h:
        expected = h["precip"][0]
        r0, c0, n = (int(h.attrs[k]) for k in ("crop_row0", "crop_col0", "crop_size"))
    np.testing.assert_array_equal(read_knmi(FIRST).field[r0 : r0 + n, c0 : c0 + n], expected)


def test_knmi_is_detected_by_content_when_renamed(tmp_path):
    path = _copy(tmp_path, "scan_201008260000.npy")
    assert detect_format(path) == "knmi"
    assert read_scan(path).source_format == "knmi"


def test_knmi_ten_minute_accumulation_halves_the_rate(tmp_path):
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as h:
        h["overview"].attrs["product_datetime_start"] = np.array([b"25-AUG-2010;23:50:00.000"])
    five, ten = read_knmi(FIRST).field, read_knmi(path).field
    np.testing.assert_allclose(ten, five / 2, rtol=1e-6)


def test_knmi_without_start_time_assumes_five_minutes(tmp_path):
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as h:
        del h["overview"].attrs["product_datetime_start"]
    np.testing.assert_array_equal(read_knmi(path).field, read_knmi(FIRST).field)


def test_knmi_reflectivity_product_uses_zr_relation(tmp_path):
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as h:
        h["image1"].attrs["image_geo_parameter"] = np.bytes_(b"REFLECTIVITY_[DBZ]")
        h["image1/calibration"].attrs["calibration_formulas"] = np.bytes_(b"GEO=0.5*PV-32.0")
        raw = h["image1/image_data"][...]
    field = read_knmi(path, zr_a=200.0, zr_b=1.6).field
    ok = raw != 65535
    dbz = raw[ok] * 0.5 - 32.0
    np.testing.assert_allclose(field[ok], (10 ** (dbz / 10) / 200) ** (1 / 1.6), rtol=1e-5)


def test_knmi_bad_calibration_formula_raises_scan_error(tmp_path):
    path = _copy(tmp_path, "cal.h5")
    with h5py.File(path, "r+") as h:
        h["image1/calibration"].attrs["calibration_formulas"] = np.bytes_(b"GEO=log(PV)")
    with pytest.raises(ScanError, match=r"^cal\.h5: .*GEO=log\(PV\)") as info:
        read_scan(path)
    assert isinstance(info.value.__cause__, ValueError)


def test_knmi_unparseable_time_raises_scan_error(tmp_path):
    path = _copy(tmp_path, "time.h5")
    with h5py.File(path, "r+") as h:
        h["overview"].attrs["product_datetime_end"] = np.array([b"yesterday"])
    with pytest.raises(ScanError, match=r"^time\.h5: "):
        read_scan(path)


def test_knmi_float_image_is_rejected_as_wrong_dtype(tmp_path):
    path = _copy(tmp_path, "float.h5")
    with h5py.File(path, "r+") as h:
        del h["image1/image_data"]
        h["image1"].create_dataset("image_data", data=np.zeros((765, 700), np.float32))
    with pytest.raises(ScanError, match=r"float\.h5: expected .*u1 or u2, got float32"):
        read_scan(path)


def test_knmi_missing_overview_raises_scan_error(tmp_path):
    path = _copy(tmp_path, "nooverview.h5")
    with h5py.File(path, "r+") as h:
        del h["overview"]
    with pytest.raises(ScanError, match=r"^nooverview\.h5: ") as info:
        read_scan(path)
    assert isinstance(info.value.__cause__, KeyError)


def test_proj4_km_to_m_scales_lengths_only():
    km = "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0"
    assert proj4_km_to_m(km) == (
        "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378137 +b=6356752 +x_0=0 +y_0=0 +units=m"
    )


@given(
    gain=st.floats(1e-4, 100, allow_nan=False),
    offset=st.floats(-100, 100, allow_nan=False),
    spaces=st.sampled_from(["", " "]),
)
def test_calibration_formula_roundtrips(gain, offset, spaces):
    s = spaces
    sign = "-" if offset < 0 else "+"
    text = f"GEO{s}={s}{gain:.6f}{s}*{s}PV{s}{sign}{s}{abs(offset):.6f}"
    parsed_gain, parsed_offset = parse_calibration(text)
    assert parsed_gain == pytest.approx(float(f"{gain:.6f}"))
    assert parsed_offset == pytest.approx(float(f"{sign}{abs(offset):.6f}"))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.integers(1, 8).flatmap(
        lambda n: st.lists(
            st.sampled_from([0, 1, 7, 500, 65534, 65535]) | st.integers(0, 65535),
            min_size=n * n,
            max_size=n * n,
        ).map(lambda v: np.array(v, dtype=np.uint16).reshape(n, n))
    ),
    gain=st.sampled_from([0.01, 0.1, 0.001]),
    minutes=st.sampled_from([5, 10, 60]),
)
def test_knmi_decoding_property(tmp_path, raw, gain, minutes):
    path = _copy(tmp_path, "prop.h5")
    with h5py.File(path, "r+") as h:
        del h["image1/image_data"]
        h["image1"].create_dataset("image_data", data=raw)
        h["image1/calibration"].attrs["calibration_formulas"] = np.bytes_(f"GEO={gain}*PV+0.0")
        start = f"25-AUG-2010;{(24 * 60 - minutes) // 60:02d}:{(24 * 60 - minutes) % 60:02d}:00.000"
        h["overview"].attrs["product_datetime_start"] = np.array([start.encode()])
    scan = read_scan(path)
    missing = raw == 65535
    np.testing.assert_array_equal(np.isnan(scan.field), missing)
    expected = raw[~missing] * gain * 60 / minutes
    np.testing.assert_allclose(scan.field[~missing], expected.astype(np.float32), rtol=1e-6)
    assert scan.grid.shape == raw.shape


@pytest.mark.parametrize(
    ("dtype", "parameter", "formula"),
    [
        ("<u2", b"ACCUMULATED_PRECIPITATION_[MM]", b"GEO=0.01*PV+0.3"),
        (">u2", b"ACCUMULATED_PRECIPITATION_[MM]", b"GEO=-0.7*PV+12.5"),
        ("u1", b"REFLECTIVITY_[DBZ]", b"GEO=0.5*PV-32.0"),
        ("<u2", b"REFLECTIVITY_[DBZ]", b"GEO=0.001*PV-10.0"),
    ],
)
def test_knmi_every_raw_value_decodes_bit_for_bit_as_the_formula(
    tmp_path, dtype, parameter, formula
):
    """Each raw value of the type, in one image: the field is exactly the float64 formula
    (NaN for every missing value) cast to float32, bit for bit."""
    size = np.iinfo(np.dtype(dtype)).max + 1
    raw = np.arange(size, dtype=dtype).reshape(-1, 256)
    path = _copy(tmp_path, "every.h5")
    with h5py.File(path, "r+") as h:
        del h["image1/image_data"]
        h["image1"].create_dataset("image_data", data=raw)
        h["image1"].attrs["image_geo_parameter"] = np.bytes_(parameter)
        cal = h["image1/calibration"].attrs
        cal["calibration_formulas"] = np.bytes_(formula)
        cal["calibration_missing_data"] = np.array([0, 7, -3, 1 << 40], dtype=np.int64)
        h["overview"].attrs["product_datetime_start"] = np.array([b"25-AUG-2010;23:45:00.000"])
    gain, offset = parse_calibration(formula.decode())
    value = raw.astype(np.float64) * gain + offset
    value[np.isin(raw, [0, 7, 65535])] = np.nan
    if parameter.startswith(b"REFLECTIVITY"):
        expected = np.power(np.power(10.0, value / 10.0) / 200.0, 1.0 / 1.6)
    else:
        expected = value * (60.0 / 15.0)
    field = read_knmi(path).field
    assert field.dtype == np.float32 and field.shape == raw.shape
    np.testing.assert_array_equal(
        field.view(np.uint32), expected.astype(np.float32).view(np.uint32)
    )
