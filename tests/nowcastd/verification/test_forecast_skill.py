"""Skill of forecast files against later scans and persistence; the demo's figure strip."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nowcastd.io.domain import Domain
from nowcastd.io.forecast_file import write_forecast
from nowcastd.verification.baselines import LagrangianExtrapolation
from nowcastd.verification.figures import save_forecast_strip
from nowcastd.verification.forecast_skill import format_skill, score_forecast_files
from nowcastd.verification.sequence import RadarSequence

T0 = datetime(2010, 8, 26, 6, 0, tzinfo=UTC)


def _observed(n: int) -> RadarSequence:
    precip = np.stack([np.full((8, 8), 2.0 + i, np.float32) for i in range(n)])
    times = np.array([int((T0 + timedelta(minutes=5 * i)).timestamp()) for i in range(n)])
    return RadarSequence(
        precip=precip,
        time_unix=times,
        timestep_seconds=300,
        source="test",
        domain=Domain.full((8, 8)),
    )


def _forecast(out, issue_index: int, values: list[float], inputs: int = 1):
    issue = T0 + timedelta(minutes=5 * issue_index)
    return write_forecast(
        out,
        issue_time=issue,
        precip=np.stack([np.full((8, 8), v, np.float32) for v in values]),
        lead_seconds=[300 * (k + 1) for k in range(len(values))],
        input_names=[f"in{j}" for j in range(inputs)],
        input_times=[issue - timedelta(minutes=5 * j) for j in reversed(range(inputs))],
        model_name="predrnn_v2",
        checkpoint_digest="x",
        grid=None,
        nan_mask=None,
        least_significant_digit=None,
    )


def test_forecasts_are_scored_per_lead_against_later_scans_and_persistence(tmp_path):
    observed = _observed(4)  # 2, 3, 4, 5 mm/h
    paths = [_forecast(tmp_path, 1, [4.0, 5.0]), _forecast(tmp_path, 2, [5.0, 9.0])]
    report = score_forecast_files(paths, observed)
    assert report.lead_minutes == (5.0, 10.0) and report.n_starts == 2
    model, persistence = report.methods["model"], report.methods["persistence"]
    assert model.n_pixels == (128, 64)  # the 06:10 forecast's +10 min is not observed
    assert model.mae == (0.0, 0.0)
    assert persistence.mae == (1.0, 2.0)
    assert model.at(1.0).frequency_bias == (1.0, 1.0)
    assert model.at(5.0).csi == (1.0, 1.0) and persistence.at(5.0).csi[0] == 0.0
    text = format_skill(report)
    assert "model vs persistence: PASS" in text
    assert "+5 min (2) model" in text and "+10 min (1) model" in text
    assert "FBI5" in text and "FSS over 5 x 5 px" in text


def test_the_extrapolation_column_starts_from_the_same_scans(tmp_path):
    observed = _observed(5)  # uniform fields: no motion, the extrapolation is persistence
    paths = [_forecast(tmp_path, 2, [5.0, 6.0], inputs=2), _forecast(tmp_path, 3, [6.0, 7.0], 2)]
    report = score_forecast_files(paths, observed, LagrangianExtrapolation())
    lk, persistence = report.methods["pysteps_lk"], report.methods["persistence"]
    np.testing.assert_allclose(lk.mae, persistence.mae, atol=1e-5)
    assert report.methods["model"].mae == (0.0, 0.0)
    text = format_skill(report)
    assert "         LK " in text and "model vs LK: PASS" in text


def test_strip_is_a_png_and_refuses_mismatched_frames(tmp_path):
    valid = [T0 + timedelta(minutes=5 * k) for k in range(1, 13)]
    rain = np.random.default_rng(0).gamma(0.5, 2.0, (12, 16, 16)).astype(np.float32)
    rain[:, :2] = np.nan
    path = save_forecast_strip(
        tmp_path / "strip.png",
        last_input=rain[0],
        observed=rain,
        forecast=rain * 0.5,
        issue_time=T0,
        valid_times=valid,
    )
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="expected last input"):
        save_forecast_strip(
            tmp_path / "bad.png",
            last_input=rain[0],
            observed=rain,
            forecast=rain[:3],
            issue_time=T0,
            valid_times=valid,
        )


def test_strip_draws_the_issue_scan_with_its_halo_and_refuses_another_width(tmp_path):
    valid = [T0 + timedelta(minutes=5 * k) for k in range(1, 13)]
    halo = np.random.default_rng(1).gamma(0.5, 2.0, (24, 24)).astype(np.float32)
    rain = np.repeat(halo[None, 4:-4, 4:-4], 12, axis=0)
    kwargs = {"observed": rain, "forecast": rain, "issue_time": T0, "valid_times": valid}
    plain = save_forecast_strip(tmp_path / "plain.png", last_input=rain[0], **kwargs)
    drawn = save_forecast_strip(
        tmp_path / "halo.png", last_input=rain[0], halo=halo, margin=4, **kwargs
    )
    assert drawn.read_bytes()[:4] == b"\x89PNG"
    assert drawn.read_bytes() != plain.read_bytes()  # the halo and its outline are drawn
    with pytest.raises(ValueError, match=r"with a halo of 3, \(22, 22\), got \(24, 24\)"):
        save_forecast_strip(tmp_path / "bad.png", last_input=rain[0], halo=halo, margin=3, **kwargs)
