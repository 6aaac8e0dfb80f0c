"""The verdict of a forecast against a baseline: never worse on any score, and better on MAE.

Judged at every lead up to 60 min (`MAX_LEAD_MINUTES`: +5 to +60 min at a 5-minute step) on
the scores of the one scorer (`skill.Scores`):

* MAE: lower than the baseline's (a tie or NaN is a loss);
* CSI and FSS at 1 and 5 mm/h: at least the baseline's − 0.01 (`TOLERANCE`);
* the frequency bias at 1 and 5 mm/h: inside its band (0.8–1.25 at 1 mm/h, 0.6–1.5 at
  5 mm/h, `BIAS_BANDS`) or at least as close to 1 as the baseline's.

POD and FAR are shown, not judged: CSI weighs them together. A score the baseline cannot have
(NaN: no observed event) judges nothing; one the forecast lacks where the baseline has it is a
loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from nowcastd.verification.skill import Scores

__all__ = ["BIAS_BANDS", "MAX_LEAD_MINUTES", "TOLERANCE", "Loss", "Verdict", "judge"]

TOLERANCE = 0.01
BIAS_BANDS = {1.0: (0.8, 1.25), 5.0: (0.6, 1.5)}
MAX_LEAD_MINUTES = 60.0


@dataclass(frozen=True, kw_only=True)
class Loss:
    """One score at one lead where the forecast fails the rule against the baseline."""

    score: str
    lead_minutes: float
    ours: float
    theirs: float


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """`losses` of `method` against `baseline` at `leads_judged` (minutes)."""

    method: str
    baseline: str
    leads_judged: tuple[float, ...]
    losses: tuple[Loss, ...]
    #: what a pass means, in the PASS line
    criteria: str = "never worse, better on MAE"

    @property
    def passed(self) -> bool:
        return bool(self.leads_judged) and not self.losses

    def describe(self) -> str:
        head = f"{self.method} vs {self.baseline}: "
        if not self.leads_judged:
            return head + "no lead up to 60 min to judge"
        span = f"{self.leads_judged[0]:g}-{self.leads_judged[-1]:g} min"
        if self.passed:
            return head + f"PASS ({self.criteria}, at every lead {span})"
        by_score: dict[str, list[Loss]] = {}
        for loss in self.losses:
            by_score.setdefault(loss.score, []).append(loss)
        parts = [
            f"{score} at "
            + ", ".join(f"+{x.lead_minutes:g} ({x.ours:.3g} vs {x.theirs:.3g})" for x in losses)
            for score, losses in by_score.items()
        ]
        return head + f"FAIL at leads {span}: " + "; ".join(parts)


def _worse(score: str, ours: float, theirs: float, band: tuple[float, float] | None) -> bool:
    if score == "MAE":
        return not (ours < theirs)  # NaN loses
    if not math.isfinite(theirs):
        return False
    if not math.isfinite(ours):
        return True
    if band is None:
        return ours < theirs - TOLERANCE
    return not (band[0] <= ours <= band[1] or abs(ours - 1.0) <= abs(theirs - 1.0))


def _pairs(
    ours: Scores, theirs: Scores
) -> Iterator[tuple[str, Sequence[float], Sequence[float], tuple[float, float] | None]]:
    """(label, our per-lead values, theirs, the frequency-bias band or None)."""
    yield "MAE", ours.mae, theirs.mae, None
    for t in ours.thresholds:
        a, b = ours.at(t), theirs.at(t)
        yield f"CSI>={t:g}", a.csi, b.csi, None
        yield f"FSS>={t:g}", a.fss, b.fss, None
        if t in BIAS_BANDS:
            yield f"FBI>={t:g}", a.frequency_bias, b.frequency_bias, BIAS_BANDS[t]


def judge(
    ours: Scores,
    theirs: Scores,
    lead_minutes: Sequence[float],
    *,
    method: str = "model",
    baseline: str = "baseline",
) -> Verdict:
    """`ours` against `theirs` per the module docstring, at the leads up to 60 min."""
    leads = [(k, m) for k, m in enumerate(lead_minutes) if 0 < m <= MAX_LEAD_MINUTES]
    losses = [
        Loss(score=label, lead_minutes=m, ours=a[k], theirs=b[k])
        for label, a, b, band in _pairs(ours, theirs)
        for k, m in leads
        if _worse(label, a[k], b[k], band)
    ]
    return Verdict(
        method=method,
        baseline=baseline,
        leads_judged=tuple(m for _, m in leads),
        losses=tuple(losses),
    )
