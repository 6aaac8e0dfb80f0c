"""`nowcastd predict`: a missing scan is named before any model loads; `.npy` scans take their
projection and extent from the config's [domain]."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from nowcastd.cli import app
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from tests.nowcastd.serve.tiny import DBZ, tiny_network

PROJ = "+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60 +a=6378137 +b=6356752 +units=m"


def test_missing_scan_is_reported_as_missing_before_the_model_loads(tmp_path: Path) -> None:
    no_model = tmp_path / "empty"
    no_model.mkdir()
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "nosuch.h5"), "--checkpoint", str(no_model)]
    )
    assert result.exit_code == 1
    assert result.output.strip() == f"error: no such scan file: {tmp_path / 'nosuch.h5'}"


def test_npy_scans_take_projection_and_extent_from_the_domain(tmp_path: Path) -> None:
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", tiny_network(size=16), DBZ)
    start = datetime(2026, 8, 26, 12, 0, tzinfo=UTC)
    scans = []
    for i in range(3):
        name = f"scan_{start + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
        np.save(tmp_path / name, np.full((32, 40), 1.0 + i, np.float32))
        scans.append(str(tmp_path / name))
    config = tmp_path / "npy.toml"
    config.write_text(
        f"""[reader]
format = "npy"

[domain]
native_shape = [32, 40]
row0 = 0
col0 = 8
height = 32
width = 32
block = 2
projection = "{PROJ}"
extent = [0.0, -3_682_000.0, 40_000.0, -3_650_000.0]
"""
    )
    result = CliRunner().invoke(
        app,
        ["predict", *scans, "--config", str(config), "--checkpoint", str(ckpt)]
        + ["--output-dir", str(tmp_path / "out")],
    )
    assert result.exit_code == 0, result.output
    forecast = read_forecast(result.output.strip().splitlines()[-1])
    assert forecast.attrs["projection"] == PROJ
    # 2 km model pixels from x = 8 km (col0 8 at 1 km), row 0 at the northern edge
    np.testing.assert_allclose(forecast.x[:2], [9_000.0, 11_000.0])
    np.testing.assert_allclose(forecast.y[:2], [-3_651_000.0, -3_653_000.0])


def test_predict_applies_the_admission_rules_of_serve(tmp_path: Path) -> None:
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", tiny_network(size=16), DBZ)
    start = datetime(2099, 9, 28, 15, 0, tzinfo=UTC)  # ahead of any clock this runs under
    scans = []
    for i in range(3):
        name = f"scan_{start + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
        np.save(tmp_path / name, np.full((16, 16), 1.0, np.float32))
        scans.append(str(tmp_path / name))
    result = CliRunner().invoke(
        app, ["predict", *scans, "--checkpoint", str(ckpt), "--output-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: refused (future): scan_209909281500.npy: expected a valid")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
