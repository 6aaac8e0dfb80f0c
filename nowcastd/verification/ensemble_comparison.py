"""The model's ensemble against pysteps' STEPS, on every start time of a sequence.

For each start time with `input_length` frames of context and the lead frames after them, both
methods forecast N members from the same window (`nowcast.Window.from_rates`) and the same
motion (one field per window, estimated once with the checkpoint's optical flow), from the
window grown by the sequence's halo (`RadarSequence.padded`), as `comparison` does:

- ``model``: the model's ensemble as `nowcastd serve` makes it (`ModelEnsemble`);
- ``pysteps_steps``: pysteps' STEPS with N members (`baselines.Steps`).

Seeds follow serve's rule: a window's seed is the base seed plus its issue time in Unix
seconds (STEPS gets one per window; the model one per batch of windows, from the batch's first
window), so a rerun gives the same members.

Both are scored by the one ensemble scorer (`ensemble_skill.EnsembleScorer`) on the same
pixels: where the observation and every member of both methods have data. Scores are pooled
over all start times per lead; `pool_ensembles` adds several sequences' sums into one table.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.data.motion import MotionEstimator
from nowcastd.ensemble import EnsembleSettings
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.nowcast import Window
from nowcastd.verification.baselines import Steps, baseline_unavailable
from nowcastd.verification.comparison import ASSUMED_PIXEL_KM, _inner, _windows, common_pixels
from nowcastd.verification.ensemble_members import ModelEnsemble
from nowcastd.verification.ensemble_skill import EnsembleScorer, EnsembleScores
from nowcastd.verification.ensemble_verdict import judge_ensemble
from nowcastd.verification.sequence import RadarSequence
from nowcastd.verification.verdict import Verdict

logger = logging.getLogger(__name__)

__all__ = [
    "ENSEMBLE_METHODS",
    "EnsembleComparison",
    "all_members_pixels",
    "compare_ensembles",
    "format_ensemble_comparison",
    "format_ensemble_scores",
    "pool_ensembles",
    "window_seed",
]

ENSEMBLE_METHODS = ("model", "pysteps_steps")
ENSEMBLE_LABELS = {"model": "model ens.", "pysteps_steps": "STEPS"}


@dataclass(frozen=True, kw_only=True, eq=False)
class EnsembleComparison:
    """The ensemble scores of each method on one sequence (or several, pooled), per lead."""

    name: str
    data: str
    members: int
    seed: int
    grid: tuple[int, int]
    pixel_km: float
    timestep_seconds: int
    input_length: int
    lead_minutes: tuple[float, ...]
    n_starts: int
    first_issue_time: str
    last_issue_time: str
    not_scored: dict[str, str]
    seconds: dict[str, float]
    scorers: dict[str, EnsembleScorer] = field(repr=False)
    settings: EnsembleSettings | None = None  # the model's ensemble
    left_out: tuple[str, ...] = ()

    @property
    def methods(self) -> dict[str, EnsembleScores]:
        return {m: s.result() for m, s in self.scorers.items()}

    def verdict(self) -> Verdict | None:
        """The model's ensemble against STEPS (`ensemble_verdict`), if both were scored."""
        methods = self.methods
        if not all(m in methods for m in ENSEMBLE_METHODS):
            return None
        return judge_ensemble(methods["model"], methods["pysteps_steps"], self.lead_minutes)

    def to_json(self) -> dict[str, Any]:
        verdict = self.verdict()
        return {
            "name": self.name,
            "data": self.data,
            "members": self.members,
            "seed": self.seed,
            "model_ensemble": None if self.settings is None else dataclasses.asdict(self.settings),
            "grid": list(self.grid),
            "pixel_km": self.pixel_km,
            "timestep_seconds": self.timestep_seconds,
            "input_length": self.input_length,
            "lead_minutes": list(self.lead_minutes),
            "n_starts": self.n_starts,
            "first_issue_time": self.first_issue_time,
            "last_issue_time": self.last_issue_time,
            "pixel_rule": "a pixel counts where the observation and every member of every "
            "method have data",
            "methods": {m: s.to_json() for m, s in self.methods.items()},
            "verdict": None if verdict is None else verdict.describe(),
            "seconds": self.seconds,
            "not_scored": self.not_scored,
            "left_out": list(self.left_out),
        }


def window_seed(seed: int, issue_unix: int) -> int:
    """Serve's rule: the base seed plus the issue time in Unix seconds (modulo 2**32, as
    numpy's seeds must be)."""
    return (int(seed) + int(issue_unix)) % 2**32


