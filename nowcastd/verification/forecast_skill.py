"""Skill of forecast files as written, against the scans observed later and against persistence.

For every forecast file whose issue time is one of the observed frames, each lead is compared
with the observed frame valid at that lead, when there is one; persistence is the frame observed
at the issue time. A pixel counts where the observation, the persistence frame and the forecast
all have data. Scores are pooled per lead over the forecasts (`RateScores`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.errors import DataError
from nowcastd.io.forecast_file import read_forecast
from nowcastd.verification.baselines import persistence
from nowcastd.verification.scores import CSI_1, MAE, RateScores
from nowcastd.verification.sequence import RadarSequence

__all__ = ["format_skill", "save_checkable_figure", "score_forecast_files"]


def score_forecast_files(paths: Iterable[Path], observed: RadarSequence) -> dict[str, Any]:
    """Per-lead scores of the model's files and of persistence from the same issue times."""
    index = {int(t): i for i, t in enumerate(observed.time_unix)}
    forecasts, truths, persists = [], [], []
    lead_seconds: list[int] | None = None
    issues = []
    for path in sorted(paths):
        f = read_forecast(path)
        issue = index.get(int(f.issue_time.timestamp()))
        if issue is None:
            continue
        if f.precip.shape[1:] != observed.grid:
            raise DataError(
                f"{Path(path).name}: expected forecasts on the observed grid {observed.grid}, "
                f"got {f.precip.shape[1:]}"
            )
        leads = [int(s) for s in f.lead_seconds]
        if lead_seconds is not None and leads != lead_seconds:
            raise DataError(f"{Path(path).name}: expected lead times {lead_seconds}, got {leads}")
        lead_seconds = leads
        truth = np.full(f.precip.shape, np.nan, np.float32)
        for k, valid in enumerate(f.valid_times):
            j = index.get(int(valid.timestamp()))
            if j is not None:
                truth[k] = observed.precip[j]
        forecasts.append(f.precip)
        truths.append(truth)
        persists.append(persistence(observed.precip[issue][None, None], len(leads))[0])
        issues.append(f.issue_time)
    if lead_seconds is None:
        raise DataError("no forecast file was issued at the time of an observed scan")
    forecast, truth, persist = np.stack(forecasts), np.stack(truths), np.stack(persists)
    valid = np.isfinite(truth) & np.isfinite(persist) & np.isfinite(forecast)
    methods = {}
    for method, values in (("model", forecast), ("persistence", persist)):
        scores = RateScores(thresholds_mm_h=(1.0,))
        scores.update(np.nan_to_num(values), np.nan_to_num(truth), valid)
        methods[method] = scores.result()
    return {
        "lead_minutes": [s / 60 for s in lead_seconds],
        "n_forecasts": [int(n) for n in valid.any(axis=(2, 3)).sum(axis=0)],
        "first_issue_time": min(issues).strftime("%Y-%m-%d %H:%M UTC"),
        "last_issue_time": max(issues).strftime("%H:%M UTC"),
        "methods": methods,
    }


def _cell(model: float, persistence: float, digits: int) -> str:
    if not (math.isfinite(model) and math.isfinite(persistence)):
        return "—".center(15)
    return f"{model:.{digits}f} / {persistence:.{digits}f}".center(15)


def format_skill(report: dict[str, Any]) -> str:
    """A per-lead table of MAE and CSI (model / persistence) and a one-line verdict."""
    model, persist = report["methods"]["model"], report["methods"]["persistence"]
    lines = [
        f"skill of the forecasts issued {report['first_issue_time']} .. "
        f"{report['last_issue_time']} against the scans observed later",
        f"{'lead':>8} {'forecasts':>9}  {'MAE mm/h':^15}  {'CSI ≥1 mm/h':^15}  better MAE, CSI",
        f"{'':>8} {'':>9}  {'model / persist':^15}  {'model / persist':^15}",
    ]
    wins = {"mae": 0, "csi": 0}
    scored = 0
    for k, minutes in enumerate(report["lead_minutes"]):
        n = report["n_forecasts"][k]
        mae = (model[MAE][k], persist[MAE][k])
        csi = (model[CSI_1][k], persist[CSI_1][k])
        better = ""
        if n and all(map(math.isfinite, mae)):
            scored += 1
            csi_win = bool(all(map(math.isfinite, csi)) and csi[0] > csi[1])
            better = ("model" if mae[0] < mae[1] else "persistence") + ", "
            better += "model" if csi_win else "persistence"
            wins["mae"] += mae[0] < mae[1]
            wins["csi"] += csi_win
        lines.append(
            f"{f'+{minutes:g} min':>8} {n:>9}  {_cell(*mae, 3)}  {_cell(*csi, 2)}  {better}"
        )
    if scored:
        lines.append(
            f"the model beats persistence at {wins['mae']} of {scored} leads on MAE and at "
            f"{wins['csi']} of {scored} on CSI"
        )
        if wins["mae"] > wins["csi"]:
            lines.append(
                "(a lower MAE with a lower CSI is what a smoothed forecast gives: it spreads "
                "light rain and loses the cores above 1 mm/h)"
            )
    else:
        lines.append("no lead could be scored: no later scans were observed")
    return "\n".join(lines)


def save_checkable_figure(
    files: Sequence[Path], observed: RadarSequence, out_dir: Path
) -> tuple[Path, datetime]:
    """A figure (observed against forecast) of the newest forecast file whose every lead was
    observed, or of the newest file when none was; its path in `out_dir` and the issue time."""
    from nowcastd.verification.figures import save_forecast_strip

    index = {int(t): i for i, t in enumerate(observed.time_unix)}
    chosen = files[-1]
    for path in reversed(files):
        if all(int(t.timestamp()) in index for t in read_forecast(path).valid_times):
            chosen = path
            break
    f = read_forecast(chosen)
    nan = np.full(f.precip.shape[1:], np.nan, np.float32)

    def at(t: datetime) -> np.ndarray:
        i = index.get(int(t.timestamp()))
        return nan if i is None else observed.precip[i]

    out_dir.mkdir(parents=True, exist_ok=True)
    issue = f.issue_time
    figure = save_forecast_strip(
        out_dir / f"forecast_{issue:%Y%m%dT%H%MZ}.png",
        last_input=at(issue),
        observed=np.stack([at(t) for t in f.valid_times]),
        forecast=f.precip,
        issue_time=issue,
        valid_times=f.valid_times,
        title=(
            f"{chosen.name}: observed (top) and forecast (bottom), issued "
            f"{issue:%Y-%m-%d %H:%M} UTC"
        ),
    )
    return figure, issue
