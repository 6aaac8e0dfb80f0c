"""Skill of forecast files as written, against the scans observed later, against persistence
and against pysteps' extrapolation.

For every forecast file whose issue time is one of the observed frames, each lead is compared
with the observed frame valid at that lead, when there is one; persistence is the frame observed
at the issue time; the extrapolation (`baselines.LagrangianExtrapolation`, given) advects that
frame along the motion of the same observed scans the forecast was made from (with their halo,
`RadarSequence.padded`, when the sequence has one, cropped to the grid). The one scorer
scores them (`skill.Scorer`), on the pixels where the observation and every method have data
(`comparison.common_pixels`; rain advected in from outside is no data for the extrapolation),
and the table is `evaluate`'s (`comparison.format_comparison`), with its verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from nowcastd.errors import DataError
from nowcastd.io.forecast_file import ForecastFile, read_forecast
from nowcastd.verification.baselines import LagrangianExtrapolation, persistence
from nowcastd.verification.comparison import (
    ASSUMED_PIXEL_KM,
    Comparison,
    common_pixels,
    format_comparison,
)
from nowcastd.verification.sequence import RadarSequence
from nowcastd.verification.skill import FSS_NEIGHBOURHOOD_KM, Neighbourhood, Scorer

__all__ = ["format_skill", "save_checkable_figure", "score_forecast_files"]


def _observed_leads(f: ForecastFile, index: dict[int, int], observed: RadarSequence) -> np.ndarray:
    truth = np.full(f.precip.shape, np.nan, np.float32)
    for k, valid in enumerate(f.valid_times):
        j = index.get(int(valid.timestamp()))
        if j is not None:
            truth[k] = observed.precip[j]
    return truth


def _checked_leads(
    f: ForecastFile, path: Path, observed: RadarSequence, lead_seconds: list[int] | None
) -> list[int]:
    """The file's lead times, after checking its grid is the observed one and its leads are
    `lead_seconds` (the earlier files'; None for the first)."""
    if f.precip.shape[1:] != observed.grid:
        raise DataError(
            f"{path.name}: expected forecasts on the observed grid {observed.grid}, "
            f"got {f.precip.shape[1:]}"
        )
    leads = [int(s) for s in f.lead_seconds]
    if lead_seconds is not None and leads != lead_seconds:
        raise DataError(f"{path.name}: expected lead times {lead_seconds}, got {leads}")
    return leads


def _forecasts(
    f: ForecastFile,
    issue: int,
    inputs: int,
    observed: RadarSequence,
    extrapolation: LagrangianExtrapolation | None,
) -> list[np.ndarray]:
    """The file's forecast, persistence of the frame observed at `issue` and (given
    `extrapolation`) the extrapolation from the `inputs` frames observed up to it (all NaN
    where there are fewer than two)."""
    leads = len(f.lead_seconds)
    forecasts = [f.precip, persistence(observed.precip[issue][None, None], leads)[0]]
    if extrapolation is not None:
        first = issue - inputs + 1
        m = observed.margin  # the extrapolation starts from the halo too, as the model does
        forecasts.append(
            extrapolation(observed.window_frames[first : issue + 1], leads)[
                :, m : m + f.precip.shape[1], m : m + f.precip.shape[2]
            ]
            if first >= 0 and issue - first >= 1
            else np.full(f.precip.shape, np.nan, np.float32)
        )
    return forecasts


def score_forecast_files(
    paths: Iterable[Path],
    observed: RadarSequence,
    extrapolation: LagrangianExtrapolation | None = None,
) -> Comparison:
    """Per-lead scores of the model's files, of persistence and (given `extrapolation`) of
    pysteps' extrapolation from the same issue times."""
    index = {int(t): i for i, t in enumerate(observed.time_unix)}
    names = ["model", "persistence"] + (["pysteps_lk"] if extrapolation is not None else [])
    hood = Neighbourhood.from_km(FSS_NEIGHBOURHOOD_KM, observed.pixel_km or ASSUMED_PIXEL_KM)
    scorers = {m: Scorer(hood) for m in names}
    lead_seconds: list[int] | None = None
    issues, inputs, per_lead = [], 0, []
    for path in sorted(paths):
        f = read_forecast(path)
        issue = index.get(int(f.issue_time.timestamp()))
        if issue is None:
            continue
        lead_seconds = _checked_leads(f, Path(path), observed, lead_seconds)
        inputs = len(f.attrs["input_scans"])
        forecasts = _forecasts(f, issue, inputs, observed, extrapolation)
        truth = common_pixels(_observed_leads(f, index, observed), forecasts)
        per_lead.append(np.isfinite(truth).any(axis=(1, 2)))
        for name, forecast in zip(names, forecasts, strict=True):
            scorers[name].update(forecast[None], truth[None])
        issues.append(f.issue_time)
    if lead_seconds is None:
        raise DataError("no forecast file was issued at the time of an observed scan")
    return Comparison(
        name="forecast files",
        data=observed.source,
        checkpoint="",
        digest="",
        model_name="",
        domain=observed.domain,
        grid=observed.grid,
        pixel_km=hood.pixel_km,
        pixel_km_stated=observed.pixel_km is not None,
        timestep_seconds=observed.timestep_seconds,
        input_length=inputs,
        lead_minutes=tuple(s / 60 for s in lead_seconds),
        n_starts=len(issues),
        first_issue_time=min(issues).strftime("%Y-%m-%d %H:%M UTC"),
        last_issue_time=max(issues).strftime("%H:%M UTC"),
        motion_method=None if extrapolation is None else extrapolation.motion.method,
        not_scored={},
        seconds={},
        scorers=scorers,
        forecasts_per_lead=tuple(int(n) for n in np.sum(per_lead, axis=0)),
    )


def format_skill(report: Comparison) -> str:
    """The skill of the forecasts issued, against the scans observed later: the verdict's
    table (MAE, CSI/POD/FAR, FSS and frequency bias at 1 and 5 mm/h) and its verdicts."""
    return (
        f"skill of the forecasts issued {report.first_issue_time} .. {report.last_issue_time} "
        "against the scans observed later\n" + format_comparison(report)
    )


def save_checkable_figure(
    files: Sequence[Path], observed: RadarSequence, out_dir: Path
) -> tuple[Path, datetime]:
    """A figure (observed against forecast) of the newest forecast file whose every lead was
    observed, or of the newest file when none was; its path in `out_dir` and the issue time.
    With a halo, the scan at the issue time is drawn with it, the model grid outlined."""
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

    issued = index.get(int(f.issue_time.timestamp()))
    halo = None if observed.padded is None or issued is None else observed.padded[issued]

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
        halo=halo,
        margin=observed.margin,
    )
    return figure, issue
