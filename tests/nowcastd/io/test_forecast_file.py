import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from nowcastd.errors import DataError, NowcastdError
from nowcastd.io.forecast_file import (
    forecast_name,
    prune_forecasts,
    quantize,
    read_forecast,
    write_forecast,
)
from nowcastd.io.readers import GridInfo

ISSUE = datetime(2010, 8, 26, 0, 30, tzinfo=UTC)
GRID = GridInfo(
    shape=(4, 5),
    projection="+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60 +a=6378137 +b=6356752 +units=m",
    xpixelsize=2000.0,
    ypixelsize=2000.0,
    x1=248_000.0,
    x2=258_000.0,
    y1=-3_926_000.0,
    y2=-3_918_000.0,
)


def _precip(k: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    precip = rng.gamma(0.5, 2.0, size=(k, 4, 5)).astype(np.float32)
    precip[:, 0, 0] = np.nan
    return precip


def _write(out_dir: Path, **changes) -> Path:
    kwargs = dict(
        issue_time=ISSUE,
        precip=_precip(),
        lead_seconds=[300, 600, 900],
        input_names=["RAD_NL25_RAP_5min_201008260025.h5", "RAD_NL25_RAP_5min_201008260030.h5"],
        input_times=[ISSUE - timedelta(minutes=5), ISSUE],
        model_name="predrnn_v2",
        checkpoint_digest="sha256:abc123",
        grid=GRID,
        nan_mask=np.isnan(_precip()[0]),
    )
    kwargs.update(changes)
    return write_forecast(out_dir, **kwargs)


def test_write_forecast_is_named_by_issue_time_and_leaves_no_temp_file(tmp_path):
    path = _write(tmp_path / "out")
    assert path == tmp_path / "out" / "forecast_20100826T003000Z.h5"
    assert os.listdir(tmp_path / "out") == [path.name]


def test_forecast_opens_in_xarray_with_named_dims_and_cf_coordinates(tmp_path):
    path = _write(tmp_path)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["precip"].dims == ("lead_time", "y", "x")
        assert ds["precip"].attrs["units"] == "mm h-1"
        assert ds["precip"].attrs["standard_name"] == "rainfall_rate"
        np.testing.assert_array_equal(ds["precip"].values, quantize(_precip(), 2))
        assert ds["precip"].attrs["least_significant_digit"] == 2
        assert ds["lead_time"].values.tolist() == [300, 600, 900]
        expected = [
            np.datetime64("2010-08-26T00:35"),
            np.datetime64("2010-08-26T00:40"),
            np.datetime64("2010-08-26T00:45"),
        ]
        assert ds["valid_time"].dims == ("lead_time",)
        assert ds["valid_time"].values.tolist() == np.array(expected, "M8[ns]").tolist()
        np.testing.assert_allclose(ds["x"].values, [249e3, 251e3, 253e3, 255e3, 257e3])
        np.testing.assert_allclose(ds["y"].values, [-3919e3, -3921e3, -3923e3, -3925e3])
        assert ds["input_nan_mask"].dims == ("y", "x")
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert ds.attrs["issue_time"] == "2010-08-26T00:30:00Z"
        assert ds.attrs["checkpoint_digest"] == "sha256:abc123"
        assert ds.attrs["projection"] == GRID.projection


def test_forecast_is_gzip_compressed_float32_with_dimension_scales(tmp_path):
    with h5py.File(_write(tmp_path), "r") as h:
        precip = h["precip"]
        assert precip.dtype == np.float32 and precip.compression == "gzip"
        assert precip.shuffle and precip.chunks == (1, 4, 5)
        assert [d.label for d in precip.dims] == ["", "", ""]  # netCDF-4 style: no labels
        assert [d[0].name for d in precip.dims] == ["/lead_time", "/y", "/x"]
        assert list(h.attrs["input_scans"]) == [
            "RAD_NL25_RAP_5min_201008260025.h5",
            "RAD_NL25_RAP_5min_201008260030.h5",
        ]


def test_precip_is_rounded_to_one_128th_mm_per_hour_keeping_nan(tmp_path):
    precip = _precip()
    out = read_forecast(_write(tmp_path, precip=precip)).precip
    np.testing.assert_array_equal(np.isnan(out), np.isnan(precip))
    assert np.nanmax(np.abs(out - precip)) <= 1 / 256
    np.testing.assert_array_equal(out * 128, np.round(out * 128))  # whole steps of 1/128


def test_large_forecast_with_nan_roundtrips_through_the_chunk_filters(tmp_path):
    rng = np.random.default_rng(1)
    precip = rng.gamma(0.5, 2.0, size=(4, 64, 48)).astype(np.float32)
    precip[:, 10:20, 5:9] = np.nan
    path = _write(
        tmp_path,
        precip=precip,
        lead_seconds=[300, 600, 900, 1200],
        grid=None,
        nan_mask=np.isnan(precip[0]),
        least_significant_digit=None,
    )
    with h5py.File(path, "r") as h:
        np.testing.assert_array_equal(h["precip"][...], precip)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["precip"].values, precip)