class _EnsembleForecasters:
    """The model's ensemble and STEPS: each one's members of a batch, and their seconds."""

    def __init__(
        self,
        loaded: LoadedModel,
        methods: list[str],
        settings: EnsembleSettings,
        steps: Steps | None,
    ) -> None:
        self.loaded, self.methods, self.settings = loaded, methods, settings
        self.members = settings.members
        self.estimator = MotionEstimator(loaded.motion_method)
        self.steps = steps
        self.model: ModelEnsemble | None = None
        self.seconds = dict.fromkeys(["motion", *methods], 0.0)

    def forecasts(
        self, inputs: np.ndarray, leads: int, batch: int, seeds: np.ndarray, margin: int
    ) -> dict[str, np.ndarray]:
        """Every method's (n, N, leads, H, W) members in mm/h from (n, I, H, W) mm/h inputs
        holding a halo of `margin` pixels around the grid scored; `seeds`: each window's."""
        window = Window.from_rates(inputs, self.loaded.transform, margin=margin)
        assert window.motion is not None
        t0 = time.perf_counter()
        motion = self.estimator.batch(window.motion)
        self.seconds["motion"] += time.perf_counter() - t0
        out = {}
        for method in self.methods:
            t0 = time.perf_counter()
            out[method] = self._forecast(method, inputs, leads, batch, motion, seeds, margin)
            self.seconds[method] += time.perf_counter() - t0
        return out

    def _forecast(
        self,
        method: str,
        inputs: np.ndarray,
        leads: int,
        batch: int,
        motion: np.ndarray,
        seeds: np.ndarray,
        margin: int,
    ) -> np.ndarray:
        if method == "model":
            if self.model is None:
                grid = (inputs.shape[-2] - 2 * margin, inputs.shape[-1] - 2 * margin)
                self.model = ModelEnsemble(self.loaded, self.settings, leads, batch, grid, margin)
            return self.model(inputs, motion, int(seeds[0]))
        assert self.steps is not None
        out = np.stack(
            [
                self.steps(x, leads, self.members, int(s), v)
                for x, v, s in zip(inputs, motion, seeds, strict=True)
            ]
        )
        return _inner(out, margin)


def _ensemble_methods(n_in: int, baselines: bool) -> tuple[list[str], dict[str, str]]:
    if not baselines:
        return ["model"], {"pysteps_steps": "--no-baselines"}
    reason = baseline_unavailable("pysteps_steps", n_in)
    return (["model"], {"pysteps_steps": reason}) if reason else (list(ENSEMBLE_METHODS), {})


def all_members_pixels(observed: np.ndarray, forecasts: Sequence[np.ndarray]) -> np.ndarray:
    """`observed` (n, K, H, W) with NaN wherever any member (n, N, K, H, W) of any method has
    no data (`comparison.common_pixels` over the members)."""
    nan = np.float32(np.nan)
    return common_pixels(
        observed, [np.where(np.isfinite(f).all(axis=1), np.float32(0), nan) for f in forecasts]
    )


def compare_ensembles(
    loaded: LoadedModel,
    seq: RadarSequence,
    *,
    settings: EnsembleSettings,
    lead_frames: int | None = None,
    batch_size: int = 8,
    baselines: bool = True,
    pixel_km: float | None = None,
    name: str | None = None,
) -> EnsembleComparison:
    """Score the model's ensemble (`settings`: its members, base seed and perturbations) and
    STEPS with as many members on every start time of `seq` (module docstring). `pixel_km`:
    the grid's pixel size for both methods' motion perturbations (default: what the data
    states, else 4 km); the time step is the data's."""
    members, seed = settings.members, settings.seed
    if members < 2:
        raise ValueError(f"ensemble: expected at least 2 members, got {members}")
    n_in = loaded.cfg.input_length
    leads, starts = _windows(loaded, seq, lead_frames, batch_size)
    methods, not_scored = _ensemble_methods(n_in, baselines)
    km = pixel_km or seq.pixel_km or ASSUMED_PIXEL_KM
    minutes = seq.timestep_seconds / 60
    steps = Steps(km, minutes) if "pysteps_steps" in methods else None
    settings = dataclasses.replace(settings, pixel_km=km, timestep_minutes=minutes)
    forecasters = _EnsembleForecasters(loaded, methods, settings, steps)
    scorers = {m: EnsembleScorer(members) for m in methods}
    batch = min(batch_size, starts.size)
    offsets = np.arange(n_in + leads)
    for b0 in range(0, starts.size, batch):
        idx = starts[b0 : b0 + batch]
        observed = seq.precip[idx[:, None] + offsets[n_in:]]  # (n, K, H, W) mm/h
        inputs = seq.window_frames[idx[:, None] + offsets[:n_in]]  # (n, I, H, W) and halo
        seeds = np.array([window_seed(seed, seq.time_unix[i + n_in - 1]) for i in idx])
        forecasts = forecasters.forecasts(inputs, leads, batch, seeds, seq.margin)
        truth = all_members_pixels(observed, list(forecasts.values()))
        for method, forecast in forecasts.items():
            scorers[method].update(forecast, truth)
        logger.debug("ensemble: scored starts %d..%d of %d", b0, b0 + idx.size - 1, starts.size)
    return EnsembleComparison(
        name=name or Path(seq.source).name,
        data=seq.source,
        members=members,
        seed=seed,
        grid=seq.grid,
        pixel_km=km,
        timestep_seconds=seq.timestep_seconds,
        input_length=n_in,
        lead_minutes=tuple((k + 1) * seq.timestep_seconds / 60 for k in range(leads)),
        n_starts=int(starts.size),
        first_issue_time=seq.iso_time(int(starts[0]) + n_in - 1),
        last_issue_time=seq.iso_time(int(starts[-1]) + n_in - 1),
        not_scored=not_scored,
        seconds=forecasters.seconds,
        scorers=scorers,
        settings=settings,
    )


