"""The verdict: never worse than the baseline on any score, and better on MAE."""

from __future__ import annotations

from nowcastd.verification.skill import EventScores, Neighbourhood, Scores
from nowcastd.verification.verdict import judge

MINUTES = (5.0, 10.0, 65.0)  # the third lead is past 60 min: not judged


def _scores(mae, csi1=0.5, csi5=0.3, fss=0.6, bias1=1.0, bias5=1.0) -> Scores:
    def per_lead(v):
        return v if isinstance(v, tuple) else (v,) * len(MINUTES)

    def events(t, csi, bias):
        return EventScores(
            threshold_mm_h=t, csi=per_lead(csi), pod=per_lead(0.5), far=per_lead(0.5),
            frequency_bias=per_lead(bias), fss=per_lead(fss),
        )  # fmt: skip

    return Scores(
        n_pixels=(100,) * 3, mae=per_lead(mae), rmse=per_lead(1.0), bias=per_lead(0.0),
        mean_forecast=per_lead(1.0), mean_observed=per_lead(1.0),
        events=(events(1.0, csi1, bias1), events(5.0, csi5, bias5)),
        neighbourhood=Neighbourhood.from_km(20.0, 4.0),
    )  # fmt: skip


BASE = _scores(1.0)


def test_better_mae_and_nothing_worse_passes_within_the_tolerance():
    v = judge(_scores(0.9, csi1=0.495, fss=0.591), BASE, MINUTES, baseline="LK")
    assert v.passed and v.leads_judged == (5.0, 10.0)
    assert "PASS" in v.describe()


def test_each_rule_names_its_score_and_lead():
    worse = _scores(
        (0.9, 1.0, 5.0), csi1=(0.48, 0.5, 0.0), csi5=(0.3, 0.25, 0.0), fss=0.6,
        bias1=(1.3, 1.0, 1.0), bias5=(0.5, 1.49, 1.0),
    )  # fmt: skip
    v = judge(worse, BASE, MINUTES, baseline="LK")
    lost = {(x.score, x.lead_minutes) for x in v.losses}
    assert lost == {
        ("MAE", 10.0),  # a tie is no win
        ("CSI>=1", 5.0),  # 0.48 < 0.5 - 0.01
        ("CSI>=5", 10.0),
        ("FBI>=1", 5.0),  # 1.3: outside 0.8-1.25 and farther from 1 than the baseline's 1.0
        ("FBI>=5", 5.0),  # 0.5: outside 0.6-1.5
    }
    text = v.describe()
    assert text.startswith("model vs LK: FAIL") and "CSI>=1 at +5 (0.48 vs 0.5)" in text


def test_a_bias_outside_the_band_passes_when_no_farther_from_1_than_the_baselines():
    base = _scores(1.0, bias1=0.6, bias5=2.0)
    assert judge(_scores(0.9, bias1=0.7, bias5=1.8), base, MINUTES).passed
    assert not judge(_scores(0.9, bias1=0.55, bias5=1.8), base, MINUTES).passed


def test_nan_judges_nothing_where_the_baseline_lacks_the_score_but_loses_otherwise():
    nan = float("nan")
    assert judge(
        _scores(0.9, csi5=nan, bias5=nan), _scores(1.0, csi5=nan, bias5=nan), MINUTES
    ).passed
    assert not judge(_scores(0.9, csi5=nan), BASE, MINUTES).passed  # ours lacks it
    assert not judge(_scores(nan), BASE, MINUTES).passed
