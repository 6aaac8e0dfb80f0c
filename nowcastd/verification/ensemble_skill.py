"""The one scorer of ensemble nowcasts: per lead, accumulate-then-compute with pysteps.

`EnsembleScorer.update(members, observed)` takes member forecasts (n, N, K, H, W) — n
forecasts of N members and K leads — and observations (n, K, H, W), rain rates in mm/h, NaN =
no data, and adds them to per-lead accumulators; `EnsembleScorer.result()` turns those into
`EnsembleScores`. `nowcastd evaluate --ensemble N` and `bench/bench_ensemble_eval.py` score
every ensemble through it.

The pixel rule is the deterministic scorer's (`skill`): a pixel counts at a lead where the
observation and every member have data. Callers that compare methods hand the scorer an
observation that is NaN wherever any member of any method has no data
(`ensemble_comparison`), so that every method is scored on the same pixels.

Scores per lead, pooled over every update, each from pysteps' accumulators
(`pysteps.verification.probscores`, `ensscores`):

* CRPS in mm/h (`CRPS_init/accum/compute`; a one-member ensemble's CRPS is its MAE);
* at each threshold t (events are ``value >= t``, by default 1 and 5 mm/h), on the
  exceedance probability = the share of members at or above t:
  - the reliability diagram in 10 probability bins (`reldiag_*`): each bin's mean forecast
    probability, observed frequency and pixel count, and `ReliabilityDiagram.gap`, the largest
    |observed frequency − forecast probability| over bins that hold at least 1 % of the pixels;
  - the ROC area (`ROC_curve_*`), from the ROC curve at every member count: the probability
    thresholds are 0 and (j − ½)/N, j = 1..N, so "at least j members" is each point;
* the rank histogram (`rankhist_*`, normalised to sum to 1; pairs where the observation and
  every member are below 0.1 mm/h are left out, and pysteps breaks ties at random);
* the spread–skill ratio: sqrt((N + 1) / N) · sqrt(mean ensemble variance) / RMSE of the
  ensemble mean (1 for a statistically consistent ensemble; pysteps has no accumulator for it,
  so its sums are kept here), with the spread and that RMSE.

A score with an empty denominator is NaN (no observed event: no ROC area).
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "RANK_MIN_MM_H",
    "RELIABILITY_BINS",
    "RELIABILITY_MIN_SHARE",
    "EnsembleScorer",
    "EnsembleScores",
    "EventProbabilityScores",
    "ReliabilityDiagram",
]

#: The event thresholds of the probability scores, mm/h (as the deterministic scorer's).
THRESHOLDS_MM_H = (1.0, 5.0)
#: Pairs where the observation and every member are below this are not ranked, mm/h.
RANK_MIN_MM_H = 0.1
#: The reliability diagram's probability bins.
RELIABILITY_BINS = 10
#: A reliability bin is judged when it holds at least this share of the pixels.
RELIABILITY_MIN_SHARE = 0.01


def _verification() -> tuple[Any, Any]:
    with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its rc file is
        from pysteps.verification import ensscores, probscores
    return probscores, ensscores


@dataclass(frozen=True, kw_only=True)
class ReliabilityDiagram:
    """Per probability bin: the mean forecast probability, the observed frequency of the
    event (both NaN for an empty bin) and the pixels in it."""

    threshold_mm_h: float
    forecast_probability: tuple[float, ...]
    observed_frequency: tuple[float, ...]
    pixels: tuple[int, ...]

    def gap(self, min_share: float = RELIABILITY_MIN_SHARE) -> float:
        """The largest |observed frequency − forecast probability| over the bins holding at
        least `min_share` of the pixels (NaN: no pixel)."""
        total = sum(self.pixels)
        gaps = [
            abs(o - f)
            for f, o, n in zip(
                self.forecast_probability, self.observed_frequency, self.pixels, strict=True
            )
            if total and n >= min_share * total
        ]
        return max(gaps) if gaps else math.nan

    def to_json(self) -> dict[str, list[float]]:
        return {
            "forecast_probability": list(self.forecast_probability),
            "observed_frequency": list(self.observed_frequency),
            "pixels": [float(n) for n in self.pixels],
        }


@dataclass(frozen=True, kw_only=True)
class EventProbabilityScores:
    """The scores of the exceedance probability of ``value >= threshold_mm_h``: per lead,
    the ROC area and the reliability diagram, and the diagram pooled over every lead."""

    threshold_mm_h: float
    roc_area: tuple[float, ...]
    reliability: tuple[ReliabilityDiagram, ...]
    reliability_all_leads: ReliabilityDiagram

    @property
    def reliability_gap(self) -> tuple[float, ...]:
        return tuple(r.gap() for r in self.reliability)


@dataclass(frozen=True, kw_only=True)
class EnsembleScores:
    """One ensemble method's scores, one value per lead (module docstring)."""

    members: int
    n_pixels: tuple[int, ...]
    crps: tuple[float, ...]
    spread: tuple[float, ...]
    rmse_of_mean: tuple[float, ...]
    spread_skill: tuple[float, ...]
    rank_histogram: tuple[tuple[float, ...], ...]
    events: tuple[EventProbabilityScores, ...]

    @property
    def leads(self) -> int:
        return len(self.crps)

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(e.threshold_mm_h for e in self.events)

    def at(self, threshold_mm_h: float) -> EventProbabilityScores:
        for e in self.events:
            if e.threshold_mm_h == threshold_mm_h:
                return e
        raise KeyError(
            f"ensemble scores: no threshold {threshold_mm_h:g} mm/h in {self.thresholds}"
        )

    def to_json(self) -> dict[str, Any]:
        """Per-lead lists: ``crps_mm_h``, ``roc_area_1_mm_h``, ``reliability_gap_5_mm_h``,
        ``rank_histogram`` (a list per lead), ``reliability_1_mm_h`` (its diagram per lead
        and over all leads), ... (NaN kept)."""
        out: dict[str, Any] = {
            "members": self.members,
            "n_pixels": [float(n) for n in self.n_pixels],
            "crps_mm_h": list(self.crps),
            "spread_mm_h": list(self.spread),
            "rmse_ensemble_mean_mm_h": list(self.rmse_of_mean),
            "spread_skill_ratio": list(self.spread_skill),
            "rank_histogram": [list(h) for h in self.rank_histogram],
        }
        for e in self.events:
            t = f"{e.threshold_mm_h:g}_mm_h"
            out[f"roc_area_{t}"] = list(e.roc_area)
            out[f"reliability_gap_{t}"] = list(e.reliability_gap)
            out[f"reliability_{t}"] = {
                "per_lead": [r.to_json() for r in e.reliability],
                "all_leads": e.reliability_all_leads.to_json(),
            }
        return out


