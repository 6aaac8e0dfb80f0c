"""The AOT forecaster: pre-encoded forecasts equal the full rollout; nothing recompiles."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model.compile import compile_program
from model.rollout import rollout
from model.strategy import DEFAULT
from nowcastd.nowcast import Window
from nowcastd.serve.forecaster import Forecaster
from nowcastd.serve.metrics import CompileCounter
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.machine import cpu_model
from tests.nowcastd.serve.tiny import DBZ
from tests.nowcastd.serve.tiny import tiny_network as _network


@pytest.fixture(scope="module")
def compiled():
    forecaster = Forecaster(_network(), DBZ, num_leads=4)  # longer than total - input
    forecaster.compile()
    return forecaster


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 0.8, (1, n, 16, 16, 1)).astype(np.float32)


def _window(context) -> Window:
    return Window(context=jnp.asarray(context), no_data=np.zeros((1, 16, 16), bool))


def test_pre_encoded_forecast_equals_full_rollout(compiled):
    sequence = _frames(4, seed=1)  # f1..f4: window one is f1..f3, window two f2..f4
    compiled.pre_encode(jnp.asarray(sequence[:, :3]), key=("f1", "f2", "f3"))
    assert compiled.pre_encoded_for(("f2", "f3"))
    fast, used = compiled.forecast(_window(sequence[:, 1:]), key=("f2", "f3", "f4"))
    assert used
    full = compiled.full(jnp.asarray(sequence[:, 1:]))
    reference = DBZ.to_rates(np.asarray(rollout(compiled.network, sequence[:, 1:], 4))[..., 0])
    assert fast.shape == (1, 4, 16, 16)
    np.testing.assert_allclose(fast, full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(full, reference, rtol=1e-4, atol=1e-4)


def test_forecast_after_another_window_runs_the_full_rollout(compiled):
    sequence = _frames(5, seed=2)
    compiled.pre_encode(jnp.asarray(sequence[:, :3]), key=("a", "b", "c"))
    context = jnp.asarray(sequence[:, 2:])
    result, used = compiled.forecast(_window(context), key=("c", "d", "e"))  # b, then not c
    assert not used
    np.testing.assert_allclose(result, compiled.full(context), rtol=1e-6)


def test_background_pre_encoding_is_used_by_the_next_forecast(compiled):
    sequence = jnp.asarray(_frames(4, seed=5))
    compiled.pre_encode(sequence[:, :3], key=("f1", "f2", "f3"), background=True)
    fast, used = compiled.forecast(_window(sequence[:, 1:]), key=("f2", "f3", "f4"))  # waits
    assert used
    np.testing.assert_allclose(fast, compiled.full(sequence[:, 1:]), rtol=1e-5, atol=1e-5)
    assert compiled.wait_pre_encode() == 0.0  # nothing left running


def test_no_compilation_after_compile(compiled):
    context = jnp.asarray(_frames(3, seed=3))
    with CompileCounter() as counter:
        compiled.full(context)
        compiled.pre_encode(context, key=(1, 2, 3))
        compiled.forecast(_window(context), key=(2, 3, 4))
    assert counter.count == 0


def test_single_input_model_forecasts_without_pre_encoding():
    forecaster = Forecaster(_network(input_length=1), DBZ, num_leads=2)
    forecaster.compile()
    assert not forecaster.can_pre_encode
    context = jnp.asarray(_frames(1, seed=4))
    result, used = forecaster.forecast(_window(context), key=("x",))
    assert result.shape == (1, 2, 16, 16) and not used


def test_forecast_before_compile_is_an_error():
    with pytest.raises(RuntimeError, match="compile"):
        Forecaster(_network(), DBZ, num_leads=1).full(jnp.zeros((1, 3, 16, 16, 1)))


def test_inference_programs_compile_with_the_inference_options(compiled):
    """The daemon's programs leave out XLA's YNN fusions on the CPU, as the default strategy's
    rollout does (model/rollout.py, INFERENCE_COMPILER_OPTIONS); XLA's default would put them
    in."""
    context = jnp.zeros((1, 3, 16, 16, 1))
    default = jax.jit(rollout, static_argnums=2).lower(_network(), context, 4).compile()
    assert "ynn_fusion" in default.as_text()  # the option changes something here
    for program in (compiled._full, compiled._encode, compiled._from):
        assert "ynn_fusion" not in program.as_text()
    jitted = compile_program(rollout, DEFAULT, inference=True)
    ours = jitted.lower(_network(), context, 4).compile().compiled  # equinox wraps jax's
    assert "ynn_fusion" not in ours.as_text()


def test_auto_strategy_times_each_program_once_and_forecasts_the_same(compiled, tmp_path, caplog):
    """`strategy="auto"`: each of the three programs is timed under its candidates and logged;
    a second forecaster on this machine reads the choices from the cache and times nothing."""
    caplog.set_level(logging.INFO)
    cache = StrategyCache(tmp_path)
    auto = Forecaster(_network(), DBZ, num_leads=4, strategy="auto", strategy_cache=cache)
    auto.compile()
    assert {c.source for c in auto.strategies.values()} == {"measured"}
    assert set(auto.strategies) == {"forecast", "rollout", "encode"}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("strategy for")]
    assert (
        len(lines) == 3
        and f"serve forecast (1x3x16x16x1 float32, 4 leads) on {cpu_model()}" in lines[0]
    )
    sequence = jnp.asarray(_frames(4, seed=6))
    np.testing.assert_allclose(
        auto.full(sequence[:, 1:]), compiled.full(sequence[:, 1:]), rtol=1e-5, atol=1e-5
    )
    auto.pre_encode(sequence[:, :3], key=(1, 2, 3))
    fast, used = auto.forecast(_window(sequence[:, 1:]), key=(2, 3, 4))
    assert used
    np.testing.assert_allclose(fast, compiled.full(sequence[:, 1:]), rtol=1e-5, atol=1e-5)

    again = Forecaster(_network(), DBZ, num_leads=4, strategy="auto", strategy_cache=cache)
    again.compile()
    assert {c.source for c in again.strategies.values()} == {"cache"}
    assert {n: c.strategy for n, c in again.strategies.items()} == {
        n: c.strategy for n, c in auto.strategies.items()
    }
