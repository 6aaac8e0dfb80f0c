"""What an ensemble becomes in a forecast file: exceedance probabilities and the mean.

`products(members, thresholds)` makes a forecast file's `EnsembleProducts`
(`nowcastd.io.ensemble_file`). `exceedance(members, thresholds)`: the share of the members at or above each threshold, among
those with data at the pixel; NaN where none has data. It is monotone in the threshold by
construction (a member at or above a higher threshold is at or above every lower one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nowcastd.io.ensemble_file import EnsembleProducts

__all__ = ["EnsembleProducts", "ensemble_mean", "exceedance", "products"]


def exceedance(members: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """`members` (..., N, K, H, W) mm/h -> (..., T, K, H, W) float32 probabilities in [0, 1]."""
    members = np.asarray(members, dtype=np.float32)
    if members.ndim < 4:
        raise ValueError(f"members: expected (..., N, K, H, W), got shape {members.shape}")
    valid = np.isfinite(members)
    count = valid.sum(axis=-4)
    t = np.asarray(thresholds, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        above = np.stack([(members >= v).sum(axis=-4) for v in t], axis=-4)
        share = above / count[..., None, :, :, :].astype(np.float32)
    return np.where(count[..., None, :, :, :] > 0, share, np.nan).astype(np.float32)


def ensemble_mean(members: np.ndarray) -> np.ndarray:
    """`members` (..., N, K, H, W) -> their mean (..., K, H, W), NaN where none has data."""
    members = np.asarray(members, dtype=np.float32)
    valid = np.isfinite(members)
    count = valid.sum(axis=-4)
    total = np.where(valid, members, 0.0).sum(axis=-4)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def products(
    members: np.ndarray, thresholds: Sequence[float], *, keep_members: bool = False
) -> EnsembleProducts:
    """The products of one forecast's members (N, K, H, W) mm/h."""
    members = np.asarray(members, np.float32)
    return EnsembleProducts(
        thresholds_mm_h=tuple(float(v) for v in thresholds),
        probability=exceedance(members, thresholds),
        mean=ensemble_mean(members),
        member_count=members.shape[0],
        members=members if keep_members else None,
    )
