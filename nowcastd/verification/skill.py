"""The one scorer of rain-rate forecasts: per lead, accumulate-then-compute, one pixel rule.

`Scorer.update(forecast, observed)` takes (B, K, H, W) rain rates in mm/h, NaN = no data, and
adds per-lead counts and sums; `Scorer.result()` turns them into `Scores`. Every forecast that
nowcastd scores (`evaluate` on movies, scan directories and clips, `bench/bench_evaluate.py`,
the demo's skill table, training's validation) goes through it.

The pixel rule: a pixel counts at a lead where the observation and the forecast both have data
(are finite). Callers that compare methods make "the forecast" every method's forecast: they
hand the scorer an observation that is NaN wherever any method has no data, so that every
method is scored on the same pixels (`comparison.common_pixels`).

Scores per lead, pooled over every update (as pySTEPS' `det_cont_fct_accum`,
`det_cat_fct_accum` and `fss_accum`):

* MAE, RMSE and bias (mean forecast − mean observed) in mm/h, and both means;
* at each threshold t (events are ``value >= t``, by default 1 and 5 mm/h): CSI = hits /
  (hits + misses + false alarms), POD = hits / (hits + misses), FAR = false alarms / (hits +
  false alarms), the frequency bias = forecast events / observed events, and the fractions
  skill score over a square neighbourhood of `neighbourhood.px` pixels (events outside the
  frame and on pixels that do not count are 0; an even width is centred half a pixel off, as
  scipy's `uniform_filter`).

A score with an empty denominator is NaN (no observed event: no CSI, POD or frequency bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "FSS_NEIGHBOURHOOD_KM",
    "THRESHOLDS_MM_H",
    "EventScores",
    "Neighbourhood",
    "Scorer",
    "Scores",
    "scores_from_json",
]

#: The event thresholds of the categorical scores and the FSS, mm/h.
THRESHOLDS_MM_H = (1.0, 5.0)
#: The width of the FSS neighbourhood, km (converted to pixels of the grid scored).
FSS_NEIGHBOURHOOD_KM = 20.0


@dataclass(frozen=True, kw_only=True)
class Neighbourhood:
    """The FSS neighbourhood: `km` wide asked, `px` pixels of `pixel_km` (the nearest whole
    number, at least 1); `actual_km` = px × pixel_km."""

    km: float
    pixel_km: float
    px: int

    @classmethod
    def from_km(cls, km: float, pixel_km: float) -> Neighbourhood:
        if not (km > 0 and pixel_km > 0):
            raise ValueError(
                f"FSS neighbourhood: expected a width and a pixel size > 0 km, got {km} and "
                f"{pixel_km}"
            )
        return cls(km=float(km), pixel_km=float(pixel_km), px=max(1, round(km / pixel_km)))

    @property
    def actual_km(self) -> float:
        return self.px * self.pixel_km

    def describe(self) -> str:
        return f"{self.px} x {self.px} px of {self.pixel_km:.3g} km = {self.actual_km:.3g} km"


def box_mean(events: np.ndarray, width: int) -> np.ndarray:
    """Mean of (N, H, W) over width × width windows, zero outside the frame."""
    before, after = width // 2 + 1, (width - 1) // 2
    x = np.pad(events.astype(np.float64), ((0, 0), (before, after), (before, after)))
    c = x.cumsum(1).cumsum(2)
    s = width
    mean: np.ndarray = (c[:, s:, s:] - c[:, :-s, s:] - c[:, s:, :-s] + c[:, :-s, :-s]) / (s * s)
    return mean


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, ...]:
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return tuple(float(x) for x in out)


@dataclass(frozen=True, kw_only=True)
class EventScores:
    """The scores of events ``value >= threshold_mm_h``, one value per lead."""

    threshold_mm_h: float
    csi: tuple[float, ...]
    pod: tuple[float, ...]
    far: tuple[float, ...]
    frequency_bias: tuple[float, ...]
    fss: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class Scores:
    """One method's scores, one value per lead (module docstring)."""

    n_pixels: tuple[int, ...]
    mae: tuple[float, ...]
    rmse: tuple[float, ...]
    bias: tuple[float, ...]
    mean_forecast: tuple[float, ...]
    mean_observed: tuple[float, ...]
    events: tuple[EventScores, ...]
    neighbourhood: Neighbourhood

    @property
    def leads(self) -> int:
        return len(self.mae)

    def at(self, threshold_mm_h: float) -> EventScores:
        for e in self.events:
            if e.threshold_mm_h == threshold_mm_h:
                return e
        raise KeyError(f"scores: no threshold {threshold_mm_h:g} mm/h among {self.thresholds}")

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(e.threshold_mm_h for e in self.events)

    def to_json(self) -> dict[str, list[float]]:
        """Flat per-lead lists: ``mae_mm_h``, ``csi_1_mm_h``, ``fss_5_mm_h``, ... (NaN kept)."""
        out: dict[str, list[float]] = {
            "n_pixels": [float(n) for n in self.n_pixels],
            "mae_mm_h": list(self.mae),
            "rmse_mm_h": list(self.rmse),
            "bias_mm_h": list(self.bias),
            "mean_forecast_mm_h": list(self.mean_forecast),
            "mean_observed_mm_h": list(self.mean_observed),
        }
        for e in self.events:
            for f in fields(EventScores)[1:]:
                out[f"{f.name}_{e.threshold_mm_h:g}_mm_h"] = list(getattr(e, f.name))
        return out