#: The numeric entries of pysteps' accumulators, added when scorers merge.
_SUMMED = {
    "crps": ("CRPS_sum", "n"),
    "rank": ("n",),
    "reldiag": ("X_sum", "Y_sum", "num_idx", "sample_size"),
    "roc": ("hits", "misses", "false_alarms", "corr_neg"),
}


def _roc_thresholds(members: int) -> np.ndarray:
    """0 and (j − ½)/N, j = 1..N: one ROC point for each member count."""
    return np.concatenate([[0.0], (np.arange(1, members + 1) - 0.5) / members])


def exceedance(members: np.ndarray, threshold: float) -> np.ndarray:
    """(N, ...) members -> the share of members at or above `threshold`, NaN where any
    member is NaN."""
    share = (members >= threshold).mean(axis=0)
    return np.where(np.isfinite(members).all(axis=0), share, np.nan)


class EnsembleScorer:
    """Per-lead pysteps accumulators of ensemble forecasts against observations (module
    docstring)."""

    def __init__(self, members: int, *, thresholds_mm_h: tuple[float, ...] = THRESHOLDS_MM_H):
        if members < 1:
            raise ValueError(f"EnsembleScorer: expected members >= 1, got {members}")
        self.members = int(members)
        self.thresholds = tuple(float(t) for t in thresholds_mm_h)
        self._leads: list[dict[str, Any]] = []

    def _new_lead(self) -> dict[str, Any]:
        probscores, ensscores = _verification()
        lead: dict[str, Any] = {
            "crps": probscores.CRPS_init(),
            "rank": ensscores.rankhist_init(self.members, RANK_MIN_MM_H),
            "spread": np.zeros(3),  # pixels, summed variance, summed squared error of the mean
        }
        for t in self.thresholds:
            lead[f"reldiag_{t}"] = probscores.reldiag_init(t, n_bins=RELIABILITY_BINS, min_count=1)
            roc = probscores.ROC_curve_init(t, n_prob_thrs=self.members + 1)
            roc["prob_thrs"] = _roc_thresholds(self.members)
            lead[f"roc_{t}"] = roc
        return lead

    def _check(self, members: np.ndarray, observed: np.ndarray) -> None:
        n, _, k, h, w = members.shape if members.ndim == 5 else (0, 0, 0, 0, 0)
        if members.ndim != 5 or members.shape[1] != self.members or observed.shape != (n, k, h, w):
            raise ValueError(
                f"EnsembleScorer.update: expected members (n, {self.members}, K, H, W) and "
                f"observed (n, K, H, W), got {members.shape} and {observed.shape}"
            )
        if self._leads and len(self._leads) != k:
            raise ValueError(
                f"EnsembleScorer.update: expected {len(self._leads)} leads as before, got {k}"
            )

    def update(self, members: np.ndarray, observed: np.ndarray) -> None:
        """Add (n, N, K, H, W) members and (n, K, H, W) observations in mm/h, NaN = no data."""
        f = np.asarray(members, dtype=np.float64)
        o = np.asarray(observed, dtype=np.float64)
        self._check(f, o)
        if not self._leads:
            self._leads = [self._new_lead() for _ in range(f.shape[2])]
        for k, lead in enumerate(self._leads):
            x = np.moveaxis(f[:, :, k], 1, 0)  # (N, n, H, W): pysteps' member axis first
            valid = np.isfinite(o[:, k]) & np.isfinite(x).all(axis=0)
            self._update_lead(lead, np.where(valid, x, np.nan), np.where(valid, o[:, k], np.nan))

    def _update_lead(self, lead: dict[str, Any], x: np.ndarray, o: np.ndarray) -> None:
        probscores, ensscores = _verification()
        with np.errstate(invalid="ignore"):
            probscores.CRPS_accum(lead["crps"], x, o)
            ensscores.rankhist_accum(lead["rank"], x, o)
            for t in self.thresholds:
                p = exceedance(x, t)
                probscores.reldiag_accum(lead[f"reldiag_{t}"], p, o)
                probscores.ROC_curve_accum(lead[f"roc_{t}"], p, o)
        valid = np.isfinite(o)
        if valid.any():
            xv, ov = x[:, valid], o[valid]
            var = xv.var(axis=0, ddof=1) if self.members > 1 else np.full(ov.shape, np.nan)
            lead["spread"] += (ov.size, var.sum(), ((xv.mean(axis=0) - ov) ** 2).sum())

    def merge(self, other: EnsembleScorer) -> None:
        """Add `other`'s sums (the same members, leads and thresholds): a pooled score."""
        if (other.members, other.thresholds) != (self.members, self.thresholds):
            raise ValueError(
                f"EnsembleScorer.merge: {other.members} members, thresholds {other.thresholds} "
                f"differ from {self.members}, {self.thresholds}"
            )
        if not self._leads:
            self._leads = [self._new_lead() for _ in other._leads]
        if len(other._leads) not in (0, len(self._leads)):
            raise ValueError(
                f"EnsembleScorer.merge: {len(other._leads)} leads differ from {len(self._leads)}"
            )
        for mine, theirs in zip(self._leads, other._leads, strict=False):
            mine["spread"] += theirs["spread"]
            for name, acc in theirs.items():
                for key in _SUMMED.get(name.split("_")[0], ()):
                    mine[name][key] = mine[name][key] + acc[key]

    def result(self) -> EnsembleScores:
        if not self._leads:
            raise ValueError("EnsembleScorer.result: nothing was added")
        leads = self._leads
        spread = np.array([lead["spread"] for lead in leads])
        n = spread[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            var, mse = spread[:, 1] / n, spread[:, 2] / n
            ratio = math.sqrt((self.members + 1) / self.members) * np.sqrt(var / mse)
        return EnsembleScores(
            members=self.members,
            n_pixels=tuple(int(lead["crps"]["n"]) for lead in leads),
            crps=tuple(_crps(lead["crps"]) for lead in leads),
            spread=tuple(float(x) for x in np.sqrt(var)),
            rmse_of_mean=tuple(float(x) for x in np.sqrt(mse)),
            spread_skill=tuple(float(x) for x in ratio),
            rank_histogram=tuple(_rank_histogram(lead["rank"]) for lead in leads),
            events=tuple(self._event(t) for t in self.thresholds),
        )

    def _event(self, t: float) -> EventProbabilityScores:
        diagrams = [lead[f"reldiag_{t}"] for lead in self._leads]
        pooled = dict(diagrams[0])
        for key in _SUMMED["reldiag"]:
            pooled[key] = sum(d[key] for d in diagrams)
        return EventProbabilityScores(
            threshold_mm_h=t,
            roc_area=tuple(_roc_area(lead[f"roc_{t}"]) for lead in self._leads),
            reliability=tuple(_reliability(d) for d in diagrams),
            reliability_all_leads=_reliability(pooled),
        )


def _crps(acc: dict[str, Any]) -> float:
    probscores, _ = _verification()
    return float(probscores.CRPS_compute(acc)) if acc["n"] > 0 else math.nan


def _rank_histogram(acc: dict[str, Any]) -> tuple[float, ...]:
    _, ensscores = _verification()
    if acc["n"].sum() == 0:
        return tuple(math.nan for _ in acc["n"])
    return tuple(float(x) for x in ensscores.rankhist_compute(acc, normalize=True))


def _roc_area(acc: dict[str, Any]) -> float:
    probscores, _ = _verification()
    with np.errstate(invalid="ignore", divide="ignore"):
        _, _, area = probscores.ROC_curve_compute(acc, compute_area=True)
    return float(area)


def _reliability(acc: dict[str, Any]) -> ReliabilityDiagram:
    probscores, _ = _verification()
    with np.errstate(invalid="ignore", divide="ignore"):
        forecast, observed = probscores.reldiag_compute(acc)
    return ReliabilityDiagram(
        threshold_mm_h=float(acc["X_min"]),
        forecast_probability=tuple(float(x) for x in forecast),
        observed_frequency=tuple(float(x) for x in observed),
        pixels=tuple(int(x) for x in acc["sample_size"]),
    )
