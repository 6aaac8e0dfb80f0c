"""The model against persistence and pysteps' extrapolation and S-PROG, on every start time of
a sequence.

For each start time with `input_length` frames of context and `lead_frames` observed frames
after them (all one time step apart), every method forecasts from the same window
(`nowcast.Window.from_rates`, the one window builder), and those that need motion share one
field, estimated once from the window's motion input (`nowcastd.data.motion`, with the method
the checkpoint names):

- ``model``: the checkpoint's forecast as `nowcastd serve` makes it (`nowcast.forecast_rates`:
  inputs in model units with no data as 0, the output clipped to [0, 1], turned into mm/h and
  0 below 0.1 mm/h; batches of one compiled shape, the last batch padded);
- ``persistence``: the last input frame;
- ``pysteps_lk``: pysteps' semi-Lagrangian extrapolation of the last frame (`baselines`);
- ``pysteps_sprog``: pysteps' S-PROG (`baselines`).

With a halo (`RadarSequence.padded`, `[domain] halo_km`), every method forecasts from the
window grown by it (the model's motion and advection, the extrapolations' motion and
advection; persistence is the newest frame) and is scored on the model grid.

Every method is scored by the one scorer (`skill.Scorer`) on the same pixels: where the
observation and every method's forecast have data (`common_pixels`; rain advected in from
outside the grid is no data for the extrapolations and the Lagrangian model). Scores are pooled
over all start times per lead: MAE, RMSE, bias, CSI/POD/FAR, FSS and the frequency bias at 1
and 5 mm/h, the FSS over a neighbourhood stated in km (20 km by default) and converted to
pixels of the grid's pixel size. `pool` adds several sequences' sums into one table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from nowcastd.data.motion import MotionEstimator
from nowcastd.errors import ConfigError, DataError
from nowcastd.io.domain import Domain
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.nowcast import Window, forecast_rates, rollout_rates_jit
from nowcastd.verification.baselines import (
    LagrangianExtrapolation,
    SProg,
    baseline_unavailable,
    persistence,
)
from nowcastd.verification.sequence import RadarSequence
from nowcastd.verification.skill import FSS_NEIGHBOURHOOD_KM, Neighbourhood, Scorer, Scores
from nowcastd.verification.tables import LABELS, format_scores
from nowcastd.verification.verdict import Verdict, judge

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "Comparison",
    "common_pixels",
    "compare",
    "finite_or_none",
    "format_comparison",
    "model_forecast",
    "pool",
    "write_json",
]

METHODS = ("model", "persistence", "pysteps_lk", "pysteps_sprog")
#: The pixel size taken when the data does not state one (the bundled model's 4 km grid).
ASSUMED_PIXEL_KM = 4.0


@dataclass(frozen=True, kw_only=True, eq=False)
class Comparison:
    """The scores of every method on one sequence (or several, `pool`ed), per lead."""

    name: str
    data: str
    checkpoint: str
    digest: str
    model_name: str
    domain: Domain | None
    grid: tuple[int, int]
    pixel_km: float
    pixel_km_stated: bool
    timestep_seconds: int
    input_length: int
    lead_minutes: tuple[float, ...]
    n_starts: int
    first_issue_time: str
    last_issue_time: str
    motion_method: str | None
    not_scored: dict[str, str]
    seconds: dict[str, float]
    scorers: dict[str, Scorer] = field(repr=False)
    left_out: tuple[str, ...] = ()
    forecasts_per_lead: tuple[int, ...] | None = None  # when leads pool unequal numbers

    @property
    def methods(self) -> dict[str, Scores]:
        return {m: s.result() for m, s in self.scorers.items()}

    def verdicts(self, baselines: Sequence[str] = ("persistence", "pysteps_lk")) -> list[Verdict]:
        """The model against each of `baselines` that was scored (`verdict.judge`)."""
        methods = self.methods
        return [
            judge(methods["model"], methods[b], self.lead_minutes, baseline=LABELS[b])
            for b in baselines
            if "model" in methods and b in methods
        ]

    def to_json(self) -> dict[str, Any]:
        methods = self.methods
        first = next(iter(methods.values()))
        return {
            "name": self.name,
            "data": self.data,
            "checkpoint": self.checkpoint,
            "digest": self.digest,
            "model_name": self.model_name,
            "domain": None if self.domain is None else dataclasses.asdict(self.domain),
            "grid": list(self.grid),
            "pixel_km": self.pixel_km,
            "pixel_km_stated": self.pixel_km_stated,
            "timestep_seconds": self.timestep_seconds,
            "input_length": self.input_length,
            "lead_frames": len(self.lead_minutes),
            "lead_minutes": list(self.lead_minutes),
            "n_starts": self.n_starts,
            "first_issue_time": self.first_issue_time,
            "last_issue_time": self.last_issue_time,
            "thresholds_mm_h": list(first.thresholds),
            "fss": {
                "neighbourhood_km": first.neighbourhood.km,
                "window_px": first.neighbourhood.px,
                "window_km": first.neighbourhood.actual_km,
            },
            "pixel_rule": "a pixel counts where the observation and every method's forecast "
            "have data",
            "motion_method": self.motion_method,
            "methods": {m: s.to_json() for m, s in methods.items()},
            "verdicts": {v.baseline: v.describe() for v in self.verdicts()},
            "seconds": self.seconds,
            "not_scored": self.not_scored,
            "left_out": list(self.left_out),
        }


def common_pixels(observed: np.ndarray, forecasts: Sequence[np.ndarray]) -> np.ndarray:
    """`observed` with NaN wherever any forecast has no data: the pixels every method is
    scored on (the one scorer then counts where observation and forecast have data)."""
    out = np.array(observed, dtype=np.float32, copy=True)
    for f in forecasts:
        out[~np.isfinite(f)] = np.nan
    return out


def _methods(n_in: int, baselines: bool) -> tuple[list[str], dict[str, str]]:
    if not baselines:
        return ["model"], dict.fromkeys(METHODS[1:], "--no-baselines")
    not_scored = {m: r for m in METHODS[2:] if (r := baseline_unavailable(m, n_in))}
    return [m for m in METHODS if m not in not_scored], not_scored


def _neighbourhood(
    seq: RadarSequence, km: float, pixel_km: float | None
) -> tuple[Neighbourhood, bool]:
    stated = pixel_km if pixel_km is not None else seq.pixel_km
    return Neighbourhood.from_km(km, stated or ASSUMED_PIXEL_KM), stated is not None


def _windows(
    loaded: LoadedModel, seq: RadarSequence, lead_frames: int | None, batch_size: int
) -> tuple[int, np.ndarray]:
    """The lead frames to score and the start of every window of inputs and leads in `seq`.

    Raises:
        ConfigError: a checkpoint without a physical transform or of another grid, a lead
            count or batch size below 1.
        DataError: `seq` holds no such window.
    """
    cfg, transform = loaded.cfg, loaded.transform
    if not transform.is_physical:
        raise ConfigError(
            f"evaluate: the checkpoint's data transform is {transform.kind!r}; scores in mm/h "
            "need a physical one (dbz)"
        )
    loaded.check_grid(seq.grid, "evaluate")
    n_in = cfg.input_length
    leads = cfg.total_length - n_in if lead_frames is None else int(lead_frames)
    if leads < 1 or batch_size < 1:
        raise ConfigError(
            f"evaluate: expected lead frames and batch size >= 1, got {leads}, {batch_size}"
        )
    starts = seq.starts(n_in + leads)
    if starts.size == 0:
        raise DataError(
            f"{seq.source}: no {n_in + leads} consecutive frames {seq.timestep_seconds} s apart "
            f"({n_in} inputs + {leads} leads) among {seq.precip.shape[0]}"
        )
    return leads, starts


class _Forecasters:
    """The methods compared: each one's forecasts of a batch, and the seconds each took."""

    def __init__(self, loaded: LoadedModel, methods: list[str]) -> None:
        self.loaded, self.methods = loaded, methods
        needs_motion = loaded.cfg.lagrangian or any(m in methods for m in METHODS[2:])
        self.estimator = MotionEstimator(loaded.motion_method) if needs_motion else None
        estimator = self.estimator
        self.rivals = {
            "pysteps_lk": LagrangianExtrapolation(estimator) if "pysteps_lk" in methods else None,
            "pysteps_sprog": SProg(estimator) if "pysteps_sprog" in methods else None,
        }
        self.seconds = dict.fromkeys(["motion", *methods], 0.0)

    def forecasts(
        self, inputs: np.ndarray, leads: int, batch: int, margin: int = 0
    ) -> dict[str, np.ndarray]:
        """Every method's (n, leads, H, W) forecast in mm/h from `inputs` (n, I, H, W) mm/h,
        which hold a halo of `margin` pixels on every side of that grid."""
        window = Window.from_rates(inputs, self.loaded.transform, margin=margin)
        t0 = time.perf_counter()
        motion = (
            None
            if self.estimator is None or window.motion is None
            else self.estimator.batch(window.motion)
        )
        self.seconds["motion"] += time.perf_counter() - t0
        forecasts = {}
        for method in self.methods:
            t0 = time.perf_counter()
            forecasts[method] = self._forecast(method, inputs, leads, batch, motion, margin)
            self.seconds[method] += time.perf_counter() - t0
        return forecasts

    def _forecast(
        self,
        method: str,
        inputs: np.ndarray,
        leads: int,
        batch: int,
        motion: np.ndarray | None,
        margin: int,
    ) -> np.ndarray:
        if method == "model":
            flow = motion if self.loaded.cfg.lagrangian else None
            return model_forecast(self.loaded, inputs, leads, batch, flow, margin=margin)
        if method == "persistence":
            return persistence(_inner(inputs, margin), leads)
        fn = self.rivals[method]
        assert fn is not None and motion is not None
        out = np.stack([fn(x, leads, v) for x, v in zip(inputs, motion, strict=True)])
        return _inner(out, margin)


