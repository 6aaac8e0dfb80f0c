"""The reliability plot of an ensemble comparison (`nowcastd evaluate --ensemble N --plot`).

Drawn as `figures` draws (matplotlib's object-oriented API on the Agg canvas, imported only
when a figure is drawn; the file written atomically).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from nowcastd.verification.ensemble_skill import RELIABILITY_MIN_SHARE
from nowcastd.verification.ensemble_verdict import RELIABILITY_TOLERANCE
from nowcastd.verification.figures import _new_figure, _save

if TYPE_CHECKING:
    from nowcastd.verification.ensemble_comparison import EnsembleComparison

__all__ = ["save_reliability_plot"]


def save_reliability_plot(path: str | Path, report: EnsembleComparison) -> Path:
    """A PNG with, for each threshold, the reliability diagram pooled over every lead (one
    line per method; bins with fewer than 1 % of the pixels hollow; the diagonal with its
    ±0.1 band), and the CRPS against lead time."""
    from nowcastd.verification.ensemble_comparison import ENSEMBLE_LABELS

    methods = report.methods
    thresholds = next(iter(methods.values())).thresholds
    fig = _new_figure(4.0 * (len(thresholds) + 1), 4.0)
    axes = fig.subplots(1, len(thresholds) + 1)
    for ax, t in zip(axes, thresholds, strict=False):
        ax.fill_between(
            [0, 1], [-RELIABILITY_TOLERANCE, 1 - RELIABILITY_TOLERANCE],
            [RELIABILITY_TOLERANCE, 1 + RELIABILITY_TOLERANCE], color="0.9",
        )  # fmt: skip
        ax.plot([0, 1], [0, 1], color="0.5", linewidth=0.8)
        for j, (method, s) in enumerate(methods.items()):
            d = s.at(t).reliability_all_leads
            total = max(sum(d.pixels), 1)
            colour = f"C{j}"
            label = ENSEMBLE_LABELS.get(method, method)
            points = [
                (f, o)
                for f, o in zip(d.forecast_probability, d.observed_frequency, strict=True)
                if math.isfinite(f) and math.isfinite(o)
            ]  # empty bins are NaN: the line joins the others
            ax.plot(*zip(*points, strict=True), color=colour, label=label)
            for f, o, n in zip(d.forecast_probability, d.observed_frequency, d.pixels, strict=True):
                full = n >= RELIABILITY_MIN_SHARE * total
                ax.plot([f], [o], "o", color=colour, markerfacecolor=colour if full else "none")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"reliability, >= {t:g} mm/h, all leads", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    crps = axes[-1]
    for method, s in methods.items():
        label = ENSEMBLE_LABELS.get(method, method)
        crps.plot(report.lead_minutes, s.crps, marker="o", markersize=3, label=label)
    crps.set(xlabel="lead time (min)", ylabel="CRPS (mm/h)")
    crps.set_ylim(bottom=0.0)
    crps.grid(True, alpha=0.3)
    fig.suptitle(
        f"{report.name}: {report.n_starts} forecasts, {report.members} members, grid "
        f"{report.grid[0]}x{report.grid[1]}",
        fontsize=9,
    )
    return _save(fig, path)
