"""PNG figures for training and evaluation reports: sample forecasts, decoupling histograms,
and the observed-against-forecast strip of one forecast file (`nowcastd demo`).

matplotlib is imported only when a figure is drawn, and only its object-oriented API with the
Agg canvas is used (no pyplot, no global backend switch), so importing this module is cheap and
safe inside the daemon. Files are written atomically (temporary name, fsync, rename).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nowcastd.io.atomic import atomic_file
from nowcastd.io.transform import DataTransform

if TYPE_CHECKING:
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from nowcastd.verification.comparison import Comparison

#: Rain-rate colour levels (mm/h) for physical data; below the first is left white.
RAIN_LEVELS_MM_H = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    with atomic_file(path) as f:
        f.write(buf.getvalue())
    return path


def _frames(x: Any, name: str) -> np.ndarray:
    """(T, H, W) or (T, H, W, C) -> (T, H, W) float (channel 0)."""
    frames: np.ndarray = np.asarray(x, dtype=np.float32)
    if frames.ndim == 4:
        frames = frames[..., 0]
    if frames.ndim != 3:
        raise ValueError(f"{name}: expected frames (T, H, W[, C]), got shape {frames.shape}")
    return frames


def _label(i: int, timestep_seconds: int | None) -> str:
    if timestep_seconds:
        minutes = i * timestep_seconds / 60
        return f"{minutes:+g} min" if i else "0 min"
    return f"t{i:+d}" if i else "t0"


def _sample_frames(
    context: Any, truth: Any, forecast: Any, transform: DataTransform
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context, truth and forecast as (T, H, W) stacks that fit one another, in mm/h when
    `transform` is physical (model units otherwise)."""
    ctx, obs, fct = (
        _frames(context, "context"),
        _frames(truth, "truth"),
        _frames(forecast, "forecast"),
    )
    if obs.shape != fct.shape or ctx.shape[1:] != obs.shape[1:]:
        raise ValueError(
            f"save_sample_figure: context {ctx.shape}, truth {obs.shape} and forecast "
            f"{fct.shape} must share (H, W), and truth and forecast their length"
        )
    if transform.is_physical:
        ctx, obs, fct = (transform.to_physical(np.clip(a, 0.0, 1.0)) for a in (ctx, obs, fct))
    return ctx, obs, fct


