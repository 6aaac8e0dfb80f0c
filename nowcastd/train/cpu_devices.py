"""How many host devices to split the CPU into for training, timed in child processes.

The counts are searched as the strategies are (`nowcastd.strategy.devices.DeviceCounts`: the
automatic count, half of it, no split), but the count is fixed when JAX starts its backend, so
each one is measured in its own short child process (`python -m nowcastd.train.cpu_devices`):
it splits the CPU, compiles the run's training step for a batch of zeros, and answers the
median seconds per step as JSON (`Answer`). A child that finds no CPU backend (an accelerator)
ends the search: the count does not matter there. The children spend at most
`BUDGET_SECONDS` together, and, once the first has timed a step, at most a tenth of the run's
expected length (its iterations at that step time): a short run tries no other count, and
then caches nothing, so a longer run measures them. The choice is cached as the strategies
are, so a second run starts no child.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

from model.config import ModelConfig
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.devices import DeviceCounts
from nowcastd.strategy.search import Budget, search, seconds_per_call
from nowcastd.train.sharding import cpu_devices_for, cpu_devices_forced
from nowcastd.train.step_strategy import BUDGET_SHARE

logger = logging.getLogger(__name__)

BUDGET_SECONDS = 120.0


class ChildFailed(Exception):
    """A child process could not time its count (it failed, or ran out of time)."""


class NotOnCpu(Exception):
    """JAX runs on an accelerator: the count of CPU devices does not matter."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Probe:
    """What a child times: the model's training step for `batch` clips over `devices`."""

    model: ModelConfig
    batch: int
    devices: int
    reverse_input: bool
    calls: int = 3

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Probe:
        doc = json.loads(text)
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in doc["model"].items()
        }
        return cls(**{**doc, "model": ModelConfig(**fields)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Answer:
    """What a child prints: the backend JAX runs on, and on a CPU the median seconds per step."""

    backend: str
    seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Answer:
        return cls(**json.loads(text))


def cpu_devices_for_run(
    model: ModelConfig,
    batch: int,
    *,
    requested: int,
    measure: bool,
    reverse_input: bool,
    cache: StrategyCache,
    iterations: int | None = None,
) -> int:
    """The host devices of a training run: `requested`, or with 0 the automatic count, or
    with `measure` (`--strategy auto` on one host) the count timed fastest (`iterations`: the
    run's length, which bounds the time spent measuring)."""
    if requested or not measure or cpu_devices_forced():
        return cpu_devices_for(batch, requested)
    return choose_cpu_devices(
        model, batch, reverse_input=reverse_input, cache=cache, iterations=iterations
    )


def choose_cpu_devices(
    model: ModelConfig,
    batch: int,
    *,
    reverse_input: bool,
    cache: StrategyCache,
    budget_seconds: float = BUDGET_SECONDS,
    iterations: int | None = None,
) -> int:
    """The fastest count of host devices for training `model` on `batch` clips per process;
    with `iterations`, measuring takes at most a tenth of the run's expected length after
    the first count is timed."""
    space = DeviceCounts(
        model=model, batch=batch, reverse_input=reverse_input, cores=len(os.sched_getaffinity(0))
    )
    if len(space.counts) == 1:
        return space.default
    start = time.perf_counter()

    def measure(count: int, budget: Budget) -> float:
        probe = Probe(model=model, batch=batch, devices=count, reverse_input=reverse_input)
        timeout = None if count == space.default else max(budget.remaining(), 1.0)
        return _run_child(probe, timeout)

    def budget_after_first(step_seconds: float) -> Budget:
        """What is left of `budget_seconds`, or of a tenth of the run, since the search began."""
        share = budget_seconds if iterations is None else BUDGET_SHARE * step_seconds * iterations
        spent = time.perf_counter() - start
        return Budget(min(budget_seconds, share) - spent, short_run=share < budget_seconds)

    try:
        choice = search(
            space,
            measure,
            cache=cache,
            budget=budget_seconds,
            budget_after_default=budget_after_first,
        )
    except NotOnCpu as e:
        logger.info("%s: JAX runs on %s; the count does not matter", space.name, e)
        return space.default
    except ChildFailed as e:
        logger.warning("%s: %d devices failed: %s", space.name, space.default, e)
        return space.default
    return choice.strategy


def _run_child(probe: Probe, timeout: float | None) -> float:
    """The child's seconds per step; ChildFailed if it failed or ran out of time, NotOnCpu if
    JAX runs elsewhere."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-m", "nowcastd.train.cpu_devices", probe.to_json()]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"still running after {timeout:.0f} s (the time budget)") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ChildFailed(f"exit status {done.returncode}: {tail[:200]}")
    answer = Answer.from_json(lines[-1])
    if answer.backend != "cpu" or answer.seconds is None:
        raise NotOnCpu(answer.backend)
    return answer.seconds


def _probe(probe: Probe) -> Answer:
    """In the child: split the CPU, then time the training step on zeros."""
    from nowcastd.train.sharding import split_cpu

    split_cpu(probe.devices)
    import jax
    import numpy as np

    from model.network import PredRNN
    from model.sampling import SamplingConfig
    from model.train import adam, init_train_state, make_train_step
    from nowcastd.train.sharding import DataParallel

    if jax.default_backend() != "cpu":
        return Answer(backend=jax.default_backend())
    cfg = probe.model
    parallel = DataParallel.create()
    optimizer = adam(1e-3)
    step = make_train_step(
        optimizer, SamplingConfig(), reverse_input=probe.reverse_input, mesh=parallel.mesh
    )
    channels = cfg.img_channel + (cfg.num_action_ch if cfg.is_action else 0)
    shape = (probe.batch, cfg.total_length, cfg.img_height, cfg.img_width, channels)
    clips = parallel.shard(np.zeros(shape, np.float32))
    motion = None
    if cfg.lagrangian:
        motion_shape = (probe.batch, cfg.img_height, cfg.img_width, 2)
        motion = parallel.shard(np.zeros(motion_shape, np.float32))
    network = PredRNN(cfg, key=jax.random.key(0))
    state = parallel.replicate(init_train_state(network, optimizer, jax.random.key(1)))
    states = [state]

    def run() -> Any:
        states[0], metrics = step(states[0], clips, None, motion)
        return metrics

    return Answer(backend="cpu", seconds=seconds_per_call(run, probe.calls))


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    print(_probe(Probe.from_json(sys.argv[1])).to_json())
