"""The ensemble's members: without perturbations they are the deterministic forecast; with
them they differ, more with the lead, reproducibly per seed; the matching and the products."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.network import PredRNN
from model.rank_matching import match_quantiles
from nowcastd.data.motion import MotionEstimator
from nowcastd.ensemble import (
    EnsembleProgram,
    EnsembleSettings,
    ensemble_mean,
    exceedance,
    forecast_ensemble,
)
from nowcastd.ensemble.matching import match_members
from nowcastd.io.transform import DBZ
from nowcastd.nowcast import Window, forecast_rates, rollout_rates_jit
from tests.nowcastd.serve.tiny import tiny_network

LEADS = 4
MARGIN = 2


def _network(**changes) -> PredRNN:
    cfg = dataclasses.replace(
        tiny_network(size=16).cfg, lagrangian=True, predict_delta=True, **changes
    )
    return PredRNN(cfg, key=jax.random.key(7))


def _window() -> Window:
    """Rain moving one pixel east per step on a 20 x 20 grid: 16 x 16 inside a halo of 2."""
    rng = np.random.default_rng(3)
    rain = rng.gamma(0.6, 3.0, (20, 24)).astype(np.float32)
    frames = np.stack([rain[:, 4 - i : 24 - i] for i in range(3)])[None]
    frames[0, -1, :2, :3] = np.nan
    return Window.from_rates(frames, DBZ, margin=MARGIN)


def _program(network: PredRNN, **settings) -> EnsembleProgram:
    s = EnsembleSettings(members=3, **settings)
    return EnsembleProgram(network, DBZ, s, num_leads=LEADS, grid=(16, 16), margin=MARGIN)


@pytest.fixture(scope="module")
def flow() -> np.ndarray:
    window = _window()
    assert window.motion is not None
    return MotionEstimator("LK").batch(window.motion)


def test_members_without_perturbations_are_the_deterministic_forecast(flow):
    network, window = _network(), _window()
    program = _program(network, noise_gain=0.0, motion_perturbation=False)
    members = forecast_ensemble(window, program, seed=1, flow=flow)

    def run(context, motion):
        return rollout_rates_jit(network, DBZ, context, LEADS, motion, margin=MARGIN)

    expected = forecast_rates(window, run, flow=flow)
    assert members.shape == (1, 3, LEADS, 16, 16)
    assert np.isnan(expected).any()  # the no-data corner and rain from off the grid
    for m in range(3):
        np.testing.assert_allclose(members[:, m], expected, rtol=0, atol=1e-4, equal_nan=True)


def test_members_differ_more_with_the_lead_and_repeat_per_seed(flow):
    # without rank matching, which an untrained network's flat forecast would leave to the noise
    program = _program(_network())
    window = _window()
    a = forecast_ensemble(window, program, seed=1, flow=flow)[0]
    again = forecast_ensemble(window, program, seed=1, flow=flow)[0]
    other = forecast_ensemble(window, program, seed=2, flow=flow)[0]
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, other, equal_nan=True)
    every = np.isfinite(a).all(axis=0)  # (K, H, W) pixels where every member has data
    spread = [a[:, k][:, every[k]].std(axis=0).mean() for k in range(LEADS)]
    assert 0 < spread[0] < spread[-1], spread
    assert np.all(np.isnan(a[:, :, window.no_data[0]]))


def test_match_members_is_match_quantiles_against_a_shared_reference():
    rng = np.random.default_rng(0)
    members = rng.permutation(64 * 2 * 3 * 2).reshape(1, 2, 3, 8, 16).astype(np.float32) / 400
    members[0, 0, 1, :2] = np.nan
    reference = rng.gamma(0.6, 0.2, (1, 3, 8, 16)).astype(np.float32)
    reference[0, 2, :, :5] = np.nan
    members, reference = jnp.asarray(members), jnp.asarray(reference)
    expected = match_quantiles(members[..., None], reference[:, None, ..., None])[..., 0]
    np.testing.assert_array_equal(np.asarray(match_members(members, reference)), expected)


def test_exceedance_is_the_share_at_or_above_and_nan_without_data():
    members = np.array([0.0, 1.0, 1.0, 5.0, np.nan], np.float32).reshape(5, 1, 1, 1)
    p = exceedance(members, (0.1, 1.0, 5.0, 10.0))
    np.testing.assert_array_equal(p[:, 0, 0, 0], [0.75, 0.75, 0.25, 0.0])
    assert np.isnan(exceedance(np.full((3, 1, 2, 2), np.nan), (1.0,))).all()
    assert ensemble_mean(members)[0, 0, 0] == pytest.approx(7.0 / 4)


def test_settings_refuse_what_they_cannot_make():
    with pytest.raises(ValueError, match="members: expected an int >= 1, got 0"):
        EnsembleSettings(members=0)
    with pytest.raises(ValueError, match="thresholds_mm_h: expected increasing"):
        EnsembleSettings(members=2, thresholds_mm_h=(5.0, 1.0))
    with pytest.raises(ValueError, match="design: expected one of"):
        EnsembleSettings(members=2, design="magic")
