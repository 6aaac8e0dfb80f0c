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

`search(space, measure, ...)` is that search for any `Space` of candidates: the strategies of a
`Program`, or the CPU device counts of a training run (`nowcastd.strategy.devices`), which are
timed in child processes rather than compiled here.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, Literal, Protocol, TypeVar

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

#: One setting a search varies, and its values in the order they are tried.
Axis = tuple[str, tuple[Any, ...]]

_EXPECTED = "expected auto, default or a strategy name"


def parse_setting(text: str) -> StrategySetting:
    """`--strategy`: 'auto', 'default' or a strategy NAME (`model.strategy.parse_strategy`,
    whose error spells out the names)."""
    if text.strip() == "auto":
        return "auto"
    try:
        return parse_strategy(text)
    except ValueError as e:
        raise ValueError(f"{_EXPECTED} ({e})") from None


C = TypeVar("C", bound=Hashable)


class Space(Protocol[C]):
    """What one search varies: its candidates of type `C`, as settings (`axes`) varied one at
    a time from the `default`, and what its cache key holds (`key`, made by `cache_key`)."""

    @property
    def name(self) -> str:
        """The program, as the log and the cache name it ("training step", ...)."""
        ...

    @property
    def label(self) -> str:
        """The program with its shapes, for the log line."""
        ...

    @property
    def default(self) -> C: ...

    def axes(self) -> tuple[Axis, ...]:
        """The settings searched and their values, in the order they are tried."""
        ...

    def vary(self, base: C, axis: str, value: Any) -> C:
        """`base` with one setting changed."""
        ...

    def program_of(self, candidate: C) -> Hashable:
        """What `candidate` compiles to (equal values: the same program, timed once)."""
        ...

    def name_of(self, candidate: C) -> str:
        """The candidate as the log and the cache write it."""
        ...

    def parse(self, name: str) -> C:
        """The candidate `name_of` wrote; ValueError if there is none."""
        ...

    def key(self) -> dict[str, Any]: ...


def cache_key(space: Space[Any], **fields: Any) -> dict[str, Any]:
    """The cache key of `space`: this machine, its software, the program, `fields` (what else
    changes the timings: shapes, model, devices), the candidates and the margin."""
    return {
        "cpu": cpu_model(),
        **software(),
        "program": space.name,
        **fields,
        "candidates": [[name, [repr(v) for v in values]] for name, values in space.axes()],
        "margin": MARGIN,
    }


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

    @property
    def default(self) -> Strategy:
        return DEFAULT

    def axes(self) -> tuple[Axis, ...]:
        """The settings searched here: not XLA's CPU fusions on an accelerator."""
        found = axes(inference=self.inference, wgrad_chunks=self.wgrad_chunks)
        if jax.default_backend() != "cpu":
            found = tuple(axis for axis in found if axis[0] != "ynn")
        return found

    def vary(self, base: Strategy, axis: str, value: Any) -> Strategy:
        return dataclasses.replace(base, **{axis: value})

    def program_of(self, candidate: Strategy) -> Strategy:
        """What `candidate` compiles to here (equal values: the same program)."""
        return candidate.resolved(self.cfg, self.batch, inference=self.inference)

    def name_of(self, candidate: Strategy) -> str:
        return candidate.name

    def parse(self, name: str) -> Strategy:
        return parse_strategy(name)

    def key(self) -> dict[str, Any]:
        """The cache key (`cache_key`), with this process's devices."""
        devices = jax.devices()
        return cache_key(
            self,
            backend=jax.default_backend(),
            device_kind=devices[0].device_kind,
            devices=len(devices),
            shapes=self.shapes,
            model=repr(self.cfg),
            batch=self.batch,
        )


