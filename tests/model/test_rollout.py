"""Inference: scan vs unrolled steps, jit vs eager, pre-encoding vs full rollout."""

from dataclasses import replace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.config import ModelConfig
from model.network import PredRNN
from model.patch import reshape_patch, reshape_patch_back
from model.rollout import encode, forecast_from, rollout, rollout_jit
from model.sampling import inference_mask


@pytest.fixture(scope="module")
def cfg(tiny_cfg: ModelConfig) -> ModelConfig:
    return replace(tiny_cfg, img_width=12)  # not square


def _clips(cfg: ModelConfig, batch: int = 2) -> np.ndarray:
    shape = (batch, cfg.total_length, cfg.img_height, cfg.img_width, cfg.img_channel)
    return np.random.default_rng(1).random(shape, dtype=np.float32)


def test_scan_forward_equals_step_by_step_unroll(cfg: ModelConfig) -> None:
    net = PredRNN(cfg, key=jax.random.key(0))
    frames = reshape_patch(jnp.asarray(_clips(cfg)), cfg.patch_size)
    mask = inference_mask(2, cfg)
    scanned, _ = net(frames, mask, with_decouple=False)
    carry = net.zero_carry(2)
    fused = net.fused_weights()
    prev = None
    outs = []
    for t in range(cfg.total_length - 1):
        x = frames[:, t] if t < cfg.input_length else prev
        carry, out = net.step(carry, x, fused=fused, with_decouple=False)
        prev = out.frame
        outs.append(prev)
    np.testing.assert_allclose(scanned, jnp.stack(outs, 1), rtol=1e-5, atol=1e-6)


def test_jit_equals_eager(cfg: ModelConfig) -> None:
    net = PredRNN(cfg, key=jax.random.key(1))
    context = jnp.asarray(_clips(cfg)[:, : cfg.input_length])
    with jax.disable_jit():
        eager = rollout(net, context, 4)
    np.testing.assert_allclose(rollout_jit(net, context, 4), eager, rtol=1e-5, atol=1e-6)


def test_rollout_matches_official_test_forward_and_extends_past_it(cfg: ModelConfig) -> None:
    net = PredRNN(cfg, key=jax.random.key(2))
    clips = jnp.asarray(_clips(cfg))
    official, _ = net(reshape_patch(clips, 2), inference_mask(2, cfg), with_decouple=False)
    want = reshape_patch_back(official[:, cfg.input_length - 1 :], 2)
    k = cfg.total_length - cfg.input_length
    got = rollout_jit(net, clips[:, : cfg.input_length], k)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    longer = rollout_jit(net, clips[:, : cfg.input_length], k + 4)
    assert longer.shape == (2, k + 4, cfg.img_height, cfg.img_width, 1)
    np.testing.assert_allclose(longer[:, :k], got, rtol=1e-5, atol=1e-6)


def test_pre_encoding_gives_the_same_forecast_as_the_full_rollout(cfg: ModelConfig) -> None:
    net = PredRNN(cfg, key=jax.random.key(3))
    clips = jnp.asarray(_clips(cfg))
    i = cfg.input_length
    # The window the daemon will see once frame i arrives: frames 1..i.
    full = rollout_jit(net, clips[:, 1 : i + 1], 5)
    carry, _ = eqx.filter_jit(encode)(net, clips[:, 1:i])  # idle time: known frames
    fast = eqx.filter_jit(forecast_from)(net, carry, clips[:, i], 5)  # critical path
    np.testing.assert_allclose(fast, full, rtol=1e-5, atol=1e-6)


def test_rollout_is_fully_convolutional_without_layer_norm(cfg: ModelConfig) -> None:
    net = PredRNN(cfg, key=jax.random.key(4))
    context = jnp.zeros((1, 3, 16, 20, 1))
    assert rollout_jit(net, context, 2).shape == (1, 2, 16, 20, 1)
