"""The training step's strategy: its candidates compiled and timed on the run's first batch.

Each candidate is `make_train_step` under that strategy, compiled ahead of time for the real
(sharded) batch, called on a copy of the run's state (the step donates it, so each call gets
the state the previous one returned). The search spends at most a tenth of the run's expected
length (the default's time per step times the iterations left), between `MIN_BUDGET_SECONDS`
and `MAX_BUDGET_SECONDS`, and its choice is cached (`nowcastd.strategy`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from model.config import ModelConfig
from model.strategy import Strategy
from model.train import TrainState
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.search import Choice, Program, StrategySetting, choose

logger = logging.getLogger(__name__)

MIN_BUDGET_SECONDS = 10.0
MAX_BUDGET_SECONDS = 300.0
#: The share of the run's expected length the search may spend.
BUDGET_SHARE = 0.1


def training_budget(iterations: int) -> Callable[[float], float]:
    """Seconds of search, from the default's seconds per step, for `iterations` steps."""

    def budget(step_seconds: float) -> float:
        share = BUDGET_SHARE * step_seconds * iterations
        return min(MAX_BUDGET_SECONDS, max(MIN_BUDGET_SECONDS, share))

    return budget


def step_program(
    cfg: ModelConfig,
    clips: tuple[int, ...],
    *,
    batch: int,
    devices: int,
    reverse_input: bool,
    masked: bool = False,
    motion: bool = False,
) -> Program:
    """The training step of `cfg` on `clips`-shaped float32 batches as the cache knows it;
    `batch`: the clips each shard's network sees."""
    shapes = (
        f"{'x'.join(map(str, clips))} float32 over {devices} device"
        f"{'s' if devices != 1 else ''}, reverse_input {int(reverse_input)}"
        + (", valid mask" if masked else "")
        + (", motion" if motion else "")
    )
    return Program(name="training step", shapes=shapes, cfg=cfg, batch=batch, inference=False)


def choose_step_strategy(
    make_step: Callable[[Strategy], Callable[..., Any]],
    state: TrainState,
    args: tuple[Any, ...],
    *,
    setting: StrategySetting,
    batch: int,
    devices: int,
    reverse_input: bool,
    iterations: int,
    cache: StrategyCache | None,
) -> Choice[Strategy]:
    """The strategy of the step `make_step(strategy)` (e.g. a `make_train_step` partial)
    called as `step(state, *args)`; `batch`: the clips each shard's network sees; `cache`:
    where choices are kept (None: nowhere)."""
    clips, valid = args[0], args[1]
    motion = args[2] if len(args) > 2 else None
    program = step_program(
        state.network.cfg,
        clips.shape,
        batch=batch,
        devices=devices,
        reverse_input=reverse_input,
        masked=valid is not None,
        motion=motion is not None,
    )

    def build(strategy: Strategy) -> Callable[[], Any]:
        step = make_step(strategy)
        holder = [jax.tree_util.tree_map(_copy, state)]
        with warnings.catch_warnings():  # the clips are donated too, and cannot be reused
            warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
            compiled = step.lower(holder[0], *args).compile()  # type: ignore[attr-defined]

        def run() -> Any:
            holder[0], metrics = compiled(holder[0], *args)
            return metrics

        return run

    return choose(
        program,
        build,
        setting=setting,
        cache=cache,
        budget=MIN_BUDGET_SECONDS,
        budget_after_default=training_budget(iterations),
    )


def _copy(x: Any) -> Any:
    """A fresh buffer of an array (on the same devices), anything else as it is."""
    return jnp.copy(x) if isinstance(x, jax.Array) else x