class Budget:
    """Seconds of measuring, shared by the searches that draw on it (e.g. the daemon's three
    programs): once spent, searches time their default only. `short_run`: the length of the
    run that measures bounds it, so a search that leaves candidates out over it caches nothing
    (a longer run measures them)."""

    def __init__(
        self,
        seconds: float,
        clock: Callable[[], float] = time.perf_counter,
        *,
        short_run: bool = False,
    ) -> None:
        self.seconds = seconds
        self.short_run = short_run
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    @property
    def spent(self) -> bool:
        return self.remaining() <= 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Choice(Generic[C]):
    """What one program runs with and where it came from: `measured` now, read from the
    `cache`, or `set` by the setting. `strategy`: the candidate kept (a `Strategy`, or a
    device count), `name` and `default`: it and the default as written (`Space.name_of`);
    `seconds`: per call, by candidate name. `partial`: a short run left candidates out, so
    nothing was cached."""

    program: str
    strategy: C
    name: str
    default: str
    source: Literal["measured", "cache", "set"]
    seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    failed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    search_seconds: float = 0.0
    partial: bool = False

    def summary(self) -> str:
        """`ynn=on,... (0.91 s vs 1.02 s for the default; ...)`: the log line's tail."""
        name = self.name
        if self.source == "set":
            return f"{name} (set, not measured)"
        times = self.seconds
        notes = []
        if name in times and name != self.default and self.default in times:
            notes.append(f"{_time(times[name])} vs {_time(times[self.default])} for the default")
        elif name in times:
            others = sorted((t, n) for n, t in times.items() if n != name)
            mine = f"{_time(times[name])}" + (", the default" if name == self.default else "")
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
        if self.partial:
            notes.append("not cached: a longer run measures what this one had no time for")
        return f"{name} ({'; '.join(notes)})"

    def record(self) -> Record:
        """What the cache stores of a measured choice."""
        return Record(
            strategy=self.name, seconds=self.seconds, failed=self.failed, skipped=self.skipped
        )


def _time(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds >= 0.1 else f"{seconds * 1e3:.3g} ms"


#: A compiled candidate: one call of it, returning something to block on.
Runner = Callable[[], Any]
#: Compile `program` under a strategy (ahead of time) and return its runner.
Build = Callable[[Strategy], Runner]
#: Seconds per call of a candidate, measured within the budget; raises if it cannot be
#: compiled or run (the default's failure ends the search: it is raised to the caller).
Measure = Callable[[C, Budget], float]
#: The budget of the other candidates, from the default's seconds per call.
BudgetAfterDefault = Callable[[float], "Budget | float"]


def seconds_per_call(run: Runner, calls: int, budget: Budget | None = None) -> float:
    """The median seconds of up to `calls` calls of `run` after one untimed call (the first
    call of an executable is slower); at least one call, more while `budget` lasts."""
    # jax leaves `block_until_ready` unannotated (it takes and returns any pytree)
    jax.block_until_ready(run())  # type: ignore[no-untyped-call]
    times: list[float] = []
    while len(times) < calls and (not times or budget is None or not budget.spent):
        t0 = time.perf_counter()
        jax.block_until_ready(run())  # type: ignore[no-untyped-call]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def choose(
    program: Program,
    build: Build,
    *,
    setting: StrategySetting = "auto",
    cache: StrategyCache | None = None,
    budget: Budget | float = 10.0,
    budget_after_default: BudgetAfterDefault | None = None,
    calls: int = 3,
) -> Choice[Strategy]:
    """The strategy to run `program` with (see the module doc); logs it once.

    `budget_after_default`, if given, replaces `budget` once the default is timed: it maps the
    default's seconds per call to the seconds left for the other candidates (a training run
    spends a share of its expected length)."""
    if not isinstance(setting, str):
        choice = Choice(
            program=program.name,
            strategy=setting,
            name=setting.name,
            default=DEFAULT.name,
            source="set",
        )
        _log(program, choice)
        return choice
    if setting != "auto":
        raise ValueError(f"strategy setting: {_EXPECTED}, got {setting!r}")

    def measure(strategy: Strategy, budget: Budget) -> float:
        return seconds_per_call(build(strategy), calls, budget)

    return search(
        program, measure, cache=cache, budget=budget, budget_after_default=budget_after_default
    )