def _inner(frames: np.ndarray, margin: int) -> np.ndarray:
    """The model grid of (..., H, W) frames with a halo of `margin` on every side."""
    return frames[..., margin : frames.shape[-2] - margin, margin : frames.shape[-1] - margin]


def compare(
    loaded: LoadedModel,
    seq: RadarSequence,
    *,
    lead_frames: int | None = None,
    batch_size: int = 8,
    baselines: bool = True,
    neighbourhood_km: float = FSS_NEIGHBOURHOOD_KM,
    pixel_km: float | None = None,
    name: str | None = None,
) -> Comparison:
    """Score the methods on every start time of `seq` (module docstring). `pixel_km`: the
    grid's pixel size (default: what the data states, else 4 km, said so in the table)."""
    cfg, n_in = loaded.cfg, loaded.cfg.input_length
    leads, starts = _windows(loaded, seq, lead_frames, batch_size)
    methods, not_scored = _methods(n_in, baselines)
    forecasters = _Forecasters(loaded, methods)
    hood, stated = _neighbourhood(seq, neighbourhood_km, pixel_km)
    scorers = {m: Scorer(hood) for m in methods}
    batch = min(batch_size, starts.size)
    offsets = np.arange(n_in + leads)
    for b0 in range(0, starts.size, batch):
        idx = starts[b0 : b0 + batch]
        observed = seq.precip[idx[:, None] + offsets[n_in:]]  # (n, K, H, W) mm/h
        inputs = seq.window_frames[idx[:, None] + offsets[:n_in]]  # (n, I, H, W) and halo
        forecasts = forecasters.forecasts(inputs, leads, batch, seq.margin)
        truth = common_pixels(observed, list(forecasts.values()))
        for method, forecast in forecasts.items():
            scorers[method].update(forecast, truth)
        logger.debug("scored starts %d..%d of %d", b0, b0 + idx.size - 1, starts.size)
    estimator = forecasters.estimator
    return Comparison(
        name=name or Path(seq.source).name,
        data=seq.source,
        checkpoint=str(loaded.path),
        digest=loaded.digest,
        model_name=cfg.model_name,
        domain=seq.domain,
        grid=seq.grid,
        pixel_km=hood.pixel_km,
        pixel_km_stated=stated,
        timestep_seconds=seq.timestep_seconds,
        input_length=n_in,
        lead_minutes=tuple((k + 1) * seq.timestep_seconds / 60 for k in range(leads)),
        n_starts=int(starts.size),
        first_issue_time=seq.iso_time(int(starts[0]) + n_in - 1),
        last_issue_time=seq.iso_time(int(starts[-1]) + n_in - 1),
        motion_method=None if estimator is None else estimator.method,
        not_scored=not_scored,
        seconds=forecasters.seconds,
        scorers=scorers,
    )


