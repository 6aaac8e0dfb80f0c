"""The one scorer against pysteps.verification on the same arrays, and its own edge cases."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from nowcastd.verification.skill import Neighbourhood, Scorer, box_mean

THRESHOLDS = (1.0, 5.0)
HOOD = Neighbourhood.from_km(20.0, 4.0)  # 5 pixels


def _rain(rng: np.random.Generator, shape) -> np.ndarray:
    """Continuous rain rates (no value sits exactly on a threshold) with 40 % dry pixels."""
    wet = rng.random(shape) > 0.4
    return np.where(wet, np.exp(rng.normal(0.5, 1.2, shape)), 0.0)


def _batches(seed: int = 0):
    """Two batches (B, K, H, W) of forecast and observation; NaN where no data."""
    rng = np.random.default_rng(seed)
    out = []
    for b in (3, 2):
        shape = (b, 4, 24, 20)
        obs = _rain(rng, shape)
        fct = np.clip(
            obs * np.exp(rng.normal(0.0, 0.5, shape)) + rng.normal(0.2, 0.4, shape), 0, None
        )
        obs[:, :, :5, :7] = np.nan  # outside coverage
        fct[0, :, 10:14, 3:9] = np.nan  # a forecast without data there (rain from outside)
        out.append((fct, obs))
    return out


def test_scores_match_pysteps_verification_on_the_pixels_both_have_data():
    with contextlib.redirect_stdout(io.StringIO()):  # the test extra installs [baselines]
        from pysteps.verification import detcatscores, detcontscores, spatialscores

    batches = _batches()
    ours = Scorer(HOOD, thresholds_mm_h=THRESHOLDS)
    for fct, obs in batches:
        ours.update(fct, obs)
    got = ours.result()

    for k in range(4):
        cont = detcontscores.det_cont_fct_init()
        cats = {t: detcatscores.det_cat_fct_init(t) for t in THRESHOLDS}
        fss = {t: spatialscores.fss_init(t, HOOD.px) for t in THRESHOLDS}
        for fct, obs in batches:
            both = np.isfinite(fct) & np.isfinite(obs)
            f, o = np.where(both, fct, np.nan)[:, k], np.where(both, obs, np.nan)[:, k]
            detcontscores.det_cont_fct_accum(cont, f, o)
            for t in THRESHOLDS:
                detcatscores.det_cat_fct_accum(cats[t], f, o)
                for f2, o2 in zip(f, o, strict=True):
                    spatialscores.fss_accum(fss[t], f2, o2)
        want = detcontscores.det_cont_fct_compute(cont, ["MAE", "RMSE", "ME"])
        assert got.mae[k] == pytest.approx(want["MAE"], rel=1e-9)
        assert got.rmse[k] == pytest.approx(want["RMSE"], rel=1e-9)
        assert got.bias[k] == pytest.approx(want["ME"], rel=1e-9, abs=1e-12)
        for t in THRESHOLDS:
            cat = detcatscores.det_cat_fct_compute(cats[t], ["CSI", "POD", "FAR", "BIAS"])
            e = got.at(t)
            assert e.csi[k] == pytest.approx(cat["CSI"], rel=1e-12)
            assert e.pod[k] == pytest.approx(cat["POD"], rel=1e-12)
            assert e.far[k] == pytest.approx(cat["FAR"], rel=1e-12)
            assert e.frequency_bias[k] == pytest.approx(cat["BIAS"], rel=1e-12)
            assert e.fss[k] == pytest.approx(spatialscores.fss_compute(fss[t]), rel=1e-9)


@pytest.mark.parametrize("width", [1, 4, 5, 10])
def test_box_mean_is_scipys_uniform_filter_zero_outside(width):
    from scipy.ndimage import uniform_filter

    x = (np.random.default_rng(width).random((2, 13, 11)) > 0.6).astype(np.float64)
    want = np.stack([uniform_filter(f, size=width, mode="constant", cval=0.0) for f in x])
    np.testing.assert_allclose(box_mean(x, width), want, atol=1e-12)


def test_the_neighbourhood_is_km_over_the_pixel_size():
    assert Neighbourhood.from_km(20.0, 4.0).px == 5
    two = Neighbourhood.from_km(20.0, 2.0)
    assert two.px == 10 and two.actual_km == 20.0 and "10 x 10 px" in two.describe()
    assert Neighbourhood.from_km(20.0, 30.0).px == 1
    with pytest.raises(ValueError, match="> 0 km"):
        Neighbourhood.from_km(20.0, 0.0)


def test_frequency_bias_counts_forecast_over_observed_events_where_both_have_data():
    obs = np.zeros((1, 1, 4, 4))
    fct = np.zeros((1, 1, 4, 4))
    obs[0, 0, 0, :2] = 2.0  # two observed events
    fct[0, 0, 1, :3] = 2.0  # three forecast events ...
    fct[0, 0, 3, 3] = np.nan  # ... and one pixel without forecast data, not counted
    obs[0, 0, 3, 3] = 9.0
    s = Scorer(HOOD)
    s.update(fct, obs)
    r = s.result()
    assert r.at(1.0).frequency_bias == (1.5,) and r.n_pixels == (15,)
    assert np.isnan(r.at(5.0).frequency_bias[0])  # no observed event at 5 mm/h


def test_pooled_sums_equal_one_scorer_of_everything():
    (f1, o1), (f2, o2) = _batches(2)
    one, a, b = Scorer(HOOD), Scorer(HOOD), Scorer(HOOD)
    one.update(f1, o1)
    one.update(f2, o2)
    a.update(f1, o1)
    b.update(f2, o2)
    a.merge(b)
    assert a.result() == one.result()


def test_no_events_gives_nan_and_json_names_every_score():
    zeros = np.zeros((1, 2, 8, 8))
    s = Scorer(HOOD)
    s.update(zeros, zeros)
    r = s.result()
    assert r.mae == (0.0, 0.0)
    assert all(np.isnan(r.at(1.0).csi)) and all(np.isnan(r.at(5.0).fss))
    names = set(r.to_json())
    for t in ("1", "5"):
        for score in ("csi", "pod", "far", "frequency_bias", "fss"):
            assert f"{score}_{t}_mm_h" in names


def test_shape_errors_name_both_shapes():
    s = Scorer(HOOD)
    with pytest.raises(ValueError, match=r"\(1, 2, 8, 8\) and \(1, 2, 8, 7\)"):
        s.update(np.zeros((1, 2, 8, 8)), np.zeros((1, 2, 8, 7)))
    s.update(np.zeros((1, 2, 8, 8)), np.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="2 leads"):
        s.update(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="nothing was added"):
        Scorer(HOOD).result()
