"""The Lagrangian network: with a zero correction it is pysteps' extrapolation; its loss scores
only pixels with data; probability matching keeps no data as no data."""

import contextlib
import dataclasses
import io

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.config import ModelConfig
from model.loss import OFFICIAL_LOSS, lagrangian_loss
from model.network import PredRNN
from model.rollout import match_distribution, rollout_jit
from model.sampling import inference_mask

with contextlib.redirect_stdout(io.StringIO()):
    from pysteps.extrapolation.semilagrangian import extrapolate


@pytest.fixture(scope="module")
def cfg(tiny_cfg: ModelConfig) -> ModelConfig:
    return dataclasses.replace(
        tiny_cfg, img_height=16, img_width=20, predict_delta=True, lagrangian=True
    )


def _clip_and_motion(cfg: ModelConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (2, cfg.total_length, cfg.img_height, cfg.img_width, 1)
    clips = rng.random(shape, dtype=np.float32)
    motion = np.empty((2, cfg.img_height, cfg.img_width, 2), np.float32)
    yy, xx = np.mgrid[0 : cfg.img_height, 0 : cfg.img_width]
    for b in range(2):
        motion[b, ..., 0] = rng.uniform(-1.5, 1.5) + 0.3 * np.sin(yy / 3.0)
        motion[b, ..., 1] = rng.uniform(-1.5, 1.5) + 0.3 * np.cos(xx / 4.0)
    return clips, motion


def test_lagrangian_needs_predict_delta(tiny_cfg: ModelConfig) -> None:
    with pytest.raises(ValueError, match="lagrangian"):
        dataclasses.replace(tiny_cfg, lagrangian=True)


def test_zero_correction_forecast_is_pysteps_extrapolation_of_the_newest_frame(
    cfg: ModelConfig,
) -> None:
    network = PredRNN(cfg, key=jax.random.key(0))  # predict_delta: the decoder starts at zero
    assert network.conv_last is not None and not np.any(np.asarray(network.conv_last))
    clips, motion = _clip_and_motion(cfg)
    i, k = cfg.input_length, cfg.output_length
    forecast = np.asarray(
        rollout_jit(network, jnp.asarray(clips[:, :i]), k, None, jnp.asarray(motion))
    )
    for b in range(2):
        expected = extrapolate(
            clips[b, i - 1, ..., 0].astype(np.float64), np.moveaxis(motion[b], -1, 0), k
        )
        np.testing.assert_array_equal(np.isnan(forecast[b, ..., 0]), np.isnan(expected))
        np.testing.assert_allclose(forecast[b, ..., 0], expected, atol=1e-5, equal_nan=True)


def test_rollout_refuses_a_missing_or_needless_motion(cfg: ModelConfig) -> None:
    network = PredRNN(cfg, key=jax.random.key(0))
    clips, motion = _clip_and_motion(cfg)
    with pytest.raises(ValueError, match="motion"):
        rollout_jit(network, jnp.asarray(clips[:, :3]), 2)
    plain = PredRNN(dataclasses.replace(cfg, lagrangian=False), key=jax.random.key(0))
    with pytest.raises(ValueError, match="motion"):
        rollout_jit(plain, jnp.asarray(clips[:, :3]), 2, None, jnp.asarray(motion))


def test_loss_ignores_targets_where_the_forecast_comes_from_outside(cfg: ModelConfig) -> None:
    network = PredRNN(cfg, key=jax.random.key(1))
    network = eqx.tree_at(lambda n: n.conv_last, network, jnp.full_like(network.conv_last, 0.1))
    clips, motion = _clip_and_motion(cfg, seed=2)
    flow = jnp.asarray(motion)
    mask = inference_mask(2, cfg)

    loss_fn = eqx.filter_jit(lagrangian_loss)

    def loss(x: np.ndarray) -> float:
        value, _ = loss_fn(network, jnp.asarray(x), mask, None, OFFICIAL_LOSS, flow)
        return float(value)

    _, parts = loss_fn(network, jnp.asarray(clips), mask, None, OFFICIAL_LOSS, flow)
    # forecasts are advected from frame I-1's time; where one came from outside, its target
    # may be anything
    from model.lagrangian import to_eulerian

    _, inside = to_eulerian(jnp.zeros_like(jnp.asarray(clips[:, 1:])), flow, 2 - cfg.input_length)
    outside = np.asarray(inside)[..., 0] == 0
    outside[:, : cfg.input_length - 1] = False  # context frames are inputs too: leave them
    assert outside.any() and (~outside).any()
    spoiled = clips.copy()
    spoiled[:, 1:][outside] = 1e3
    assert loss(spoiled) == pytest.approx(loss(clips), rel=1e-6)
    touched = clips.copy()
    touched[:, cfg.input_length :] += 0.5
    assert loss(touched) > loss(clips) + 0.01
    assert np.isfinite(np.asarray(parts.next_frames)).all()


def test_probability_matching_keeps_no_data_and_matches_the_rest() -> None:
    rng = np.random.default_rng(3)
    reference = rng.random((1, 6, 5, 1)).astype(np.float32)
    forecast = rng.random((1, 2, 6, 5, 1)).astype(np.float32)
    forecast[0, 1, :2] = np.nan
    out = np.asarray(match_distribution(jnp.asarray(forecast), jnp.asarray(reference)))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(forecast))
    # full frame: exactly the reference's values, in the forecast's rank order
    np.testing.assert_array_equal(np.sort(out[0, 0].ravel()), np.sort(reference.ravel()))
    order = np.argsort(forecast[0, 0].ravel())
    assert np.all(np.diff(out[0, 0].ravel()[order]) >= 0)
    # a frame with 10 of 30 pixels missing takes the reference's quantiles at (r + 1/2) / 20
    kept = out[0, 1][np.isfinite(out[0, 1])]
    ranks = np.argsort(np.argsort(forecast[0, 1][np.isfinite(forecast[0, 1])]))
    expected = np.sort(reference.ravel())[np.floor((ranks + 0.5) * 30 / 20).astype(int)]
    np.testing.assert_array_equal(kept, expected)