def pool(comparisons: Sequence[Comparison], name: str = "pooled") -> Comparison:
    """One table from the sums of every comparison with the first one's lead times and
    methods (the others are named in `left_out`): each lead pools all their forecasts."""
    first = comparisons[0]
    kept = [
        c
        for c in comparisons
        if c.lead_minutes == first.lead_minutes and list(c.scorers) == list(first.scorers)
    ]
    scorers = {}
    for method in first.scorers:
        total = Scorer(first.scorers[method].neighbourhood)
        for c in kept:
            total.merge(c.scorers[method])
        scorers[method] = total
    return dataclasses.replace(
        first,
        name=name,
        data=", ".join(c.name for c in kept),
        domain=None,
        n_starts=sum(c.n_starts for c in kept),
        first_issue_time="",
        last_issue_time="",
        seconds={m: sum(c.seconds.get(m, 0.0) for c in kept) for m in first.seconds},
        scorers=scorers,
        left_out=tuple(c.name for c in comparisons if c not in kept),
    )


def model_forecast(
    loaded: LoadedModel,
    inputs: np.ndarray,
    leads: int,
    batch: int,
    motion: np.ndarray | None = None,
    *,
    margin: int = 0,
) -> np.ndarray:
    """(n, I, H, W) mm/h -> (n, leads, H, W) mm/h, as serve forecasts (`forecast_rates`),
    compiled under the model's strategy (`LoadedModel.strategy`); n <= batch, padded so that
    one shape compiles. `motion` (n, H, W, 2): the inputs' motion
    if already estimated, for a Lagrangian model (else `forecast_rates` estimates it).
    `margin`: the halo the inputs (and motion) hold around the forecast's grid."""
    n = inputs.shape[0]
    if n < batch:
        inputs = np.concatenate([inputs, np.repeat(inputs[-1:], batch - n, axis=0)])
        if motion is not None:
            motion = np.concatenate([motion, np.repeat(motion[-1:], batch - n, axis=0)])
    window = Window.from_rates(inputs, loaded.transform, margin=margin)
    estimator = None
    if loaded.cfg.lagrangian and motion is None:
        estimator = MotionEstimator(loaded.motion_method)

    def run(context: jax.Array | np.ndarray, flow: np.ndarray | None) -> jax.Array:
        return rollout_rates_jit(
            loaded.network,
            loaded.transform,
            context,
            leads,
            flow,
            strategy=loaded.strategy,
            margin=margin,
        )

    return forecast_rates(window, run, motion=estimator, flow=motion)[:n]


