"""How many host devices to split the CPU into for training, timed in child processes.

The count is fixed when JAX starts its backend, so each candidate runs in its own short child
process (`python -m nowcastd.train.cpu_devices`): it splits the CPU, compiles the run's
training step for a batch of zeros, and prints the median seconds per step as JSON. The
candidates are the divisors of the batch up to the usable cores: the automatic count
(`sharding.cpu_devices_for`) first, then half of it, then no split (at most three). A child
that finds no CPU backend (an accelerator) ends the search: the count does not matter there.
The children spend at most `BUDGET_SECONDS` together, and, once the first has timed a step,
at most a tenth of the run's expected length (its iterations at that step time): a short run
tries no other count, and then caches nothing, so a longer run measures them. The choice is
cached as the strategies are (`nowcastd.strategy`), so a second run starts no child.
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
from nowcastd.strategy.cache import Record, StrategyCache, cache_directory
from nowcastd.strategy.machine import cpu_model, software
from nowcastd.strategy.search import MARGIN
from nowcastd.train.sharding import cpu_devices_for
from nowcastd.train.step_strategy import BUDGET_SHARE

logger = logging.getLogger(__name__)

BUDGET_SECONDS = 120.0
PROGRAM = "training step CPU devices"


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
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["model"].items()}
        return cls(**{**doc, "model": ModelConfig(**fields)})


def candidates(batch: int, cores: int | None = None) -> tuple[int, ...]:
    """The automatic count, half of it when that divides the batch, and 1: at most three."""
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    largest = max(n for n in range(1, cores + 1) if batch % n == 0)
    half = largest // 2
    out = [largest]
    if half > 1 and batch % half == 0:
        out.append(half)
    if largest > 1:
        out.append(1)
    return tuple(out)


def cpu_devices_for_run(
    model: ModelConfig,
    batch: int,
    *,
    requested: int,
    measure: bool,
    reverse_input: bool,
    iterations: int | None = None,
) -> int:
    """The host devices of a training run: `requested`, or with 0 the automatic count, or
    with `measure` (`--strategy auto` on one host) the count timed fastest (`iterations`: the
    run's length, which bounds the time spent measuring)."""
    if (
        requested
        or not measure
        or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    ):
        return cpu_devices_for(batch, requested)
    return choose_cpu_devices(model, batch, reverse_input=reverse_input, iterations=iterations)


def choose_cpu_devices(
    model: ModelConfig,
    batch: int,
    *,
    reverse_input: bool,
    cache: StrategyCache | None = None,
    budget_seconds: float = BUDGET_SECONDS,
    iterations: int | None = None,
) -> int:
    """The fastest count of host devices for training `model` on `batch` clips per process;
    with `iterations`, measuring takes at most a tenth of the run's expected length after
    the first count is timed."""
    counts = candidates(batch)
    default = cpu_devices_for(batch)
    if len(counts) == 1:
        return default
    cache = StrategyCache(cache_directory()) if cache is None else cache
    key = {
        "cpu": cpu_model(),
        **software(),
        "cores": len(os.sched_getaffinity(0)),
        "program": PROGRAM,
        "model": repr(model),
        "batch": batch,
        "reverse_input": reverse_input,
        "candidates": list(counts),
        "margin": MARGIN,
    }
    record = cache.load(key)
    if record is not None and record.strategy.isdigit() and int(record.strategy) in counts:
        _log(int(record.strategy), record, "from the cache")
        return int(record.strategy)
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    skipped: list[str] = []
    short_run = False
    for count in counts:
        budget = budget_seconds
        if seconds and iterations is not None:
            share = BUDGET_SHARE * next(iter(seconds.values())) * iterations
            short_run = share < budget
            budget = min(budget, share)
        left = budget - (time.perf_counter() - start)
        if seconds and left <= 0:
            skipped.append(str(count))
            continue
        probe = Probe(model=model, batch=batch, devices=count, reverse_input=reverse_input)
        outcome = _run_child(probe, timeout=max(left, 1.0) if seconds else None)
        if "error" in outcome:
            failed[str(count)] = outcome["error"]
            logger.warning("%s: %d devices failed, left out: %s", PROGRAM, count, outcome["error"])
            if count == default:
                return default
            continue
        if outcome["backend"] != "cpu":
            logger.info(
                "%s: JAX runs on %s; the count does not matter", PROGRAM, outcome["backend"]
            )
            return default
        seconds[str(count)] = outcome["seconds"]
    best = default
    for count in counts:
        if str(count) in seconds and seconds[str(count)] < seconds[str(best)] * (1 - MARGIN):
            best = count
    record = Record(strategy=str(best), seconds=seconds, failed=failed, skipped=tuple(skipped))
    how = f"{len(seconds)} counts timed in {time.perf_counter() - start:.1f} s"
    if skipped and short_run:  # a longer run will measure what this one had no time for
        how += f"; {', '.join(skipped)} left out: over a tenth of this run; not cached"
    else:
        cache.store(key, record)
    _log(best, record, how)
    return best


def _run_child(probe: Probe, timeout: float | None) -> dict[str, Any]:
    """The child's JSON answer, or {"error": why} if it failed or ran out of time."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-m", "nowcastd.train.cpu_devices", probe.to_json()]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"still running after {timeout:.0f} s (the time budget)"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit status {done.returncode}: {tail[:200]}"}
    return dict(json.loads(lines[-1]))


def _log(best: int, record: Record, how: str) -> None:
    times = ", ".join(f"{n}: {t:.3g} s" for n, t in record.seconds.items())
    logger.info(
        "strategy for %s on %s: %d (seconds per step by count: %s; %s)",
        PROGRAM,
        cpu_model(),
        best,
        times,
        how,
    )


def _probe(probe: Probe) -> dict[str, Any]:
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
        return {"backend": jax.default_backend()}
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
    times = []
    for call in range(probe.calls + 1):  # the first call is slower: not timed
        t0 = time.perf_counter()
        state, metrics = step(state, clips, None, motion)
        jax.block_until_ready(metrics)
        if call:
            times.append(time.perf_counter() - t0)
    return {"backend": "cpu", "seconds": float(np.median(times))}


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    print(json.dumps(_probe(Probe.from_json(sys.argv[1]))))
