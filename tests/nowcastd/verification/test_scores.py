"""Verifier: the official MSE/PSNR, SSIM against scikit-image, CSI and FSS in mm/h."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from nowcastd.io.transform import DataTransform
from nowcastd.verification.scores import Verifier, format_table, psnr_per_image, ssim_per_image

DBZ = DataTransform(kind="dbz")


def _fields(shape, seed):
    """Smooth rain-like model-unit fields in [0, 0.8] with dry areas."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=shape), sigma=(0, 0, 2, 2, 0))
    return np.clip(x / x.std() * 0.25 + 0.1, 0, 0.8).astype(np.float32)


def _official_psnr(gen, real):
    """metrics.batch_psnr of the official code, as REFERENCE.md §9 describes it."""
    out = []
    for g, r in zip(gen, real, strict=True):
        mse = np.float32(((r.astype(np.int32) - g.astype(np.int32)) ** 2).sum() / g.size)
        out.append(np.inf if mse == 0 else 20 * np.log10(255) - 10 * np.log10(mse))
    return np.mean(out)


def test_official_mse_and_psnr_over_two_batches():
    batches = [
        (_fields((4, 3, 16, 16, 1), s) * 1.3 - 0.1, _fields((4, 3, 16, 16, 1), s + 9))
        for s in (1, 2)
    ]
    v = Verifier(ssim=False)
    for p, t in batches:
        v.update(p, t)
    res = v.result()
    for i in range(3):
        sse = sum(((t[:, i] - np.clip(p[:, i], 0, 1)) ** 2).sum() for p, t in batches)
        assert res["per_lead"]["mse"][i] == pytest.approx(sse / 8, rel=1e-6)
        assert res["per_lead"]["mse_pixel"][i] == pytest.approx(sse / (8 * 256), rel=1e-6)
        psnr = np.mean(
            [
                _official_psnr(
                    (np.clip(p[:, i], 0, 1) * 255).astype(np.uint8),
                    (t[:, i] * 255).astype(np.uint8),
                )
                for p, t in batches
            ]
        )
        assert res["per_lead"]["psnr"][i] == pytest.approx(psnr, rel=1e-5)
    assert res["mse_per_seq"] == pytest.approx(sum(res["per_lead"]["mse"]))
    assert "csi_1_mm_h" not in res["per_lead"] and math.isnan(res["mean"]["ssim"])


def test_perfect_forecast_scores():
    t = _fields((2, 2, 24, 24, 1), 3)
    t[DBZ.to_rates(t) == 0] = 0.0  # no drizzle below the forecasts' rain threshold
    v = Verifier(DBZ)
    v.update(t, t)
    res = v.result()["mean"]
    assert res["mse"] == 0 and res["mae_pixel"] == 0 and math.isinf(res["psnr"])
    assert res["ssim"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("channels", [1, 2])
def test_ssim_matches_scikit_image_gaussian_settings(channels):
    p = _fields((1, 6, 40, 36, channels), 4)[0]
    t = np.clip(p + _fields((1, 6, 40, 36, channels), 5)[0] * 0.3 - 0.05, 0, 1)
    ours = ssim_per_image(p, t)
    for a, b, s in zip(p, t, ours, strict=True):
        ref = structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        assert s == pytest.approx(ref, abs=1e-3)


def test_ssim_is_nan_for_frames_smaller_than_the_window():
    v = Verifier()
    v.update(np.zeros((1, 2, 8, 8, 1)), np.zeros((1, 2, 8, 8, 1)))
    assert all(math.isnan(x) for x in v.result()["per_lead"]["ssim"])


def test_psnr_truncates_like_the_official_code():
    a = np.full((1, 2, 2, 1), 0.999, np.float32)
    b = np.full((1, 2, 2, 1), 0.996, np.float32)  # 254.7 -> 254 and 253.9 -> 253
    assert psnr_per_image(a, b)[0] == pytest.approx(20 * np.log10(255), rel=1e-6)


def test_errors_and_table():
    v = Verifier(DBZ)
    with pytest.raises(ValueError, match="no batch"):
        v.result()
    with pytest.raises(ValueError, match="one shape"):
        v.update(np.zeros((1, 2, 12, 12, 1)), np.zeros((1, 3, 12, 12, 1)))
    v.update(_fields((2, 3, 12, 12, 1), 1), _fields((2, 3, 12, 12, 1), 2))
    with pytest.raises(ValueError, match="differ from earlier"):
        v.update(np.zeros((1, 2, 12, 12, 1)), np.zeros((1, 2, 12, 12, 1)))
    table = format_table(v.result(), timestep_seconds=300)
    lines = table.splitlines()
    assert len(lines) == 2 + 3 + 1 and "mse_pixel" in lines[1]
    assert lines[2].startswith("+5 min") and lines[4].startswith("+15 min")
    assert lines[-1].startswith("mean") and "2 sequences" in lines[0]