def _sample_scale(transform: DataTransform) -> tuple[Any, Normalize, str]:
    """Colour map, norm and colour-bar label: the rain levels in mm/h for a physical
    `transform`, [0, 1] in model units otherwise."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, Normalize

    if not transform.is_physical:
        return colormaps["viridis"], Normalize(0.0, 1.0), "model units"
    cmap = colormaps["viridis"].with_extremes(under="white", over="magenta")
    norm = BoundaryNorm(RAIN_LEVELS_MM_H, cmap.N, extend="both")
    return cmap, norm, f"rain rate ({transform.units})"


def _draw_sample(
    axes: Any,
    frames: tuple[np.ndarray, np.ndarray, np.ndarray],
    cmap: Any,
    norm: Normalize,
    timestep_seconds: int | None,
) -> Any:
    """Context then observed frames on the top row, the forecast under the observed ones;
    returns the last image drawn (for the colour bar)."""
    ctx, obs, fct = frames
    n_in, ncol = ctx.shape[0], ctx.shape[0] + obs.shape[0]
    image = None
    for j in range(ncol):
        top, bottom = axes[0, j], axes[1, j]
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if j < n_in:
            image = top.imshow(ctx[j], cmap=cmap, norm=norm, interpolation="nearest")
            top.set_title(_label(j - n_in + 1, timestep_seconds), fontsize=7)
            bottom.set_axis_off()
        else:
            k = j - n_in
            image = top.imshow(obs[k], cmap=cmap, norm=norm, interpolation="nearest")
            bottom.imshow(fct[k], cmap=cmap, norm=norm, interpolation="nearest")
            top.set_title(_label(k + 1, timestep_seconds), fontsize=7)
    axes[0, 0].set_ylabel("observed", fontsize=8)
    axes[1, n_in if n_in < ncol else 0].set_ylabel("forecast", fontsize=8)
    assert image is not None, "ncol >= 1: at least one frame was drawn"
    return image


def save_sample_figure(
    path: str | Path,
    context: Any,
    truth: Any,
    forecast: Any,
    transform: DataTransform,
    *,
    timestep_seconds: int | None = None,
    title: str | None = None,
) -> Path:
    """A PNG grid: row 1 the context frames then the observed future, row 2 the forecast.

    Args:
        path: the PNG to write.
        context: (I, H, W[, C]) input frames in model units (channel 0 is drawn).
        truth, forecast: (K, H, W[, C]) observed and predicted future frames, model units.
        transform: physical transforms are drawn in mm/h with a rain colour scale and colour
            bar; identity data in model units on [0, 1].
        timestep_seconds: labels frames in minutes relative to the last context frame.
    """
    frames = _sample_frames(context, truth, forecast, transform)
    cmap, norm, bar_label = _sample_scale(transform)
    ncol = frames[0].shape[0] + frames[1].shape[0]
    fig = _new_figure(1.2 * ncol + 1.2, 2.9)
    axes = fig.subplots(2, ncol, squeeze=False)
    image = _draw_sample(axes, frames, cmap, norm, timestep_seconds)
    fig.colorbar(image, ax=axes, shrink=0.9, label=bar_label, format="%g")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_decoupling_histogram(
    path: str | Path, cos_values: Any, *, bins: int = 40, title: str | None = None
) -> Path:
    """A PNG histogram of |cos(Δc, Δm)| over channels (PredRNN-v2's decoupling diagnostic).

    Values near 0 mean the memory increments of c and m are decoupled (the v2 loss pushes them
    there). Non-finite values are dropped; ValueError if none is left.
    """
    values = np.abs(np.asarray(cos_values, dtype=np.float64).ravel())
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("save_decoupling_histogram: no finite cosine values")
    fig = _new_figure(5.0, 3.2)
    ax = fig.subplots()
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="tab:blue", edgecolor="white")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("|cos(Δc, Δm)| per channel")
    ax.set_ylabel("count")
    ax.axvline(values.mean(), color="tab:red", linestyle="--", linewidth=1)
    ax.set_title(
        title or f"decoupling: mean |cos| = {values.mean():.3f} (n = {values.size})", fontsize=9
    )
    return _save(fig, path)


def save_lead_time_plot(path: str | Path, report: Comparison) -> Path:
    """A PNG of CSI at 1 and 5 mm/h, the frequency bias at 1 mm/h and MAE against lead time,
    one line per method (`report`: `nowcastd.verification.comparison.compare`'s)."""
    from nowcastd.verification.tables import LABELS

    minutes = report.lead_minutes
    fig = _new_figure(12.0, 3.6)
    axes = fig.subplots(1, 4)
    for method, s in report.methods.items():
        style = {"marker": "o", "markersize": 3, "label": LABELS.get(method, method)}
        values = (s.at(1.0).csi, s.at(5.0).csi, s.at(1.0).frequency_bias, s.mae)
        for ax, v in zip(axes, values, strict=True):
            ax.plot(minutes, v, **style)
    labels = ("CSI at 1 mm/h", "CSI at 5 mm/h", "frequency bias at 1 mm/h", "MAE (mm/h)")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_ylabel(label)
        ax.set_xlabel("lead time (min)")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0.0)
    axes[0].set_ylim(0.0, 1.0)
    axes[1].set_ylim(0.0, 1.0)
    axes[0].legend(fontsize=8)
    grid = report.grid
    block = "" if report.domain is None else f" (block {report.domain.block})"
    fig.suptitle(
        f"{report.name}: {report.n_starts} forecasts, grid {grid[0]}x{grid[1]}{block}",
        fontsize=9,
    )
    return _save(fig, path)


def _lead_columns(n_leads: int, most: int) -> list[int]:
    """Up to `most` lead indices, evenly spread, always ending with the last."""
    if n_leads <= most:
        return list(range(n_leads))
    picks = np.linspace(0, n_leads - 1, most).round().astype(int)
    return sorted(set(picks.tolist()))


def _strip_norm(shown: np.ndarray) -> Normalize:
    """From 0.1 mm/h to the 99th percentile of the rain `shown` (NaN: no data)."""
    from matplotlib.colors import Normalize

    rain = shown[np.isfinite(shown) & (shown >= 0.1)]
    top = float(np.percentile(rain, 99)) if rain.size else 1.0
    return Normalize(0.1, max(top, 0.2))


def _draw_strip(
    axes: Any,
    first: np.ndarray,
    obs: np.ndarray,
    fct: np.ndarray,
    leads: list[int],
    issue_time: datetime,
    valid_times: Sequence[datetime],
    norm: Normalize,
    margin: int = 0,
) -> Any:
    """The issue frame, then each of `leads` observed (top) and forecast (bottom); returns
    the issue frame's image (for the colour bar). `margin` > 0: the issue frame holds a halo
    that wide, and the model grid inside it is outlined."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    cmap = colormaps["viridis"].with_extremes(under="white", bad="0.8", over="gold")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    image = axes[0, 0].imshow(first, cmap=cmap, norm=norm, interpolation="nearest")
    axes[0, 0].set_title(f"0 min (issued)\n{issue_time:%H:%M} UTC", fontsize=8)
    if margin:
        h, w = first.shape[0] - 2 * margin, first.shape[1] - 2 * margin
        grid = Rectangle((margin - 0.5, margin - 0.5), w, h, fill=False, ec="red", lw=0.8)
        axes[0, 0].add_patch(grid)
        axes[0, 0].set_title(f"0 min, with its halo\n{issue_time:%H:%M} UTC", fontsize=8)
    axes[1, 0].set_axis_off()
    axes[1, 0].text(
        0.5, 0.5, "forecast →", ha="center", va="center", transform=axes[1, 0].transAxes
    )
    for j, k in enumerate(leads, 1):
        minutes = (valid_times[k] - issue_time).total_seconds() / 60
        axes[0, j].imshow(obs[k], cmap=cmap, norm=norm, interpolation="nearest")
        axes[1, j].imshow(fct[k], cmap=cmap, norm=norm, interpolation="nearest")
        axes[0, j].set_title(f"+{minutes:g} min\n{valid_times[k]:%H:%M} UTC", fontsize=8)
    axes[0, 0].set_ylabel("observed", fontsize=9)
    return image


def save_forecast_strip(
    path: str | Path,
    *,
    last_input: Any,
    observed: Any,
    forecast: Any,
    issue_time: datetime,
    valid_times: Sequence[datetime],
    title: str | None = None,
    max_leads: int = 6,
    halo: Any = None,
    margin: int = 0,
) -> Path:
    """A PNG strip for one forecast: top row observed, bottom row forecast, in mm/h.

    The first column is the scan at the issue time (the last input), then up to `max_leads`
    leads, each labelled in minutes after the issue time and in UTC. The colour scale runs from
    0.1 mm/h (white below: no rain) to the 99th percentile of the rain shown; grey is no data
    (an observation that is missing or outside the radar's coverage).

    Args:
        last_input: (H, W) mm/h at the issue time.
        observed, forecast: (K, H, W) mm/h at `valid_times` (NaN: no data).
        halo, margin: the scan at the issue time with the halo the forecast's motion and
            advection came from, `margin` pixels on every side ((H + 2 margin, W + 2
            margin) mm/h), drawn instead of `last_input` with the model grid outlined.
    """
    first = np.asarray(last_input, dtype=np.float32)
    obs, fct = _frames(observed, "observed"), _frames(forecast, "forecast")
    if obs.shape != fct.shape or obs.shape[1:] != first.shape or len(valid_times) != len(obs):
        raise ValueError(
            f"save_forecast_strip: expected last input (H, W), observed and forecast (K, H, W) "
            f"and K valid times, got {first.shape}, {obs.shape}, {fct.shape} and "
            f"{len(valid_times)}"
        )
    leads = _lead_columns(obs.shape[0], max_leads)
    norm = _strip_norm(np.concatenate([first.ravel(), obs[leads].ravel(), fct[leads].ravel()]))
    ncol = 1 + len(leads)
    fig = _new_figure(1.75 * ncol + 1.0, 4.1)
    axes = fig.subplots(2, ncol, squeeze=False)
    shown = first if halo is None else np.asarray(halo, dtype=np.float32)
    margin = margin if halo is not None else 0
    if shown.shape != (first.shape[0] + 2 * margin, first.shape[1] + 2 * margin):
        raise ValueError(
            f"save_forecast_strip: expected the issue frame with a halo of {margin}, "
            f"{(first.shape[0] + 2 * margin, first.shape[1] + 2 * margin)}, got {shown.shape}"
        )
    image = _draw_strip(axes, shown, obs, fct, leads, issue_time, valid_times, norm, margin)
    fig.colorbar(image, ax=axes, shrink=0.85, extend="both", label="rain rate (mm/h)")
    fig.suptitle(title or f"forecast issued {issue_time:%Y-%m-%d %H:%M} UTC", fontsize=10)
    return _save(fig, path)
