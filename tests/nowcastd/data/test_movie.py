"""HDF5 movies: windows, the time split, the NaN rule, crop and block averaging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcastd.data.clips import split_boundary, split_select
from nowcastd.data.loader import open_dataset
from nowcastd.data.movie import prepare_frames, read_movie, window_starts
from nowcastd.errors import DataError
from nowcastd.io.transform import DataTransform

from .conftest import FIXTURE_MOVIE, T0_UNIX, rain_movie, write_movie

DBZ = DataTransform(kind="dbz")


def test_windows_are_consecutive_frames_in_model_units(tmp_path):
    r = rain_movie(10, 8, 8)
    cs = read_movie(write_movie(tmp_path / "m.h5", r), total_length=4, stride=2)
    assert cs.shape == (4, 4, 8, 8, 1) and cs.clips.dtype == np.float32
    assert cs.meta["frame_starts"] == [0, 2, 4, 6]
    np.testing.assert_array_equal(cs.clips[2][..., 0], DBZ.to_model(r[4:8]))
    assert cs.times[1] == "2010-08-26T00:10:00Z" and cs.timestep_seconds == 300
    assert cs.valid_mask is None and cs.transform == DBZ


def test_fixture_slice_of_the_real_movie_opens_and_averages(tmp_path):
    import h5py

    with h5py.File(FIXTURE_MOVIE) as h:
        raw = h["precip"][:]
    cs = open_dataset(
        FIXTURE_MOVIE,
        total_length=6,
        img_height=16,
        img_width=16,
        img_channel=1,
        block=2,
        crop=(8, 16, 32, 32),
        valid_fraction=0.5,
        split="valid",
    )
    assert cs.meta["frame_starts"] == [6] and cs.times == ("2010-08-26T05:30:00Z",)
    expect = raw[6:12, 8:40, 16:48].reshape(6, 16, 2, 16, 2).mean((2, 4))
    np.testing.assert_array_equal(cs.clips[0][..., 0], DBZ.to_model(expect))
    assert 0.1 < float(np.mean(cs.clips[0])) < 0.6


def test_nan_becomes_zero_with_a_validity_mask(tmp_path):
    r = rain_movie(6, 4, 4) + 1.0
    r[2, 0, 0] = np.nan
    r[3, :2, :2] = np.nan
    r[3, 2, 2] = np.nan
    cs = read_movie(write_movie(tmp_path / "m.h5", r), total_length=6)
    clip, mask = cs.clips[0], cs.valid_mask[0]
    assert clip[2, 0, 0, 0] == 0.0 and mask[2, 0, 0, 0] == 0.0
    assert mask.sum() == mask.size - 6
    assert np.all(np.isfinite(clip))
    cs2 = read_movie(tmp_path / "m.h5", total_length=6, block=2)
    m2 = cs2.valid_mask[0][..., 0]
    np.testing.assert_array_equal(m2[3], [[0.0, 1.0], [1.0, 0.75]])
    assert m2[2, 0, 0] == 0.75 and cs2.clips[0][3, 0, 0, 0] == 0.0
    expect = np.nanmean(r[3, 2:4, 2:4])  # mean over the valid pixels of the block
    np.testing.assert_allclose(cs2.clips[0][3, 1, 1, 0], DBZ.to_model(expect), rtol=1e-6)


def test_prepare_frames_rejects_bad_crop_and_block():
    f = np.zeros((2, 10, 10), np.float32)
    with pytest.raises(DataError, match=r"row0 \+ height <= 10 \(native grid\), got 5 \+ 8"):
        prepare_frames(f, crop=(5, 5, 8, 8), block=1, transform=DBZ)
    with pytest.raises(DataError, match="multiple of block=4"):
        prepare_frames(f, crop=(0, 0, 10, 10), block=4, transform=DBZ)
    with pytest.raises(DataError, match="block"):
        prepare_frames(f, crop=None, block=0, transform=DBZ)


def test_windows_skip_time_gaps(tmp_path):
    t = T0_UNIX + 300 * np.array([0, 1, 2, 3, 5, 6, 7, 8, 9])
    starts = window_starts(9, 4, 1, t, 300)
    assert starts.tolist() == [0, 4, 5]
    cs = read_movie(
        write_movie(tmp_path / "m.h5", rain_movie(9, 4, 4), time_unix=t, timestep_seconds=None),
        total_length=4,
    )
    assert cs.meta["frame_starts"] == [0, 4, 5]
    assert cs.times[1] == "2010-08-26T00:25:00Z"


def test_units_choose_the_default_transform(tmp_path):
    r = np.random.default_rng(1).random((4, 4, 4)).astype(np.float32)
    cs = read_movie(write_movie(tmp_path / "a.h5", r, units="1"), total_length=2)
    assert cs.transform.kind == "identity"
    np.testing.assert_array_equal(cs.clips[0][..., 0], r[:2])
    with pytest.raises(DataError, match="dBZ.*transform explicitly|units 'dBZ'"):
        read_movie(write_movie(tmp_path / "b.h5", r, units="dBZ"), total_length=2)
    cs = read_movie(tmp_path / "b.h5", total_length=2, transform=DataTransform(kind="identity"))
    assert cs.transform.kind == "identity"


def test_times_from_time_unix_when_no_iso_strings(tmp_path):
    cs = read_movie(
        write_movie(tmp_path / "m.h5", rain_movie(3, 2, 2), with_iso=False), total_length=2
    )
    assert cs.times == ("2010-08-26T00:00:00Z", "2010-08-26T00:05:00Z")


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 120),
    length=st.integers(1, 25),
    stride=st.integers(1, 6),
    f=st.floats(0.0, 0.9),
)
def test_time_split_never_shares_a_frame(n, length, stride, f):
    starts = window_starts(n, length, stride, None, None)
    b = split_boundary(n, f)
    train = starts[split_select(starts, length, b, n, "train")]
    valid = starts[split_select(starts, length, b, n, "valid")]
    assert n - b >= f * n - 1e-6 and n - b < f * n + 1
    if train.size and valid.size:
        assert train.max() + length <= valid.min()
    assert np.all(train + length <= b) and np.all(valid >= b)


def test_short_validation_range_names_the_fraction_needed(tmp_path):
    path = write_movie(tmp_path / "m.h5", rain_movie(30, 4, 4))
    kw = dict(total_length=10, img_height=4, img_width=4, img_channel=1)
    with pytest.raises(DataError, match=r"use valid_fraction >= 0\.34"):
        open_dataset(path, split="valid", valid_fraction=0.2, **kw)
    valid = open_dataset(path, split="valid", valid_fraction=0.34, **kw)
    train = open_dataset(path, split="train", valid_fraction=0.34, **kw)
    assert valid.meta["frame_starts"] == [19, 20] and train.meta["frame_starts"][-1] == 9
    assert valid.meta["split_range"] == [19, 30]