def _inner(frames: np.ndarray, margin: int) -> np.ndarray:
    return frames[..., margin:-margin, margin:-margin, :]


def test_a_halo_advects_the_margins_rain_into_the_grid(cfg: ModelConfig) -> None:
    """With a margin of 4 pixels around the 16 x 20 grid, the zero-correction forecast is
    pysteps' extrapolation on the padded grid, cropped: where the grid alone has NaN (rain
    from outside it) the halo forecast holds the margin's rain, and it has data wherever the
    grid alone has."""
    m = 4
    network = PredRNN(cfg, key=jax.random.key(0))  # predict_delta: the decoder starts at zero
    padded = dataclasses.replace(cfg, img_height=16 + 2 * m, img_width=20 + 2 * m)
    clips, motion = _clip_and_motion(padded, seed=3)
    i, k = cfg.input_length, cfg.output_length
    halo = np.asarray(
        rollout_jit(network, jnp.asarray(clips[:, :i]), k, None, jnp.asarray(motion), margin=m)
    )
    assert halo.shape == (2, k, 16, 20, 1)
    for b in range(2):
        expected = extrapolate(
            clips[b, i - 1, ..., 0].astype(np.float64), np.moveaxis(motion[b], -1, 0), k
        )[:, m:-m, m:-m]
        np.testing.assert_array_equal(np.isnan(halo[b, ..., 0]), np.isnan(expected))
        np.testing.assert_allclose(halo[b, ..., 0], expected, atol=1e-5, equal_nan=True)
    alone = np.asarray(
        rollout_jit(
            network,
            jnp.asarray(_inner(clips[:, :i], m)),
            k,
            None,
            jnp.asarray(_inner(motion, m)),
        )
    )
    gained = np.isnan(alone) & np.isfinite(halo)
    assert gained.sum() > 0.1 * alone.size  # the grid alone loses its edges to no data
    assert (halo[gained] > 0).all()  # and the halo fills them with the margin's rain
    assert not (np.isfinite(alone) & np.isnan(halo)).any()


