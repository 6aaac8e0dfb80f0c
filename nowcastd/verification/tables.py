"""The verdict's table: per lead, one row per method, every score a forecaster reads.

Columns: MAE (mm/h); at 1 and at 5 mm/h the CSI, POD, FAR, FSS (over the stated neighbourhood)
and the frequency bias (FBI: forecast events / observed events); and the pixels scored. The
same table is printed by `nowcastd evaluate`, `bench/bench_evaluate.py` and the demo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from nowcastd.verification.skill import Scores

__all__ = ["LABELS", "format_scores", "legend"]

LABELS = {
    "model": "model",
    "persistence": "persistence",
    "pysteps_lk": "LK",
    "pysteps_sprog": "S-PROG",
}


def _cell(value: float, digits: int, width: int) -> str:
    text = f"{value:.{digits}f}" if math.isfinite(value) else "—"
    return text.rjust(width)


def legend(scores: Scores) -> str:
    """What the columns mean, with the FSS neighbourhood in km and pixels."""
    return (
        "MAE in mm/h; CSI, POD, FAR, FSS and FBI (frequency bias, forecast / observed events) "
        f"for events >= {' and '.join(f'{t:g}' for t in scores.thresholds)} mm/h; FSS over "
        f"{scores.neighbourhood.describe()}; a pixel counts where the observation and the "
        "forecast have data"
    )


def format_scores(
    methods: Mapping[str, Scores],
    lead_minutes: Sequence[float],
    *,
    forecasts: Sequence[int] | None = None,
) -> str:
    """The table (module docstring); `forecasts`: how many forecasts each lead pools (shown in
    brackets after the lead)."""
    first = next(iter(methods.values()))
    cols = ["MAE"]
    for t in first.thresholds:
        cols += [f"{name}{t:g}" for name in ("CSI", "POD", "FAR", "FSS", "FBI")]
    width = 8 if forecasts is None else 14
    head = f"{'lead':>{width}} {'method':<12}" + "".join(c.rjust(7) for c in cols) + "   pixels"
    lines = [legend(first), head]
    for k, minutes in enumerate(lead_minutes):
        for j, (method, s) in enumerate(methods.items()):
            lead = ""
            if j == 0:
                lead = f"+{minutes:g} min" + ("" if forecasts is None else f" ({forecasts[k]})")
            row = [_cell(s.mae[k], 3, 7)]
            for t in s.thresholds:
                e = s.at(t)
                row += [_cell(v[k], 2, 7) for v in (e.csi, e.pod, e.far, e.fss, e.frequency_bias)]
            label = LABELS.get(method, method)
            lines.append(f"{lead:>{width}} {label:<12}" + "".join(row) + f" {s.n_pixels[k]:>8}")
    return "\n".join(lines)
