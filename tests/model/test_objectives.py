"""Departures from the official code, off by default: change-from-last-frame prediction, the
rain-weighted loss, and the terms that do not pay for blur (Fourier amplitude and correlation,
intensity-weighted L1)."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.config import ModelConfig
from model.loss import OFFICIAL_LOSS, LossConfig, pixel_weights, predrnn_loss
from model.network import PredRNN
from model.objectives import (
    fourier_amplitude,
    fourier_correlation,
    intensity_l1,
    intensity_weights,
)
from model.patch import reshape_patch, reshape_patch_back
from model.rollout import match_distribution, rollout
from model.sampling import SamplingConfig, inference_mask
from model.train import adam, init_train_state, make_train_step


@pytest.fixture
def cfg(tiny_cfg: ModelConfig) -> ModelConfig:
    return dataclasses.replace(tiny_cfg, predict_delta=True)


def _clips(batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 6, 8, 8, 1), dtype=np.float32)


def test_untrained_delta_model_forecasts_persistence(cfg):
    net = PredRNN(cfg, key=jax.random.key(0))
    clips = jnp.asarray(_clips())
    out = rollout(net, clips[:, :3], 4)
    expected = jnp.broadcast_to(clips[:, 2:3], out.shape)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_official_model_does_not_forecast_persistence(cfg):
    net = PredRNN(dataclasses.replace(cfg, predict_delta=False), key=jax.random.key(0))
    clips = jnp.asarray(_clips())
    out = rollout(net, clips[:, :3], 4)
    assert float(jnp.max(jnp.abs(out - clips[:, 2:3]))) > 1e-3


def test_delta_model_learns_away_from_persistence(cfg):
    sampling = SamplingConfig(scheduled_sampling=False)
    state = init_train_state(PredRNN(cfg, key=jax.random.key(1)), adam(1e-2), jax.random.key(2))
    step = make_train_step(adam(1e-2), sampling, reverse_input=False)
    clips = jnp.asarray(_clips(seed=3))
    losses = []
    for _ in range(8):
        state, m = step(state, clips)
        losses.append(float(m.loss))
    assert losses[-1] < losses[0]
    assert float(jnp.abs(state.network.conv_last).max()) > 0


def test_action_models_refuse_delta_prediction():
    with pytest.raises(ValueError, match="predict_delta"):
        ModelConfig(model_name="action_cond_predrnn_v2", patch_size=1, predict_delta=True)


def test_pixel_weights_take_the_highest_class_reached():
    loss = LossConfig(kind="weighted", thresholds=(0.2, 0.5), weights=(2.0, 10.0))
    target = jnp.array([0.0, 0.19, 0.2, 0.49, 0.5, 0.9])
    np.testing.assert_array_equal(pixel_weights(target, loss), [1, 1, 2, 2, 10, 10])


def test_weighted_loss_is_mean_of_weighted_squared_plus_absolute_error(cfg):
    official = dataclasses.replace(cfg, predict_delta=False, model_name="predrnn")
    net = PredRNN(official, key=jax.random.key(4))
    frames = reshape_patch(jnp.asarray(_clips(seed=5)), official.patch_size)
    mask = inference_mask(2, official)
    objective = LossConfig(kind="weighted", thresholds=(0.5,), weights=(3.0,))
    total, parts = predrnn_loss(net, frames, mask, None, objective)
    target = frames[:, 1:]
    err = parts.next_frames - target
    w = jnp.where(target >= 0.5, 3.0, 1.0)
    expected = jnp.mean(w * (err**2 + jnp.abs(err)))
    np.testing.assert_allclose(float(total), float(expected), rtol=1e-6)
    np.testing.assert_allclose(float(parts.mse), float(jnp.mean(err**2)), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "huber"}, "must be 'mse' or 'weighted'"),
        ({"kind": "weighted"}, "needs thresholds"),
        ({"kind": "weighted", "thresholds": (0.5, 0.2), "weights": (1.0, 2.0)}, "must increase"),
        ({"kind": "weighted", "thresholds": (0.5,), "weights": ()}, "1 thresholds but 0"),
    ],
)
def test_loss_config_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**kwargs)


def test_gradient_is_finite_on_an_all_dry_batch(cfg):
    """A zero input with a zero state gives zero memory increments at the first step: the
    decoupling loss's normalisation must not turn that into a NaN gradient."""
    official = dataclasses.replace(cfg, predict_delta=False)
    net = PredRNN(official, key=jax.random.key(6))
    state = init_train_state(net, adam(1e-3), jax.random.key(7))
    step = make_train_step(
        adam(1e-3), SamplingConfig(scheduled_sampling=False), reverse_input=False
    )
    state, m = step(state, jnp.zeros((2, 6, 8, 8, 1)))
    assert np.isfinite(float(m.loss))
    leaves = jax.tree_util.tree_leaves(state.network)
    assert all(np.isfinite(np.asarray(x)).all() for x in leaves if hasattr(x, "dtype"))


