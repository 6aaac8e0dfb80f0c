"""`nowcastd dataset build` on real fixture files, through the Typer app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nowcastd.cli import app
from nowcastd.cli.dataset import size_geometry
from nowcastd.cli.train import SETTINGS, train_config
from nowcastd.data.loader import open_dataset
from nowcastd.settings import resolve
from tests.paths import FIXTURES
from tests.reliability.hostile import odim_scan

FIXTURES = FIXTURES
KNMI = FIXTURES / "knmi"
MOVIE = FIXTURES / "radar" / "movie_small.h5"


def run(*args: str):
    return CliRunner().invoke(app, ["dataset", "build", *map(str, args)])


def train_shape_check(path: Path, *, total_length: int, img_width: int, img_height: int = 0):
    """The train command's data check: flags -> TrainConfig -> nowcastd.train.loop.open_split."""
    from nowcastd.train import loop as training

    flags = {
        "train_data_paths": str(path),
        "total_length": str(total_length),
        "input_length": str(total_length - 1),
        "img_width": str(img_width),
        "img_height": str(img_height),
        "valid_fraction": "0",
        "num_hidden": "8",
    }
    cfg = train_config(resolve(SETTINGS, table="train", flags=flags))
    return training.open_split(cfg, "train")


def test_build_from_knmi_scans_with_crop_and_block(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for p in sorted(KNMI.glob("*.h5"))[::-1]:  # order on disk must not matter
        shutil.copy(p, scans / p.name)
    (scans / "notes.txt").write_text("not a scan")
    out = tmp_path / "clips" / "knmi.npy"

    res = run(scans, "--out", out, "--total_length", 3, "--crop", "364,280,32,32", "--block", 2)

    assert res.exit_code == 0, res.output
    assert "2 clips" in res.stdout and "(2, 3, 16, 16, 1)" in res.stdout
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["frame_time"][0] == "2010-08-26T00:00:00Z"
    assert side["timestep_seconds"] == 300
    assert side["crop"] == [364, 280, 32, 32] and side["block"] == 2
    cs = open_dataset(
        out, total_length=3, img_height=16, img_width=16, img_channel=1, valid_fraction=0.0
    )
    assert cs.shape == (2, 3, 16, 16, 1)
    assert cs.transform.kind == "dbz"
    clips = np.asarray(cs.clips)
    assert np.isfinite(clips).all() and clips.min() >= 0 and clips.max() <= 1
    assert clips.max() > 0  # the window holds rain
    np.testing.assert_array_equal(clips[0, 1:], clips[1, :2])  # stride 1 overlap
    assert train_shape_check(out, total_length=3, img_width=16).shape == (2, 3, 16, 16, 1)


def test_build_from_movie_with_size_picks_block_and_centred_crop(tmp_path):
    out = tmp_path / "movie16.npy"
    res = run(MOVIE, "--out", out, "--total_length", 5, "--stride", 2, "--size", "16x16")

    assert res.exit_code == 0, res.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["block"] == 4 and side["crop"] == [0, 0, 64, 64]
    assert side["start_frame"] == [0, 2, 4, 6]
    cs = open_dataset(
        out, total_length=5, img_height=16, img_width=16, img_channel=1, valid_fraction=0.0
    )
    assert cs.shape == (4, 5, 16, 16, 1)
    assert train_shape_check(out, total_length=5, img_width=16).shape == (4, 5, 16, 16, 1)


def test_build_img_width_not_a_divisor_crops_largest_multiple(tmp_path):
    out = tmp_path / "movie40.npy"
    res = run(MOVIE, "--out", out, "--total_length", 4, "--img_width", 40, "--img_height", 20)

    assert res.exit_code == 0, res.output
    side = json.loads(out.with_suffix(".json").read_text())
    # block = min(64 // 20, 64 // 40) = 1; a 20×40 window centred in 64×64
    assert side["block"] == 1 and side["crop"] == [22, 12, 20, 40]
    assert train_shape_check(out, total_length=4, img_width=40, img_height=20).shape[2:] == (
        20,
        40,
        1,
    )


def test_size_geometry_follows_the_documented_rule():
    assert size_geometry((256, 256), (40, 40)) == ((8, 8, 240, 240), 6)
    assert size_geometry((765, 700), (64, 64)) == ((62, 30, 640, 640), 10)
    assert size_geometry((64, 64), (16, 16), (10, 10, 40, 40)) == ((14, 14, 32, 32), 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--crop", "1,2"], "--crop"),
        (["--size", "100x100"], "larger than the 64×64"),
        (["--size", "16x16", "--block", "2"], "--block"),
        (["--transform", "rainbow"], "--transform"),
        (["--block", "3"], "multiple of block=3"),
        (["--total_length", "50"], "no run of 50"),
    ],
)
def test_build_bad_flags_exit_1_with_one_line(tmp_path, args, message):
    res = run(MOVIE, "--out", tmp_path / "x.npy", *args)

    assert res.exit_code == 1
    assert message in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "x.npy").exists()


def test_build_bad_source_exits_1(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(empty, "--out", tmp_path / "x.npy")
    assert res.exit_code == 1 and "no radar scans" in res.stderr

    res = run(FIXTURES / "radar" / "README.md", "--out", tmp_path / "x.npy")
    assert res.exit_code == 1 and "HDF5 movie" in res.stderr


def test_build_skips_a_scan_of_another_grid_and_a_second_scan_of_one_time_by_name(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    knmi = sorted(KNMI.glob("*.h5"))
    for p in knmi:
        shutil.copy(p, scans / p.name)
    odim_scan(scans / "composite.h5", 0)  # a 64 x 64 ODIM_H5 composite among 765 x 700 scans
    shutil.copy(knmi[1], scans / f"{knmi[1].stem}_again.h5")  # the same valid time, later name
    out = tmp_path / "clips" / "knmi.npy"

    res = run(scans, "--out", out, "--total_length", 3, "--crop", "364,280,32,32", "--block", 2)

    assert res.exit_code == 0, res.output
    assert "2 clips" in res.stdout and "(2, 3, 16, 16, 1)" in res.stdout
    assert (
        "skipping composite.h5: expected the grid (765, 700) of the other scans, got (64, 64)"
        in (res.output)
    )
    assert (
        f"skipping {knmi[1].stem}_again.h5: expected one scan per valid time, got "
        "2010-08-26T00:05:00Z again" in res.output
    )
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["n_frames"] == 4
