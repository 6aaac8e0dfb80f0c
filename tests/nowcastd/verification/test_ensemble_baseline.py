"""pysteps' STEPS as the ensemble baseline, and the ensemble verdict."""

from __future__ import annotations

import dataclasses
import math

import h5py
import numpy as np
import pytest

from nowcastd.verification.baselines import Steps
from nowcastd.verification.ensemble_skill import (
    EnsembleScores,
    EventProbabilityScores,
    ReliabilityDiagram,
)
from nowcastd.verification.ensemble_verdict import judge_ensemble
from tests.paths import FIXTURES

MOVIE = FIXTURES / "radar" / "movie_small.h5"


@pytest.fixture(scope="module")
def rain() -> np.ndarray:
    with h5py.File(MOVIE, "r") as h:
        return np.asarray(h["precip"][:], np.float32)


def test_steps_members_are_reproducible_per_seed_and_differ_between_members(rain):
    steps = Steps(pixel_km=1.0, timestep_minutes=5.0)
    a = steps(rain[:3], 2, 3, seed=7)
    b = steps(rain[:3], 2, 3, seed=7)
    c = steps(rain[:3], 2, 3, seed=8)

    assert a.shape == (3, 2, 64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    wet = np.isfinite(a).all(axis=0)
    assert wet[1].sum() > 1000
    assert not np.array_equal(a[:, 1][:, wet[1]], c[:, 1][:, wet[1]])
    assert np.abs(a[0, 1] - a[1, 1])[wet[1]].max() > 0.1  # members differ
    assert np.nanmin(a) >= 0.0


def test_steps_forecasts_dry_from_a_dry_window_and_refuses_two_frames(rain):
    steps = Steps(pixel_km=4.0, timestep_minutes=5.0)
    dry = steps(np.zeros((3, 16, 16), np.float32), 2, 4, seed=0)
    assert dry.shape == (4, 2, 16, 16) and not dry.any()
    with pytest.raises(ValueError, match="STEPS: expected at least 3 input frames, got 2"):
        steps(rain[:2], 2, 4, seed=0)
    with pytest.raises(ValueError, match="expected a pixel size and a time step > 0"):
        Steps(pixel_km=0.0, timestep_minutes=5.0)


def scores(crps: float, roc: float, gap: float, leads: int = 3) -> EnsembleScores:
    """Scores with the same value at every lead; one reliability bin whose gap is `gap`."""
    diagram = ReliabilityDiagram(
        threshold_mm_h=1.0,
        forecast_probability=(0.5,),
        observed_frequency=(0.5 + gap,),
        pixels=(100,),
    )
    events = tuple(
        EventProbabilityScores(
            threshold_mm_h=t,
            roc_area=(roc,) * leads,
            reliability=(dataclasses.replace(diagram, threshold_mm_h=t),) * leads,
            reliability_all_leads=diagram,
        )
        for t in (1.0, 5.0)
    )
    return EnsembleScores(
        members=2, n_pixels=(100,) * leads, crps=(crps,) * leads, spread=(1.0,) * leads,
        rmse_of_mean=(1.0,) * leads, spread_skill=(1.0,) * leads,
        rank_histogram=((1 / 3,) * 3,) * leads, events=events,
    )  # fmt: skip


def test_ensemble_verdict_passes_a_better_reliable_ensemble():
    verdict = judge_ensemble(scores(0.4, 0.8, 0.05), scores(0.5, 0.8, 0.3), (5, 10, 15))
    assert verdict.passed and verdict.describe().endswith("at every lead 5-15 min)")


def test_ensemble_verdict_names_each_losing_score_and_lead():
    ours = scores(0.5, 0.79, 0.12)
    verdict = judge_ensemble(ours, scores(0.5, 0.8, 0.0), (5, 10, 65))
    assert not verdict.passed
    assert verdict.leads_judged == (5, 10)  # +65 min is beyond the hour
    assert {x.score for x in verdict.losses} == {"CRPS", "ROC>=1", "ROC>=5", "REL>=1", "REL>=5"}
    assert "CRPS at +5 (0.5 vs 0.5), +10 (0.5 vs 0.5)" in verdict.describe()


def test_ensemble_verdict_skips_a_roc_area_the_baseline_cannot_have():
    verdict = judge_ensemble(scores(0.4, math.nan, 0.0), scores(0.5, math.nan, 0.0), (5,))
    assert verdict.passed
    lost = judge_ensemble(scores(0.4, math.nan, 0.0), scores(0.5, 0.7, 0.0), (5,))
    assert [x.score for x in lost.losses] == ["ROC>=1", "ROC>=5"]
