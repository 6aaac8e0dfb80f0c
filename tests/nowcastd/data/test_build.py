"""build_clips: a .npy + sidecar (+ mask) from a movie or from (valid_time, field) scans."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from nowcastd.data.build import build_clips
from nowcastd.data.loader import open_dataset
from nowcastd.data.movie import read_movie
from nowcastd.errors import DataError
from nowcastd.io.transform import DataTransform

from .conftest import FIXTURE_MOVIE, rain_movie, write_movie


def test_build_from_movie_matches_reading_the_movie(tmp_path):
    out = build_clips(
        FIXTURE_MOVIE,
        tmp_path / "out" / "c.npy",
        total_length=6,
        stride=3,
        crop=(0, 0, 48, 48),
        block=2,
    )
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["shape"] == [3, 6, 24, 24, 1] and side["start_frame"] == [0, 3, 6]
    assert side["transform"] == {"kind": "dbz", "zr_a": 200.0, "zr_b": 1.6, "dbz_max": 60.0}
    assert side["start_time"][1] == "2010-08-26T05:15:00Z" and side["timestep_seconds"] == 300
    assert side["crop"] == [0, 0, 48, 48] and side["block"] == 2 and side["valid_mask"] is None
    assert side["projection"].startswith("+proj=stere")
    ref = read_movie(FIXTURE_MOVIE, total_length=6, stride=3, crop=(0, 0, 48, 48), block=2)
    got = np.load(out, allow_pickle=False)
    np.testing.assert_array_equal(got, np.asarray(ref.clips))
    cs = open_dataset(
        out,
        total_length=6,
        img_height=24,
        img_width=24,
        img_channel=1,
        valid_fraction=0.5,
        split="valid",
    )
    assert cs.transform.kind == "dbz" and cs.meta["frame_starts"] == [6]
    assert sorted(p.name for p in out.parent.iterdir()) == ["c.json", "c.npy"]


def test_build_from_scans_sorts_skips_gaps_and_writes_a_mask(tmp_path):
    t0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    fields = rain_movie(9, 8, 8)
    fields[4, 0, 0] = np.nan
    minutes = [0, 5, 10, 15, 20, 25, 35, 40, 45]  # a gap after 25
    pairs = [(t0 + dt.timedelta(minutes=m), f) for m, f in zip(minutes, fields, strict=True)]
    out = build_clips(
        reversed(pairs), tmp_path / "s.npy", total_length=3, stride=1, timestep_seconds=300
    )
    side = json.loads((tmp_path / "s.json").read_text())
    assert side["start_frame"] == [0, 1, 2, 3, 6]
    assert side["frame_time"][6] == "2024-05-01T12:35:00Z"
    assert side["valid_mask"] == "s_valid_mask.npy"
    clips, mask = np.load(out), np.load(tmp_path / "s_valid_mask.npy")
    assert clips.shape == mask.shape == (5, 3, 8, 8, 1)
    assert mask[2, 2, 0, 0, 0] == 0.0 and clips[2, 2, 0, 0, 0] == 0.0
    assert mask.sum() == mask.size - 2  # frame 4 lies in the clips starting at 2 and 3
    np.testing.assert_array_equal(
        clips[4, :, :, :, 0], DataTransform(kind="dbz").to_model(fields[6:9])
    )
    cs = open_dataset(
        out, total_length=3, img_height=8, img_width=8, img_channel=1, valid_fraction=0.0
    )
    assert cs.valid_mask is not None and cs.times[4] == "2024-05-01T12:35:00Z"


def test_build_accepts_iso_strings_and_identity(tmp_path):
    pairs = [(f"2024-05-01T12:{5 * i:02d}:00Z", np.full((4, 4), 0.5 * i)) for i in range(4)]
    out = build_clips(
        pairs, tmp_path / "s.npy", total_length=4, transform=DataTransform(kind="identity")
    )
    np.testing.assert_allclose(np.load(out)[0, :, 0, 0, 0], [0.0, 0.5, 1.0, 1.5])


def test_build_errors(tmp_path):
    f = np.zeros((4, 4), np.float32)
    with pytest.raises(DataError, match="end in .npy"):
        build_clips([(0, f)], tmp_path / "x.dat", total_length=1)
    with pytest.raises(DataError, match="share the valid time"):
        build_clips([(0, f), (0, f)], tmp_path / "x.npy", total_length=1)
    with pytest.raises(DataError, match="one shape"):
        build_clips([(0, f), (300, np.zeros((5, 5)))], tmp_path / "x.npy", total_length=1)
    with pytest.raises(DataError, match="no run of 3"):
        build_clips(
            [(0, f), (300, f), (900, f)], tmp_path / "x.npy", total_length=3, timestep_seconds=300
        )
    movie = write_movie(tmp_path / "m.h5", rain_movie(4, 6, 6))
    with pytest.raises(DataError, match="multiple of block=4"):
        build_clips(movie, tmp_path / "x.npy", total_length=2, block=4)
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob(".*"))
