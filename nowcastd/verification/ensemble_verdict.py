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

from nowcastd.verification.ensemble_skill import EnsembleScores
from nowcastd.verification.verdict import MAX_LEAD_MINUTES, Loss, Verdict

__all__ = ["CRITERIA", "RELIABILITY_TOLERANCE", "judge_ensemble"]

RELIABILITY_TOLERANCE = 0.1


#: What the ensemble's pass means (`Verdict.criteria`).
CRITERIA = f"CRPS lower, ROC area at least theirs, reliability within {RELIABILITY_TOLERANCE:g}"


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
) -> Verdict:
    """`ours` against `theirs` per the module docstring, at the leads up to 60 min."""
    leads = [(k, m) for k, m in enumerate(lead_minutes) if 0 < m <= MAX_LEAD_MINUTES]
    losses = [
        Loss(score=label, lead_minutes=m, ours=a[k], theirs=b[k])
        for label, a, b in _pairs(ours, theirs)
        for k, m in leads
        if _worse(label, a[k], b[k])
    ]
    return Verdict(
        method=method,
        baseline=baseline,
        leads_judged=tuple(m for _, m in leads),
        losses=tuple(losses),
        criteria=CRITERIA,
    )
