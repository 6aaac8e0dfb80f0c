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

The scores in mm/h (MAE, CSI, FSS, frequency bias, ...) are the one scorer's
(`nowcastd.verification.skill`), which `evaluation` adds to this result.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)

SSIM_WINDOW = 11
_PSNR_PEAK = 20.0 * math.log10(255.0)


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
        psnr: np.ndarray = np.float32(_PSNR_PEAK) - np.float32(10.0) * np.log10(mse)
    return psnr


def _one_shape(
    where: str,
    names: tuple[str, str],
    layout: str,
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    dtype: npt.DTypeLike = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` as `dtype` arrays; ValueError unless they share one shape of `layout`'s axes."""
    first, second = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    if first.shape != second.shape or first.ndim != layout.count(",") + 1:
        raise ValueError(
            f"{where}: expected {names[0]} and {names[1]} {layout} of one shape, "
            f"got {first.shape} and {second.shape}"
        )
    return first, second


class _Sums(dict[str, np.ndarray]):
    """Per-lead float64 sums by name, added to batch by batch (accumulate-then-compute)."""

    def add(self, name: str, per_lead: np.ndarray) -> None:
        per_lead = np.asarray(per_lead, dtype=np.float64)
        if name in self:
            self[name] += per_lead
        else:
            self[name] = per_lead.copy()


class Verifier:
    """Accumulates per-lead sums over batches; `result` computes the scores.

    Args:
        transform: the data's transform (named in the result).
        ssim: compute SSIM (needs JAX and dm-pix; the costliest score).
    """

    def __init__(self, transform: DataTransform | None = None, *, ssim: bool = True):
        self.transform = transform or DataTransform(kind="identity")
        self.ssim = ssim
        self.n_seq = 0
        self._shape: tuple[int, ...] | None = None
        self._sums = _Sums()

    def update(self, pred: npt.ArrayLike, truth: npt.ArrayLike) -> None:
        """Add a batch: `pred` and `truth` (B, K, H, W, C) in model units."""
        forecast, observed = _one_shape(
            "Verifier.update", ("pred", "truth"), "(B, K, H, W, C)", pred, truth, np.float32
        )
        if self._shape is not None and forecast.shape[1:] != self._shape:
            raise ValueError(
                f"Verifier.update: frames {forecast.shape[1:]} differ from earlier {self._shape}"
            )
        self._shape = forecast.shape[1:]
        b, k, h, w, c = forecast.shape
        gx = np.clip(forecast, 0.0, 1.0)
        err = gx.astype(np.float64) - observed
        self.n_seq += b
        self._sums.add("sse", (err**2).sum(axis=(0, 2, 3, 4)))
        self._sums.add("sae", np.abs(err).sum(axis=(0, 2, 3, 4)))
        self._sums.add("psnr", psnr_per_image(gx, observed).astype(np.float64).sum(axis=0))
        if self.ssim and min(h, w) >= SSIM_WINDOW:
            s = ssim_per_image(gx.reshape(b * k, h, w, c), observed.reshape(b * k, h, w, c))
            self._sums.add("ssim", s.reshape(b, k).sum(axis=0))

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


#: The scores `Verifier` computes (the rest of an evaluation's result is the one scorer's).
OFFICIAL = ("mse", "mse_pixel", "mae_pixel", "psnr", "ssim")


def format_table(
    result: dict[str, Any],
    *,
    timestep_seconds: int | None = None,
    names: tuple[str, ...] | None = None,
) -> str:
    """A plain-text table: one row per lead (``+k`` frames or ``+m min``), then the means;
    `names`: only these scores (default: all)."""
    shown = (
        list(result["per_lead"]) if names is None else [n for n in names if n in result["per_lead"]]
    )
    width = max(9, *(len(n) for n in shown))

    def cell(v: float) -> str:
        return f"{v:>{width}.4g}" if math.isfinite(v) else f"{str(v):>{width}}"

    def label(i: int) -> str:
        return f"+{i * timestep_seconds / 60:g} min" if timestep_seconds else f"+{i}"

    lines = [
        f"{result['n_sequences']} sequences, {result['leads']} lead frames, "
        f"transform {result['transform']['kind']} (physical units {result['units']}); "
        f"official mse per seq {result['mse_per_seq']:.4g}",
        "lead".ljust(8) + " ".join(n.rjust(width) for n in shown),
    ]
    for i in range(result["leads"]):
        row = [cell(result["per_lead"][n][i]) for n in shown]
        lines.append(label(i + 1).ljust(8) + " ".join(row))
    lines.append("mean".ljust(8) + " ".join(cell(result["mean"][n]) for n in shown))
    return "\n".join(lines)
