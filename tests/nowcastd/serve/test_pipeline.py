"""The pipeline's values: a Forecast holds what its file holds; config swaps are whole."""

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from model.rollout import rollout
from nowcastd.errors import ConfigError
from nowcastd.io.forecast_file import quantize, read_forecast
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.pipeline import Pipeline, ScanRejected
from tests.nowcastd.serve.tiny import DBZ, tiny_model

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    pipe = Pipeline(ServeConfig(timestep_seconds=300.0), tiny_model())
    pipe.compile()
    return pipe


def _scan(directory: Path, i: int, name: str = "scan_{:%Y%m%d%H%M}.npy") -> Path:
    path = directory / name.format(T0 + timedelta(minutes=5 * i))
    field = np.random.default_rng(i).gamma(0.6, 3.0, (16, 16)).astype(np.float32)
    field[: i % 3 + 1, :2] = np.nan  # no data in a corner, a different one per scan
    np.save(path, field)
    return path


def _reference(pipe: Pipeline, frames) -> np.ndarray:
    """The full rollout from `frames` by the model alone, NaN rule applied."""
    context = np.stack([f.model for f in frames])[None]
    network = pipe.model.network
    precip = DBZ.to_physical(np.asarray(rollout(network, context, pipe.num_leads)))[0, ..., 0]
    precip = np.nan_to_num(precip, nan=0.0)
    precip[:, frames[-1].nan_mask] = np.nan
    return precip


def test_scan_pushed_during_background_pre_encoding_uses_it_and_equals_full_rollout(
    pipeline, tmp_path
):
    frames = [pipeline.read(_scan(tmp_path, i)) for i in range(4)]
    for frame in frames[:3]:
        pipeline.push(frame)
    pipeline.forecast()
    pipeline.pre_encode(background=True)
    pipeline.push(frames[3])  # waits for the encode before donating the buffer it reads
    fast = pipeline.forecast()
    assert fast.pre_encoded
    np.testing.assert_allclose(fast.precip, _reference(pipeline, frames[1:]), atol=1e-4)


def test_forecast_value_is_what_write_puts_in_the_file(pipeline, tmp_path):
    frames = [pipeline.read(_scan(tmp_path, i)) for i in range(10, 14)]
    for frame in frames[:3]:
        pipeline.push(frame)
    forecast = pipeline.forecast()
    pipeline.push(frames[3])  # a later push changes the buffer, not the forecast value
    path = pipeline.write(forecast, tmp_path / "out")
    held = read_forecast(path)

    assert held["issue_time"] == forecast.issue_time == frames[2].valid_time
    assert held["valid_times"] == list(forecast.valid_times)
    assert list(held["lead_seconds"]) == list(forecast.lead_seconds) == [300, 600, 900]
    assert held["attrs"]["input_scans"] == list(forecast.input_names)
    assert forecast.input_names == tuple(f.name for f in frames[:3])
    assert forecast.input_times == tuple(f.valid_time for f in frames[:3])
    np.testing.assert_array_equal(held["input_nan_mask"], frames[2].nan_mask)
    np.testing.assert_array_equal(forecast.nan_mask, frames[2].nan_mask)
    np.testing.assert_array_equal(held["precip"], quantize(forecast.precip, 2))
    assert np.isnan(forecast.precip[:, frames[2].nan_mask]).all()
    assert not forecast.precip.flags.writeable
    assert set(forecast.timings) == {"read", "transfer", "rollout"}
    np.testing.assert_allclose(forecast.precip, _reference(pipeline, frames[:3]), atol=1e-4)


def test_status_is_a_snapshot_of_the_buffer(tmp_path):
    pipe = Pipeline(ServeConfig(timestep_seconds=300.0), tiny_model())
    empty = pipe.status()
    assert (empty.frames, empty.capacity, empty.full, empty.newest_time) == (0, 3, False, None)
    frames = [pipe.read(_scan(tmp_path, i)) for i in range(3)]
    for frame in frames:
        pipe.push(frame)
    status = pipe.status()
    assert (status.frames, status.full, status.newest_time) == (3, True, frames[-1].valid_time)
    assert empty.frames == 0  # an earlier snapshot does not follow the pipeline
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.frames = 0


def test_reconfigure_swaps_the_whole_config_and_refuses_fixed_keys(tmp_path):
    cfg = ServeConfig(timestep_seconds=300.0)
    pipe = Pipeline(cfg, tiny_model())
    path = _scan(tmp_path, 0, name="radar-{:%d%H%M}.npy")  # a name the default pattern misses
    with pytest.raises(ScanRejected):
        pipe.read(path)
    reader = ReaderConfig(npy_time_pattern=r"radar-(\d{6})", npy_time_format="%d%H%M")
    new = dataclasses.replace(cfg, reader=reader, retention_keep_last=5)
    pipe.reconfigure(new)
    assert pipe.cfg is new
    assert pipe.read(path).valid_time.day == T0.day
    with pytest.raises(ConfigError, match="timestep_seconds"):
        pipe.reconfigure(dataclasses.replace(new, timestep_seconds=600.0))
    assert pipe.cfg is new