def test_matched_frames_take_the_reference_values_in_forecast_rank_order():
    rng = np.random.default_rng(8)
    forecast = jnp.asarray(rng.random((2, 3, 4, 5, 1), dtype=np.float32))
    reference = jnp.asarray(rng.gamma(0.5, 1.0, (2, 4, 5, 1)).astype(np.float32))
    matched = np.asarray(match_distribution(forecast, reference))
    for b in range(2):
        for k in range(3):
            np.testing.assert_array_equal(
                np.sort(matched[b, k].ravel()), np.sort(np.asarray(reference[b]).ravel())
            )
            order = np.argsort(np.asarray(forecast[b, k]).ravel())
            assert np.all(np.diff(matched[b, k].ravel()[order]) >= 0)


def test_match_intensity_post_processes_the_rollout_only(cfg):
    net = PredRNN(dataclasses.replace(cfg, predict_delta=False), key=jax.random.key(9))
    matched_net = net.with_inference_options(dataclasses.replace(net.cfg, match_intensity=True))
    clips = jnp.asarray(_clips(seed=10))
    raw = rollout(net, clips[:, :3], 3)
    np.testing.assert_allclose(
        np.asarray(rollout(matched_net, clips[:, :3], 3)),
        np.asarray(match_distribution(raw, clips[:, 2])),
    )
    frames = reshape_patch(clips, net.cfg.patch_size)
    mask = inference_mask(2, net.cfg)
    np.testing.assert_array_equal(
        np.asarray(net(frames, mask)[0]), np.asarray(matched_net(frames, mask)[0])
    )


def test_only_inference_options_may_change_on_a_trained_network(cfg):
    net = PredRNN(cfg, key=jax.random.key(11))
    with pytest.raises(
        ValueError, match="only .*match_intensity.* may change, got \\['filter_size'\\]"
    ):
        net.with_inference_options(dataclasses.replace(cfg, filter_size=5))


# -- the terms that do not pay for blur (model.objectives) ----------------------------------


def _rain(seed: int, shape: tuple[int, ...] = (2, 3, 16, 16, 1)) -> jnp.ndarray:
    """Showers in model units: about half the pixels dry, the rest up to about 0.7."""
    rng = np.random.default_rng(seed)
    rain = rng.gamma(0.8, 0.15, shape) * (rng.random(shape) < 0.5)
    return jnp.asarray(np.clip(rain, 0.0, 1.0).astype(np.float32))


KNOTS, KNOT_WEIGHTS = (0.0, 0.3, 0.6), (1.0, 4.0, 24.0)
TERMS = {
    "fourier_amplitude": lambda f, t, w: fourier_amplitude(f, t, w, float(f.size)),
    "fourier_correlation": fourier_correlation,
    "intensity_l1": lambda f, t, w: intensity_l1(f, t, w, float(f.size), KNOTS, KNOT_WEIGHTS),
}


@pytest.mark.parametrize("name", sorted(TERMS))
@pytest.mark.parametrize("masked", [False, True])
def test_each_term_is_zero_for_identical_fields_and_positive_and_differentiable_otherwise(
    name, masked
):
    term = jax.jit(TERMS[name])
    target = _rain(0)
    w = (jnp.arange(16) < 12).astype(jnp.float32)[None, None, :, None, None] if masked else None
    w = None if w is None else jnp.broadcast_to(w, target.shape)
    assert float(term(target, target, w)) == pytest.approx(0.0, abs=1e-6)
    forecast = target + 0.05 * jax.random.normal(jax.random.key(1), target.shape)
    assert float(term(forecast, target, w)) > 1e-4
    for f in (forecast, target):  # a gradient at the minimum too (zero amplitudes included)
        grad = np.asarray(jax.grad(term)(f, target, w))
        assert np.isfinite(grad).all()
    assert np.abs(np.asarray(jax.grad(term)(forecast, target, w))).max() > 0
    if masked:  # what the forecast holds where nothing is scored changes nothing
        spoiled = forecast.at[:, :, 12:].set(5.0)
        np.testing.assert_allclose(term(spoiled, target, w), term(forecast, target, w), rtol=1e-6)


def _blurred(field: np.ndarray, radius: int) -> np.ndarray:
    """A (2 radius + 1)² box blur of each (H, W) frame, periodic like the FFT."""
    out = np.zeros_like(field)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out += np.roll(field, (dy, dx), axis=(2, 3))
    return out / (2 * radius + 1) ** 2


def test_fourier_amplitude_penalises_a_blurred_forecast_more_than_an_mse_equal_shifted_one():
    target = _blurred(np.asarray(_rain(2, (1, 2, 32, 32, 1))), 1)  # cells a few pixels wide
    shifted = np.roll(target, 1, axis=2)  # sharp, one pixel off
    mse_shift = np.mean((shifted - target) ** 2)
    towards_blur = _blurred(target, 3) - target
    alpha = np.sqrt(mse_shift / np.mean(towards_blur**2))
    blurred = target + alpha * towards_blur  # as far from the target as the shifted one
    assert 0.5 < alpha <= 1.0  # a genuine blur, not an exaggerated one
    np.testing.assert_allclose(np.mean((blurred - target) ** 2), mse_shift, rtol=1e-5)
    amplitude = {
        kind: float(
            fourier_amplitude(jnp.asarray(x), jnp.asarray(target), None, float(target.size))
        )
        for kind, x in (("shifted", shifted), ("blurred", blurred))
    }
    assert amplitude["blurred"] > 0.2 * mse_shift
    assert amplitude["shifted"] < 0.01 * amplitude["blurred"]
    assert amplitude["blurred"] <= mse_shift * (1 + 1e-5)  # Parseval: never above the MSE


