"""Forecasts, figures and checkpoints honour the process umask (0644 by default, 0640 under
systemd's UMask=0027), in a real subprocess that sets its umask before writing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

WRITER = r"""
import os, sys
from datetime import UTC, datetime
from pathlib import Path

import jax
import numpy as np

os.umask(int(sys.argv[2], 8))
out = Path(sys.argv[1])

from model.config import ModelConfig
from model.network import PredRNN
from nowcastd.io.forecast_file import write_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from nowcastd.verification.figures import save_decoupling_histogram

write_forecast(
    out / "forecasts",
    issue_time=datetime(2010, 8, 26, 6, 0, tzinfo=UTC),
    precip=np.zeros((2, 8, 8), np.float32),
    lead_seconds=[300, 600],
    input_names=["a.h5"],
    input_times=[datetime(2010, 8, 26, 6, 0, tzinfo=UTC)],
    model_name="predrnn_v2",
    checkpoint_digest="0" * 64,
    grid=None,
    nan_mask=None,
)
save_decoupling_histogram(out / "figure.png", np.linspace(0, 1, 10))
cfg = ModelConfig(model_name="predrnn_v2", num_hidden=(4,), filter_size=3, patch_size=2,
                  img_height=4, img_width=4, input_length=2, total_length=3)
save_inference_checkpoint(out / "ckpt", PredRNN(cfg, key=jax.random.key(0)),
                          DataTransform(kind="dbz"))
"""


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [("022", 0o644, 0o755), ("027", 0o640, 0o750)]
)
def test_written_files_honour_the_process_umask(tmp_path, umask, file_mode, dir_mode) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(tmp_path), umask],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    modes = _modes(tmp_path)
    files = {name: mode for name, mode in modes.items() if not (tmp_path / name).is_dir()}
    dirs = {name: mode for name, mode in modes.items() if (tmp_path / name).is_dir()}
    assert "forecasts/forecast_20100826T060000Z.h5" in files
    assert "figure.png" in files and "ckpt/meta.json" in files
    assert json.loads((tmp_path / "ckpt" / "meta.json").read_text())
    assert set(files.values()) == {file_mode}, files
    assert set(dirs.values()) == {dir_mode}, dirs
