"""The motion step: pysteps' optical flow recovers the known flow of synthetic sequences, and
training batches carry the motion of their context, resuming exactly."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nowcastd.data.motion import MotionEstimator
from nowcastd.data.motion_batches import MotionBatches
from nowcastd.data.sequences import SamplerConfig, SequenceSampler, load_movie
from nowcastd.data.synthetic_flow import Flow, advect_sequence, smooth_field
from nowcastd.io.transform import DBZ
from tests.nowcastd.data.conftest import FIXTURE_MOVIE

MARGIN = 12


def _source() -> np.ndarray:
    with h5py.File(FIXTURE_MOVIE) as h:
        frame = np.asarray(h["precip"][6], np.float64)
    # a 64 x 64 real field, tiled to leave room for the flow to carry rain in
    return np.pad(frame, MARGIN, mode="reflect")


@pytest.mark.parametrize(("u_row", "u_col", "shear"), [(1.0, 2.0, 0.0), (-1.5, 0.5, 0.4)])
def test_lucas_kanade_recovers_the_flow_of_a_synthetic_sequence(u_row, u_col, shear):
    source = _source()
    rng = np.random.default_rng(0)
    flow = Flow(
        u_row=u_row + shear * smooth_field(source.shape, rng),
        u_col=u_col + shear * smooth_field(source.shape, rng),
        growth=np.zeros((64, 64)),
    )
    frames = advect_sequence(source, flow, steps=4)
    motion = MotionEstimator("LK")(frames)

    assert motion.shape == (64, 64, 2) and motion.dtype == np.float32
    wet = frames[-1] >= 0.5
    assert wet.mean() > 0.1
    inner = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    # advect_sequence steps parcels back along the flow: motion = +u (x = columns, y = rows)
    truth = np.stack([flow.u_col[inner], flow.u_row[inner]], axis=-1)
    error = np.linalg.norm(motion - truth, axis=-1)[wet]
    assert np.median(error) < 0.3, np.median(error)
    still = MotionEstimator("LK")(np.repeat(frames[:1], 4, axis=0))
    assert np.abs(still).max() < 0.05


def test_unknown_method_and_too_few_frames_are_refused():
    with pytest.raises(ValueError, match="expected one of LK, darts, proesmans, vet, got 'lk2'"):
        MotionEstimator("lk2")
    with pytest.raises(ValueError, match=r"expected \(I >= 2, H, W\) frames, got \(1, 8, 8\)"):
        MotionEstimator()(np.zeros((1, 8, 8)))


def _sampler(seed: int) -> SequenceSampler:
    cfg = SamplerConfig(total_length=6, height=16, width=16, blocks=(1,), synthetic_fraction=0.5)
    return SequenceSampler([load_movie(FIXTURE_MOVIE)], cfg, DBZ, 2, np.random.default_rng(seed))


def test_motion_batches_carry_the_context_motion_and_resume_exactly():
    estimator = MotionEstimator()
    batches = MotionBatches(_sampler(1), DBZ, 4, estimator)
    first = next(batches)
    state = batches.state_dict()
    second, third = next(batches), next(batches)
    batches.close()

    assert first.clips.shape == (2, 6, 16, 16, 1) and first.motion.shape == (2, 16, 16, 2)
    expected = estimator.batch(DBZ.to_physical(first.clips[:, :4, ..., 0]))
    np.testing.assert_array_equal(first.motion, expected)

    resumed = MotionBatches(_sampler(99), DBZ, 4, estimator)  # another seed: the state decides
    resumed.load_state_dict(state)
    again = next(resumed)
    resumed.close()
    np.testing.assert_array_equal(again.clips, second.clips)
    np.testing.assert_array_equal(again.motion, second.motion)
    assert not np.array_equal(third.clips, second.clips)
