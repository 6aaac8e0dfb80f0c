"""`nowcastd predict`: a missing scan is named before any model loads; `.npy` scans take their
projection and extent from the config's [domain]."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
from typer.testing import CliRunner, Result

from nowcastd.cli import app
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from tests.nowcastd.serve.daemon import NATIVE, T0
from tests.nowcastd.serve.tiny import DBZ, tiny_network
from tests.reliability.hostile import odim_scan

RAMP = np.add.outer(np.arange(64), np.arange(64)) % 7 * 0.1  # rain that varies
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
        np.save(tmp_path / name, (1.0 + i + RAMP[:32, :40]).astype(np.float32))
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
        np.save(tmp_path / name, (1.0 + RAMP[:16, :16]).astype(np.float32))
        scans.append(str(tmp_path / name))
    result = CliRunner().invoke(
        app, ["predict", *scans, "--checkpoint", str(ckpt), "--output-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    refused = _refusals(result)
    last = result.output.strip().splitlines()[-1]
    assert len(refused) == 3
    assert refused[0].startswith("refused (future): scan_209909281500.npy: expected a valid")
    assert last.startswith(
        "error: predict: expected 3 consecutive scans ending at the newest, got 0 (3 of 3 "
        "refused); first refused (future): scan_209909281500.npy: expected a valid"
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _predict(tmp_path: Path, scans: list[Path], ckpt: Path, *config: str) -> Result:
    return CliRunner().invoke(
        app,
        ["predict", *map(str, scans), "--checkpoint", str(ckpt), *config]
        + ["--output-dir", str(tmp_path / "out")],
    )


def _refusals(result: Result) -> list[str]:
    """The lines of the scans left out, with their reasons."""
    return [
        line
        for line in result.output.splitlines()
        if line.startswith("refused (") or " failed (" in line
    ]


def test_a_scan_whose_geometry_the_crop_makes_infinite_is_refused_and_the_rest_forecast(
    tmp_path: Path,
) -> None:
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", tiny_network(size=16), DBZ)
    scans = [tmp_path / f"good{i}.h5" for i in range(3)] + [tmp_path / "yscale.h5"]
    for i, path in enumerate(scans):
        odim_scan(path, i)
    with h5py.File(scans[-1], "a") as h:  # the newest: valid 5 min after the good ones
        h["where"].attrs["yscale"] = 1e308
    config = tmp_path / "block4.toml"
    config.write_text(
        f"[domain]\nnative_shape = [{NATIVE}, {NATIVE}]\nrow0 = 0\ncol0 = 0\n"
        f"height = {NATIVE}\nwidth = {NATIVE}\nblock = 4\n"
    )
    result = _predict(tmp_path, scans, ckpt, "--config", str(config))
    assert result.exit_code == 0, result.output
    (refused,) = _refusals(result)
    assert refused.startswith("refused (bad_geometry): yscale.h5: ")
    path = result.output.strip().splitlines()[-1]
    assert read_forecast(path).issue_time == T0 + timedelta(minutes=10)


def test_a_scan_of_500_mm_h_among_good_ones_is_refused_naming_the_saturation_rate(
    tmp_path: Path,
) -> None:
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", tiny_network(size=16), DBZ)
    scans = []
    for i in range(4):
        path = tmp_path / f"scan_{T0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
        field = np.full((16, 16), 500.0) if i == 0 else 1.0 + i + RAMP[:16, :16]
        np.save(path, field.astype(np.float32))
        scans.append(path)
    result = _predict(tmp_path, scans, ckpt)
    assert result.exit_code == 0, result.output
    (refused,) = _refusals(result)
    path = result.output.strip().splitlines()[-1]
    assert refused.startswith(
        "refused (saturated): scan_202601010000.npy: expected at most 1% of the pixels at or "
        "above 205.0 mm/h, where the model's input saturates"
    )
    assert read_forecast(path).issue_time == T0 + timedelta(minutes=15)
