"""open_dataset (format detection, fit checks, split) and BatchIterator (order, resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcastd.data.clips import ClipSet, WindowedClips
from nowcastd.data.loader import BatchIterator, detect_dataset_format, open_dataset
from nowcastd.data.official_npz import save_official_npz
from nowcastd.errors import DataError

from .conftest import rain_movie, write_movie

FIT = dict(total_length=6, img_height=4, img_width=4, img_channel=1)


def _clipset(n=10, t=6, seed=0, mask=False):
    x = np.random.default_rng(seed).random((n * t, 4, 4, 1)).astype(np.float32)
    clips = WindowedClips([(x, np.arange(n) * t, t)])
    m = WindowedClips([(np.ones_like(x) * 0.5, np.arange(n) * t, t)]) if mask else None
    return ClipSet(clips=clips, valid_mask=m, source="test")


def test_format_is_detected_by_content_not_name(tmp_path):
    x = np.random.default_rng(0).random((4, 6, 4, 4, 1)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    (tmp_path / "a.npy").rename(tmp_path / "a.dat")
    write_movie(tmp_path / "m.bin", rain_movie(8, 4, 4))
    save_official_npz(tmp_path / "o.npz", x, input_length=3)
    (tmp_path / "o.npz").rename(tmp_path / "o.x")
    assert detect_dataset_format(tmp_path / "a.dat") == "npy"
    assert detect_dataset_format(tmp_path / "m.bin") == "hdf5-movie"
    assert detect_dataset_format(tmp_path / "o.x") == "official-npz"
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown format"):
        detect_dataset_format(tmp_path / "t.txt")
    with pytest.raises(DataError, match="cannot open"):
        detect_dataset_format(tmp_path / "missing.npy")
    cs = open_dataset(tmp_path / "o.x", valid_fraction=0.25, **FIT)
    np.testing.assert_array_equal(np.asarray(cs.clips), x[:3])


def test_wrong_size_raises_one_line_naming_both_and_the_build_command(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((4, 20, 128, 128, 1), np.float32))
    with pytest.raises(DataError) as e:
        open_dataset(
            tmp_path / "c.npy", total_length=20, img_height=40, img_width=40, img_channel=1
        )
    msg = str(e.value)
    assert "\n" not in msg
    assert "128×128×1" in msg and "40×40×1" in msg and "--img_width 40" in msg
    assert "nowcastd dataset build" in msg


def test_too_short_clips_raise_and_longer_clips_are_trimmed(tmp_path):
    x = np.random.default_rng(0).random((4, 8, 4, 4, 1)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    with pytest.raises(DataError, match="8 frames but the model needs 10"):
        open_dataset(tmp_path / "c.npy", **{**FIT, "total_length": 10})
    cs = open_dataset(tmp_path / "c.npy", valid_fraction=0.0, **FIT)
    assert cs.shape == (4, 6, 4, 4, 1)
    np.testing.assert_array_equal(cs.clips[2], x[2, :6])


def test_clip_files_refuse_movie_options(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((4, 6, 4, 4, 1), np.float32))
    with pytest.raises(DataError, match="apply to HDF5 movies"):
        open_dataset(tmp_path / "c.npy", block=2, **FIT)


def test_clip_order_split_without_time_information(tmp_path):
    x = np.random.default_rng(0).random((10, 6, 4, 4, 1)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    train = open_dataset(tmp_path / "c.npy", split="train", valid_fraction=0.2, **FIT)
    valid = open_dataset(tmp_path / "c.npy", split="valid", valid_fraction=0.2, **FIT)
    assert (len(train), len(valid)) == (8, 2) and valid.meta["split_by"] == "clip order"
    np.testing.assert_array_equal(valid.clips[0], x[8])


def test_movie_split_and_mask_reach_the_batches(tmp_path):
    r = rain_movie(40, 4, 4)
    r[35, 0, 0] = np.nan
    path = write_movie(tmp_path / "m.h5", r)
    valid = open_dataset(path, split="valid", valid_fraction=0.3, **FIT)
    train = open_dataset(path, split="train", valid_fraction=0.3, **FIT)
    assert max(train.meta["frame_starts"]) + 6 <= min(valid.meta["frame_starts"])
    it = BatchIterator(valid, 2, np.random.default_rng(0), with_mask=True, repeat=False)
    batches = list(it)
    assert len(batches) == len(valid) // 2
    assert all(m.shape == c.shape for c, m in batches)
    assert any((m == 0).any() for _, m in batches)


def test_batches_cover_each_clip_once_per_epoch_and_reshuffle():
    cs = _clipset(n=10)
    it = BatchIterator(cs, 3, np.random.default_rng(0))
    seen = [next(it) for _ in range(6)]  # 3 batches per epoch, 1 clip dropped each epoch
    assert all(b.shape == (3, 6, 4, 4, 1) and b.dtype == np.float32 for b in seen)
    firsts = [tuple(float(c[0, 0, 0, 0]) for c in b) for b in seen]
    e0, e1 = set(sum(firsts[:3], ())), set(sum(firsts[3:], ()))
    assert len(e0) == 9 and len(e1) == 9 and firsts[:3] != firsts[3:]
    assert it.epoch == 1 and it.batches_per_epoch == 3


def test_no_shuffle_no_drop_last_gives_file_order_and_a_short_last_batch():
    cs = _clipset(n=5)
    it = BatchIterator(
        cs, 2, np.random.default_rng(0), shuffle=False, drop_last=False, repeat=False
    )
    sizes = [b.shape[0] for b in it]
    assert sizes == [2, 2, 1]
    with pytest.raises(DataError, match="5 clips cannot fill a batch of 8"):
        BatchIterator(cs, 8, np.random.default_rng(0))


@settings(max_examples=25, deadline=None)
@given(stop=st.integers(0, 12), batch=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_state_dict_resumes_exactly(stop, batch, seed):
    cs = _clipset(n=7)
    ref = BatchIterator(cs, batch, np.random.default_rng(seed))
    for _ in range(stop):
        next(ref)
    state = json.loads(json.dumps(ref.state_dict()))
    expect = [next(ref) for _ in range(6)]
    resumed = BatchIterator(cs, batch, np.random.default_rng(12345))
    resumed.load_state_dict(state)
    got = [next(resumed) for _ in range(6)]
    for a, b in zip(expect, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_refuses_other_data():
    it = BatchIterator(_clipset(n=7), 2, np.random.default_rng(0))
    state = it.state_dict()
    other = BatchIterator(_clipset(n=9), 2, np.random.default_rng(0))
    with pytest.raises(DataError, match="cannot resume"):
        other.load_state_dict(state)
