"""Strategy by measurement: real compiled candidates, the cache and its failures, the setting."""

import dataclasses
import json
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from model.compile import compile_program
from model.config import ModelConfig
from model.network import PredRNN
from model.rollout import rollout
from model.strategy import DEFAULT, Strategy
from nowcastd.settings import strategy_cache_dir
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.machine import cpu_model
from nowcastd.strategy.search import Budget, Program, cache_key, choose, parse_setting, search


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

        def fn(params, context, *, strategy):
            return rollout(eqx.combine(params, static), context, 2, strategy=strategy)

        exe = compile_program(fn, strategy, inference=True, example_args=(params, context))
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


def test_the_cache_directory_is_resolved_from_the_settings_given(tmp_path) -> None:
    home = {"HOME": str(tmp_path / "home")}
    assert strategy_cache_dir(home) == tmp_path / "home" / ".cache" / "nowcastd" / "strategy"
    xdg = home | {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert strategy_cache_dir(xdg) == tmp_path / "xdg" / "nowcastd" / "strategy"
    jax_cache = xdg | {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax")}
    assert strategy_cache_dir(jax_cache) == tmp_path / "jax" / "strategy"
    assert strategy_cache_dir(jax_cache, tmp_path / "serve") == tmp_path / "serve" / "strategy"
    named = jax_cache | {"NOWCASTD_STRATEGY_CACHE": str(tmp_path / "named")}
    assert strategy_cache_dir(named, tmp_path / "serve") == tmp_path / "named"
    # an empty name is no name (the daemon's tests use the compile cache's)
    empty = jax_cache | {"NOWCASTD_STRATEGY_CACHE": ""}
    assert strategy_cache_dir(empty) == tmp_path / "jax" / "strategy"


@dataclasses.dataclass(frozen=True)
class _Counts:
    """A space of one axis, integers, timed by a table: what `search` asks of any space."""

    table: dict[int, float]
    name: str = "counts"
    label: str = "counts (a table)"
    default: int = 4

    def axes(self):
        return (("count", (4, 2, 1)),)

    def vary(self, base, axis, value):
        return value

    def program_of(self, candidate):
        return candidate

    def name_of(self, candidate):
        return str(candidate)

    def parse(self, name):
        return int(name)

    def key(self):
        return cache_key(self, table=sorted(self.table.items()))


def test_any_space_is_searched_by_its_axes_with_the_margin_and_cached(tmp_path) -> None:
    timed: list[int] = []

    def measure(count: int, budget: Budget) -> float:
        timed.append(count)
        if count == 1:
            raise RuntimeError("no")
        return space.table[count]

    space = _Counts({4: 1.0, 2: 0.98, 1: 0.1})  # 2 is within the margin: 4 stays
    cache = StrategyCache(tmp_path)
    choice = search(space, measure, cache=cache, budget=60)
    assert timed == [4, 2, 1] and choice.strategy == 4 and choice.source == "measured"
    assert choice.seconds == {"4": 1.0, "2": 0.98} and list(choice.failed) == ["1"]
    assert search(space, _never, cache=cache).strategy == 4  # read back, typed

    faster = _Counts({4: 1.0, 2: 0.5, 1: 0.1})
    assert search(faster, lambda c, b: faster.table[c], cache=cache, budget=60).strategy == 1


def test_a_short_runs_budget_leaves_candidates_out_and_caches_nothing(tmp_path) -> None:
    space = _Counts({4: 1.0, 2: 0.5, 1: 0.1})
    cache = StrategyCache(tmp_path)

    def short(seconds: float) -> Budget:
        return Budget(0.0, short_run=True)

    choice = search(
        space, lambda c, b: space.table[c], cache=cache, budget=60, budget_after_default=short
    )
    assert choice.strategy == 4 and choice.skipped == ("2", "1") and choice.partial
    assert "not cached" in choice.summary() and not list(tmp_path.iterdir())
    full = search(space, lambda c, b: space.table[c], cache=cache, budget=0)  # not short
    assert full.skipped and not full.partial and len(list(tmp_path.iterdir())) == 1
