from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nowcastd.errors import ScanError
from nowcastd.io.readers import read_scan
from nowcastd.io.readers.npy import read_npy, time_from_name


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.floats(0, 300, width=32) | st.just(np.nan),
    )
)
def test_npy_roundtrips_field_and_nan(tmp_path, field):
    path = tmp_path / "scan_202608261200.npy"
    np.save(path, field)
    scan = read_scan(path)
    assert scan.source_format == "npy"
    assert scan.field.dtype == np.float32 and scan.grid.shape == field.shape
    np.testing.assert_array_equal(scan.field, field.astype(np.float32))
    assert scan.valid_time == datetime(2026, 8, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scan_202608261200.npy", datetime(2026, 8, 26, 12, 0, tzinfo=UTC)),
        ("20260826120530_radar.npy", datetime(2026, 8, 26, 12, 5, 30, tzinfo=UTC)),
        ("v2_site7_202608261205.npy", datetime(2026, 8, 26, 12, 5, tzinfo=UTC)),
    ],
)
def test_npy_time_from_default_name_pattern(name, expected):
    assert time_from_name(name) == expected


def test_npy_custom_time_pattern_and_format(tmp_path):
    path = tmp_path / "radar_2026-08-26_1210.npy"
    np.save(path, np.zeros((2, 3), np.float32))
    scan = read_scan(path, npy_time_pattern=r"radar_(.+)\.npy", npy_time_format="%Y-%m-%d_%H%M")
    assert scan.valid_time == datetime(2026, 8, 26, 12, 10, tzinfo=UTC)


def test_npy_pattern_without_format_is_a_value_error():
    with pytest.raises(ValueError, match="time_pattern and time_format"):
        time_from_name("x", time_pattern=r"\d+")


def test_npy_name_without_time_raises_scan_error(tmp_path):
    path = tmp_path / "latest.npy"
    np.save(path, np.zeros((2, 2), np.float32))
    with pytest.raises(ScanError, match=r"^latest\.npy: .*expected a time in the file name"):
        read_npy(path)


def test_npy_impossible_date_raises_scan_error(tmp_path):
    path = tmp_path / "scan_202613261200.npy"
    np.save(path, np.zeros((2, 2), np.float32))
    with pytest.raises(ScanError, match=r"scan_202613261200\.npy"):
        read_npy(path)


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((4, 4), np.int16), "int16"),
        (np.zeros((2, 4, 4), np.float32), r"\(2, 4, 4\)"),
        (np.zeros((0, 4), np.float32), "2-D array"),
    ],
)
def test_npy_wrong_dtype_or_shape_is_rejected(tmp_path, array, reason):
    path = tmp_path / "scan_202608261200.npy"
    np.save(path, array)
    with pytest.raises(ScanError, match=reason):
        read_npy(path)


def test_npy_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "scan_202608261200.npy"
    np.save(path, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ScanError, match=r"scan_202608261200\.npy: ") as info:
        read_npy(path)
    assert info.value.reason == "unsupported_dtype"  # refused from the header, never unpickled


def test_npy_truncated_raises_scan_error(tmp_path):
    path = tmp_path / "scan_202608261200.npy"
    np.save(path, np.zeros((64, 64), np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ScanError, match=r"^scan_202608261200\.npy: "):
        read_scan(path)
