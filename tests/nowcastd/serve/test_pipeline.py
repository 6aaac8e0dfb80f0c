"""The pipeline owns a scan from file to forecast file: `step` returns one typed outcome per
scan; a Written forecast holds what its file holds; config swaps are whole; what a stage raises
becomes its scan's outcome."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from model.rollout import rollout
from model.strategy import DEFAULT
from nowcastd.errors import ConfigError
from nowcastd.io.domain import Domain
from nowcastd.io.forecast_file import quantize, read_forecast
from nowcastd.io.readers import ScanRefused
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.serve.buffer import Push
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.events import event_record
from nowcastd.serve.labels import FailureReason, RejectReason, Stage
from nowcastd.serve.outcome import Buffered, Failed, Outcome, Rejected, Written
from nowcastd.serve.pipeline import Pipeline, _guard
from tests.nowcastd.io.readers.odim_helper import write_odim
from tests.nowcastd.serve.tiny import DBZ, tiny_model

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
RAIN_64 = (np.add.outer(np.arange(64), np.arange(64)) % 40).astype(np.uint8)  # 0..3.9 mm/h


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("forecasts")


@pytest.fixture(scope="module")
def pipeline(out_dir) -> Pipeline:
    pipe = Pipeline(
        ServeConfig(timestep_seconds=300.0, output_dir=out_dir, strategy=DEFAULT), tiny_model()
    )
    pipe.compile()
    return pipe


def _scan(directory: Path, i: int, name: str = "scan_{:%Y%m%d%H%M}.npy") -> Path:
    path = directory / name.format(T0 + timedelta(minutes=5 * i))
    field = np.random.default_rng(i).gamma(0.6, 3.0, (16, 16)).astype(np.float32)
    field[: i % 3 + 1, :2] = np.nan  # no data in a corner, a different one per scan
    np.save(path, field)
    return path


def _step(pipe: Pipeline, path: Path, now: datetime = NOW) -> Outcome:
    """The outcome of one scan stepped alone."""
    (outcome,) = pipe.step([path], now)
    return outcome


def _reference(pipe: Pipeline, paths) -> np.ndarray:
    """The full rollout from the scans by the model alone, clipped, NaN rule applied."""
    frames = [pipe.read(path) for path in paths]
    context = np.stack([f.model for f in frames])[None]
    network = pipe.model.network
    pred = np.asarray(rollout(network, context, pipe.num_leads))[0, ..., 0]
    precip = DBZ.to_rates(pred)
    precip[:, frames[-1].nan_mask] = np.nan
    return precip


def test_step_buffers_then_writes_and_the_next_scan_uses_the_background_pre_encoding(
    pipeline, tmp_path
):
    paths = [_scan(tmp_path, i) for i in range(4)]
    first = [_step(pipeline, path) for path in paths[:2]]
    assert all(isinstance(o, Buffered) and o.push is Push.APPENDED for o in first)
    written = _step(pipeline, paths[2])  # completes the window; pre-encodes the next one
    assert isinstance(written, Written) and not written.forecast.pre_encoded
    fast = _step(pipeline, paths[3])  # waits for the encode before donating the buffer
    assert isinstance(fast, Written) and fast.forecast.pre_encoded
    np.testing.assert_allclose(fast.forecast.precip, _reference(pipeline, paths[1:]), atol=1e-4)
    assert set(fast.timings) == {"read", "transfer", "encode_wait", "rollout", "write"}


def test_written_forecast_is_what_its_file_holds(pipeline, tmp_path):
    paths = [_scan(tmp_path, i) for i in range(10, 13)]
    *_, outcome = [_step(pipeline, path) for path in paths]
    assert isinstance(outcome, Written)
    forecast, held = outcome.forecast, read_forecast(outcome.file)
    frames = [pipeline.read(path) for path in paths]

    assert held.issue_time == forecast.issue_time == frames[2].valid_time
    assert held.valid_times == forecast.valid_times
    assert list(held.lead_seconds) == list(forecast.lead_seconds) == [300, 600, 900]
    assert held.attrs["input_scans"] == list(forecast.input_names)
    assert forecast.input_names == tuple(f.name for f in frames)
    assert forecast.input_times == tuple(f.valid_time for f in frames)
    np.testing.assert_array_equal(held.input_nan_mask, frames[2].nan_mask)
    np.testing.assert_array_equal(forecast.nan_mask, frames[2].nan_mask)
    np.testing.assert_array_equal(held.precip, quantize(forecast.precip, 2))
    assert np.isnan(forecast.precip[:, frames[2].nan_mask]).all()
    assert not forecast.precip.flags.writeable
    np.testing.assert_allclose(forecast.precip, _reference(pipeline, paths), atol=1e-4)


def test_a_batch_forecasts_from_its_newest_scan_and_skips_the_others(pipeline, tmp_path):
    paths = [_scan(tmp_path, i) for i in range(20, 25)]
    outcomes = pipeline.step(list(reversed(paths)), NOW)  # any order: by valid time
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Written", "Buffered", "Buffered", "Buffered", "Buffered"]
    assert [o.skipped for o in outcomes[1:]] == [True, True, False, False]
    assert outcomes[0].forecast.issue_time == T0 + timedelta(minutes=5 * 24)


def test_step_refuses_by_rule_with_one_outcome_each(pipeline, tmp_path):
    paths = [_scan(tmp_path, i) for i in range(30, 32)]
    for path in paths:
        _step(pipeline, path)
    again = _step(pipeline, paths[1])
    older = _step(pipeline, paths[0])
    future = _step(pipeline, _scan(tmp_path, 40), T0)  # valid 200 min after the clock
    junk = tmp_path / "scan_202601010300.npy"
    junk.write_bytes(b"not a scan")
    assert [(type(o), o.reason) for o in (again, older, future)] == [
        (Rejected, "duplicate"),
        (Rejected, "out_of_order"),
        (Rejected, "future"),
    ]
    corrupt = _step(pipeline, junk)
    assert isinstance(corrupt, Rejected) and corrupt.reason == "unknown_format"
    assert "scan_202601010300.npy" in corrupt.detail


def test_status_is_a_snapshot_of_the_buffer(tmp_path):
    pipe = Pipeline(ServeConfig(timestep_seconds=300.0), tiny_model())
    empty = pipe.status()
    assert (empty.frames, empty.capacity, empty.full, empty.newest_time) == (0, 3, False, None)
    paths = [_scan(tmp_path, i) for i in range(3)]
    pipe.step(paths, NOW, forecast=False)
    status = pipe.status()
    assert (status.frames, status.full, status.newest_time) == (3, True, T0 + timedelta(minutes=10))
    assert empty.frames == 0  # an earlier snapshot does not follow the pipeline
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.frames = 0


def test_reconfigure_swaps_the_whole_config_and_refuses_fixed_keys(tmp_path):
    cfg = ServeConfig(timestep_seconds=300.0)
    pipe = Pipeline(cfg, tiny_model())
    path = _scan(tmp_path, 0, name="radar-{:%d%H%M}.npy")  # a name the default pattern misses
    with pytest.raises(ScanRefused):
        pipe.read(path)
    reader = ReaderConfig(npy_time_pattern=r"radar-(\d{6})", npy_time_format="%d%H%M")
    new = dataclasses.replace(cfg, reader=reader, retention_keep_last=5)
    pipe.reconfigure(new)
    assert pipe.cfg is new
    assert pipe.read(path).valid_time.day == T0.day
    with pytest.raises(ConfigError, match="timestep_seconds"):
        pipe.reconfigure(dataclasses.replace(new, timestep_seconds=600.0))
    assert pipe.cfg is new


def test_an_odim_scan_whose_yscale_the_block_makes_infinite_is_refused_by_name(tmp_path):
    path = tmp_path / "yscale.h5"
    write_odim(path, raw=RAIN_64, quantity="RATE", gain=0.1, nominal_time=T0, end_time=T0)
    with h5py.File(path, "a") as h:
        h["where"].attrs["yscale"] = 1e308
    cfg = ServeConfig(output_dir=tmp_path, strategy=DEFAULT, domain=Domain.full((64, 64), block=4))
    outcome = _step(Pipeline(cfg, tiny_model()), path)
    assert isinstance(outcome, Rejected) and outcome.reason == "bad_geometry"
    assert outcome.detail.startswith("yscale.h5: ")


def test_any_exception_a_stage_raises_is_that_scans_internal_failure(tmp_path, caplog):
    with _guard(Stage.ROLLOUT, tmp_path / "odd.h5") as guarded:
        raise KeyError("dataset1")
    failed = guarded.failure
    assert isinstance(failed, Failed) and guarded.failed == (failed,)
    assert (failed.stage, failed.reason) == (Stage.ROLLOUT, FailureReason.INTERNAL)
    assert failed.detail == "odd.h5: unexpected KeyError in stage rollout: 'dataset1'"
    (record,) = [r for r in caplog.records if "odd.h5" in r.getMessage()]
    assert record.getMessage() == "odd.h5: unexpected KeyError in stage rollout"
    assert record.levelname == "WARNING" and record.exc_info[0] is KeyError
    event = json.dumps(event_record(failed, latency=0.0, queued=0.0))
    assert event.startswith('{"event": "failed", "scan": "odd.h5", "stage": "rollout", ')
    assert '"reason": "internal"' in event


def test_a_stage_error_is_a_failure_and_a_refusal_a_rejection_with_its_reason(tmp_path):
    with _guard(Stage.WRITE, tmp_path / "a.h5") as wrote:
        raise OSError("disk full")
    with _guard(Stage.READ, tmp_path / "b.h5") as read:
        raise ScanRefused("corrupt", "b.h5: damaged")
    with _guard(Stage.READ, tmp_path / "c.h5") as fine:
        pass
    assert wrote.failure == Failed(path=tmp_path / "a.h5", stage=Stage.WRITE, detail="disk full")
    assert wrote.failure.reason is FailureReason.ERROR
    assert read.failure == Rejected(
        path=tmp_path / "b.h5", reason=RejectReason.CORRUPT, detail="b.h5: damaged"
    )
    assert read.failed == () and fine.failure is None


def test_a_refusal_reason_the_metrics_do_not_know_is_an_internal_failure(tmp_path):
    with _guard(Stage.READ, tmp_path / "odd.h5") as guarded:
        raise ScanRefused("no_such_reason", "odd.h5: refused")
    failed = guarded.failure
    assert isinstance(failed, Failed) and failed.reason is FailureReason.INTERNAL
    assert "'no_such_reason'" in failed.detail


def test_an_outcome_with_a_label_no_metric_knows_cannot_be_built(tmp_path):
    path = tmp_path / "odd.h5"
    with pytest.raises(ValueError, match=r"Failed.stage: expected one of \('read', .*'lunch'"):
        Failed(path=path, stage="lunch", detail="")
    with pytest.raises(ValueError, match="Failed.reason: .*got 'bug'"):
        Failed(path=path, stage="read", reason="bug", detail="")
    with pytest.raises(ValueError, match="Rejected.reason: .*got 'because'"):
        Rejected(path=path, reason="because", detail="")
    failed = Failed(path=path, stage="write", reason="internal", detail="")
    assert (failed.stage, failed.reason) == (Stage.WRITE, FailureReason.INTERNAL)
    assert type(failed.stage) is Stage and type(failed.reason) is FailureReason
