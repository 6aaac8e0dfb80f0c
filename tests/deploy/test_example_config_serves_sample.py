"""deploy/config.example.toml, with its paths changed, serves the sample KNMI scans: a real
`nowcastd serve` subprocess forecasts on the [domain]'s 64 x 64 grid."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nowcastd.cli.demo import sample_scans
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from tests.nowcastd.serve.tiny import DBZ, tiny_network
from tests.paths import REPO


def test_example_config_with_paths_changed_serves_the_sample_scans(tmp_path: Path) -> None:
    text = (REPO / "deploy" / "config.example.toml").read_text()
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", tiny_network(input_length=3), DBZ)
    changes = {
        "watch_dir": tmp_path / "incoming",
        "output_dir": tmp_path / "forecasts",
        "compile_cache_dir": tmp_path / "cache",
    }
    for key, value in changes.items():
        text, n = re.subn(rf'^{key} = ".*"$', f'{key} = "{value}"', text, flags=re.M)
        assert n == 1, key
    text = text.replace(
        "[serve]\n",
        f'[serve]\ncheckpoint = "{ckpt}"\nmetrics_port = 0\nrefill_max_age_hours = 0\n',
        1,
    )
    text = re.sub(r"^metrics_port = 9810$", "", text, flags=re.M)
    config = tmp_path / "serve.toml"
    config.write_text(text)
    (tmp_path / "incoming").mkdir()
    scans = sorted(sample_scans().glob("RAD_NL25_*.h5"))[:4]
    for scan in scans[:2]:  # the refill reads these
        shutil.copy(scan, tmp_path / "incoming" / scan.name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "nowcastd.cli", "serve", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 240
            while "ready:" not in log.read_text() and time.monotonic() < deadline:
                assert daemon.poll() is None, log.read_text()
                time.sleep(0.2)
            for scan in scans[2:]:
                shutil.copy(scan, tmp_path / "incoming" / f".{scan.name}.part")
                os.replace(
                    tmp_path / "incoming" / f".{scan.name}.part", tmp_path / "incoming" / scan.name
                )
                time.sleep(1.0)
            while len(list((tmp_path / "forecasts").glob("forecast_*.h5"))) < 2:
                assert time.monotonic() < deadline and daemon.poll() is None, log.read_text()
                time.sleep(0.2)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=60)
    assert code == 0, log.read_text()
    newest = sorted((tmp_path / "forecasts").glob("forecast_*.h5"))[-1]
    assert newest.name == "forecast_20100826T045500Z.h5"
    forecast = read_forecast(newest)
    assert forecast.precip.shape == (12, 64, 64)
    assert forecast.x[0] == 250_000.0 and forecast.attrs["xpixelsize"] == 4000.0
