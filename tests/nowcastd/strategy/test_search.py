"""Strategy by measurement: real compiled candidates, the cache and its failures, the setting."""

import json
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from model.config import ModelConfig
from model.network import PredRNN
from model.rollout import rollout
from model.strategy import DEFAULT, Strategy
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.machine import cpu_model
from nowcastd.strategy.search import Program, choose, parse_setting


def _program(cfg: ModelConfig) -> Program:
    return Program(
        name="rollout", shapes="1x3x8x8x1 float32, 2 leads", cfg=cfg, batch=1, inference=True
    )


def _rollout_build(cfg: ModelConfig, compiled: list[Strategy]):
    """Compile the tiny model's rollout under each strategy asked for, ahead of time."""
    network = PredRNN(cfg, key=jax.random.key(0))
    params, static = eqx.partition(network, eqx.is_array)
    context = jnp.zeros((1, cfg.input_length, cfg.img_height, cfg.img_width, 1))

    def build(strategy: Strategy):
        compiled.append(strategy)

        def fn(params, context):
            return rollout(eqx.combine(params, static).with_strategy(strategy), context, 2)

        options = strategy.compiler_options(inference=True)
        exe = jax.jit(fn).lower(params, context).compile(options)
        return lambda: exe(params, context)

    return build


def _never(strategy: Strategy):
    raise AssertionError(f"measured {strategy.name}, expected the cached choice")


def test_search_times_every_distinct_candidate_and_the_cache_skips_it(
    tiny_cfg, tmp_path, caplog
) -> None:
    cache = StrategyCache(tmp_path)
    compiled: list[Strategy] = []
    caplog.set_level(logging.INFO, logger="nowcastd.strategy")
    first = choose(_program(tiny_cfg), _rollout_build(tiny_cfg, compiled), cache=cache, budget=60)
    assert first.source == "measured" and compiled[0] == DEFAULT
    # inference: YNN on or off, unrolled or looped; the default's own values are not re-timed
    assert len(compiled) == len(first.seconds) == 3
    assert first.strategy.name in first.seconds
    line = f"strategy for rollout (1x3x8x8x1 float32, 2 leads) on {cpu_model()}: {first.strategy.name} ("
    assert any(r.getMessage().startswith(line) for r in caplog.records)
    (path,) = tmp_path.glob("rollout-*.json")
    assert json.loads(path.read_text())["strategy"] == first.strategy.name

    again = choose(_program(tiny_cfg), _never, cache=cache)  # a restart: nothing measured
    assert again.source == "cache" and again.strategy == first.strategy
    assert "from the cache" in caplog.records[-1].getMessage()


def test_another_shape_is_another_key(tiny_cfg, tmp_path) -> None:
    cache = StrategyCache(tmp_path)
    program = _program(tiny_cfg)
    other = Program(
        name="rollout", shapes="2x3x8x8x1 float32, 2 leads", cfg=tiny_cfg, batch=2, inference=True
    )
    assert cache.path(program.key()) != cache.path(other.key())


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": 1, "key": {}, "strategy": "x"}', "[]"]
)
def test_a_corrupt_cache_file_is_ignored_with_a_warning_and_measured_again(
    tiny_cfg, tmp_path, caplog, content
) -> None:
    cache = StrategyCache(tmp_path)
    program = _program(tiny_cfg)
    cache.path(program.key()).write_text(content)
    compiled: list[Strategy] = []
    choice = choose(program, _rollout_build(tiny_cfg, compiled), cache=cache, budget=0)
    assert choice.source == "measured" and compiled == [DEFAULT]  # budget 0: the default only
    assert choice.skipped  # the others, left out over the budget
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "expected a nowcastd strategy record" in warned[0].getMessage()
    assert json.loads(cache.path(program.key()).read_text())["strategy"] == DEFAULT.name


def test_a_set_strategy_is_used_unmeasured(tiny_cfg, tmp_path) -> None:
    forced = Strategy(ynn=True, unroll=False)
    choice = choose(_program(tiny_cfg), _never, setting=forced, cache=StrategyCache(tmp_path))
    assert choice.strategy == forced and choice.source == "set"
    assert not list(tmp_path.iterdir())


def test_a_candidate_that_fails_to_compile_is_left_out(tiny_cfg, tmp_path, caplog) -> None:
    good = _rollout_build(tiny_cfg, [])

    def build(strategy: Strategy):
        if strategy.unroll is False:
            raise RuntimeError("XLA says no")
        return good(strategy)

    choice = choose(_program(tiny_cfg), build, cache=StrategyCache(tmp_path), budget=60)
    assert choice.strategy.unroll is not False
    assert list(choice.failed.values()) == ["RuntimeError: XLA says no"]
    assert any("failed, left out" in r.getMessage() for r in caplog.records)


def test_the_setting_parses_auto_default_and_names() -> None:
    assert parse_setting("auto") == "auto"
    assert parse_setting("default") == DEFAULT
    assert parse_setting("ynn=off,wgrad=0") == Strategy(ynn=False, wgrad_chunk=0)
    with pytest.raises(ValueError, match="^expected auto, default or a strategy name"):
        parse_setting("fastest")
