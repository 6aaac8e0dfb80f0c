"""Random training sequences from several movies: shapes, units, masks, strides, resume."""

import h5py
import numpy as np
import pytest

from nowcastd.data.sequences import (
    SamplerConfig,
    SequenceSampler,
    load_movie,
)
from nowcastd.errors import DataError
from nowcastd.io.transform import DBZ, IDENTITY


def _movie(path, frames: np.ndarray, step: int = 300):
    with h5py.File(path, "w") as h:
        d = h.create_dataset("precip", data=frames.astype(np.float32))
        d.attrs["units"] = "mm/h"
        h.attrs["timestep_seconds"] = step
    return path


def _moving_frames(n: int, size: int, *, speed: int = 1) -> np.ndarray:
    """A rain bar moving `speed` pixels per frame to the right."""
    frames = np.zeros((n, size, size), np.float32)
    for t in range(n):
        frames[t, :, (4 + speed * t) % size] = 8.0
    return frames


def _plain(**fields) -> SamplerConfig:
    """32 x 32 sequences at block 1 with no synthetic sequences and no augmentation."""
    no_augmentation = dict(rotations=False, flips=False, time_reversal=False)
    grid = dict(height=32, width=32, blocks=(1,), synthetic_fraction=0.0)
    return SamplerConfig(**grid, **no_augmentation, **fields)


def test_batches_have_the_model_shape_units_and_masks(tmp_path):
    path = _movie(tmp_path / "a.h5", _moving_frames(12, 64) + 1.0)
    cfg = SamplerConfig(total_length=5, height=16, width=16, blocks=(1, 2))
    batches = SequenceSampler([load_movie(path)], cfg, DBZ, 3, np.random.default_rng(0))
    clips, valid = next(batches)
    assert clips.shape == valid.shape == (3, 5, 16, 16, 1)
    assert clips.dtype == np.float32 and clips.min() >= 0.0 and clips.max() <= 1.0
    np.testing.assert_array_equal(valid, 1.0)


def test_identity_sequences_keep_the_motion_of_the_movie(tmp_path):
    path = _movie(tmp_path / "a.h5", _moving_frames(10, 32))
    cfg = _plain(total_length=4, min_wet_fraction=0.0)
    clips, _ = next(SequenceSampler([load_movie(path)], cfg, IDENTITY, 1, np.random.default_rng(3)))
    cols = [int(np.argmax(clips[0, t, 0, :, 0])) for t in range(4)]
    assert np.diff(cols).tolist() == [1, 1, 1]


def test_two_minute_movie_is_subsampled_to_about_five_minutes(tmp_path):
    movie = load_movie(_movie(tmp_path / "m.h5", _moving_frames(20, 32), step=120))
    assert movie.strides == (2, 3)
    cfg = _plain(total_length=4, min_wet_fraction=0.0)
    sampler = SequenceSampler([movie], cfg, IDENTITY, 1, np.random.default_rng(0))
    steps = set()
    for _ in range(20):
        clips, _ = next(sampler)
        cols = [int(np.argmax(clips[0, t, 0, :, 0])) for t in range(4)]
        steps.update(np.diff(cols).tolist())
    assert steps == {2, 3}


def test_missing_data_is_zero_in_model_units_and_masked(tmp_path):
    frames = np.full((8, 32, 32), 2.0, np.float32)
    frames[:, :, :8] = np.nan
    cfg = _plain(total_length=3)
    sampler = SequenceSampler(
        [load_movie(_movie(tmp_path / "n.h5", frames))], cfg, DBZ, 2, np.random.default_rng(0)
    )
    clips, valid = next(sampler)
    assert not np.isnan(clips).any()
    np.testing.assert_array_equal(valid[..., :8, 0], 0.0)
    np.testing.assert_array_equal(clips[..., :8, 0], 0.0)
    np.testing.assert_array_equal(valid[..., 8:, 0], 1.0)


def test_synthetic_sequences_fill_the_grid(tmp_path):
    path = _movie(tmp_path / "s.h5", np.random.default_rng(0).gamma(1.0, 2.0, (6, 96, 96)))
    cfg = SamplerConfig(total_length=4, height=16, width=16, blocks=(1,), synthetic_fraction=1.0)
    clips, valid = next(SequenceSampler([load_movie(path)], cfg, DBZ, 2, np.random.default_rng(0)))
    assert clips.shape == (2, 4, 16, 16, 1) and clips.max() > 0
    np.testing.assert_array_equal(valid, 1.0)


