"""The demo's ensemble panel: the probability of at least 1 mm/h at one lead beside the
deterministic forecast and what was observed, from one forecast file the daemon wrote, and one
line that says how the probabilities did against the observations of every file."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from nowcastd.io.atomic import atomic_file
from nowcastd.io.forecast_file import ForecastFile, read_forecast
from nowcastd.verification.sequence import RadarSequence

__all__ = ["probability_summary", "save_probability_figure"]

THRESHOLD_MM_H = 1.0
LEAD_MINUTES = 30.0
#: Forecast probability bins of the summary line: low, middle, high.
BINS = (0.0, 0.2, 0.8, 1.0001)


def _lead(f: ForecastFile) -> int:
    """The lead closest to `LEAD_MINUTES`."""
    return int(np.argmin(np.abs(f.lead_seconds / 60.0 - LEAD_MINUTES)))


def _observed(observed: RadarSequence, when: datetime) -> np.ndarray | None:
    hits = np.flatnonzero(observed.time_unix == int(when.timestamp()))
    if not hits.size:
        return None
    frame: np.ndarray = observed.precip[hits[0]]
    return frame


def _probability(f: ForecastFile, k: int) -> np.ndarray | None:
    ens = f.ensemble
    if ens is None or THRESHOLD_MM_H not in ens.thresholds_mm_h:
        return None
    p: np.ndarray = ens.probability[ens.thresholds_mm_h.index(THRESHOLD_MM_H), k]
    return p


def save_probability_figure(file: Path, observed: RadarSequence, out_dir: Path) -> Path | None:
    """Forecast, P(>= 1 mm/h) and the observation at the lead nearest +30 min of `file`, as
    a PNG in `out_dir`; None when the file has no such probability."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    f = read_forecast(file)
    k = _lead(f)
    p = _probability(f, k)
    if p is None:
        return None
    seen = _observed(observed, f.valid_times[k])
    obs = np.full_like(p, np.nan) if seen is None else seen
    fig = Figure(figsize=(10.5, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    rain = colormaps["viridis"].with_extremes(under="white", bad="0.8", over="gold")
    norm = LogNorm(0.1, 50.0)
    minutes = f.lead_seconds[k] / 60
    shown = (
        (f.precip[k], rain, norm, f"forecast (mm/h), +{minutes:g} min"),
        (p, colormaps["magma_r"].with_extremes(bad="0.8"), None, "P(rain >= 1 mm/h)"),
        (obs, rain, norm, f"observed (mm/h), {f.valid_times[k]:%H:%M} UTC"),
    )
    for i, (ax, (field, cmap, scale, title)) in enumerate(zip(axes, shown, strict=True)):
        if scale is not None:  # dry is white (under the scale), not masked as a log of 0
            field = np.where(field > 0, field, 1e-3)
        image = ax.imshow(field, cmap=cmap, norm=scale, vmin=None if scale else 0.0,
                          vmax=None if scale else 1.0, interpolation="nearest")  # fmt: skip
        if i > 0:  # where >= 1 mm/h was observed, over the probability and the observation
            ax.contour(
                np.nan_to_num(obs) >= THRESHOLD_MM_H, levels=[0.5], colors="cyan", linewidths=0.6
            )
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, shrink=0.8)
    members = f.attrs.get("ensemble_members", "?")
    fig.suptitle(
        f"{file.name}: {members} members, issued {f.issue_time:%Y-%m-%d %H:%M} UTC; "
        "cyan: observed >= 1 mm/h",
        fontsize=10,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"probability_{f.issue_time:%Y%m%dT%H%MZ}.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_file(path) as out:
        out.write(buf.getvalue())
    return path


def probability_summary(files: Sequence[Path], observed: RadarSequence) -> str | None:
    """How often >= 1 mm/h was observed where the files gave it a low, middle or high
    probability at the lead nearest +30 min (pixels with data on both sides); None when no
    file has an ensemble."""
    counts = np.zeros((len(BINS) - 1, 2))  # per bin: pixels, pixels observed >= 1 mm/h
    said = np.zeros(len(BINS) - 1)  # per bin: the sum of the forecast probabilities
    for file in files:
        f = read_forecast(file)
        k = _lead(f)
        p, seen = _probability(f, k), _observed(observed, f.valid_times[k])
        if p is None or seen is None:
            continue
        valid = np.isfinite(p) & np.isfinite(seen)
        which = np.digitize(p[valid], BINS) - 1
        counts[:, 0] += np.bincount(which, minlength=len(BINS) - 1)
        counts[:, 1] += np.bincount(
            which, weights=seen[valid] >= THRESHOLD_MM_H, minlength=len(BINS) - 1
        )
        said += np.bincount(which, weights=p[valid], minlength=len(BINS) - 1)
    if counts[:, 0].sum() == 0:
        return None
    parts = []
    for i, ((n, hits), total) in enumerate(zip(counts, said, strict=True)):
        if n:
            bin_ = f"{BINS[i]:g}-{min(BINS[i + 1], 1.0):g}"
            parts.append(f"P {bin_}: said {total / n:.2f}, observed {hits / n:.2f} ({n:.0f} px)")
    return f"P(>= 1 mm/h) at +{LEAD_MINUTES:g} min against the observations: " + "; ".join(parts)
