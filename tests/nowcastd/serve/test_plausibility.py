"""The field rules serve and predict share (`serve.plausibility`), on real scan files read by
the real pipeline: saturated, extreme and constant fields are refused by name, real composites
pass, and each rule can be relaxed by its setting."""

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from model.strategy import DEFAULT
from nowcastd.io.readers import read_scan
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.outcome import Buffered, Outcome, Rejected
from nowcastd.serve.pipeline import Pipeline
from nowcastd.serve.plausibility import FieldRules, admit_field, saturation_rate_mm_h
from tests.nowcastd.io.readers.odim_helper import write_odim
from tests.nowcastd.serve.tiny import DBZ, tiny_model
from tests.paths import REPO

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
KNMI = sorted((REPO / "tests" / "fixtures" / "knmi").glob("*.h5"))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _pipeline(model, tmp_path: Path, **settings) -> Pipeline:
    cfg = ServeConfig(output_dir=tmp_path, strategy=DEFAULT, **settings)
    return Pipeline(cfg, model)


def _step(pipe: Pipeline, path: Path) -> Outcome:
    """The outcome of one scan stepped alone."""
    (outcome,) = pipe.step([path], NOW)
    return outcome


def _npy(directory: Path, i: int, field: np.ndarray) -> Path:
    path = directory / f"scan_{T0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
    np.save(path, field.astype(np.float32))
    return path


def _rain(i: int) -> np.ndarray:
    return np.random.default_rng(i).gamma(0.6, 3.0, (16, 16))


def test_the_saturation_rate_is_where_the_transform_maps_rain_to_one():
    rate = saturation_rate_mm_h(DBZ)
    assert rate == pytest.approx(205.0, abs=0.1)
    assert DBZ.to_model(np.float64(rate)) == pytest.approx(1.0)
    assert DBZ.to_model(np.float64(0.9 * rate)) < 0.99


def test_a_scan_of_500_mm_h_everywhere_is_refused_naming_the_saturation_rate(model, tmp_path):
    pipe = _pipeline(model, tmp_path)
    outcome = _step(pipe, _npy(tmp_path, 0, np.full((16, 16), 500.0)))
    assert isinstance(outcome, Rejected) and outcome.reason == "saturated"
    assert "205.0 mm/h, where the model's input saturates" in outcome.detail
    assert "256 of 256" in outcome.detail and outcome.path.name in outcome.detail


def test_reflectivity_noise_is_refused_as_saturated(model, tmp_path):
    path = tmp_path / "noise.h5"  # -32..68 dBZ: up to 650 mm/h, under max_rain_rate_mm_h
    noise = np.random.default_rng(0).integers(0, 200, (16, 16), dtype=np.uint8)
    write_odim(path, raw=noise, quantity="DBZH", gain=0.5, offset=-32.0, nominal_time=T0)
    outcome = _step(_pipeline(model, tmp_path), path)
    assert isinstance(outcome, Rejected) and outcome.reason == "saturated"


def test_noise_below_saturation_is_refused_by_the_share_above_150_mm_h(model, tmp_path):
    noise = np.random.default_rng(1).uniform(0.0, 200.0, (16, 16))
    outcome = _step(_pipeline(model, tmp_path), _npy(tmp_path, 0, noise))
    assert isinstance(outcome, Rejected) and outcome.reason == "extreme_rain"
    assert "above 150 mm/h" in outcome.detail and "saturates at 205.0" in outcome.detail


def test_a_few_pixels_above_150_mm_h_pass_more_than_max_extreme_fraction_do_not(model, tmp_path):
    few, many = _rain(0), _rain(1)
    few[0, :2] = 180.0  # 2 of 256 pixels: 0.8 %
    many[0, :4] = 180.0  # 4 of 256: 1.6 %
    pipe = _pipeline(model, tmp_path)
    assert isinstance(_step(pipe, _npy(tmp_path, 0, few)), Buffered)
    refused = _step(pipe, _npy(tmp_path, 1, many))
    assert isinstance(refused, Rejected) and refused.reason == "extreme_rain"
    assert "4 of 256" in refused.detail


def test_a_constant_field_is_refused_a_dry_one_is_not(model, tmp_path):
    pipe = _pipeline(model, tmp_path)
    field = np.full((16, 16), 5.0)
    field[:3, :3] = np.nan  # no data does not make it vary
    constant = _step(pipe, _npy(tmp_path, 0, field))
    assert isinstance(constant, Rejected) and constant.reason == "constant_field"
    assert "5 mm/h in all 247 pixels with data" in constant.detail
    assert isinstance(_step(pipe, _npy(tmp_path, 1, np.zeros((16, 16)))), Buffered)


def test_each_rule_is_relaxed_by_its_setting(model, tmp_path):
    relaxed = _pipeline(
        model,
        tmp_path,
        max_saturated_fraction=1.0,
        max_extreme_fraction=1.0,
        refuse_constant_field=False,
    )
    hot = 400.0 + 100.0 * np.random.default_rng(2).random((16, 16))
    for i, field in enumerate((hot, np.full((16, 16), 5.0))):
        assert isinstance(_step(relaxed, _npy(tmp_path, i, field)), Buffered)
    higher = _pipeline(model, tmp_path, extreme_rain_rate_mm_h=190.0)
    warm = _rain(3)
    warm[:4] = 180.0  # a quarter of the scan at 180 mm/h: below 190, below saturation
    assert isinstance(_step(higher, _npy(tmp_path, 5, warm)), Buffered)


def test_real_composites_pass_every_rule_unchanged():
    rules = FieldRules.of(ServeConfig(), DBZ)
    for path in KNMI:
        scan = read_scan(path)
        assert admit_field(scan, rules) is scan


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_saturated_fraction", 1.5),
        ("max_extreme_fraction", -0.1),
        ("extreme_rain_rate_mm_h", 0.0),
        ("extreme_rain_rate_mm_h", float("inf")),
    ],
)
def test_rule_settings_out_of_range_are_refused_naming_the_key(name, value):
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(ServeConfig(), **{name: value})