def test_synthetic_sequences_from_a_movie_no_larger_than_the_grid_mask_the_inflow(tmp_path, caplog):
    rain = np.random.default_rng(0).gamma(1.0, 2.0, (6, 16, 16)) + 0.5
    path = _movie(tmp_path / "g.h5", rain)
    cfg = SamplerConfig(total_length=6, height=16, width=16, blocks=(1, 2), synthetic_fraction=1.0)
    with caplog.at_level("WARNING", logger="nowcastd.data.sequences"):
        sampler = SequenceSampler([load_movie(path)], cfg, IDENTITY, 16, np.random.default_rng(0))
    assert "no movie holds the 64×64 source" in caplog.text
    assert "padded with no data" in caplog.text
    clips, valid = next(sampler)
    assert clips.shape == valid.shape == (16, 6, 16, 16, 1) and np.isfinite(clips).all()
    wet = valid == 1.0
    np.testing.assert_array_equal(clips[~wet], 0.0)  # what flowed in from nowhere: no data
    assert clips[wet].min() > 0.0  # the source's rain, everywhere it is known
    assert valid.min() == 0.0 and valid.mean() > 0.3  # rain moved off the grid, most is kept
    # the source's own frame, first or (time reversed) last, has data everywhere
    ends = valid[:, [0, -1]].min(axis=(2, 3, 4))
    assert (ends.max(axis=1) == 1.0).all()


def test_resume_reproduces_the_draws(tmp_path):
    path = _movie(tmp_path / "r.h5", np.random.default_rng(1).gamma(1.0, 2.0, (10, 64, 64)))
    cfg = SamplerConfig(total_length=4, height=16, width=16, synthetic_fraction=0.5)
    first = SequenceSampler([load_movie(path)], cfg, DBZ, 2, np.random.default_rng(7))
    next(first)
    state = first.state_dict()
    expected = next(first)[0]
    second = SequenceSampler([load_movie(path)], cfg, DBZ, 2, np.random.default_rng(99))
    second.load_state_dict(state)
    np.testing.assert_array_equal(next(second)[0], expected)


def test_movie_too_small_for_the_model_is_refused_by_size(tmp_path):
    path = _movie(tmp_path / "t.h5", np.ones((3, 8, 8)))
    with pytest.raises(DataError, match="no movie holds 5 frames of 16×16"):
        SequenceSampler(
            [load_movie(path)],
            SamplerConfig(total_length=5, height=16, width=16),
            DBZ,
            1,
            np.random.default_rng(0),
        )


def test_movie_in_other_units_is_refused(tmp_path):
    path = tmp_path / "u.h5"
    with h5py.File(path, "w") as h:
        h.create_dataset("precip", data=np.ones((3, 8, 8), np.float32)).attrs["units"] = "dBZ"
        h.attrs["timestep_seconds"] = 300
    with pytest.raises(DataError, match="expected precip in mm/h, got units 'dBZ'"):
        load_movie(path)


def test_a_halo_gives_each_sequence_its_surroundings(tmp_path):
    """A 40 x 40 movie and a 32 x 32 grid with a halo of 4: the one crop that fits is the
    whole movie, so each sequence is the movie's frames, the grid its middle; synthetic
    sequences have the padded shape too."""
    rng = np.random.default_rng(4)
    frames = rng.gamma(1.0, 2.0, (6, 40, 40)).astype(np.float32)
    path = _movie(tmp_path / "h.h5", frames)
    cfg = _plain(total_length=6, halo=4)
    assert cfg.padded == (40, 40)
    clips, valid = next(SequenceSampler([load_movie(path)], cfg, IDENTITY, 2, rng))
    assert clips.shape == valid.shape == (2, 6, 40, 40, 1)
    np.testing.assert_array_equal(clips[0, ..., 0], frames)
    big = _movie(tmp_path / "big.h5", rng.gamma(1.0, 2.0, (6, 96, 96)))
    synthetic = SamplerConfig(
        total_length=4, height=16, width=16, blocks=(1,), synthetic_fraction=1.0, halo=4
    )
    clips, _ = next(SequenceSampler([load_movie(big)], synthetic, DBZ, 2, rng))
    assert clips.shape == (2, 4, 24, 24, 1)
    with pytest.raises(ValueError, match="halo: expected an int >= 0, got -1"):
        _plain(total_length=6, halo=-1)
