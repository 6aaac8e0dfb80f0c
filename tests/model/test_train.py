import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.network import PredRNN
from model.sampling import SamplingConfig, draw_mask, rss_etas, ss_eta
from model.train import adam, init_train_state, make_train_step
from tests.paths import FIXTURES

SCHEDULES = FIXTURES / "parity" / "schedules.json"


@pytest.mark.parametrize("row", json.loads(SCHEDULES.read_text())["rows"], ids=lambda r: r["itr"])
def test_schedules_match_official_functions(row) -> None:
    s = SamplingConfig()
    np.testing.assert_allclose(ss_eta(row["itr"], s), row["ss_eta"], atol=1e-6)
    r_eta, eta = rss_etas(row["itr"], s)
    np.testing.assert_allclose(r_eta, row["rss_r_eta"], atol=1e-6)
    np.testing.assert_allclose(eta, row["rss_eta"], atol=1e-6)


def test_rss_mask_draws_context_and_future_at_their_rates(tiny_cfg) -> None:
    cfg = replace(tiny_cfg, input_length=10, total_length=20, reverse_scheduled_sampling=True)
    mask = draw_mask(jax.random.key(0), jnp.asarray(30000), 4000, cfg, SamplingConfig())
    assert mask.shape == (4000, 18, 1, 1, 1)
    r_eta, eta = rss_etas(30000, SamplingConfig())
    np.testing.assert_allclose(mask[:, :9].mean(), r_eta, atol=0.01)
    np.testing.assert_allclose(mask[:, 9:].mean(), eta, atol=0.01)


def test_tiny_model_overfits_one_batch(tiny_cfg) -> None:
    cfg = replace(tiny_cfg, total_length=5)
    x = np.linspace(0, 1, 8, dtype=np.float32)
    frames = np.stack([np.roll(np.outer(x, x), t, axis=1) for t in range(5)])[None, ..., None]
    clips = jnp.asarray(np.repeat(frames, 2, axis=0))
    opt = adam(3e-3)
    state = init_train_state(PredRNN(cfg, key=jax.random.key(0)), opt, jax.random.key(1))
    step = make_train_step(opt, SamplingConfig(), reverse_input=False)
    losses = []
    for _ in range(150):
        state, m = step(state, clips)
        losses.append(float(m.loss))
    assert int(state.step) == 150
    assert losses[-1] < 0.2 * losses[0]


def test_reverse_input_takes_two_adam_steps_per_iteration(tiny_cfg) -> None:
    cfg = replace(tiny_cfg, model_name="predrnn", input_length=2, total_length=4)
    opt = adam(1e-3)
    clips = jnp.asarray(np.random.default_rng(0).random((2, 4, 8, 8, 1), dtype=np.float32))
    single = make_train_step(opt, SamplingConfig(), reverse_input=False)
    double = make_train_step(opt, SamplingConfig(), reverse_input=True)
    s1, _ = single(
        init_train_state(PredRNN(cfg, key=jax.random.key(0)), opt, jax.random.key(1)), clips
    )
    s2, _ = double(
        init_train_state(PredRNN(cfg, key=jax.random.key(0)), opt, jax.random.key(1)), clips
    )
    assert int(s1.opt_state[0].count) == 1
    assert int(s2.opt_state[0].count) == 2
