"""Choose a program's strategy by timing the candidates on this machine, once per key.

`choose(program, build, setting=..., cache=..., budget=...)`:

- a `Strategy` setting (`--strategy default` or a NAME) is used as it is, unmeasured;
- `auto` looks the program's key up in the cache (`cache.StrategyCache`): a record there is
  used without measuring anything;
- otherwise the candidates are compiled and timed, on the real shapes, by a coordinate search
  from the default: for each setting of `model.strategy.axes` in turn (YNN fusions, the
  weight-gradient chunk, unrolling), each value is tried on top of the best so far, skipping
  values that compile to a program already timed. A candidate is compiled ahead of time
  (`build`), called once untimed, then timed over up to `calls` calls (the median); one that
  fails to compile or run is logged and skipped. It replaces the best so far only if it is
  at least `MARGIN` faster, so noise does not move a program off the default. The search
  stops trying new candidates once `budget` is spent (the default is always timed).

The choice is logged once per program, e.g. ``strategy for rollout (1x10x128x128x1 float32,
10 leads) on AMD EPYC 9654: ynn=on,wgrad=96,unroll=auto (0.91 s vs 1.02 s for the default;
3 candidates timed in 9.8 s)``, and stored in the cache.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax

from model.config import ModelConfig
from model.strategy import DEFAULT, WGRAD_CHUNKS, Strategy, axes, parse_strategy
from nowcastd.strategy.cache import Record, StrategyCache
from nowcastd.strategy.machine import cpu_model, software

logger = logging.getLogger(__name__)

#: `auto` (measure, or read the cache) or one strategy to use as it is.
StrategySetting = Literal["auto"] | Strategy

#: A candidate must be at least this much faster than the best so far to replace it.
MARGIN = 0.03

_EXPECTED = (
    "expected auto, default or a strategy name such as 'ynn=off,wgrad=96,unroll=auto' "
    "(ynn=on|off|auto, wgrad=N output channels per weight-gradient convolution with 0 for "
    "all, unroll=on|off|auto, bf16=on|off)"
)


def parse_setting(text: str) -> StrategySetting:
    """`--strategy`: 'auto', 'default' or a strategy NAME (`model.strategy.parse_strategy`)."""
    if text.strip() == "auto":
        return "auto"
    try:
        return parse_strategy(text)
    except ValueError:
        raise ValueError(_EXPECTED) from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Program:
    """One compiled program of the product, as the cache knows it: `name` ("training step",
    "rollout", ...), `shapes` (its arguments' shapes and dtypes, in words), the network it
    runs at `batch`, and whether it is an inference program (no gradients)."""

    name: str
    shapes: str
    cfg: ModelConfig
    batch: int
    inference: bool
    wgrad_chunks: tuple[int, ...] = WGRAD_CHUNKS

    @property
    def label(self) -> str:
        return f"{self.name} ({self.shapes})"

    def axes(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The settings searched here: not XLA's CPU fusions on an accelerator."""
        found = axes(inference=self.inference, wgrad_chunks=self.wgrad_chunks)
        if jax.default_backend() != "cpu":
            found = tuple(axis for axis in found if axis[0] != "ynn")
        return found

    def program_of(self, strategy: Strategy) -> Strategy:
        """What `strategy` compiles to here (equal values: the same program)."""
        return strategy.resolved(self.cfg, self.batch, inference=self.inference)

    def key(self) -> dict[str, Any]:
        """The cache key: this machine, its software and devices, the program and candidates."""
        devices = jax.devices()
        return {
            "cpu": cpu_model(),
            **software(),
            "backend": jax.default_backend(),
            "device_kind": devices[0].device_kind,
            "devices": len(devices),
            "program": self.name,
            "shapes": self.shapes,
            "model": repr(self.cfg),
            "batch": self.batch,
            "candidates": [[name, [repr(v) for v in values]] for name, values in self.axes()],
            "margin": MARGIN,
        }


class Budget:
    """Seconds of measuring, shared by the searches that draw on it (e.g. the daemon's three
    programs): once spent, searches time their default only."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    @property
    def spent(self) -> bool:
        return self.remaining() <= 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Choice:
    """The strategy of one program and where it came from: `measured` now, read from the
    `cache`, or `set` by the setting. `seconds`: per call, by candidate name (the default's
    under DEFAULT.name)."""

    program: str
    strategy: Strategy
    source: Literal["measured", "cache", "set"]
    seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    failed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    search_seconds: float = 0.0

    def summary(self) -> str:
        """`ynn=on,... (0.91 s vs 1.02 s for the default; ...)`: the log line's tail."""
        name = self.strategy.name
        if self.source == "set":
            return f"{name} (set, not measured)"
        times = self.seconds
        notes = []
        if name in times and name != DEFAULT.name and DEFAULT.name in times:
            notes.append(f"{_time(times[name])} vs {_time(times[DEFAULT.name])} for the default")
        elif name in times:
            others = sorted((t, n) for n, t in times.items() if n != name)
            mine = f"{_time(times[name])}" + (", the default" if name == DEFAULT.name else "")
            if others:
                mine += f"; next {_time(others[0][0])} for {others[0][1]}"
            notes.append(mine)
        if self.source == "cache":
            notes.append("from the cache")
        else:
            count = f"{len(times)} candidate{'s' if len(times) != 1 else ''}"
            notes.append(f"{count} timed in {self.search_seconds:.1f} s")
        if self.failed:
            notes.append(f"{len(self.failed)} failed")
        if self.skipped:
            notes.append(f"{len(self.skipped)} left out, over the time budget")
        return f"{name} ({'; '.join(notes)})"


def _time(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds >= 0.1 else f"{seconds * 1e3:.3g} ms"


#: A compiled candidate: one call of it, returning something to block on.
Runner = Callable[[], Any]
#: Compile `program` under a strategy (ahead of time) and return its runner.
Build = Callable[[Strategy], Runner]


def choose(
    program: Program,
    build: Build,
    *,
    setting: StrategySetting = "auto",
    cache: StrategyCache | None = None,
    budget: Budget | float = 10.0,
    budget_after_default: Callable[[float], float] | None = None,
    calls: int = 3,
) -> Choice:
    """The strategy to run `program` with (see the module doc); logs it once.

    `budget_after_default`, if given, replaces `budget` once the default is timed: it maps the
    default's seconds per call to the seconds left for the other candidates (a training run
    spends a share of its expected length)."""
    if not isinstance(setting, str):
        choice = Choice(program=program.name, strategy=setting, source="set")
        _log(program, choice)
        return choice
    if setting != "auto":
        raise ValueError(f"strategy setting: {_EXPECTED}, got {setting!r}")
    key = program.key()
    record = None if cache is None else cache.load(key)
    if record is not None:
        try:
            strategy = parse_strategy(record.strategy)
        except ValueError:
            logger.warning("strategy cache: %r is no strategy; measuring again", record.strategy)
        else:
            choice = Choice(
                program=program.name,
                strategy=strategy,
                source="cache",
                seconds=record.seconds,
                failed=record.failed,
                skipped=record.skipped,
            )
            _log(program, choice)
            return choice
    if not isinstance(budget, Budget):
        budget = Budget(budget)
    choice = _search(program, build, budget, calls, budget_after_default)
    if cache is not None:
        stored = Record(
            strategy=choice.strategy.name,
            seconds=choice.seconds,
            failed=choice.failed,
            skipped=choice.skipped,
        )
        cache.store(key, stored)
    _log(program, choice)
    return choice


def _search(
    program: Program,
    build: Build,
    budget: Budget,
    calls: int,
    budget_after_default: Callable[[float], float] | None,
) -> Choice:
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    skipped: list[str] = []
    tried: set[Strategy] = set()

    def measure(strategy: Strategy) -> float | None:
        tried.add(program.program_of(strategy))
        try:
            run = build(strategy)
            jax.block_until_ready(run())  # the first call of an executable is slower
            times: list[float] = []
            while len(times) < calls and (not times or not budget.spent):
                t0 = time.perf_counter()
                jax.block_until_ready(run())
                times.append(time.perf_counter() - t0)
        except Exception as e:  # a candidate XLA cannot compile or run here is left out
            if strategy == DEFAULT:
                raise
            failed[strategy.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            logger.warning(
                "strategy for %s: %s failed, left out: %s",
                program.label,
                strategy.name,
                failed[strategy.name],
            )
            return None
        seconds[strategy.name] = statistics.median(times)
        logger.debug(
            "strategy for %s: %s %.4g s per call",
            program.label,
            strategy.name,
            seconds[strategy.name],
        )
        return seconds[strategy.name]

    best = DEFAULT
    best_seconds = measure(DEFAULT)
    assert best_seconds is not None  # the default raises rather than fail quietly
    if budget_after_default is not None:
        budget = Budget(budget_after_default(best_seconds))
    for name, values in program.axes():
        base = best
        for value in values:
            candidate = dataclasses.replace(base, **{name: value})
            if program.program_of(candidate) in tried:
                continue
            if budget.spent:
                skipped.append(candidate.name)
                tried.add(program.program_of(candidate))
                continue
            took = measure(candidate)
            if took is not None and took < best_seconds * (1 - MARGIN):
                best, best_seconds = candidate, took
    return Choice(
        program=program.name,
        strategy=best,
        source="measured",
        seconds=seconds,
        failed=failed,
        skipped=tuple(skipped),
        search_seconds=time.perf_counter() - start,
    )


def _log(program: Program, choice: Choice) -> None:
    logger.info("strategy for %s on %s: %s", program.label, cpu_model(), choice.summary())
