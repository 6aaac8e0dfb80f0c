"""Rank matching of each lead to the advected newest frame: exactly the reference's values in the
forecast's rank order, no data kept, inside the jitted rollout and the training step."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.config import ModelConfig
from model.lagrangian import extrapolation
from model.loss import OFFICIAL_LOSS, lagrangian_loss
from model.network import PredRNN
from model.rank_matching import match_quantiles, straight_through
from model.rollout import rollout_jit
from model.sampling import SamplingConfig, inference_mask
from model.train import adam, init_train_state, make_train_step


@pytest.fixture(scope="module")
def cfg(tiny_cfg: ModelConfig) -> ModelConfig:
    return dataclasses.replace(
        tiny_cfg,
        img_height=16,
        img_width=16,
        predict_delta=True,
        lagrangian=True,
        match_extrapolation=True,
    )


def _clips_and_motion(cfg: ModelConfig, seed: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (2, cfg.total_length, cfg.img_height, cfg.img_width, 1)
    clips = rng.gamma(0.7, 0.2, shape) * (rng.random(shape) < 0.6)
    motion = np.stack(
        [np.full((cfg.img_height, cfg.img_width, 2), v) for v in ((1.3, -0.6), (-0.4, 0.9))]
    )
    return jnp.asarray(clips, jnp.float32), jnp.asarray(motion, jnp.float32)


def _corrected(cfg: ModelConfig, seed: int) -> PredRNN:
    """A network whose correction of the extrapolation is not zero."""
    net = PredRNN(cfg, key=jax.random.key(seed))
    noise = 0.3 * jax.random.normal(jax.random.key(seed + 1), net.conv_last.shape)
    return eqx.tree_at(lambda n: n.conv_last, net, noise)


def _assert_matched(
    out: np.ndarray, forecast: np.ndarray, reference: np.ndarray, rtol: float = 0.0
) -> None:
    """`out` holds `reference`'s values with data (exactly, or to `rtol` where the reference
    was computed by another program), in `forecast`'s rank order."""
    np.testing.assert_array_equal(np.isnan(out), np.isnan(forecast))
    kept = ~np.isnan(out)
    np.testing.assert_allclose(
        np.sort(out[kept]), np.sort(reference[~np.isnan(reference)]), rtol=rtol, atol=0.0
    )
    order = np.argsort(forecast[kept], kind="stable")
    assert np.all(np.diff(out[kept][order]) >= 0)


def test_each_sample_and_lead_takes_its_own_references_values_in_its_own_rank_order() -> None:
    rng = np.random.default_rng(0)
    forecast = rng.random((2, 3, 6, 7, 1)).astype(np.float32)
    reference = rng.gamma(0.5, 1.0, (2, 3, 6, 7, 1)).astype(np.float32)
    gone = rng.random((2, 3, 6, 7, 1)) < 0.3  # the same pixels without data on both sides
    forecast[gone], reference[gone] = np.nan, np.nan
    out = np.asarray(jax.jit(match_quantiles)(jnp.asarray(forecast), jnp.asarray(reference)))
    for b in range(2):
        for k in range(3):
            _assert_matched(out[b, k], forecast[b, k], reference[b, k])
    # float32 is sorted as integer keys; other floats as they are
    half = [jnp.asarray(x, jnp.bfloat16) for x in (forecast, reference)]
    out = np.asarray(match_quantiles(*half), np.float32)
    _assert_matched(out[1, 2], *(np.asarray(x[1, 2], np.float32) for x in half))


