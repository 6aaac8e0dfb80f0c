"""The ensemble scorer against cases computed by hand, and on the real fixture movie."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from nowcastd.verification.ensemble_skill import EnsembleScorer, exceedance
from nowcastd.verification.skill import Neighbourhood, Scorer
from tests.paths import FIXTURES

MOVIE = FIXTURES / "radar" / "movie_small.h5"


def movie() -> np.ndarray:
    with h5py.File(MOVIE, "r") as h:
        return np.asarray(h["precip"][:], np.float32)  # (12, 64, 64) mm/h


def test_one_member_crps_is_the_mae_of_the_one_scorer_on_real_rain():
    rain = movie()
    forecast = np.stack([rain[2:5], rain[3:6]])  # (2, K=3, H, W): persistence-like shifts
    observed = np.stack([rain[5:8], rain[6:9]])
    observed[0, 1, :10, :10] = np.nan  # no data: left out by both scorers
    scorer = EnsembleScorer(1)
    scorer.update(forecast[:, None], observed)
    det = Scorer(Neighbourhood.from_km(4.0, 1.0))
    det.update(forecast, observed)

    ens, scores = scorer.result(), det.result()
    assert ens.n_pixels == scores.n_pixels
    assert ens.n_pixels[1] == 2 * 64 * 64 - 100
    assert ens.crps == pytest.approx(scores.mae, rel=1e-9)
    assert ens.crps[0] > 0.1


def test_crps_and_spread_skill_of_two_members_by_hand():
    # members 0 and 2 against 1 at one pixel: E|X - y| - E|X - X'| / 2 = 1 - 1 / 2 = 0.5;
    # against 3 at another: (3 + 1) / 2 - 1 / 2 = 1.5. Spread: variance 2 (ddof 1) at both;
    # the mean 1 errs by 0 and 2: MSE 2; ratio sqrt(3 / 2) * sqrt(2) / sqrt(2).
    members = np.array([[[[[0.0, 0.0]]], [[[2.0, 2.0]]]]])  # (1, 2, 1, 1, 2)
    observed = np.array([[[[1.0, 3.0]]]])
    scorer = EnsembleScorer(2)
    scorer.update(members, observed)
    s = scorer.result()

    assert s.crps[0] == pytest.approx(1.0)
    assert s.spread[0] == pytest.approx(math.sqrt(2.0))
    assert s.rmse_of_mean[0] == pytest.approx(math.sqrt(2.0))
    assert s.spread_skill[0] == pytest.approx(math.sqrt(1.5))


def reliable_case(members: int, pixels_per_count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Pixels where j of `members` members forecast 2 mm/h (the others 0), and exactly
    j / members of those pixels observe 2 mm/h: a perfectly reliable probability at 1 mm/h."""
    columns_f, columns_o = [], []
    for j in range(members + 1):
        f = np.zeros((members, pixels_per_count))
        f[:j] = 2.0
        o = np.zeros(pixels_per_count)
        o[: pixels_per_count * j // members] = 2.0
        columns_f.append(f)
        columns_o.append(o)
    f = np.concatenate(columns_f, axis=1)  # (N, P)
    o = np.concatenate(columns_o)
    return f[None, :, None, None, :], o[None, None, None, :]


def test_a_perfectly_reliable_ensemble_has_no_reliability_gap():
    members, observed = reliable_case(4)
    scorer = EnsembleScorer(4, thresholds_mm_h=(1.0,))
    scorer.update(members, observed)
    event = scorer.result().at(1.0)

    diagram = event.reliability[0]
    full = [n > 0 for n in diagram.pixels]
    assert sum(full) == 5 and sum(diagram.pixels) == 5 * 40
    d = diagram
    for f, o, n in zip(d.forecast_probability, d.observed_frequency, d.pixels, strict=True):
        if n:
            assert o == pytest.approx(f)
    assert event.reliability_gap[0] == pytest.approx(0.0, abs=1e-12)
    assert 0.5 < event.roc_area[0] < 1.0


def test_an_overconfident_ensemble_shows_its_gap():
    members, observed = reliable_case(4)
    observed[:] = 0.0  # it never rains: the bin forecasting 1 observes 0
    scorer = EnsembleScorer(4, thresholds_mm_h=(1.0,))
    scorer.update(members, observed)
    event = scorer.result().at(1.0)
    assert event.reliability_gap[0] == pytest.approx(1.0)
    assert math.isnan(event.roc_area[0])  # no observed event: no ROC area


def test_roc_area_is_one_for_perfect_discrimination_and_a_half_without_skill():
    n = 200
    rain = np.r_[np.full(n // 2, 3.0), np.zeros(n // 2)]
    perfect = np.stack([rain, rain, rain])  # every member right
    blind = np.stack([np.full(n, 3.0), np.zeros(n), np.zeros(n)])  # 1/3 everywhere
    for members, expected in ((perfect, 1.0), (blind, 0.5)):
        scorer = EnsembleScorer(3, thresholds_mm_h=(1.0,))
        scorer.update(members[None, :, None, None, :], rain[None, None, None, :])
        assert scorer.result().at(1.0).roc_area[0] == pytest.approx(expected)


def test_rank_histogram_sums_to_one_and_puts_an_observation_above_all_members_last():
    rain = movie()
    members = np.stack([rain[3:5], rain[4:6], rain[5:7]])[None]  # (1, 3, 2, H, W)
    scorer = EnsembleScorer(3)
    scorer.update(members, rain[8:10][None])
    hist = scorer.result().rank_histogram
    assert len(hist) == 2 and all(len(h) == 4 for h in hist)
    assert all(sum(h) == pytest.approx(1.0) for h in hist)

    above = EnsembleScorer(3)
    above.update(members, members.max(axis=1) + 1.0)
    assert above.result().rank_histogram[0] == pytest.approx((0.0, 0.0, 0.0, 1.0))


def test_a_pixel_counts_only_where_the_observation_and_every_member_have_data():
    rain = movie()[:4]
    members = np.stack([rain[:2], rain[1:3]])[None]  # (1, 2, 2, H, W)
    members[0, 1, 0, 0, :5] = np.nan  # one member lacks 5 pixels at lead 1
    observed = rain[2:4][None].copy()
    observed[0, 1, 1, :7] = np.nan  # the observation lacks 7 at lead 2
    scorer = EnsembleScorer(2)
    scorer.update(members, observed)
    s = scorer.result()
    assert s.n_pixels == (64 * 64 - 5, 64 * 64 - 7)
    assert all(math.isfinite(x) for x in s.crps + s.spread_skill)


def test_merged_scorers_equal_one_scorer_of_all_forecasts():
    rain = movie()
    members = np.stack([np.stack([rain[i : i + 3], rain[i + 1 : i + 4]]) for i in range(4)])
    observed = np.stack([rain[i + 4 : i + 7] for i in range(4)])
    whole, first, second = EnsembleScorer(2), EnsembleScorer(2), EnsembleScorer(2)
    whole.update(members, observed)
    first.update(members[:2], observed[:2])
    second.update(members[2:], observed[2:])
    first.merge(second)
    a, b = whole.result(), first.result()
    assert a.n_pixels == b.n_pixels
    assert a.crps == pytest.approx(b.crps)
    assert a.spread_skill == pytest.approx(b.spread_skill)
    for t in (1.0, 5.0):
        assert a.at(t).roc_area == pytest.approx(b.at(t).roc_area)
        ra, rb = a.at(t).reliability_all_leads, b.at(t).reliability_all_leads
        assert ra.pixels == rb.pixels and sum(ra.pixels) > 0
        assert ra.observed_frequency == pytest.approx(rb.observed_frequency, nan_ok=True)


def test_exceedance_is_the_share_of_members_and_nan_without_data():
    members = np.array([[0.5, 1.0, np.nan], [2.0, 0.0, 3.0], [1.0, 1.0, 3.0]])
    p = exceedance(members, 1.0)
    assert p[:2] == pytest.approx([2 / 3, 2 / 3])
    assert math.isnan(p[2])


@pytest.mark.parametrize(
    ("members", "observed", "message"),
    [
        ((1, 3, 2, 4, 4), (1, 2, 4, 4), "expected members (n, 2, K, H, W)"),
        ((1, 2, 2, 4, 4), (1, 3, 4, 4), "got (1, 2, 2, 4, 4) and (1, 3, 4, 4)"),
        ((2, 4, 4), (2, 4, 4), "got (2, 4, 4)"),
    ],
)
def test_update_names_the_shapes_it_expected_and_got(members, observed, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EnsembleScorer(2).update(np.zeros(members), np.zeros(observed))


def test_to_json_carries_every_per_lead_score():
    rain = movie()
    scorer = EnsembleScorer(2)
    scorer.update(np.stack([rain[0:2], rain[1:3]])[None], rain[3:5][None])
    body = scorer.result().to_json()
    for key in ("crps_mm_h", "spread_skill_ratio", "roc_area_1_mm_h", "reliability_gap_5_mm_h"):
        assert len(body[key]) == 2, key
    assert len(body["reliability_1_mm_h"]["per_lead"]) == 2
    assert len(body["reliability_1_mm_h"]["all_leads"]["pixels"]) == 10
    assert [len(h) for h in body["rank_histogram"]] == [3, 3]