def pool_ensembles(
    comparisons: Sequence[EnsembleComparison], name: str = "pooled"
) -> EnsembleComparison:
    """One table from the sums of every comparison with the first one's lead times, members
    and methods (the others are named in `left_out`)."""
    first = comparisons[0]
    kept = [
        c
        for c in comparisons
        if (c.lead_minutes, c.members, list(c.scorers))
        == (first.lead_minutes, first.members, list(first.scorers))
    ]
    scorers = {}
    for method in first.scorers:
        total = EnsembleScorer(first.members)
        for c in kept:
            total.merge(c.scorers[method])
        scorers[method] = total
    return dataclasses.replace(
        first,
        name=name,
        data=", ".join(c.name for c in kept),
        n_starts=sum(c.n_starts for c in kept),
        first_issue_time="",
        last_issue_time="",
        seconds={m: sum(c.seconds.get(m, 0.0) for c in kept) for m in first.seconds},
        scorers=scorers,
        left_out=tuple(c.name for c in comparisons if c not in kept),
    )


def _cell(value: float, digits: int, width: int) -> str:
    text = f"{value:.{digits}f}" if np.isfinite(value) else "—"
    return text.rjust(width)


def format_ensemble_scores(
    methods: dict[str, EnsembleScores], lead_minutes: Sequence[float]
) -> str:
    """Per lead, one row per method: CRPS (mm/h), the spread–skill ratio (SSR), the ROC area
    and the reliability gap at each threshold, the rank histogram's two ends and the pixels."""
    first = next(iter(methods.values()))
    cols = ["CRPS", "SSR"]
    cols += [f"ROC{t:g}" for t in first.thresholds] + [f"REL{t:g}" for t in first.thresholds]
    cols += ["LOW", "HIGH"]
    lines = [
        f"{first.members} members; CRPS in mm/h; SSR: spread / RMSE of the ensemble mean (1: "
        "consistent); ROC: ROC area; REL: the largest |observed frequency - forecast "
        "probability| over bins holding >= 1 % of the pixels; LOW, HIGH: share of observations "
        f"below, above every member (rank histogram's ends; {1 / (first.members + 1):.3f} each "
        "when consistent)",
        f"{'lead':>8} {'method':<12}" + "".join(c.rjust(7) for c in cols) + "   pixels",
    ]
    for k, minutes in enumerate(lead_minutes):
        for j, (method, s) in enumerate(methods.items()):
            lead = f"+{minutes:g} min" if j == 0 else ""
            row = [_cell(s.crps[k], 3, 7), _cell(s.spread_skill[k], 2, 7)]
            row += [_cell(s.at(t).roc_area[k], 3, 7) for t in s.thresholds]
            row += [_cell(s.at(t).reliability_gap[k], 3, 7) for t in s.thresholds]
            hist = s.rank_histogram[k]
            row += [_cell(hist[0], 3, 7), _cell(hist[-1], 3, 7)]
            label = ENSEMBLE_LABELS.get(method, method)
            lines.append(f"{lead:>8} {label:<12}" + "".join(row) + f" {s.n_pixels[k]:>8}")
    return "\n".join(lines)


def format_ensemble_comparison(report: EnsembleComparison) -> str:
    """What was scored, the ensemble table per lead and method, and the verdict."""
    where = (
        f"{report.n_starts} forecasts ({report.first_issue_time} .. {report.last_issue_time})"
        if report.first_issue_time
        else f"{report.n_starts} forecasts pooled over {report.data}"
    )
    lines = [
        f"{report.name}, ensemble of {report.members}: {where}, grid {report.grid[0]}x"
        f"{report.grid[1]}, pixel {report.pixel_km:.3g} km, step "
        f"{report.timestep_seconds / 60:g} min, seed {report.seed}"
        + ("; both methods scored on the same pixels" if len(report.scorers) > 1 else ""),
        format_ensemble_scores(report.methods, report.lead_minutes),
    ]
    verdict = report.verdict()
    if verdict is not None:
        lines.append(verdict.describe())
    for method, reason in report.not_scored.items():
        lines.append(f"{ENSEMBLE_LABELS[method]} not scored: {reason}")
    if report.left_out:
        lines.append("not pooled (other lead times or members): " + ", ".join(report.left_out))
    return "\n".join(lines)
