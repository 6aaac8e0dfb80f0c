"""`nowcastd evaluate` with a tiny real checkpoint: three ways on the radar fixture movie and on
real KNMI scans, clip scores on the clips built from that movie."""

from __future__ import annotations

import json
import math
import shutil
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
from nowcastd.verification.baselines import LagrangianExtrapolation, SProg
from nowcastd.verification.sequence import open_sequence
from tests.paths import FIXTURES
from tests.reliability.hostile import odim_scan

MOVIE = FIXTURES / "radar" / "movie_small.h5"
INPUT, TOTAL = 3, 5
SCORES = [
    "n_pixels", "mae_mm_h", "rmse_mm_h", "bias_mm_h", "mean_forecast_mm_h", "mean_observed_mm_h",
    *(f"{s}_{t}_mm_h" for t in ("1", "5") for s in ("csi", "pod", "far", "frequency_bias", "fss")),
]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_cfg) -> Path:
    cfg = replace(
        tiny_cfg, patch_size=4, img_height=64, img_width=64, input_length=INPUT, total_length=TOTAL
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_inference_checkpoint(
        path, PredRNN(cfg, key=jax.random.key(0)), DataTransform(kind="dbz")
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """The fixture movie cut into .npy clips of TOTAL frames."""
    path = tmp_path_factory.mktemp("clips") / "movie.npy"
    built = CliRunner().invoke(
        app, ["dataset", "build", str(MOVIE), "--out", str(path), "--total_length", str(TOTAL)]
    )
    assert built.exit_code == 0, built.output
    return path


def run(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def dbz_units(rate: np.ndarray) -> np.ndarray:
    """rate (mm/h) -> model units, written out from the transform's documented formula."""
    r = rate.astype(np.float64)
    with np.errstate(divide="ignore"):
        x = np.clip(10.0 * np.log10(200.0 * r**1.6) / 60.0, 0.0, 1.0)
    return np.where(r > 0, x, 0.0)


def test_evaluate_clips_json_scores_model_and_persistence(checkpoint, clips, tmp_path):
    res = run(
        "--checkpoint", checkpoint, "--data", clips, "--split", "all", "--batch_size", 2,
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


def test_evaluate_clips_table_without_baseline(checkpoint, clips):
    res = run(
        "--checkpoint", checkpoint, "--data", clips, "--split", "valid", "--valid_fraction", 0.5, "--batch_size", 2,
        "--no-baselines",
    )  # fmt: skip

    assert res.exit_code == 0, res.output
    assert "+5 min" in res.stdout and "+10 min" in res.stdout
    assert "persistence" not in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "test"], "--split: expected one of 'valid', 'train', 'all', got 'test'"),
        (["--visual", 1], "--out"),
        (["--valid_fraction", 1.5], "valid_fraction: expected a number in [0, 1), got 1.5"),
        (["--split", "valid", "--valid_fraction", 0.1], "valid split"),
        (["--crop", "0,0,32,32"], "--crop applies to a radar movie or a scan directory only"),
    ],
)
def test_evaluate_bad_flags_exit_1_with_one_line(checkpoint, clips, args, message):
    res = run("--checkpoint", checkpoint, "--data", clips, *args)

    assert res.exit_code == 1, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_evaluate_missing_checkpoint_exits_1(tmp_path):
    res = run("--checkpoint", tmp_path, "--data", MOVIE)
    assert res.exit_code == 1 and "no nowcastd checkpoint" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "all"], "--split applies to .npy clips"),
        (["--crop", "0,0,32"], "--crop: expected a list of 4 integers"),
        (["--crop", "0,0,30,32", "--block", "4"], "crop height: expected a multiple of block=4"),
        (["--lead-frames", 10], "no 13 consecutive frames"),
        (["--block", 0], "block: expected an integer >= 1, got 0"),
    ],
)
def test_evaluate_movie_bad_flags_exit_1_with_one_line(checkpoint, args, message):
    res = run("--checkpoint", checkpoint, "--data", MOVIE, *args)

    assert res.exit_code == 1, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_evaluate_movie_four_ways_writes_table_json_and_plot(checkpoint, tmp_path):
    out_json, plot = tmp_path / "eval" / "scores.json", tmp_path / "eval" / "leads.png"
    res = run(
        "--checkpoint", checkpoint, "--data", MOVIE, "--lead-frames", 3, "--batch-size", 4,
        "--out-json", out_json, "--plot", plot,
    )  # fmt: skip

    assert res.exit_code == 0, res.output
    methods = ["model", "persistence", "pysteps_lk", "pysteps_sprog"]
    for line in ("+5 min", "+10 min", "+15 min", "persistence", "model", "S-PROG"):
        assert line in res.stdout
    report = json.loads(out_json.read_text())
    assert list(report["methods"]) == methods
    assert report["n_starts"] == 12 - (INPUT + 3) + 1 and report["lead_minutes"] == [5, 10, 15]
    for method in methods:
        scores = report["methods"][method]
        assert sorted(scores) == sorted(SCORES), method
        for name in SCORES:
            assert len(scores[name]) == 3, (method, name)
        for name in ("mae_mm_h", "rmse_mm_h", "bias_mm_h", "csi_1_mm_h", "fss_1_mm_h"):
            assert all(v is not None and math.isfinite(v) for v in scores[name]), (method, name)
    pixels = {m: report["methods"][m]["n_pixels"] for m in methods}
    assert len({tuple(v) for v in pixels.values()}) == 1  # the same pixels for every method
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(plot) as image:
        image.verify()
        assert image.size[0] > 400 and image.size[1] > 200


