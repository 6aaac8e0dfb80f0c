"""`nowcastd evaluate --ensemble N` end to end: a tiny real Lagrangian checkpoint's ensemble
against pysteps' STEPS on the radar fixture movie, through the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import h5py
import jax
import pytest
from typer.testing import CliRunner

from model.network import PredRNN
from nowcastd.cli import app
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from tests.paths import FIXTURES

MOVIE = FIXTURES / "radar" / "movie_small.h5"
INPUT, TOTAL, LEADS = 3, 5, 2


@pytest.fixture(scope="module")
def lagrangian_checkpoint(tmp_path_factory, tiny_cfg) -> Path:
    cfg = replace(
        tiny_cfg, patch_size=4, img_height=64, img_width=64, input_length=INPUT,
        total_length=TOTAL, predict_delta=True, lagrangian=True,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "lagrangian"
    network = PredRNN(cfg, key=jax.random.key(3))
    return save_inference_checkpoint(path, network, DataTransform(kind="dbz"), motion_method="LK")


def run(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


@pytest.fixture(scope="module")
def two_members(lagrangian_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    res = run(
        "--checkpoint", lagrangian_checkpoint, "--data", MOVIE, "--lead-frames", LEADS,
        "--batch-size", 4, "--ensemble", 2, "--out-json", out / "scores.json",
        "--plot", out / "leads.png",
    )  # fmt: skip
    return res, out


def test_evaluate_ensemble_prints_both_methods_and_their_verdict(two_members):
    res, _ = two_members
    assert res.exit_code == 0, res.output
    assert "ensemble of 2: 8 forecasts" in res.stdout
    for text in ("model ens.", "STEPS", "CRPS", "ROC1", "REL5", "model ensemble vs STEPS: "):
        assert text in res.stdout, text
    assert "model vs LK:" in res.stdout  # the deterministic tables stay


def test_evaluate_ensemble_json_carries_both_methods_on_the_same_pixels(two_members):
    _, out = two_members
    report = json.loads((out / "scores.json").read_text())
    ensemble = report["ensemble"]
    assert list(ensemble["methods"]) == ["model", "pysteps_steps"]
    assert ensemble["members"] == 2 and ensemble["n_starts"] == 12 - (INPUT + LEADS) + 1
    assert ensemble["model_ensemble"]["members"] == 2
    pixels = [m["n_pixels"] for m in ensemble["methods"].values()]
    assert pixels[0] == pixels[1] and all(0 < n <= 8 * 64 * 64 for n in pixels[0])
    for name, scores in ensemble["methods"].items():
        for key in ("crps_mm_h", "spread_skill_ratio", "roc_area_1_mm_h", "reliability_gap_1_mm_h"):
            assert len(scores[key]) == LEADS and all(math.isfinite(v) for v in scores[key]), key
        assert all(sum(h) == pytest.approx(1.0) for h in scores["rank_histogram"]), name
        assert all(len(h) == 3 for h in scores["rank_histogram"])
    assert ensemble["verdict"].startswith("model ensemble vs STEPS: ")
    assert list(report["methods"]) == ["model", "persistence", "pysteps_lk", "pysteps_sprog"]


def test_evaluate_ensemble_writes_a_reliability_plot_beside_the_lead_plot(two_members):
    _, out = two_members
    from PIL import Image

    for name in ("leads.png", "leads_reliability.png"):
        with Image.open(out / name) as image:
            image.verify()
            assert image.size[0] > 400 and image.size[1] > 200


def test_evaluate_ensemble_is_reproducible_for_a_seed(lagrangian_checkpoint, two_members):
    _, out = two_members
    first = json.loads((out / "scores.json").read_text())["ensemble"]["methods"]
    common = ["--checkpoint", lagrangian_checkpoint, "--data", MOVIE, "--batch-size", 4]
    common += ["--lead-frames", LEADS, "--ensemble", 2, "--json"]
    again = json.loads(run(*common).stdout)["ensemble"]["methods"]
    assert again["model"]["crps_mm_h"] == first["model"]["crps_mm_h"]
    assert again["pysteps_steps"]["crps_mm_h"] == first["pysteps_steps"]["crps_mm_h"]
    other = json.loads(run(*common, "--ensemble-seed", 5).stdout)["ensemble"]["methods"]
    assert other["pysteps_steps"]["crps_mm_h"] != first["pysteps_steps"]["crps_mm_h"]
    assert other["model"]["crps_mm_h"] != first["model"]["crps_mm_h"]


@pytest.mark.parametrize("members", [1, -2])
def test_evaluate_ensemble_refuses_fewer_than_two_members(lagrangian_checkpoint, members):
    res = run("--checkpoint", lagrangian_checkpoint, "--data", MOVIE, "--ensemble", members)
    assert res.exit_code == 1
    assert f"ensemble: expected 0 (off) or at least 2 members, got {members}" in res.output
    assert "Traceback" not in res.output


def test_evaluate_ensemble_of_several_movies_pools_their_sums(lagrangian_checkpoint, tmp_path):
    second = tmp_path / "reversed.h5"
    with h5py.File(MOVIE, "r") as h, h5py.File(second, "w") as out:
        for key in h:
            out[key] = h[key][:][::-1] if key == "precip" else h[key][:]
        out["precip"].attrs.update(h["precip"].attrs)
        out.attrs.update(h.attrs)
    res = run(
        "--checkpoint", lagrangian_checkpoint, "--data", f"{MOVIE},{second}", "--lead-frames", 1,
        "--ensemble", 2, "--no-baselines", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    events = [e["ensemble"] for e in json.loads(res.stdout)["events"]]
    assert [e["name"] for e in events] == ["movie_small.h5", "reversed.h5", "pooled"]
    assert events[2]["n_starts"] == events[0]["n_starts"] + events[1]["n_starts"]
    pixels = [e["methods"]["model"]["n_pixels"][0] for e in events]
    assert pixels[2] == pixels[0] + pixels[1] > 0
    crps = [e["methods"]["model"]["crps_mm_h"][0] for e in events]
    assert crps[2] == pytest.approx((crps[0] * pixels[0] + crps[1] * pixels[1]) / pixels[2])
    assert events[0]["not_scored"] == {"pysteps_steps": "--no-baselines"}
