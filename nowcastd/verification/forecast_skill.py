"""Skill of forecast files as written, against the scans observed later, against persistence
and against pysteps' extrapolation.

For every forecast file whose issue time is one of the observed frames, each lead is compared
with the observed frame valid at that lead, when there is one; persistence is the frame observed
at the issue time; the extrapolation (`baselines.LagrangianExtrapolation`, given) advects that
frame along the motion of the same observed scans the forecast was made from. A pixel counts
where the observation and every method have data (rain advected in from outside is no data for
the extrapolation). Scores are pooled per lead over the forecasts (`RateScores`).
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
from nowcastd.verification.baselines import LagrangianExtrapolation, persistence
from nowcastd.verification.scores import CSI_1, MAE, RateScores
from nowcastd.verification.sequence import RadarSequence

__all__ = ["format_skill", "save_checkable_figure", "score_forecast_files"]


def score_forecast_files(
    paths: Iterable[Path],
    observed: RadarSequence,
    extrapolation: LagrangianExtrapolation | None = None,
) -> dict[str, Any]:
    """Per-lead scores of the model's files, of persistence and (given `extrapolation`) of
    pysteps' extrapolation from the same issue times."""
    index = {int(t): i for i, t in enumerate(observed.time_unix)}
    forecasts, truths, persists, extrapolated = [], [], [], []
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
        if extrapolation is not None:
            first = issue - len(f.attrs["input_scans"]) + 1
            extrapolated.append(
                extrapolation(observed.precip[first : issue + 1], len(leads))
                if first >= 0 and issue - first >= 1
                else np.full(f.precip.shape, np.nan, np.float32)
            )
        issues.append(f.issue_time)
    if lead_seconds is None:
        raise DataError("no forecast file was issued at the time of an observed scan")
    forecast, truth, persist = np.stack(forecasts), np.stack(truths), np.stack(persists)
    valid = np.isfinite(truth) & np.isfinite(persist) & np.isfinite(forecast)
    compared = [("model", forecast), ("persistence", persist)]
    if extrapolation is not None:
        compared.append(("pysteps_lk", np.stack(extrapolated)))
        valid &= np.isfinite(compared[-1][1])
    methods = {}
    for method, values in compared:
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


def _cell(values: tuple[float, ...], digits: int) -> str:
    width = 8 * len(values) - 1
    if not all(map(math.isfinite, values)):
        return "—".center(width)
    return " / ".join(f"{v:.{digits}f}" for v in values).center(width)


LABELS = {"model": "model", "persistence": "persist", "pysteps_lk": "LK"}


def format_skill(report: dict[str, Any]) -> str:
    """A per-lead table of MAE and CSI (model / persistence / extrapolation, as scored) and a
    verdict per rival."""
    methods = list(report["methods"])
    scores = [report["methods"][m] for m in methods]
    rivals = methods[1:]
    width = 8 * len(methods) - 1
    heads = " / ".join(LABELS[m] for m in methods)
    lines = [
        f"skill of the forecasts issued {report['first_issue_time']} .. "
        f"{report['last_issue_time']} against the scans observed later",
        f"{'lead':>8} {'forecasts':>9}  {'MAE mm/h':^{width}}  {'CSI ≥1 mm/h':^{width}}",
        f"{'':>8} {'':>9}  {heads:^{width}}  {heads:^{width}}",
    ]
    wins = {m: {"mae": 0, "csi": 0} for m in rivals}
    scored = 0
    for k, minutes in enumerate(report["lead_minutes"]):
        n = report["n_forecasts"][k]
        mae = tuple(s[MAE][k] for s in scores)
        csi = tuple(s[CSI_1][k] for s in scores)
        if n and all(map(math.isfinite, mae)):
            scored += 1
            for j, rival in enumerate(rivals, start=1):
                wins[rival]["mae"] += mae[0] < mae[j]
                wins[rival]["csi"] += bool(
                    math.isfinite(csi[0]) and math.isfinite(csi[j]) and csi[0] > csi[j]
                )
        lines.append(f"{f'+{minutes:g} min':>8} {n:>9}  {_cell(mae, 3)}  {_cell(csi, 2)}")
    if not scored:
        lines.append("no lead could be scored: no later scans were observed")
        return "\n".join(lines)
    for rival in rivals:
        name = "persistence" if rival == "persistence" else "pysteps' extrapolation (LK)"
        lines.append(
            f"the model beats {name} at {wins[rival]['mae']} of {scored} leads on MAE and at "
            f"{wins[rival]['csi']} of {scored} on CSI"
        )
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
