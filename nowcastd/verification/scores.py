"""Forecast verification, accumulate-then-compute (as pySTEPS): per lead frame scores.

`Verifier.update(pred, truth)` takes numpy (or JAX) arrays (B, K, H, W, C) in model units — the K
predicted future frames and the observed ones — and adds per-lead sums; `Verifier.result()`
turns the sums into scores; `format_table` prints them. Every score uses the prediction clipped
to [0, 1] (``gx`` in the official code) and the truth as given.

Scores (per lead frame k, over all sequences seen):

* ``mse``: the official PredRNN per-frame MSE (REFERENCE.md §9): the **sum** over (H, W, C) of
  squared errors, averaged over sequences. ``mse_per_seq`` is its sum over the leads.
* ``mse_pixel``, ``mae_pixel``: per-pixel mean squared / absolute error in model units.
* ``psnr``: as the official `batch_psnr`: both images truncated to uint8 (``uint8(x·255)``),
  ``20·log10(255) − 10·log10(mse)`` per image (infinite for a perfect image), then the mean over
  images. (The official code averages per-batch means; with equal batches that is the same.)
* ``ssim``: **not** the official one. dm-pix `pix.ssim` on the float images in [0, 1]
  (``max_val`` 1, 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, mean over the valid
  region and the channels), per image, then the mean. It matches scikit-image
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1.0)``. The official score (uint8 truncation, 7×7 uniform window, an argument
  removed from scikit-image) is neither reproducible on current scikit-image nor smooth.
  Frames smaller than 11×11 get NaN.
* When the transform is physical (mm/h), in physical units after `to_physical`:
  ``mae_mm_h``; ``csi_<t>_mm_h`` = hits / (hits + misses + false alarms) with events
  ``value >= t`` for t in 0.5, 1 and 5 mm/h, counts pooled over all sequences; and
  ``fss_<t>_mm_h_<s>px``, the fractions skill score at 1 mm/h over s × s = 5 × 5 pixel
  neighbourhoods (zero outside the frame), pooled as pySTEPS `fss_accum`/`fss_compute` do.
  Scores with an empty denominator are NaN.

`RateScores` holds the physical scores (one copy, used by `Verifier` and by the three-way
evaluation): rain rates in mm/h, (B, K, H, W), with a validity mask, so that pixels without data
count for no method. Per lead: ``mae_mm_h``, ``rmse_mm_h``, ``bias_mm_h`` (mean forecast − mean
observed), ``csi``/``pod``/``far`` at each threshold (events ``value >= t``) and the FSS, each
from counts and sums pooled over every update (accumulate-then-compute, as pySTEPS'
``det_cat_fct_accum``, ``det_cont_fct_accum`` and ``fss_accum``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)

SSIM_WINDOW = 11
_PSNR_PEAK = 20.0 * math.log10(255.0)


#: The names of the physical scores, in one place: results are keyed by them, and every
#: reader of a result (tables, figures, benchmarks) looks them up here.
MAE = "mae_mm_h"
RMSE = "rmse_mm_h"
BIAS = "bias_mm_h"


def category_score(kind: str, threshold_mm_h: float) -> str:
    """The name of a categorical score at a threshold: `csi`, `pod` or `far`, e.g.
    ``category_score("csi", 1.0) == "csi_1_mm_h"``."""
    if kind not in ("csi", "pod", "far"):
        raise ValueError(f"category score: expected csi, pod or far, got {kind!r}")
    return f"{kind}_{threshold_mm_h:g}_mm_h"


def fss_score(threshold_mm_h: float, scale_px: int) -> str:
    """The name of the fractions skill score at a threshold over scale x scale pixels."""
    return f"fss_{threshold_mm_h:g}_mm_h_{scale_px}px"


#: The score the tables and figures show beside the MAE.
CSI_1 = category_score("csi", 1.0)


def _box_mean(events: np.ndarray, scale: int) -> np.ndarray:
    """Mean of (N, H, W) over centred scale×scale windows, zero outside (uniform_filter)."""
    pad = scale // 2
    x = np.pad(events.astype(np.float64), ((0, 0), (pad + 1, pad), (pad + 1, pad)))
    c = x.cumsum(1).cumsum(2)
    s = scale
    return (c[:, s:, s:] - c[:, :-s, s:] - c[:, s:, :-s] + c[:, :-s, :-s]) / (s * s)


def ssim_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """dm-pix SSIM of (N, H, W, C) float images in [0, 1]; (N,) float64."""
    import dm_pix as pix
    import jax

    fn = _ssim_fn.get("jit")
    if fn is None:
        fn = _ssim_fn["jit"] = jax.jit(lambda a, b: pix.ssim(a, b, max_val=1.0))
    return np.asarray(fn(pred.astype(np.float32), truth.astype(np.float32)), dtype=np.float64)


_ssim_fn: dict[str, Any] = {}


def psnr_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Official PSNR of (..., H, W, C) images in [0, 1] via uint8 truncation; (...) float32."""
    real = (np.clip(truth, 0.0, 1.0).astype(np.float32) * 255).astype(np.uint8)
    fake = (np.clip(pred, 0.0, 1.0).astype(np.float32) * 255).astype(np.uint8)
    diff = real.astype(np.int32) - fake.astype(np.int32)
    n = np.prod(diff.shape[-3:])
    mse = (diff**2).sum(axis=(-3, -2, -1)).astype(np.float32) / np.float32(n)
    with np.errstate(divide="ignore"):
        return np.float32(_PSNR_PEAK) - np.float32(10.0) * np.log10(mse)


