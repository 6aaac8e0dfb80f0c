"""Departures from the official code, off by default: change-from-last-frame prediction and the
rain-weighted loss."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.config import ModelConfig
from model.loss import LossConfig, pixel_weights, predrnn_loss
from model.network import PredRNN
from model.patch import reshape_patch
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