def test_read_forecast_roundtrips_everything_written(tmp_path):
    out = read_forecast(_write(tmp_path, least_significant_digit=None))
    np.testing.assert_array_equal(out.precip, _precip())
    with h5py.File(tmp_path / forecast_name(ISSUE), "r") as h:
        assert "least_significant_digit" not in h["precip"].attrs
    assert out.lead_seconds.tolist() == [300, 600, 900]
    assert out.issue_time == ISSUE
    assert out.valid_times == tuple(ISSUE + timedelta(minutes=m) for m in (5, 10, 15))
    np.testing.assert_array_equal(out.input_nan_mask, np.isnan(_precip()[0]))
    assert out.attrs["input_times"] == ["2010-08-26T00:25:00Z", "2010-08-26T00:30:00Z"]
    assert out.attrs["model_name"] == "predrnn_v2"


def test_forecast_without_grid_uses_pixel_indices(tmp_path):
    path = _write(tmp_path, grid=None, nan_mask=None)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["x"].values.tolist() == [0, 1, 2, 3, 4]
        assert "input_nan_mask" not in ds and "projection" not in ds.attrs
    assert read_forecast(path).input_nan_mask is None


def test_rewriting_same_issue_time_replaces_the_file(tmp_path):
    _write(tmp_path, model_name="first")
    path = _write(tmp_path, model_name="second")
    assert os.listdir(tmp_path) == [path.name]
    assert read_forecast(path).attrs["model_name"] == "second"