def test_unequal_no_data_takes_quantiles_and_a_reference_without_data_changes_nothing() -> None:
    rng = np.random.default_rng(1)
    forecast = rng.random((1, 2, 4, 5, 1)).astype(np.float32)
    forecast[0, 0, 0] = np.nan  # 15 forecast pixels with data
    reference = rng.random((1, 2, 4, 5, 1)).astype(np.float32)
    reference[0, 0, :, :2] = np.nan  # 12 reference pixels with data
    reference[0, 1] = np.nan  # none: the lead is left as forecast
    out = np.asarray(match_quantiles(jnp.asarray(forecast), jnp.asarray(reference)))
    values = forecast[0, 0][~np.isnan(forecast[0, 0])]
    ranks = np.argsort(np.argsort(values))
    ordered = np.sort(reference[0, 0][~np.isnan(reference[0, 0])])
    expected = ordered[np.floor((ranks + 0.5) * 12 / 15).astype(int)]
    np.testing.assert_array_equal(out[0, 0][~np.isnan(forecast[0, 0])], expected)
    assert np.isnan(out[0, 0, 0]).all()
    np.testing.assert_array_equal(out[0, 1], forecast[0, 1])


def test_straight_through_gives_the_matched_values_with_the_gradient_of_the_forecast() -> None:
    values = jnp.array([0.2, 0.5, 0.1])
    matched = jnp.array([1.0, 3.0, jnp.nan])
    np.testing.assert_array_equal(straight_through(values, matched), np.float32([1, 3, 0.1]))
    grad = jax.grad(lambda v: jnp.sum(straight_through(v, matched) * jnp.array([1.0, 2.0, 3.0])))
    np.testing.assert_array_equal(grad(values), [1.0, 2.0, 3.0])


def test_the_jitted_rollout_matches_each_lead_to_the_advected_newest_frame(cfg) -> None:
    net = _corrected(cfg, 2)
    raw_net = _corrected(dataclasses.replace(cfg, match_extrapolation=False), 2)
    clips, motion = _clips_and_motion(cfg, 3)
    i, k = cfg.input_length, cfg.output_length
    out = np.asarray(rollout_jit(net, clips[:, :i], k, None, motion))
    raw = np.asarray(rollout_jit(raw_net, clips[:, :i], k, None, motion))
    reference = np.asarray(extrapolation(clips[:, i - 1], motion, k))
    assert np.isnan(reference).any() and not np.allclose(raw, reference, equal_nan=True)
    for b in range(2):
        for lead in range(k):
            # the rollout advects the newest frame in its own program: equal to float rounding
            _assert_matched(out[b, lead], raw[b, lead], reference[b, lead], rtol=1e-6)


def test_training_scores_the_matched_leads_and_its_jitted_step_learns(cfg) -> None:
    net = _corrected(cfg, 4)
    clips, motion = _clips_and_motion(cfg, 5)
    mask = inference_mask(2, cfg)
    loss = eqx.filter_jit(lagrangian_loss)
    _, parts = loss(net, clips, mask, None, OFFICIAL_LOSS, motion)
    leads = np.asarray(parts.next_frames[:, cfg.input_length - 1 :])
    reference = np.asarray(extrapolation(clips[:, cfg.input_length - 1], motion, leads.shape[1]))
    inside = ~np.isnan(reference)
    for b in range(2):  # where the leads have data, they hold the advected newest frame's values
        for lead in range(leads.shape[1]):
            kept = inside[b, lead]
            np.testing.assert_allclose(
                np.sort(leads[b, lead][kept]), np.sort(reference[b, lead][kept]), rtol=1e-6
            )
    grads = eqx.filter_grad(lambda n: loss(n, clips, mask, None, OFFICIAL_LOSS, motion)[0])(net)
    assert float(jnp.abs(grads.conv_last).max()) > 0  # straight through the sort
    state = init_train_state(net, adam(1e-3), jax.random.key(6))
    step = make_train_step(
        adam(1e-3), SamplingConfig(scheduled_sampling=False), reverse_input=False
    )
    state, metrics = step(state, clips, jnp.ones_like(clips), motion)
    assert np.isfinite(float(metrics.loss))
    assert np.isfinite(np.asarray(state.network.conv_last)).all()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lagrangian": False}, "match_extrapolation=True: needs lagrangian=True"),
        ({"match_intensity": True}, "match_extrapolation=True: replaces match_intensity"),
    ],
)
def test_match_extrapolation_needs_the_lagrangian_frame_and_no_second_matching(
    cfg, fields, message
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(cfg, **fields)