def test_a_trained_lagrangian_network_runs_on_the_grid_inside_its_halo(cfg: ModelConfig) -> None:
    """A network with a correction: the halo run differs from extrapolation inside the grid
    (the network's work) and an Eulerian network ignores the halo entirely."""
    m = 4
    network = PredRNN(cfg, key=jax.random.key(0))
    network = eqx.tree_at(lambda n: n.conv_last, network, jnp.full_like(network.conv_last, 0.05))
    zero = PredRNN(cfg, key=jax.random.key(0))
    padded = dataclasses.replace(cfg, img_height=16 + 2 * m, img_width=20 + 2 * m)
    clips, motion = _clip_and_motion(padded, seed=4)
    i, k = cfg.input_length, cfg.output_length
    args = (jnp.asarray(clips[:, :i]), k, None, jnp.asarray(motion))
    corrected = np.asarray(rollout_jit(network, *args, margin=m))
    extrapolated = np.asarray(rollout_jit(zero, *args, margin=m))
    np.testing.assert_array_equal(np.isnan(corrected), np.isnan(extrapolated))
    assert np.nanmax(np.abs(corrected - extrapolated)) > 0.01

    plain = PredRNN(dataclasses.replace(cfg, lagrangian=False), key=jax.random.key(1))
    np.testing.assert_array_equal(
        np.asarray(rollout_jit(plain, jnp.asarray(clips[:, :i]), k, margin=m)),
        np.asarray(rollout_jit(plain, jnp.asarray(_inner(clips[:, :i], m)), k)),
    )


def test_training_with_a_halo_forecasts_the_leads_as_the_rollout_does(cfg: ModelConfig) -> None:
    """Clips with a margin of 4 around the grid: under the inference mask, the loss's lead
    forecasts are the halo rollout's (the same transform in training and serving), scored on
    the grid; the margin changes them where rain flows in."""
    m = 4
    network = PredRNN(cfg, key=jax.random.key(1))
    network = eqx.tree_at(lambda n: n.conv_last, network, jnp.full_like(network.conv_last, 0.05))
    padded = dataclasses.replace(cfg, img_height=16 + 2 * m, img_width=20 + 2 * m)
    clips, motion = _clip_and_motion(padded, seed=5)
    i, k = cfg.input_length, cfg.output_length
    loss_fn = eqx.filter_jit(lagrangian_loss)
    mask = inference_mask(2, cfg)
    _, parts = loss_fn(network, jnp.asarray(clips), mask, None, OFFICIAL_LOSS, jnp.asarray(motion))
    leads = np.asarray(parts.next_frames)[:, i - 1 :]
    assert leads.shape == (2, k, 16, 20, 1)
    served = np.asarray(
        rollout_jit(network, jnp.asarray(clips[:, :i]), k, None, jnp.asarray(motion), margin=m)
    )
    seen = np.isfinite(served)  # where trajectories start inside the padded grid
    assert seen.mean() > 0.9
    np.testing.assert_allclose(leads[seen], served[seen], atol=1e-5)
    inner = (slice(None), slice(None), slice(m, -m), slice(m, -m))
    _, alone = loss_fn(
        network,
        jnp.asarray(clips[inner]),
        mask,
        None,
        OFFICIAL_LOSS,
        jnp.asarray(motion[:, m:-m, m:-m]),
    )
    assert np.abs(np.asarray(alone.next_frames)[:, i - 1 :] - leads).max() > 0.01
    with pytest.raises(ValueError, match="equal margin on every side, got 24x26"):
        loss_fn(network, jnp.asarray(clips[..., :26, :]), mask, None, OFFICIAL_LOSS,
                jnp.asarray(motion[:, :, :26]))  # fmt: skip