def scores_from_json(per_lead: dict[str, list[float]], neighbourhood: Neighbourhood) -> Scores:
    """`Scores.to_json()`'s lists back as `Scores` (an evaluation result's per-lead scores)."""
    thresholds = sorted(
        {float(k[len("csi_") : -len("_mm_h")]) for k in per_lead if k.startswith("csi_")}
    )
    events = tuple(
        EventScores(
            threshold_mm_h=t,
            **{f.name: tuple(per_lead[f"{f.name}_{t:g}_mm_h"]) for f in fields(EventScores)[1:]},
        )
        for t in thresholds
    )
    return Scores(
        n_pixels=tuple(int(n) for n in per_lead["n_pixels"]),
        mae=tuple(per_lead["mae_mm_h"]),
        rmse=tuple(per_lead["rmse_mm_h"]),
        bias=tuple(per_lead["bias_mm_h"]),
        mean_forecast=tuple(per_lead["mean_forecast_mm_h"]),
        mean_observed=tuple(per_lead["mean_observed_mm_h"]),
        events=events,
        neighbourhood=neighbourhood,
    )


class Scorer:
    """Per-lead sums of rain-rate forecasts against observations (module docstring)."""

    def __init__(
        self,
        neighbourhood: Neighbourhood,
        *,
        thresholds_mm_h: tuple[float, ...] = THRESHOLDS_MM_H,
    ) -> None:
        self.neighbourhood = neighbourhood
        self.thresholds = tuple(float(t) for t in thresholds_mm_h)
        self._sums: dict[str, np.ndarray] = {}

    def _add(self, name: str, per_lead: np.ndarray) -> None:
        per_lead = np.asarray(per_lead, dtype=np.float64)
        if name in self._sums:
            self._sums[name] = self._sums[name] + per_lead
        else:
            self._sums[name] = per_lead.copy()

    def update(self, forecast: np.ndarray, observed: np.ndarray) -> None:
        """Add (B, K, H, W) forecasts and observations in mm/h, NaN = no data."""
        f = np.asarray(forecast, dtype=np.float64)
        o = np.asarray(observed, dtype=np.float64)
        if f.shape != o.shape or f.ndim != 4:
            raise ValueError(
                f"Scorer.update: expected forecast and observed (B, K, H, W) of one shape, got "
                f"{f.shape} and {o.shape}"
            )
        if "n" in self._sums and self._sums["n"].shape[0] != f.shape[1]:
            raise ValueError(
                f"Scorer.update: expected {self._sums['n'].shape[0]} leads as before, got "
                f"{f.shape[1]}"
            )
        valid = np.isfinite(f) & np.isfinite(o)
        f, o = np.where(valid, f, 0.0), np.where(valid, o, 0.0)
        axes = (0, 2, 3)
        err = f - o
        self._add("n", valid.sum(axis=axes))
        self._add("sae", np.abs(err).sum(axis=axes))
        self._add("sse", (err**2).sum(axis=axes))
        self._add("sum_f", f.sum(axis=axes))
        self._add("sum_o", o.sum(axis=axes))
        b, k, h, w = f.shape
        for t in self.thresholds:
            fe, oe = (f >= t) & valid, (o >= t) & valid
            self._add(f"hits_{t}", (fe & oe).sum(axis=axes))
            self._add(f"misses_{t}", (~fe & oe).sum(axis=axes))
            self._add(f"false_{t}", (fe & ~oe).sum(axis=axes))
            px = self.neighbourhood.px
            sf = box_mean(fe.reshape(b * k, h, w), px).reshape(b, k, h, w)
            so = box_mean(oe.reshape(b * k, h, w), px).reshape(b, k, h, w)
            self._add(f"ff_{t}", (sf**2).sum(axis=axes))
            self._add(f"fo_{t}", (sf * so).sum(axis=axes))
            self._add(f"oo_{t}", (so**2).sum(axis=axes))

    def merge(self, other: Scorer) -> None:
        """Add `other`'s sums (the same leads and thresholds): a pooled score."""
        if other.thresholds != self.thresholds:
            raise ValueError(
                f"Scorer.merge: thresholds {other.thresholds} differ from {self.thresholds}"
            )
        for name, value in other._sums.items():
            if name in self._sums and self._sums[name].shape != value.shape:
                raise ValueError(
                    f"Scorer.merge: {value.shape[0]} leads differ from {self._sums[name].shape[0]}"
                )
            self._add(name, value)

    def result(self) -> Scores:
        if "n" not in self._sums:
            raise ValueError("Scorer.result: nothing was added")
        s, n = self._sums, self._sums["n"]
        events = []
        for t in self.thresholds:
            hits, misses, false = s[f"hits_{t}"], s[f"misses_{t}"], s[f"false_{t}"]
            ff, fo, oo = s[f"ff_{t}"], s[f"fo_{t}"], s[f"oo_{t}"]
            events.append(
                EventScores(
                    threshold_mm_h=t,
                    csi=_ratio(hits, hits + misses + false),
                    pod=_ratio(hits, hits + misses),
                    far=_ratio(false, hits + false),
                    frequency_bias=_ratio(hits + false, hits + misses),
                    fss=tuple(1.0 - x for x in _ratio(ff - 2.0 * fo + oo, ff + oo)),
                )
            )
        return Scores(
            n_pixels=tuple(int(x) for x in n),
            mae=_ratio(s["sae"], n),
            rmse=tuple(math.sqrt(x) for x in _ratio(s["sse"], n)),
            bias=_ratio(s["sum_f"] - s["sum_o"], n),
            mean_forecast=_ratio(s["sum_f"], n),
            mean_observed=_ratio(s["sum_o"], n),
            events=tuple(events),
            neighbourhood=self.neighbourhood,
        )