def _one_shape(
    where: str, names: tuple[str, str], layout: str, a, b, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` as `dtype` arrays; ValueError unless they share one shape of `layout`'s axes."""
    a, b = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    if a.shape != b.shape or a.ndim != layout.count(",") + 1:
        raise ValueError(
            f"{where}: expected {names[0]} and {names[1]} {layout} of one shape, "
            f"got {a.shape} and {b.shape}"
        )
    return a, b


class _Sums(dict[str, np.ndarray]):
    """Per-lead float64 sums by name, added to batch by batch (accumulate-then-compute)."""

    def add(self, name: str, per_lead: np.ndarray) -> None:
        per_lead = np.asarray(per_lead, dtype=np.float64)
        if name in self:
            self[name] += per_lead
        else:
            self[name] = per_lead.copy()


class RateScores:
    """Per-lead scores of rain-rate forecasts in mm/h on valid pixels, accumulate-then-compute.

    Args:
        thresholds_mm_h: event thresholds of CSI, POD and FAR (events are ``value >= t``).
        fss_threshold_mm_h, fss_scale: the FSS event threshold and the odd window size in
            pixels (a centred ``scale × scale`` box, zero outside the frame, as pySTEPS'
            ``uniform_filter(mode="constant")``).
    """

    def __init__(
        self,
        *,
        thresholds_mm_h: tuple[float, ...] = (0.5, 1.0, 5.0),
        fss_threshold_mm_h: float = 1.0,
        fss_scale: int = 5,
    ):
        if fss_scale < 1 or fss_scale % 2 == 0:
            raise ValueError(f"fss_scale: got {fss_scale}, expected an odd number >= 1")
        self.thresholds = tuple(float(t) for t in thresholds_mm_h)
        self.fss_threshold = float(fss_threshold_mm_h)
        self.fss_scale = int(fss_scale)
        self._leads: int | None = None
        self._sums = _Sums()

    @property
    def fss_name(self) -> str:
        return fss_score(self.fss_threshold, self.fss_scale)

    def update(self, forecast, observed, valid=None) -> None:
        """Add (B, K, H, W) forecasts and observations in mm/h.

        `valid` (broadcastable to that shape, bool) marks the pixels that count; None means
        every pixel. Observations and forecasts must be finite wherever a pixel counts.
        """
        f, o = _one_shape(
            "RateScores.update", ("forecast", "observed"), "(B, K, H, W)", forecast, observed
        )
        if self._leads is not None and f.shape[1] != self._leads:
            raise ValueError(
                f"RateScores.update: expected {self._leads} leads as before, got {f.shape[1]}"
            )
        self._leads = f.shape[1]
        v = np.ones(f.shape, bool) if valid is None else np.broadcast_to(valid, f.shape)
        bad = v & ~(np.isfinite(f) & np.isfinite(o))
        if bad.any():
            raise ValueError(
                f"RateScores.update: {int(bad.sum())} valid pixels are not finite in the "
                "forecast or the observation; mark them invalid"
            )
        f, o = np.where(v, f, 0.0), np.where(v, o, 0.0)
        axes = (0, 2, 3)
        err = f - o
        self._sums.add("n", v.sum(axis=axes))
        self._sums.add("sae", np.abs(err).sum(axis=axes))
        self._sums.add("sse", (err**2).sum(axis=axes))
        self._sums.add("sum_f", f.sum(axis=axes))
        self._sums.add("sum_o", o.sum(axis=axes))
        for t in self.thresholds:
            fe, oe = (f >= t) & v, (o >= t) & v
            self._sums.add(f"hits_{t}", (fe & oe).sum(axis=axes))
            self._sums.add(f"misses_{t}", (~fe & oe).sum(axis=axes))
            self._sums.add(f"false_{t}", (fe & ~oe).sum(axis=axes))
        b, k, h, w = f.shape

        def fractions(x: np.ndarray) -> np.ndarray:
            events = ((x >= self.fss_threshold) & v).reshape(b * k, h, w)
            return _box_mean(events, self.fss_scale).reshape(b, k, h, w)

        sf, so = fractions(f), fractions(o)
        self._sums.add("fss_ff", (sf**2).sum(axis=axes))
        self._sums.add("fss_fo", (sf * so).sum(axis=axes))
        self._sums.add("fss_oo", (so**2).sum(axis=axes))

    def result(self) -> dict[str, list[float]]:
        """Per-lead lists: n_pixels, mae/rmse/bias/mean_forecast/mean_observed_mm_h,
        csi/pod/far_<t>_mm_h and the FSS; NaN where a denominator is empty."""
        if self._leads is None:
            raise ValueError("RateScores.result: nothing was added")
        s = self._sums

        def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(den > 0, num / den, np.nan)

        n = s["n"]
        per: dict[str, np.ndarray] = {
            "n_pixels": n,
            MAE: ratio(s["sae"], n),
            RMSE: np.sqrt(ratio(s["sse"], n)),
            BIAS: ratio(s["sum_f"] - s["sum_o"], n),
            "mean_forecast_mm_h": ratio(s["sum_f"], n),
            "mean_observed_mm_h": ratio(s["sum_o"], n),
        }
        for t in self.thresholds:
            hits, misses, false = s[f"hits_{t}"], s[f"misses_{t}"], s[f"false_{t}"]
            per[category_score("csi", t)] = ratio(hits, hits + misses + false)
            per[category_score("pod", t)] = ratio(hits, hits + misses)
            per[category_score("far", t)] = ratio(false, hits + false)
        ff, fo, oo = s["fss_ff"], s["fss_fo"], s["fss_oo"]
        per[self.fss_name] = 1.0 - ratio(ff - 2.0 * fo + oo, ff + oo)
        return {name: [float(x) for x in values] for name, values in per.items()}


class Verifier:
    """Accumulates per-lead sums over batches; `result` computes the scores.

    Args:
        transform: model -> physical units; physical scores only when ``is_physical``.
        thresholds_mm_h: CSI event thresholds (physical units).
        fss_threshold_mm_h, fss_scale: the FSS event threshold and the odd window size (pixels).
        ssim: compute SSIM (needs JAX and dm-pix; the costliest score).
    """

    def __init__(
        self,
        transform: DataTransform | None = None,
        *,
        thresholds_mm_h: tuple[float, ...] = (0.5, 1.0, 5.0),
        fss_threshold_mm_h: float = 1.0,
        fss_scale: int = 5,
        ssim: bool = True,
    ):
        self.transform = transform or DataTransform(kind="identity")
        self.thresholds = tuple(float(t) for t in thresholds_mm_h)
        self.fss_threshold = float(fss_threshold_mm_h)
        self.fss_scale = int(fss_scale)
        self.ssim = ssim
        self._rates = RateScores(
            thresholds_mm_h=self.thresholds,
            fss_threshold_mm_h=self.fss_threshold,
            fss_scale=self.fss_scale,
        )
        self.n_seq = 0
        self._shape: tuple[int, ...] | None = None
        self._sums = _Sums()

    def update(self, pred, truth) -> None:
        """Add a batch: `pred` and `truth` (B, K, H, W, C) in model units."""
        pred, truth = _one_shape(
            "Verifier.update", ("pred", "truth"), "(B, K, H, W, C)", pred, truth, np.float32
        )
        if self._shape is not None and pred.shape[1:] != self._shape:
            raise ValueError(
                f"Verifier.update: frames {pred.shape[1:]} differ from earlier {self._shape}"
            )
        self._shape = pred.shape[1:]
        b, k, h, w, c = pred.shape
        gx = np.clip(pred, 0.0, 1.0)
        err = gx.astype(np.float64) - truth
        self.n_seq += b
        self._sums.add("sse", (err**2).sum(axis=(0, 2, 3, 4)))
        self._sums.add("sae", np.abs(err).sum(axis=(0, 2, 3, 4)))
        self._sums.add("psnr", psnr_per_image(gx, truth).astype(np.float64).sum(axis=0))
        if self.ssim and min(h, w) >= SSIM_WINDOW:
            s = ssim_per_image(gx.reshape(b * k, h, w, c), truth.reshape(b * k, h, w, c))
            self._sums.add("ssim", s.reshape(b, k).sum(axis=0))
        if self.transform.is_physical:
            self._update_physical(gx, truth)

    def _update_physical(self, gx: np.ndarray, truth: np.ndarray) -> None:
        def rates(x: np.ndarray, *, forecast: bool) -> np.ndarray:
            """(B, K, H, W, C) -> (B*C, K, H, W) mm/h; forecasts by serve's rule (`to_rates`)."""
            b, k, h, w, c = x.shape
            phys = self.transform.to_rates(x) if forecast else self.transform.to_physical(x)
            return np.moveaxis(phys, 4, 1).reshape(b * c, k, h, w)

        self._rates.update(rates(gx, forecast=True), rates(truth, forecast=False))

    def result(self) -> dict[str, Any]:
        """Scores per lead (lists) and their means over the leads; see the module docstring."""
        if self.n_seq == 0 or self._shape is None:
            raise ValueError("Verifier.result: no batch was added")
        k, h, w, c = self._shape
        n, npx = self.n_seq, self.n_seq * h * w * c
        s = self._sums
        nan = np.full(k, np.nan)
        per: dict[str, np.ndarray] = {
            "mse": s["sse"] / n,
            "mse_pixel": s["sse"] / npx,
            "mae_pixel": s["sae"] / npx,
            "psnr": s["psnr"] / n,
            "ssim": s["ssim"] / n if "ssim" in s else nan,
        }
        if self.transform.is_physical:
            rates = self._rates.result()
            per[MAE] = np.asarray(rates[MAE])
            for t in self.thresholds:
                name = category_score("csi", t)
                per[name] = np.asarray(rates[name])
            name = self._rates.fss_name
            per[name] = np.asarray(rates[name])
        with np.errstate(invalid="ignore"):
            means = {name: float(np.mean(v)) for name, v in per.items()}
        return {
            "n_sequences": n,
            "leads": k,
            "frame_shape": [h, w, c],
            "transform": self.transform.to_json(),
            "units": self.transform.units,
            "mse_per_seq": float(np.sum(per["mse"])),
            "per_lead": {name: [float(x) for x in v] for name, v in per.items()},
            "mean": means,
        }


def format_table(result: dict[str, Any], *, timestep_seconds: int | None = None) -> str:
    """A plain-text table: one row per lead (``+k`` frames or ``+m min``), then the means."""
    names = list(result["per_lead"])
    width = max(9, *(len(n) for n in names))

    def cell(v: float) -> str:
        return f"{v:>{width}.4g}" if math.isfinite(v) else f"{str(v):>{width}}"

    def label(i: int) -> str:
        return f"+{i * timestep_seconds / 60:g} min" if timestep_seconds else f"+{i}"

    lines = [
        f"{result['n_sequences']} sequences, {result['leads']} lead frames, "
        f"transform {result['transform']['kind']} (physical units {result['units']}); "
        f"official mse per seq {result['mse_per_seq']:.4g}",
        "lead".ljust(8) + " ".join(n.rjust(width) for n in names),
    ]
    for i in range(result["leads"]):
        row = [cell(result["per_lead"][n][i]) for n in names]
        lines.append(label(i + 1).ljust(8) + " ".join(row))
    lines.append("mean".ljust(8) + " ".join(cell(result["mean"][n]) for n in names))
    return "\n".join(lines)
