"""read_pysteps and its pysteps importer plugin on forecast files written here."""

from datetime import UTC, datetime

import numpy as np
import pysteps
import pytest

from nowcastd.errors import DataError
from nowcastd.io import read_pysteps
from nowcastd.io.forecast_file import write_forecast
from nowcastd.io.pysteps_importer import import_nowcastd
from nowcastd.io.readers.scan import GridInfo

ISSUE = datetime(2026, 1, 1, 12, tzinfo=UTC)
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


def _write(tmp_path, grid=GRID, leads=(600, 1200)):
    precip = np.zeros((len(leads), 4, 5), np.float32)
    precip[:, 1, 2] = [0.25, 3.0][: len(leads)]
    return write_forecast(
        tmp_path,
        issue_time=ISSUE,
        precip=precip,
        lead_seconds=list(leads),
        input_names=["a.h5"],
        input_times=[ISSUE],
        model_name="predrnn_v2",
        checkpoint_digest="sha256:abc",
        grid=grid,
        nan_mask=None,
    )


def test_read_pysteps_gives_the_field_and_pysteps_metadata(tmp_path):
    precip, metadata = read_pysteps(_write(tmp_path))
    assert precip.shape == (2, 4, 5) and precip[1, 1, 2] == 3.0
    assert metadata == {
        "projection": GRID.projection,
        "x1": 248_000.0,
        "y1": -3_926_000.0,
        "x2": 258_000.0,
        "y2": -3_918_000.0,
        "xpixelsize": 2000.0,
        "ypixelsize": 2000.0,
        "yorigin": "upper",
        "unit": "mm/h",
        "transform": None,
        "zerovalue": 0.0,
        "threshold": 0.1,  # the forecasts' rain threshold: every rate below it is 0
        "accutime": 10.0,
        "timestamps": metadata["timestamps"],
    }
    assert list(metadata["timestamps"]) == [
        datetime(2026, 1, 1, 12, 10),
        datetime(2026, 1, 1, 12, 20),
    ]


def test_pysteps_finds_the_plugin_by_name():
    importer = pysteps.io.get_method("nowcastd", "importer")
    assert importer.__wrapped__ is import_nowcastd


def test_a_forecast_without_a_known_grid_is_refused_by_name(tmp_path):
    with pytest.raises(
        DataError, match=r"forecast_20260101T120000Z\.h5: expected the grid's .*projection"
    ):
        read_pysteps(_write(tmp_path, grid=GridInfo(shape=(4, 5))))


def test_the_importer_refuses_keywords_it_does_not_know(tmp_path):
    with pytest.raises(TypeError, match=r"got \['zr_a'\]"):
        import_nowcastd(_write(tmp_path), zr_a=200.0)
