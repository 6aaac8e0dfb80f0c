"""`nowcastd predict --ensemble-members N` with an Eulerian network: the file holds the
probabilities at the thresholds given, the mean and the members, and the same scans and seed
give the same file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from nowcastd.cli import app
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from tests.nowcastd.serve.tiny import DBZ, tiny_network

CONFIG = """[reader]
format = "npy"

[domain]
native_shape = [32, 32]
row0 = 0
col0 = 0
height = 32
width = 32
block = 2
"""


def _scans(tmp_path: Path) -> list[str]:
    start = datetime(2026, 8, 26, 12, 0, tzinfo=UTC)
    rng = np.random.default_rng(1)
    rain = rng.gamma(0.6, 3.0, (32, 32)).astype(np.float32)
    scans = []
    for i in range(3):
        name = f"scan_{start + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
        np.save(tmp_path / name, np.roll(rain, i, axis=1))  # rain moving east
        scans.append(str(tmp_path / name))
    return scans


def test_predict_writes_the_ensemble_products_of_an_eulerian_network(tmp_path: Path) -> None:
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", tiny_network(size=16), DBZ)
    config = tmp_path / "npy.toml"
    config.write_text(CONFIG)
    scans = _scans(tmp_path)
    args = ["predict", *scans, "--config", str(config), "--checkpoint", str(ckpt)]
    args += ["--ensemble-members", "4", "--probability-thresholds-mm-h", "0.5,2"]
    args += ["--ensemble-write-members"]
    files = []
    for run in ("a", "b"):
        result = CliRunner().invoke(app, [*args, "--output-dir", str(tmp_path / run)])
        assert result.exit_code == 0, result.output
        files.append(read_forecast(result.output.strip().splitlines()[-1]))
    ens = files[0].ensemble
    assert ens is not None and ens.members is not None
    assert ens.thresholds_mm_h == (0.5, 2.0) and ens.members.shape == (4, *files[0].precip.shape)
    share = np.stack([(ens.members >= t).mean(axis=0) for t in (0.5, 2.0)])
    finite = np.isfinite(ens.members).all(axis=0)
    np.testing.assert_array_equal(ens.probability[:, finite], share[:, finite])
    assert np.std(ens.members[:, finite], axis=0).max() > 0  # the members differ
    again = files[1].ensemble
    assert again is not None and again.members is not None
    np.testing.assert_array_equal(ens.members, again.members)  # one seed per scan time