def search(
    space: Space[C],
    measure: Measure[C],
    *,
    cache: StrategyCache | None = None,
    budget: Budget | float = 10.0,
    budget_after_default: BudgetAfterDefault | None = None,
) -> Choice[C]:
    """The candidate of `space` the cache holds, else the fastest measured (see the module
    doc), cached; logs it once."""
    key = space.key()
    choice = None if cache is None else _cached(space, cache, key)
    if choice is None:
        if not isinstance(budget, Budget):
            budget = Budget(budget)
        choice = _search(space, measure, budget, budget_after_default)
        if cache is not None and not choice.partial:
            cache.store(key, choice.record())
    _log(space, choice)
    return choice


def _cached(space: Space[C], cache: StrategyCache, key: dict[str, Any]) -> Choice[C] | None:
    """The choice stored under `key`, if any (one that names no candidate is warned of)."""
    record = cache.load(key)
    if record is None:
        return None
    try:
        kept = space.parse(record.strategy)
    except ValueError:
        logger.warning("strategy cache: %r is no candidate; measuring again", record.strategy)
        return None
    return Choice(
        program=space.name,
        strategy=kept,
        name=record.strategy,
        default=space.name_of(space.default),
        source="cache",
        seconds=record.seconds,
        failed=record.failed,
        skipped=record.skipped,
    )


class _Timings(Generic[C]):
    """The candidates timed so far (by name), those that failed, and the programs tried."""

    def __init__(self, space: Space[C], measure: Measure[C]) -> None:
        self.space, self.measure = space, measure
        self.seconds: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.tried: set[Hashable] = set()

    def time(self, candidate: C, budget: Budget) -> float | None:
        """Seconds per call, or None if it failed (logged); the default's failure is raised."""
        space, name = self.space, self.space.name_of(candidate)
        self.tried.add(space.program_of(candidate))
        try:
            seconds = self.measure(candidate, budget)
        except Exception as e:  # a candidate XLA cannot compile or run here is left out
            if candidate == space.default:
                raise
            self.failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            logger.warning(
                "strategy for %s: %s failed, left out: %s", space.label, name, self.failed[name]
            )
            return None
        self.seconds[name] = seconds
        logger.debug("strategy for %s: %s %.4g s per call", space.label, name, seconds)
        return seconds


def _search(
    space: Space[C],
    measure: Measure[C],
    budget: Budget,
    budget_after_default: BudgetAfterDefault | None,
) -> Choice[C]:
    start = time.perf_counter()
    timings = _Timings(space, measure)
    skipped: list[str] = []
    best = space.default
    best_seconds = timings.time(best, budget)
    assert best_seconds is not None  # the default raises rather than fail quietly
    if budget_after_default is not None:
        after = budget_after_default(best_seconds)
        budget = after if isinstance(after, Budget) else Budget(after)
    for axis, values in space.axes():
        base = best
        for value in values:
            candidate = space.vary(base, axis, value)
            if space.program_of(candidate) in timings.tried:
                continue
            if budget.spent:
                skipped.append(space.name_of(candidate))
                timings.tried.add(space.program_of(candidate))
                continue
            took = timings.time(candidate, budget)
            if took is not None and took < best_seconds * (1 - MARGIN):
                best, best_seconds = candidate, took
    return Choice(
        program=space.name,
        strategy=best,
        name=space.name_of(best),
        default=space.name_of(space.default),
        source="measured",
        seconds=timings.seconds,
        failed=timings.failed,
        skipped=tuple(skipped),
        search_seconds=time.perf_counter() - start,
        partial=bool(skipped) and budget.short_run,
    )


def _log(space: Space[Any], choice: Choice[Any]) -> None:
    logger.info("strategy for %s on %s: %s", space.label, cpu_model(), choice.summary())
