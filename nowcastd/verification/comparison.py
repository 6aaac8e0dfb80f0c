"""The model against persistence and pysteps' extrapolation and S-PROG, on every start time of
a sequence.

For each start time with `input_length` frames of context and `lead_frames` observed frames
after them (all one time step apart), every method forecasts from the same inputs, and those
that need motion share one field, estimated once from the inputs (`nowcastd.data.motion`, with
the method the checkpoint names):

- ``model``: the checkpoint's forecast as `nowcastd serve` makes it (`nowcast.forecast_rates`:
  inputs in model units with no data as 0, the output clipped to [0, 1], turned into mm/h and
  0 below 0.1 mm/h; batches of one compiled shape, the last batch padded);
- ``persistence``: the last input frame;
- ``pysteps_lk``: pysteps' semi-Lagrangian extrapolation of the last frame (`baselines`);
- ``pysteps_sprog``: pysteps' S-PROG (`baselines`).

A pixel counts at a lead only when the observation there and every input frame have data, and
every method's forecast has data there (rain advected in from outside the grid is no data for
the extrapolations and the Lagrangian model): the same pixels for every method. Scores are pooled over all start times per lead (`RateScores`): MAE, RMSE,
bias, CSI/POD/FAR at 0.5, 1 and 5 mm/h, and the FSS at 1 mm/h over 5 × 5-pixel windows (the
window is in model-grid pixels, so its size in km follows the block factor).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.data.motion import MotionEstimator
from nowcastd.errors import ConfigError, DataError
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.nowcast import Window, forecast_rates, rollout_rates_jit
from nowcastd.verification.baselines import (
    LagrangianExtrapolation,
    SProg,
    baseline_unavailable,
    persistence,
)
from nowcastd.verification.scores import CSI_1, MAE, RateScores
from nowcastd.verification.sequence import RadarSequence

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "compare", "finite_or_none", "format_comparison", "write_json"]

METHODS = ("model", "persistence", "pysteps_lk", "pysteps_sprog")
LABELS = {
    "model": "model",
    "persistence": "persistence",
    "pysteps_lk": "pysteps LK",
    "pysteps_sprog": "S-PROG",
}
THRESHOLDS_MM_H = (0.5, 1.0, 5.0)
FSS_THRESHOLD_MM_H = 1.0
FSS_SCALE_PX = 5


def compare(
    loaded: LoadedModel,
    seq: RadarSequence,
    *,
    lead_frames: int | None = None,
    batch_size: int = 8,
    baselines: bool = True,
) -> dict[str, Any]:
    """Score the methods on every start time of `seq`; a JSON-able report (module docstring)."""
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
    not_scored: dict[str, str] = {}
    if baselines:
        for method in METHODS[2:]:
            reason = baseline_unavailable(method, n_in)
            if reason:
                not_scored[method] = reason
    else:
        not_scored = dict.fromkeys(METHODS[1:], "--no-baselines")
    methods = [m for m in METHODS if m not in not_scored]
    needs_motion = cfg.lagrangian or any(m in methods for m in METHODS[2:])
    estimator = MotionEstimator(loaded.motion_method) if needs_motion else None
    extrapolate = LagrangianExtrapolation(estimator) if "pysteps_lk" in methods else None
    sprog = SProg(estimator) if "pysteps_sprog" in methods else None
    scores = {
        m: RateScores(
            thresholds_mm_h=THRESHOLDS_MM_H,
            fss_threshold_mm_h=FSS_THRESHOLD_MM_H,
            fss_scale=FSS_SCALE_PX,
        )
        for m in methods
    }
    seconds = dict.fromkeys(["motion", *methods], 0.0)
    batch = min(batch_size, starts.size)
    offsets = np.arange(n_in + leads)
    for b0 in range(0, starts.size, batch):
        idx = starts[b0 : b0 + batch]
        windows = seq.precip[idx[:, None] + offsets]  # (n, I + K, H, W) mm/h
        inputs, observed = windows[:, :n_in], windows[:, n_in:]
        t0 = time.perf_counter()
        motion = None if estimator is None else estimator.batch(inputs)
        seconds["motion"] += time.perf_counter() - t0
        forecasts = {}
        for method in methods:
            t0 = time.perf_counter()
            if method == "model":
                flow = motion if cfg.lagrangian else None
                forecasts[method] = model_forecast(loaded, inputs, leads, batch, flow)
            elif method == "persistence":
                forecasts[method] = persistence(inputs, leads)
            else:
                assert motion is not None
                fn = extrapolate if method == "pysteps_lk" else sprog
                assert fn is not None
                forecasts[method] = np.stack(
                    [fn(x, leads, v) for x, v in zip(inputs, motion, strict=True)]
                )
            seconds[method] += time.perf_counter() - t0
        valid = np.isfinite(observed) & np.isfinite(inputs).all(axis=1, keepdims=True)
        for forecast in forecasts.values():
            valid &= np.isfinite(forecast)
        for method, forecast in forecasts.items():
            scores[method].update(forecast, observed, valid)
        logger.debug("scored starts %d..%d of %d", b0, b0 + idx.size - 1, starts.size)
    minutes = [(k + 1) * seq.timestep_seconds / 60 for k in range(leads)]
    return {
        "checkpoint": str(loaded.path),
        "digest": loaded.digest,
        "model_name": cfg.model_name,
        "data": seq.source,
        "domain": dataclasses.asdict(seq.domain),
        "grid": list(seq.grid),
        "timestep_seconds": seq.timestep_seconds,
        "input_length": n_in,
        "lead_frames": leads,
        "lead_minutes": minutes,
        "n_starts": int(starts.size),
        "first_issue_time": seq.iso_time(int(starts[0]) + n_in - 1),
        "last_issue_time": seq.iso_time(int(starts[-1]) + n_in - 1),
        "thresholds_mm_h": list(THRESHOLDS_MM_H),
        "fss": {"threshold_mm_h": FSS_THRESHOLD_MM_H, "window_px": FSS_SCALE_PX},
        "pixel_rule": "a pixel counts where the observation, every input frame and every "
        "method's forecast have data",
        "motion_method": None if estimator is None else estimator.method,
        "methods": {m: scores[m].result() for m in methods},
        "seconds": seconds,
        "not_scored": not_scored,
    }


def model_forecast(
    loaded: LoadedModel,
    inputs: np.ndarray,
    leads: int,
    batch: int,
    motion: np.ndarray | None = None,
) -> np.ndarray:
    """(n, I, H, W) mm/h -> (n, leads, H, W) mm/h, as serve forecasts (`forecast_rates`);
    n <= batch, padded so that one shape compiles. `motion` (n, H, W, 2): the inputs' motion
    if already estimated, for a Lagrangian model (else `forecast_rates` estimates it)."""
    n = inputs.shape[0]
    if n < batch:
        inputs = np.concatenate([inputs, np.repeat(inputs[-1:], batch - n, axis=0)])
        if motion is not None:
            motion = np.concatenate([motion, np.repeat(motion[-1:], batch - n, axis=0)])
    window = Window.from_rates(inputs, loaded.transform)
    estimator = None
    if loaded.cfg.lagrangian and motion is None:
        estimator = MotionEstimator(loaded.motion_method)

    def run(context, flow):
        flow = motion if flow is None else flow
        return rollout_rates_jit(loaded.network, loaded.transform, context, leads, flow)

    return forecast_rates(window, run, motion=estimator)[:n]


def finite_or_none(obj: Any) -> Any:
    """NaN and ±inf -> None, so that the JSON is strict (jq, browsers)."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, report: dict[str, Any]) -> Path:
    """The report as strict JSON, written atomically."""
    from nowcastd.io.atomic import atomic_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        f.write(json.dumps(finite_or_none(report), indent=1).encode())
    return path


def format_comparison(report: dict[str, Any]) -> str:
    """Per lead: minutes, then MAE (mm/h) and CSI at 1 mm/h for each method."""
    methods = list(report["methods"])
    cell = 22

    def pair(method: str, k: int) -> str:
        s = report["methods"][method]
        mae, csi = s[MAE][k], s[CSI_1][k]
        text = f"{mae:.3f} / {csi:.2f}" if math.isfinite(csi) else f"{mae:.3f} / nan"
        return text.rjust(cell)

    grid = report["grid"]
    lines = [
        f"{report['n_starts']} forecasts ({report['first_issue_time']} .. "
        f"{report['last_issue_time']}), "
        f"{report['input_length']} inputs, grid {grid[0]}x{grid[1]} (block "
        f"{report['domain']['block']}); MAE in mm/h / CSI at 1 mm/h",
        "lead".ljust(9) + "".join(LABELS[m].rjust(cell) for m in methods),
    ]
    for k, minutes in enumerate(report["lead_minutes"]):
        lines.append(f"+{minutes:g} min".ljust(9) + "".join(pair(m, k) for m in methods))
    for method, reason in report["not_scored"].items():
        lines.append(f"{LABELS[method]} not scored: {reason}")
    return "\n".join(lines)