def test_evaluate_movie_matches_the_clip_scores_of_its_clips(checkpoint, clips):
    """The same starts and pixels (no NaN in the fixture, and without the extrapolations no
    pixel is left out for rain from outside): the model's MAE and CSI in mm/h agree between the
    evaluation of the movie and the clip scores of its clips."""
    common = ["--checkpoint", checkpoint, "--batch_size", 2, "--json"]
    movie = json.loads(run(*common, "--data", MOVIE, "--no-baselines").stdout)
    clip = json.loads(run(*common, "--data", clips, "--split", "all").stdout)

    assert movie["n_starts"] == clip["model"]["n_sequences"]
    for name in ("mae_mm_h", "csi_1_mm_h", "frequency_bias_1_mm_h"):
        got = movie["methods"]["model"][name]
        assert got == pytest.approx(clip["model"]["per_lead"][name], rel=1e-4, abs=1e-6)


def test_evaluate_scan_directory_with_the_serve_domain(checkpoint, tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text(
        "[serve]\nwatch_dir = 'in'\n[domain]\nnative_shape = [765, 700]\nrow0 = 126\n"
        "col0 = 94\nheight = 256\nwidth = 256\nblock = 4\n"
    )
    res = run(
        "--checkpoint", checkpoint, "--data", FIXTURES / "knmi", "--config", config,
        "--lead-frames", 1, "--json",
    )  # fmt: skip

    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["grid"] == [64, 64] and report["domain"]["block"] == 4
    assert report["n_starts"] == 1 and report["first_issue_time"] == "2010-08-26T00:10:00Z"
    seq = open_sequence(FIXTURES / "knmi", config=config)
    # the 4 scans (3 inputs + 1 lead) have data, and so do the extrapolations from the
    # scans with their halo (no rain from beyond it), cropped to the grid
    m = seq.margin
    assert m == 94 // 4  # the default: what the scan offers (94 native columns on the left)
    inputs = seq.window_frames[:3]
    advected = [method(inputs, 1)[0][m:-m, m:-m] for method in (LagrangianExtrapolation(), SProg())]
    # the observation, the newest input (persistence, the model) and the extrapolations
    have_data = np.isfinite(seq.precip[2:4]).all(axis=0) & np.isfinite(advected).all(axis=0)
    covered = int(have_data.sum())
    assert 0 < covered < 64 * 64
    for scores in report["methods"].values():
        assert scores["n_pixels"] == [covered]


def test_evaluate_scan_directory_skips_a_scan_of_another_grid_by_name(checkpoint, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for path in sorted((FIXTURES / "knmi").glob("*.h5")):
        shutil.copy(path, scans / path.name)
    odim_scan(scans / "RAD_NL25_RAP_5min_201008260007.h5", 0)  # a 64 x 64 composite among them
    config = tmp_path / "serve.toml"
    config.write_text(
        "[domain]\nnative_shape = [765, 700]\nrow0 = 126\ncol0 = 94\nheight = 256\n"
        "width = 256\nblock = 4\n"
    )
    res = run(
        "--checkpoint", checkpoint, "--data", scans, "--config", config, "--lead-frames", 1,
        "--json", "--no-baselines",
    )  # fmt: skip

    assert res.exit_code == 0, res.output
    assert (
        "skipping RAD_NL25_RAP_5min_201008260007.h5: scan RAD_NL25_RAP_5min_201008260007.h5: "
        "expected grid (765, 700), got (64, 64)" in res.output
    )
    report = json.loads(res.stdout)
    assert report["n_starts"] == 1 and report["first_issue_time"] == "2010-08-26T00:10:00Z"


@pytest.fixture(scope="module")
def lagrangian_checkpoint(tmp_path_factory, tiny_cfg) -> Path:
    """A tiny Lagrangian network, built as serve's Lagrangian tests build theirs."""
    cfg = replace(
        tiny_cfg, patch_size=4, img_height=64, img_width=64, input_length=INPUT,
        total_length=TOTAL, predict_delta=True, lagrangian=True,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "lagrangian"
    network = PredRNN(cfg, key=jax.random.key(3))
    return save_inference_checkpoint(path, network, DataTransform(kind="dbz"), motion_method="LK")


def test_evaluate_clips_with_a_lagrangian_model_matches_its_movie_scores(
    lagrangian_checkpoint, clips
):
    """The clip path runs the forecast function with motion (no 'needs a motion estimator'):
    the same forecasts and pixels as the movie's evaluation."""
    common = ["--checkpoint", lagrangian_checkpoint, "--batch_size", 2, "--json"]
    clip = run(*common, "--data", clips, "--split", "all")
    assert clip.exit_code == 0, clip.output
    movie = json.loads(run(*common, "--data", MOVIE, "--no-baselines").stdout)

    scores = json.loads(clip.stdout)["model"]["per_lead"]
    for name in ("mae_mm_h", "csi_1_mm_h", "frequency_bias_1_mm_h", "pod_5_mm_h"):
        assert len(scores[name]) == TOTAL - INPUT
        got = movie["methods"]["model"][name]
        assert got == pytest.approx(scores[name], rel=1e-4, abs=1e-6), name
    assert all(math.isfinite(v) for v in scores["mae_mm_h"])


def test_evaluate_several_movies_gives_a_table_each_and_one_pooled(checkpoint, tmp_path):
    second = tmp_path / "reversed.h5"
    with h5py.File(MOVIE, "r") as h, h5py.File(second, "w") as out:
        for key in h:
            out[key] = h[key][:][::-1] if key == "precip" else h[key][:]
        out["precip"].attrs.update(h["precip"].attrs)
        out.attrs.update(h.attrs)
    data = f"{MOVIE},{second}"
    res = run("--checkpoint", checkpoint, "--data", data, "--lead-frames", 2, "--json")
    assert res.exit_code == 0, res.output
    events = json.loads(res.stdout)["events"]
    assert [e["name"] for e in events] == ["movie_small.h5", "reversed.h5", "pooled"]
    assert events[2]["n_starts"] == events[0]["n_starts"] + events[1]["n_starts"]
    for method in ("model", "persistence", "pysteps_lk"):
        pixels = [e["methods"][method]["n_pixels"] for e in events]
        assert pixels[2] == [a + b for a, b in zip(pixels[0], pixels[1], strict=True)]

    table = run("--checkpoint", checkpoint, "--data", data, "--lead-frames", 2).stdout
    assert table.count("model vs LK:") == 3 and "pooled:" in table
    assert "FSS over" in table and "FBI5" in table
