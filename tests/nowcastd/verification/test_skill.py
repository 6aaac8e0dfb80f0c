"""RateScores against pysteps.verification on the same arrays, and its own edge cases."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from nowcastd.verification.scores import RateScores

THRESHOLDS = (0.5, 1.0, 5.0)


def _rain(rng: np.random.Generator, shape) -> np.ndarray:
    """Continuous rain rates (no value sits exactly on a threshold) with 40 % dry pixels."""
    wet = rng.random(shape) > 0.4
    return np.where(wet, np.exp(rng.normal(0.0, 1.2, shape)), 0.0)


def _batches(seed: int = 0):
    """Two batches (B, K, H, W) of forecast, observation and validity; NaN where no data."""
    rng = np.random.default_rng(seed)
    out = []
    for b in (3, 2):
        shape = (b, 4, 24, 20)
        obs = _rain(rng, shape)
        fct = np.clip(
            obs * np.exp(rng.normal(0.0, 0.5, shape)) + rng.normal(0.2, 0.4, shape), 0, None
        )
        obs[:, :, :5, :7] = np.nan  # outside coverage
        fct[0, :, 10:14, 3:9] = np.nan  # a forecast without data there (as an input gap)
        valid = np.isfinite(obs) & np.isfinite(fct)
        out.append((fct, obs, valid))
    return out


def test_scores_match_pysteps_verification():
    with contextlib.redirect_stdout(io.StringIO()):  # the test extra installs [baselines]
        from pysteps.verification import detcatscores, detcontscores, spatialscores

    batches = _batches()
    ours = RateScores(thresholds_mm_h=THRESHOLDS, fss_threshold_mm_h=1.0, fss_scale=5)
    for fct, obs, valid in batches:
        ours.update(fct, obs, valid)
    got = ours.result()

    for k in range(4):
        cont = detcontscores.det_cont_fct_init()
        cats = {t: detcatscores.det_cat_fct_init(t) for t in THRESHOLDS}
        fss = spatialscores.fss_init(1.0, 5)
        for fct, obs, valid in batches:
            f = np.where(valid, fct, np.nan)[:, k]
            o = np.where(valid, obs, np.nan)[:, k]
            detcontscores.det_cont_fct_accum(cont, f, o)
            for t in THRESHOLDS:
                detcatscores.det_cat_fct_accum(cats[t], f, o)
            for f2, o2 in zip(f, o, strict=True):
                spatialscores.fss_accum(fss, f2, o2)
        want = detcontscores.det_cont_fct_compute(cont, ["MAE", "RMSE", "ME"])
        assert got["mae_mm_h"][k] == pytest.approx(want["MAE"], rel=1e-9)
        assert got["rmse_mm_h"][k] == pytest.approx(want["RMSE"], rel=1e-9)
        assert got["bias_mm_h"][k] == pytest.approx(want["ME"], rel=1e-9, abs=1e-12)
        for t in THRESHOLDS:
            cat = detcatscores.det_cat_fct_compute(cats[t], ["CSI", "POD", "FAR"])
            for score in ("CSI", "POD", "FAR"):
                assert got[f"{score.lower()}_{t:g}_mm_h"][k] == pytest.approx(cat[score], rel=1e-12)
        assert got["fss_1_mm_h_5px"][k] == pytest.approx(spatialscores.fss_compute(fss), rel=1e-9)


def test_bias_is_mean_forecast_minus_mean_observed_on_valid_pixels():
    fct, obs, valid = _batches(3)[0]
    s = RateScores()
    s.update(fct, obs, valid)
    r = s.result()
    for k in range(fct.shape[1]):
        v = valid[:, k]
        assert r["n_pixels"][k] == v.sum()
        assert r["mean_forecast_mm_h"][k] == pytest.approx(fct[:, k][v].mean(), rel=1e-12)
        assert r["mean_observed_mm_h"][k] == pytest.approx(obs[:, k][v].mean(), rel=1e-12)
        assert r["bias_mm_h"][k] == pytest.approx(
            fct[:, k][v].mean() - obs[:, k][v].mean(), rel=1e-9
        )


def test_nan_on_a_valid_pixel_is_refused():
    fct, obs, valid = _batches(1)[0]
    with pytest.raises(ValueError, match="not finite"):
        RateScores().update(fct, obs, np.ones_like(valid))


def test_no_events_gives_nan_not_a_number():
    zeros = np.zeros((1, 2, 8, 8))
    s = RateScores()
    s.update(zeros, zeros)
    r = s.result()
    assert r["mae_mm_h"] == [0.0, 0.0]
    assert all(np.isnan(r["csi_1_mm_h"])) and all(np.isnan(r["fss_1_mm_h_5px"]))


def test_shape_errors_name_both_shapes():
    s = RateScores()
    with pytest.raises(ValueError, match=r"\(1, 2, 8, 8\) and \(1, 2, 8, 7\)"):
        s.update(np.zeros((1, 2, 8, 8)), np.zeros((1, 2, 8, 7)))
    s.update(np.zeros((1, 2, 8, 8)), np.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="2 leads"):
        s.update(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="odd"):
        RateScores(fss_scale=4)
