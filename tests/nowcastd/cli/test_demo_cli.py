"""`nowcastd demo`, the README's main job, on the bundled sample (shortened to 2 iterations)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nowcastd.cli import app
from nowcastd.io.forecast_file import read_forecast


def test_demo_trains_scores_and_writes_a_forecast(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--iterations", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "persistence on the same frames" in result.output
    (path,) = sorted((tmp_path / "forecasts").glob("forecast_*.h5"))
    forecast = read_forecast(path)
    assert forecast["precip"].shape == (6, 64, 64)
    assert list(forecast["lead_seconds"]) == [300 * k for k in range(1, 7)]
    assert (forecast["precip"] >= 0).all()
    assert forecast["x"][0] == 250000.0  # pixel centres from the sample's grid, in metres
    assert (tmp_path / "checkpoints" / "ckpt-00000002" / "meta.json").exists()