def test_failed_replace_raises_and_removes_temp_file(tmp_path):
    (tmp_path / forecast_name(ISSUE)).mkdir()
    with pytest.raises(NowcastdError, match=r"forecast_20100826T003000Z\.h5: cannot write"):
        _write(tmp_path)
    assert os.listdir(tmp_path) == [forecast_name(ISSUE)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lead_seconds": [300, 600]}, r"lead_seconds: expected 3 ints"),
        ({"lead_seconds": [600, 300, 900]}, r"lead_seconds: expected increasing"),
        ({"precip": np.zeros((4, 5), np.float32)}, r"precip: expected a float \(lead_time"),
        ({"precip": np.zeros((0, 4, 5), np.float32), "lead_seconds": []}, r"precip: expected"),
        ({"issue_time": datetime(2010, 8, 26)}, r"issue_time: expected a timezone-aware"),
        ({"input_times": [ISSUE]}, r"input_times: expected one per input name \(2\), got 1"),
        ({"grid": GridInfo(shape=(5, 4))}, r"grid: expected shape \(4, 5\)"),
        ({"nan_mask": np.zeros((4, 5), np.uint8)}, r"nan_mask: expected bool"),
        ({"least_significant_digit": -1}, r"least_significant_digit: expected None or an int"),
    ],
)
def test_invalid_arguments_write_nothing(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        _write(tmp_path / "out", **changes)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_read_forecast_of_non_forecast_raises_data_error(tmp_path):
    path = tmp_path / "forecast_20100826T003000Z.h5"
    with h5py.File(path, "w") as h:
        h["x"] = np.zeros(3)
    with pytest.raises(DataError, match=r"^forecast_20100826T003000Z\.h5: "):
        read_forecast(path)


def _touch_forecasts(out_dir: Path, hours_before_issue: list[int]) -> list[Path]:
    out_dir.mkdir(exist_ok=True)
    paths = [out_dir / forecast_name(ISSUE - timedelta(hours=h)) for h in hours_before_issue]
    for p in paths:
        p.write_bytes(b"")
    return paths


def test_prune_keep_last_keeps_newest_and_ignores_other_files(tmp_path):
    old2, old1, new = _touch_forecasts(tmp_path, [2, 1, 0])
    others = [".forecast_20100826T003000Z.h5.abc.tmp", "forecast_latest.h5", "notes.txt"]
    for name in others:
        (tmp_path / name).write_bytes(b"")
    removed = prune_forecasts(tmp_path, keep_last=1, max_age_hours=None, now=ISSUE)
    assert removed == [old2, old1]
    assert sorted(os.listdir(tmp_path)) == sorted([new.name, *others])


def test_prune_max_age_uses_issue_time_in_name(tmp_path):
    old, recent, new = _touch_forecasts(tmp_path, [5, 2, 0])
    removed = prune_forecasts(tmp_path, keep_last=None, max_age_hours=3.0, now=ISSUE)
    assert removed == [old]
    assert recent.exists() and new.exists()


def test_prune_age_counts_from_the_newest_forecast_when_it_is_older_than_now(tmp_path):
    # An archive replay (or a stopped feed): "now" is years after the newest issue time.
    old, recent, new = _touch_forecasts(tmp_path, [5, 2, 0])
    removed = prune_forecasts(
        tmp_path, keep_last=None, max_age_hours=3.0, now=ISSUE + timedelta(days=5000)
    )
    assert removed == [old]
    assert recent.exists() and new.exists()


def test_prune_with_both_rules_removes_union_and_none_removes_nothing(tmp_path):
    paths = _touch_forecasts(tmp_path, [5, 2, 1, 0])
    assert prune_forecasts(tmp_path, keep_last=None, max_age_hours=None, now=ISSUE) == []
    assert prune_forecasts(tmp_path, keep_last=3, max_age_hours=1.5, now=ISSUE) == paths[:2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_last": 0, "max_age_hours": None, "now": ISSUE}, "keep_last: expected None or"),
        ({"keep_last": None, "max_age_hours": -1, "now": ISSUE}, "max_age_hours: expected"),
        ({"keep_last": 1, "max_age_hours": None, "now": datetime(2010, 1, 1)}, "now: expected"),
    ],
)
def test_prune_rejects_invalid_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prune_forecasts(tmp_path, **kwargs)


def test_forecast_with_no_inputs_listed_still_opens(tmp_path):
    path = _write(tmp_path, input_names=[], input_times=[])
    assert read_forecast(path).attrs["input_scans"] == []
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["precip"].shape == (3, 4, 5)


def test_forecast_has_a_cf_grid_mapping_and_no_stray_attributes(tmp_path):
    with xr.open_dataset(_write(tmp_path), engine="h5netcdf") as ds:
        assert ds["precip"].attrs["grid_mapping"] == "crs"
        crs = ds["crs"].attrs
        assert crs["grid_mapping_name"] == "polar_stereographic"
        assert crs["proj4_params"] == GRID.projection
        assert crs["straight_vertical_longitude_from_pole"] == 0.0
        assert crs["latitude_of_projection_origin"] == 90.0
        assert crs["standard_parallel"] == 60.0
        assert (crs["semi_major_axis"], crs["semi_minor_axis"]) == (6378137.0, 6356752.0)
        for name in ("precip", "valid_time", "input_nan_mask"):
            assert "DIMENSION_LABELS" not in ds[name].attrs, name
        assert set(ds["precip"].attrs) == {
            "units",
            "standard_name",
            "long_name",
            "least_significant_digit",
            "grid_mapping",
        }
        assert set(ds.data_vars) == {"precip", "input_nan_mask", "crs"}


def test_forecast_without_projection_has_no_grid_mapping(tmp_path):
    grid = GridInfo(shape=(4, 5))
    with h5py.File(_write(tmp_path, grid=grid), "r") as h:
        assert "crs" not in h and "grid_mapping" not in h["precip"].attrs
