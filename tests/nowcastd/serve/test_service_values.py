"""The service in-process: one config, swapped whole on reload; serve and predict agree."""

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from nowcastd.cli.predict import run_predict
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import load_model, save_inference_checkpoint
from nowcastd.serve.config import load_serve_config
from nowcastd.serve.outcome import Buffered, Written
from nowcastd.serve.service import Service
from nowcastd.serve.watcher import ScanEvent
from tests.nowcastd.serve.tiny import DBZ, tiny_network

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = """\
[serve]
watch_dir = "{root}/incoming"
output_dir = "{root}/forecasts"
checkpoint = "{root}/ckpt"
timestep_seconds = {step}
retention_keep_last = {keep}
"""


def _write_config(root: Path, *, step: int = 300, keep: int = 10, reader: str = "") -> Path:
    path = root / "serve.toml"
    path.write_text(CONFIG.format(root=root, step=step, keep=keep) + reader)
    return path


def _scan(directory: Path, i: int) -> Path:
    path = directory / f"scan_{T0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
    field = np.random.default_rng(i).gamma(0.6, 3.0, (16, 16)).astype(np.float32)
    field[:3, :2] = np.nan
    np.save(path, field)
    return path


@pytest.fixture
def service(tmp_path):
    (tmp_path / "incoming").mkdir()
    save_inference_checkpoint(tmp_path / "ckpt", tiny_network(), DBZ)
    config = _write_config(tmp_path)
    cfg = load_serve_config(config)
    svc = Service(cfg, load_model(cfg.checkpoint), config_path=config)
    level = logging.getLogger().level
    yield svc
    svc.compile_counter.close()
    svc.pipeline.close()
    logging.getLogger().setLevel(level)


def test_reload_replaces_the_one_config_with_reloadable_changes_only(service, tmp_path):
    before = service.cfg
    assert service.cfg is service.pipeline.cfg
    _write_config(tmp_path, step=600, keep=3, reader='[reader]\nformat = "npy"\n')
    service.reload()
    after = service.cfg
    assert after is service.pipeline.cfg and after is not before
    assert (after.retention_keep_last, after.reader.format) == (3, "npy")
    assert after.timestep_seconds == before.timestep_seconds == 300  # needs a restart
    assert (before.retention_keep_last, before.reader.format) == (10, "auto")  # untouched


def test_serve_and_predict_write_the_same_file_from_the_same_scans(service, tmp_path):
    service.pipeline.compile()
    scans = [_scan(tmp_path / "incoming", i) for i in range(3)]
    outcomes = [service.handle([ScanEvent(path=p, event_time=time.monotonic())]) for p in scans]
    assert [type(o) for (o,) in outcomes] == [Buffered, Buffered, Written]
    served = outcomes[-1][0].file
    config = tmp_path / "serve.toml"
    predicted = run_predict(scans, config=config, flags={"output_dir": tmp_path / "predicted"})
    assert served.name == predicted.name
    a, b = read_forecast(served), read_forecast(predicted)
    np.testing.assert_array_equal(a.precip, b.precip)  # NaN where they agree on no data
    np.testing.assert_array_equal(a.input_nan_mask, b.input_nan_mask)
    assert np.isnan(a.precip[:, 0, 0]).all()
    for key in ("lead_seconds", "x", "y"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.valid_times == b.valid_times
    del a.attrs["history"], b.attrs["history"]  # the time of writing
    assert a.attrs == b.attrs
