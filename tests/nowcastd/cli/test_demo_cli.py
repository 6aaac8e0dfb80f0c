"""`nowcastd demo` in a real subprocess: it feeds real KNMI scans to a real `nowcastd serve`,
with a tiny checkpoint and a slice of the sample scans so that it runs in seconds."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from nowcastd.cli.demo import sample_scans
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from tests.nowcastd.serve.tiny import DBZ, tiny_network
from tests.paths import REPO


def _scan_slice(tmp_path: Path, count: int) -> Path:
    scans = tmp_path / "scans"
    scans.mkdir()
    for path in sorted(sample_scans().glob("RAD_NL25_*.h5"))[:count]:
        shutil.copy(path, scans / path.name)
    return scans


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "nowcastd.cli", "demo", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )


def test_sample_scans_are_native_knmi_files_with_their_licence() -> None:
    files = sorted(sample_scans().glob("RAD_NL25_RAP_5min_*.h5"))
    assert 24 <= len(files) <= 36
    assert sum(f.stat().st_size for f in files) < 3_000_000
    assert "CC BY 4.0" in (sample_scans() / "README.md").read_text()


def test_demo_serves_scans_with_a_checkpoint_and_reports(tmp_path: Path) -> None:
    scans = _scan_slice(tmp_path, 8)
    ckpt = save_inference_checkpoint(tmp_path / "ckpt", tiny_network(input_length=3), DBZ)
    done = _demo(
        tmp_path,
        *("--scans", str(scans), "--checkpoint", str(ckpt), "--cadence_seconds", "0.4"),
        *("--keep", "work", "--out", "figures", "--ensemble_members", "3"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # 2 scans wait in the watch directory (the refill), 6 arrive: one forecast line each
    rows = re.findall(r"^\s*2010-08-26 (\d\d:\d\d)\s+\d+ ms .* (forecast_\S+\.h5)", out, re.M)
    assert [time for time, _ in rows] == ["04:50", "04:55", "05:00", "05:05", "05:10", "05:15"]
    assert "scans received 8 (rejected: none; skipped 0), forecasts written 6" in out
    assert "0 after ready" in out and "exited 0 (6 forecasts)" in out
    # the skill table: 3 leads, 5 forecasts scored at +5 min, 3 at +15 min
    assert re.search(r"^\s+\+5 min \(5\) model\s+\d\.\d{3}(\s+(\d\.\d\d|—)){10}", out, re.M), out
    assert re.search(r"^\s+\+15 min \(3\) model\s", out, re.M), out
    assert re.search(r"^\s+LK\s+\d\.\d{3}", out, re.M) and "FBI5" in out
    assert "model vs LK: " in out and "model vs persistence: " in out
    figures = [
        Path(line.removeprefix("figure: "))
        for line in out.splitlines()
        if line.startswith("figure: ")
    ]
    assert [f.name.split("_")[0] for f in figures] == ["forecast", "probability"]
    for figure in figures:
        assert figure.parent == tmp_path / "figures" and figure.read_bytes()[:4] == b"\x89PNG"
        assert stat.S_IMODE(figure.stat().st_mode) == 0o666 & ~_umask()
    # the ensemble: a stage of every forecast line, its probabilities scored and drawn
    assert re.search(r"^\s+scan \(UTC\).* rollout\s+ensemble\s+write", out, re.M), out
    assert re.search(r"^\s*2010-08-26 05:15(\s+\d+ ms){6}", out, re.M), out
    assert "P(>= 1 mm/h) at +30 min against the observations: P 0-0.2: said" in out
    assert "probability of >= 1 mm/h from 3 members" in out
    forecasts = sorted((tmp_path / "work" / "forecasts").glob("forecast_*.h5"))
    assert [f.name for (f,) in zip(forecasts)] == [name for _, name in rows]
    f = read_forecast(forecasts[-1])
    assert f.precip.shape == (3, 64, 64) and f.x[0] == 250_000.0
    assert f.ensemble is not None and f.ensemble.probability.shape == (4, 3, 64, 64)
    assert (tmp_path / "work" / "daemon.log").read_text().count("forecast forecast_") == 6


def test_demo_trains_on_the_spot_and_removes_its_temporary_directory(tmp_path: Path) -> None:
    scans = _scan_slice(tmp_path, 5)
    done = _demo(
        tmp_path,
        *("--train", "--iterations", "1", "--scans", str(scans), "--cadence_seconds", "0.4"),
        *("--ensemble_members", "0"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trained on the spot" in done.stdout and "forecasts written 2" in done.stdout
    assert "the bundled model is the one to judge" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nowcastd-demo", "scans"]
    (figure,) = (tmp_path / "nowcastd-demo").glob("*.png")
    assert figure.stat().st_size > 10_000


def test_demo_refuses_train_with_checkpoint_in_one_line(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--train", "--checkpoint", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: train, checkpoint: expected one of them, got both"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
