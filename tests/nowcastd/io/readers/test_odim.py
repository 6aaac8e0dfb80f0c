from datetime import UTC, datetime, timedelta

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowcastd.errors import ScanError
from nowcastd.io.readers import detect_format, read_scan
from nowcastd.io.readers.odim import read_odim

from .odim_helper import CORNERS, PROJDEF, write_odim

T0 = datetime(2026, 8, 26, 12, 0, tzinfo=UTC)


def _expected(raw, *, quantity, gain, offset, nodata, undetect, hours=1.0, a=200.0, b=1.6):
    physical = raw.astype(np.float64) * gain + offset
    if quantity == "RATE":
        rate = physical
    elif quantity == "ACRR":
        rate = physical / hours
    else:
        rate = (10.0 ** (physical / 10.0) / a) ** (1.0 / b)
    rate = np.where(raw == undetect, 0.0, rate)
    return np.where(raw == nodata, np.nan, rate)


@st.composite
def odim_cases(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    top = int(np.iinfo(dtype).max)
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    nodata = draw(st.sampled_from([top, 0, 1]))
    undetect = draw(st.integers(0, top).filter(lambda v: v != nodata))
    specials = st.sampled_from([nodata, undetect])
    values = st.one_of(st.integers(0, top), specials)
    raw = np.array(
        draw(st.lists(values, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])),
        dtype=dtype,
    ).reshape(shape)
    quantity = draw(st.sampled_from(["RATE", "DBZH", "ACRR"]))
    gain = draw(st.floats(0.001, 95.0 / top if quantity == "DBZH" else 1.0))
    offset = draw(st.floats(-32.0, 0.0) if quantity == "DBZH" else st.floats(0.0, 5.0))
    minutes = draw(st.sampled_from([5, 15, 60]))
    in_dataset = draw(st.booleans())
    return {
        "raw": raw,
        "quantity": quantity,
        "gain": gain,
        "offset": offset,
        "nodata": nodata,
        "undetect": undetect,
        "minutes": minutes,
        "in_dataset": in_dataset,
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=odim_cases())
def test_odim_decodes_gain_offset_nodata_undetect_per_quantity(tmp_path, case):
    path = tmp_path / "case.h5"
    start = T0 - timedelta(minutes=case["minutes"])
    write_odim(
        path,
        raw=case["raw"],
        quantity=case["quantity"],
        gain=case["gain"],
        offset=case["offset"],
        nodata=case["nodata"],
        undetect=case["undetect"],
        nominal_time=T0,
        start_time=start,
        end_time=T0,
        calibration_in_dataset_what=case["in_dataset"],
    )
    scan = read_scan(path)
    expected = _expected(
        case["raw"],
        quantity=case["quantity"],
        gain=case["gain"],
        offset=case["offset"],
        nodata=case["nodata"],
        undetect=case["undetect"],
        hours=case["minutes"] / 60,
    )
    assert scan.source_format == "odim"
    assert scan.field.dtype == np.float32 and scan.field.shape == case["raw"].shape
    np.testing.assert_array_equal(np.isnan(scan.field), case["raw"] == case["nodata"])
    np.testing.assert_allclose(scan.field, expected.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert scan.valid_time == T0


def test_odim_dbzh_uses_configured_zr_relation(tmp_path):
    raw = np.array([[0, 1, 2]], dtype=np.uint8)
    path = write_odim(
        tmp_path / "z.h5", raw=raw, quantity="DBZH", gain=10.0, offset=10.0, nominal_time=T0
    )
    marshall_palmer = read_odim(path).field
    other = read_odim(path, zr_a=300.0, zr_b=1.4).field
    np.testing.assert_allclose(
        marshall_palmer,
        [[(10 / 200) ** (1 / 1.6), (100 / 200) ** (1 / 1.6), (1000 / 200) ** (1 / 1.6)]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(other[0, 2], (1000 / 300) ** (1 / 1.4), rtol=1e-6)


def test_odim_valid_time_falls_back_to_root_date_time(tmp_path):
    path = write_odim(
        tmp_path / "r.h5", raw=np.zeros((2, 2), np.uint8), quantity="RATE", nominal_time=T0
    )
    assert read_odim(path).valid_time == T0


def test_odim_valid_time_prefers_dataset_end_time(tmp_path):
    end = T0 + timedelta(minutes=5)
    path = write_odim(
        tmp_path / "e.h5",
        raw=np.zeros((2, 2), np.uint8),
        quantity="RATE",
        nominal_time=T0,
        end_time=end,
    )
    assert read_odim(path).valid_time == end


def test_odim_acrr_uses_prodpar_hours_without_start_time(tmp_path):
    raw = np.full((2, 2), 30, np.uint8)
    path = write_odim(
        tmp_path / "a.h5", raw=raw, quantity="ACRR", gain=0.1, nominal_time=T0, prodpar=0.5
    )
    np.testing.assert_allclose(read_odim(path).field, 6.0, rtol=1e-6)


def test_odim_acrr_without_accumulation_length_is_rejected(tmp_path):
    path = write_odim(
        tmp_path / "a.h5", raw=np.zeros((2, 2), np.uint8), quantity="ACRR", nominal_time=T0
    )
    with pytest.raises(ScanError, match=r"a\.h5: ACRR needs"):
        read_odim(path)


def test_odim_skips_unsupported_quantities_to_first_rain_quantity(tmp_path):
    raw = np.full((3, 4), 7, np.uint16)
    path = write_odim(
        tmp_path / "q.h5",
        raw=raw,
        quantity="RATE",
        gain=0.5,
        nominal_time=T0,
        extra_data={"QIND": np.zeros((3, 4), np.uint8)},
    )
    np.testing.assert_allclose(read_odim(path).field, 3.5)


def test_odim_without_rain_quantity_names_what_it_found(tmp_path):
    path = write_odim(
        tmp_path / "v.h5", raw=np.zeros((2, 2), np.uint8), quantity="VRADH", nominal_time=T0
    )
    with pytest.raises(ScanError, match=r"v\.h5: expected .*quantity.*got quantities \['VRADH'\]"):
        read_odim(path)


def test_odim_grid_comes_from_where(tmp_path):
    path = write_odim(
        tmp_path / "g.h5", raw=np.zeros((3, 5), np.uint8), quantity="RATE", nominal_time=T0
    )
    grid = read_odim(path).grid
    assert grid.shape == (3, 5)
    assert grid.projection == PROJDEF
    assert grid.xpixelsize == grid.ypixelsize == 1000.0
    assert grid.corners_lonlat == tuple(CORNERS.values())
    assert grid.yorigin == "upper" and not grid.has_extent


def test_odim_polar_volume_is_rejected(tmp_path):
    path = write_odim(
        tmp_path / "pvol.h5",
        raw=np.zeros((2, 2), np.uint8),
        quantity="DBZH",
        nominal_time=T0,
        obj="PVOL",
    )
    with pytest.raises(ScanError, match=r"pvol\.h5: expected ODIM object in .*got 'PVOL'"):
        read_scan(path)


def test_odim_missing_data_dataset_raises_scan_error_naming_file(tmp_path):
    path = write_odim(
        tmp_path / "broken.h5", raw=np.zeros((2, 2), np.uint8), quantity="RATE", nominal_time=T0
    )
    with h5py.File(path, "r+") as h:
        del h["dataset1/data1/data"]
    with pytest.raises(ScanError, match=r"^broken\.h5: ") as info:
        read_scan(path)
    assert isinstance(info.value.__cause__, KeyError)


def test_odim_unparseable_time_raises_scan_error(tmp_path):
    path = write_odim(
        tmp_path / "t.h5", raw=np.zeros((2, 2), np.uint8), quantity="RATE", nominal_time=T0
    )
    with h5py.File(path, "r+") as h:
        del h["what"].attrs["time"]
        h["what"].attrs["time"] = np.bytes_(b"noon")
    with pytest.raises(ScanError, match=r"^t\.h5: ") as info:
        read_scan(path)
    assert isinstance(info.value.__cause__, ValueError)


def test_odim_string_data_is_rejected_as_wrong_dtype(tmp_path):
    path = write_odim(
        tmp_path / "s.h5", raw=np.zeros((2, 2), np.uint8), quantity="RATE", nominal_time=T0
    )
    with h5py.File(path, "r+") as h:
        del h["dataset1/data1/data"]
        h["dataset1/data1"].create_dataset("data", data=np.full((2, 2), b"x"))
    with pytest.raises(
        ScanError, match=r"s\.h5: expected .*data of type u1 or u2 or f4 or f8, got \|S1"
    ):
        read_scan(path)


def test_odim_is_detected_by_content_whatever_the_name(tmp_path):
    path = write_odim(
        tmp_path / "radar.npy", raw=np.zeros((2, 2), np.uint8), quantity="RATE", nominal_time=T0
    )
    assert detect_format(path) == "odim"
    assert read_scan(path).source_format == "odim"