def finite_or_none(obj: Any) -> Any:
    """NaN and ±inf -> None, so that the JSON is strict (jq, browsers)."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, report: Comparison | dict[str, Any]) -> Path:
    """The report as strict JSON, written atomically."""
    from nowcastd.io.atomic import atomic_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = report.to_json() if isinstance(report, Comparison) else report
    with atomic_file(path) as f:
        f.write(json.dumps(finite_or_none(body), indent=1).encode())
    return path


def format_comparison(report: Comparison) -> str:
    """What was scored, the verdict's table per lead and method, and the verdicts."""
    grid = report.grid
    where = (
        f"{report.n_starts} forecasts ({report.first_issue_time} .. {report.last_issue_time})"
        if report.first_issue_time
        else f"{report.n_starts} forecasts pooled over {report.data}"
    )
    block = "" if report.domain is None else f" (block {report.domain.block})"
    size = f"{report.pixel_km:.3g} km" + (
        "" if report.pixel_km_stated else " (assumed: not stated)"
    )
    lines = [
        f"{report.name}: {where}, {report.input_length} inputs, grid {grid[0]}x{grid[1]}"
        f"{block}, pixel {size}, step {report.timestep_seconds / 60:g} min; every method "
        "scored on the same pixels",
        format_scores(report.methods, report.lead_minutes, forecasts=report.forecasts_per_lead),
    ]
    lines += [v.describe() for v in report.verdicts()]
    for method, reason in report.not_scored.items():
        lines.append(f"{LABELS[method]} not scored: {reason}")
    if report.left_out:
        lines.append("not pooled (other lead times or methods): " + ", ".join(report.left_out))
    return "\n".join(lines)
