"""The verdict of an ensemble against pysteps' STEPS with the same member count.

Judged at every lead up to 60 min (`verdict.MAX_LEAD_MINUTES`) on the scores of the one
ensemble scorer (`ensemble_skill.EnsembleScores`):

* CRPS: lower than the baseline's (a tie or NaN is a loss);
* the ROC area at 1 and 5 mm/h: at least the baseline's (a ROC area the baseline cannot have,
  NaN: no observed event, judges nothing; one the ensemble lacks where the baseline has it is a
  loss);
* reliability at 1 and 5 mm/h: the observed frequency within 0.1 (`RELIABILITY_TOLERANCE`) of
  the forecast probability in every bin holding at least 1 % of the pixels
  (`ReliabilityDiagram.gap`); the baseline's gap is shown beside it, not compared.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from nowcastd.verification.ensemble_skill import EnsembleScores
from nowcastd.verification.verdict import MAX_LEAD_MINUTES, Loss

__all__ = ["RELIABILITY_TOLERANCE", "EnsembleVerdict", "judge_ensemble"]

RELIABILITY_TOLERANCE = 0.1


@dataclass(frozen=True, kw_only=True)
class EnsembleVerdict:
    """`losses` of `method` against `baseline` at `leads_judged` (minutes)."""

    method: str
    baseline: str
    leads_judged: tuple[float, ...]
    losses: tuple[Loss, ...]

    @property
    def passed(self) -> bool:
        return bool(self.leads_judged) and not self.losses

    def describe(self) -> str:
        head = f"{self.method} vs {self.baseline}: "
        if not self.leads_judged:
            return head + "no lead up to 60 min to judge"
        span = f"{self.leads_judged[0]:g}-{self.leads_judged[-1]:g} min"
        if self.passed:
            return head + (
                f"PASS (CRPS lower, ROC area at least theirs, reliability within "
                f"{RELIABILITY_TOLERANCE:g}, at every lead {span})"
            )
        by_score: dict[str, list[Loss]] = {}
        for loss in self.losses:
            by_score.setdefault(loss.score, []).append(loss)
        parts = [
            f"{score} at "
            + ", ".join(f"+{x.lead_minutes:g} ({x.ours:.3g} vs {x.theirs:.3g})" for x in losses)
            for score, losses in by_score.items()
        ]
        return head + f"FAIL at leads {span}: " + "; ".join(parts)


def _worse(score: str, ours: float, theirs: float) -> bool:
    if score == "CRPS":
        return not (ours < theirs)  # NaN loses
    if score.startswith("REL"):
        return not (ours <= RELIABILITY_TOLERANCE)  # NaN (no pixel) loses
    if not math.isfinite(theirs):
        return False
    return not (ours >= theirs)


def _pairs(
    ours: EnsembleScores, theirs: EnsembleScores
) -> Iterator[tuple[str, Sequence[float], Sequence[float]]]:
    yield "CRPS", ours.crps, theirs.crps
    for t in ours.thresholds:
        yield f"ROC>={t:g}", ours.at(t).roc_area, theirs.at(t).roc_area
    for t in ours.thresholds:
        yield f"REL>={t:g}", ours.at(t).reliability_gap, theirs.at(t).reliability_gap


def judge_ensemble(
    ours: EnsembleScores,
    theirs: EnsembleScores,
    lead_minutes: Sequence[float],
    *,
    method: str = "model ensemble",
    baseline: str = "STEPS",
) -> EnsembleVerdict:
    """`ours` against `theirs` per the module docstring, at the leads up to 60 min."""
    leads = [(k, m) for k, m in enumerate(lead_minutes) if 0 < m <= MAX_LEAD_MINUTES]
    losses = [
        Loss(score=label, lead_minutes=m, ours=a[k], theirs=b[k])
        for label, a, b in _pairs(ours, theirs)
        for k, m in leads
        if _worse(label, a[k], b[k])
    ]
    return EnsembleVerdict(
        method=method,
        baseline=baseline,
        leads_judged=tuple(m for _, m in leads),
        losses=tuple(losses),
    )
