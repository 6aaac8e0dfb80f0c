"""Figures: valid PNG files, written atomically, for physical and identity data."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from nowcastd.io.transform import DataTransform
from nowcastd.verification.figures import save_decoupling_histogram, save_sample_figure
from tests.paths import REPO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    return img


@pytest.mark.parametrize("kind", ["dbz", "identity"])
def test_sample_figure_is_a_png(tmp_path, kind):
    rng = np.random.default_rng(0)
    ctx = rng.random((4, 16, 16, 1)).astype(np.float32) * 0.7
    obs = rng.random((3, 16, 16, 1)).astype(np.float32) * 0.7
    fct = rng.random((3, 16, 16)).astype(np.float32) * 1.2 - 0.1  # out of range is fine
    path = save_sample_figure(
        tmp_path / "s.png",
        ctx,
        obs,
        fct,
        DataTransform(kind=kind),
        timestep_seconds=300,
        title="sample 0",
    )
    img = _check_png(path)
    assert img.shape[1] > img.shape[0]  # a wide grid


def test_sample_figure_rejects_mismatched_frames(tmp_path):
    with pytest.raises(ValueError, match="share"):
        save_sample_figure(
            tmp_path / "s.png",
            np.zeros((2, 8, 8)),
            np.zeros((3, 8, 8)),
            np.zeros((2, 8, 8)),
            DataTransform(),
        )
    assert not list(tmp_path.iterdir())


def test_decoupling_histogram_is_a_png(tmp_path):
    cos = np.random.default_rng(1).uniform(-1, 1, size=(4, 64))
    cos[0, 0] = np.nan
    _check_png(save_decoupling_histogram(tmp_path / "h.png", cos))
    with pytest.raises(ValueError, match="no finite"):
        save_decoupling_histogram(tmp_path / "e.png", [np.nan])


def test_matplotlib_is_lazy_and_pyplot_never_loaded(tmp_path):
    code = (
        "import sys, nowcastd.verification.figures as f\n"
        "assert 'matplotlib' not in sys.modules\n"
        f"f.save_decoupling_histogram({str(tmp_path / 'h.png')!r}, [0.1, 0.5])\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    root = REPO
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=120)
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC
