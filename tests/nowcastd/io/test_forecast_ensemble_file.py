"""Forecast files with ensemble products: CF compliance, and every reader gets them back."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcastd.ensemble import products
from nowcastd.io import read_pysteps
from nowcastd.io.forecast_file import read_forecast, write_forecast
from nowcastd.io.readers import read_scan
from tests.nowcastd.io.test_forecast_cf import (
    ACCEPTED_MEDIUM,
    DOMAIN,
    LEADS,
    SAMPLE,
    _cf_report,
    _failing,
)

THRESHOLDS = (0.1, 1.0, 5.0, 10.0)


def _members(field: np.ndarray, n: int = 5) -> np.ndarray:
    """(n, K, H, W) members: the field scaled by a different factor per member and lead."""
    scale = np.linspace(0.5, 2.0, n * len(LEADS), dtype=np.float32).reshape(n, len(LEADS), 1, 1)
    return field[None, None] * scale


def _forecast(tmp_path: Path, *, keep_members: bool) -> tuple[Path, np.ndarray]:
    scans = [read_scan(p) for p in sorted(SAMPLE.glob("RAD_NL25_*.h5"))[-2:]]
    field = DOMAIN.apply(scans[-1])
    members = _members(field)
    path = write_forecast(
        tmp_path,
        issue_time=scans[-1].valid_time,
        precip=np.stack([field] * len(LEADS)),
        lead_seconds=LEADS,
        input_names=[s.path.name for s in scans],
        input_times=[s.valid_time for s in scans],
        model_name="predrnn_v2",
        checkpoint_digest="sha256:test",
        grid=DOMAIN.crop_grid(scans[-1].grid),
        nan_mask=np.isnan(field),
        ensemble=products(members, THRESHOLDS, keep_members=keep_members),
    )
    return path, members


@pytest.mark.parametrize("keep_members", [False, True], ids=["products", "with_members"])
def test_ensemble_forecast_passes_the_cf_checker(tmp_path, keep_members):
    path, _ = _forecast(tmp_path / "out", keep_members=keep_members)
    report = _cf_report(path, tmp_path)
    high, medium = _failing(report, "high"), _failing(report, "medium")
    print(f"{report['scored_points']} of {report['possible_points']}: {high} {medium}")
    assert len(report["high_priorities"]) > 10 and report["possible_points"] > 100
    assert high == {}
    assert set(medium) == set(ACCEPTED_MEDIUM)


def test_read_forecast_returns_the_products_and_members(tmp_path):
    path, members = _forecast(tmp_path, keep_members=True)
    ens = read_forecast(path).ensemble
    assert ens is not None and ens.members is not None
    assert ens.thresholds_mm_h == THRESHOLDS and ens.member_count == members.shape[0]
    # probabilities are multiples of 1/N: stored exactly; rain rates rounded as precip is
    share = np.stack([(members >= t).mean(axis=0) for t in THRESHOLDS])
    share[:, :, np.isnan(members[0, 0])] = np.nan
    np.testing.assert_array_equal(ens.probability, share.astype(np.float32))
    np.testing.assert_allclose(ens.members, members, atol=1 / 128, equal_nan=True)
    np.testing.assert_allclose(ens.mean, members.mean(axis=0), atol=1 / 128, equal_nan=True)


def test_a_file_without_an_ensemble_reads_none(tmp_path):
    path, _ = _forecast(tmp_path, keep_members=False)
    with_products = read_forecast(path).ensemble
    assert with_products is not None and with_products.members is None
    plain = write_forecast(
        tmp_path / "plain",
        issue_time=read_forecast(path).issue_time,
        precip=np.zeros((1, 4, 4), np.float32),
        lead_seconds=[300],
        input_names=[],
        input_times=[],
        model_name="m",
        checkpoint_digest="d",
        grid=None,
        nan_mask=None,
    )
    assert read_forecast(plain).ensemble is None


def test_pysteps_and_xarray_see_the_products(tmp_path):
    path, members = _forecast(tmp_path, keep_members=True)
    _, metadata = read_pysteps(path)
    assert metadata["thresholds_mm_h"] == list(THRESHOLDS)
    assert metadata["probability"].shape == (len(THRESHOLDS), len(LEADS), *members.shape[-2:])
    assert metadata["ensemble_mean"].shape == members.shape[1:]
    assert metadata["members"].shape == members.shape
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["precip_probability"].dims == ("threshold", "lead_time", "y", "x")
        assert ds["precip_members"].dims == ("realization", "lead_time", "y", "x")
        assert ds["threshold"].values.tolist() == list(THRESHOLDS)
