"""`nowcastd evaluate` with a tiny real checkpoint on the radar fixture movie."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from model.network import PredRNN
from nowcastd.cli import app
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from tests.paths import FIXTURES

MOVIE = FIXTURES / "radar" / "movie_small.h5"
INPUT, TOTAL = 3, 5


@pytest.fixture(autouse=True)
def _restore_logging():
    """The command configures the root logger on the runner's streams; undo that."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_cfg) -> Path:
    cfg = replace(
        tiny_cfg, patch_size=4, img_height=64, img_width=64, input_length=INPUT, total_length=TOTAL
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_inference_checkpoint(
        path, PredRNN(cfg, key=jax.random.key(0)), DataTransform(kind="dbz")
    )


def run(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def dbz_units(rate: np.ndarray) -> np.ndarray:
    """rate (mm/h) -> model units, written out from the transform's documented formula."""
    r = rate.astype(np.float64)
    with np.errstate(divide="ignore"):
        x = np.clip(10.0 * np.log10(200.0 * r**1.6) / 60.0, 0.0, 1.0)
    return np.where(r > 0, x, 0.0)


def test_evaluate_json_scores_model_and_persistence(checkpoint, tmp_path):
    res = run(
        "--checkpoint", checkpoint, "--data", MOVIE, "--split", "all", "--batch_size", 2,
        "--json", "--out", tmp_path / "eval",
    )  # fmt: skip

    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report == json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["split"] == "all" and report["timestep_seconds"] == 300
    for name in ("model", "persistence"):
        scores = report[name]
        assert scores["n_sequences"] == 12 - TOTAL + 1
        assert scores["leads"] == TOTAL - INPUT
        for key in ("mse", "mse_pixel", "mae_pixel", "psnr", "ssim", "mae_mm_h"):
            values = scores["per_lead"][key]
            assert len(values) == TOTAL - INPUT
            assert all(math.isfinite(v) for v in values), (name, key, values)
        assert math.isfinite(scores["mse_per_seq"])
    skill = report["mse_skill_vs_persistence"]
    assert len(skill) == TOTAL - INPUT and all(math.isfinite(s) for s in skill)

    with h5py.File(MOVIE, "r") as h:
        x = dbz_units(h["precip"][:])  # (12, 64, 64)
    starts = np.arange(12 - TOTAL + 1)
    for lead in (1, 2):
        err = x[starts + INPUT + lead - 1] - x[starts + INPUT - 1]
        expected = (err**2).sum(axis=(1, 2)).mean()
        got = report["persistence"]["per_lead"]["mse"][lead - 1]
        assert got == pytest.approx(expected, rel=1e-4)


def test_evaluate_table_without_baseline(checkpoint):
    res = run(
        "--checkpoint", checkpoint, "--data", MOVIE, "--split", "valid", "--valid_fraction", 0.5, "--batch_size", 2,
        "--no-baseline",
    )  # fmt: skip

    assert res.exit_code == 0, res.output
    assert "+5 min" in res.stdout and "+10 min" in res.stdout
    assert "persistence" not in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "test"], "--split 'test'"),
        (["--visual", 1], "--out"),
        (["--valid_fraction", 1.5], "--valid_fraction"),
        (["--split", "valid", "--valid_fraction", 0.1], "valid split"),
    ],
)
def test_evaluate_bad_flags_exit_1_with_one_line(checkpoint, args, message):
    res = run("--checkpoint", checkpoint, "--data", MOVIE, *args)

    assert res.exit_code == 1, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_evaluate_missing_checkpoint_exits_1(tmp_path):
    res = run("--checkpoint", tmp_path, "--data", MOVIE)
    assert res.exit_code == 1 and "no nowcastd checkpoint" in res.stderr


def test_evaluate_on_built_clips_matches_the_movie(checkpoint, tmp_path):
    clips = tmp_path / "movie.npy"
    built = CliRunner().invoke(
        app, ["dataset", "build", str(MOVIE), "--out", str(clips), "--total_length", str(TOTAL)]
    )
    assert built.exit_code == 0, built.output
    common = ["--checkpoint", checkpoint, "--split", "all", "--batch_size", 2, "--json"]

    from_clips = json.loads(run(*common, "--data", clips).stdout)
    from_movie = json.loads(run(*common, "--data", MOVIE).stdout)

    for name in ("model", "persistence"):
        assert from_clips[name]["per_lead"]["mse"] == pytest.approx(
            from_movie[name]["per_lead"]["mse"], rel=1e-6
        )