def test_intensity_l1_weights_heavy_rain_more_and_interpolates_its_knots():
    np.testing.assert_allclose(
        intensity_weights(jnp.array([0.0, 0.15, 0.3, 0.45, 0.6, 0.9]), KNOTS, KNOT_WEIGHTS),
        [1.0, 2.5, 4.0, 14.0, 24.0, 24.0],
        rtol=1e-6,
    )
    target = jnp.zeros((1, 1, 4, 4, 1)).at[0, 0, 0, 0, 0].set(0.6).at[0, 0, 3, 3, 0].set(0.1)
    heavy_miss = target.at[0, 0, 0, 0, 0].add(-0.1)
    light_miss = target.at[0, 0, 3, 3, 0].add(-0.1)
    heavy = float(intensity_l1(heavy_miss, target, None, 16.0, KNOTS, KNOT_WEIGHTS))
    light = float(intensity_l1(light_miss, target, None, 16.0, KNOTS, KNOT_WEIGHTS))
    assert heavy == pytest.approx(24.0 * 0.1 / 16, rel=1e-5)
    assert heavy > 10 * light


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fourier_amplitude_weight": -1.0}, "fourier_amplitude_weight=-1.0: must be a finite"),
        ({"fourier_correlation_weight": float("nan")}, "fourier_correlation_weight=nan"),
        ({"intensity_l1_weight": 1.0}, "needs intensity_knots"),
        (
            {
                "intensity_l1_weight": 1.0,
                "intensity_knots": (0.0, 0.5),
                "intensity_weights": (1.0,),
            },
            "2 intensity_knots but 1",
        ),
        (
            {"intensity_knots": (0.5, 0.5), "intensity_weights": (1.0, 2.0)},
            "must strictly increase",
        ),
    ],
)
def test_loss_config_refuses_bad_departures(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**kwargs)


DEPARTURES = {
    "fourier_amplitude": LossConfig(fourier_amplitude_weight=2.0),
    "fourier_correlation": LossConfig(fourier_correlation_weight=0.5),
    "intensity_l1": LossConfig(
        intensity_l1_weight=3.0, intensity_knots=KNOTS, intensity_weights=KNOT_WEIGHTS
    ),
}


@pytest.mark.parametrize("name", sorted(DEPARTURES))
def test_each_departure_adds_its_weighted_term_on_image_frames_to_the_loss(cfg, name):
    objective = DEPARTURES[name]
    net = PredRNN(dataclasses.replace(cfg, patch_size=2), key=jax.random.key(12))
    clips = jnp.asarray(_clips(seed=13))
    valid = jnp.ones_like(clips).at[:, :, :2].set(0.0)  # two rows without data
    p = net.cfg.patch_size
    frames, pvalid = reshape_patch(clips, p), reshape_patch(valid, p)
    loss = eqx.filter_jit(predrnn_loss)
    official, parts = loss(net, frames, inference_mask(2, net.cfg), pvalid, OFFICIAL_LOSS)
    total, _ = loss(net, frames, inference_mask(2, net.cfg), pvalid, objective)
    forecast = reshape_patch_back(parts.next_frames, p)  # the spectra see image frames
    w = valid[:, 1:]
    weight = (
        objective.fourier_amplitude_weight
        + objective.fourier_correlation_weight
        + objective.intensity_l1_weight
    )
    term = TERMS[name](jnp.where(w > 0, forecast, 0.0), clips[:, 1:], w)
    norm = float(jnp.sum(w)) / float(
        w.size
    )  # TERMS normalise by every pixel, the loss by the scored
    expected = weight * (term if name == "fourier_correlation" else term / norm)
    np.testing.assert_allclose(float(total - official), float(expected), rtol=1e-4)
    assert float(expected) > 1e-4


def test_a_jitted_training_step_runs_with_every_departure(cfg):
    objective = dataclasses.replace(
        DEPARTURES["intensity_l1"], fourier_amplitude_weight=1.0, fourier_correlation_weight=0.5
    )
    state = init_train_state(PredRNN(cfg, key=jax.random.key(12)), adam(1e-3), jax.random.key(14))
    step = make_train_step(
        adam(1e-3), SamplingConfig(scheduled_sampling=False), reverse_input=True, loss=objective
    )
    clips = jnp.asarray(_clips(seed=13))
    state, metrics = step(state, clips, jnp.ones_like(clips))
    official = float(metrics.mse) + cfg.decouple_beta * float(metrics.decouple)
    assert np.isfinite(float(metrics.loss)) and float(metrics.loss) > official + 1e-4
    leaves = jax.tree_util.tree_leaves(eqx.filter(state.network, eqx.is_array))
    assert all(np.isfinite(np.asarray(x)).all() for x in leaves)
