"""A real `nowcastd serve` with a Lagrangian model: the motion stage runs once per scan, is
timed in the events and the stage histogram, and the forecast equals evaluate's."""

import dataclasses
import io

import jax
import numpy as np
import pytest

from model.network import PredRNN
from nowcastd.io.domain import block_average
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import load_model, save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from nowcastd.verification.comparison import model_forecast
from tests.nowcastd.serve.daemon import Daemon, _scan_bytes
from tests.nowcastd.serve.daemon import value as _value
from tests.nowcastd.serve.tiny import tiny_network


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-lagrangian")
    cfg = dataclasses.replace(tiny_network(size=32).cfg, predict_delta=True, lagrangian=True)
    network = PredRNN(cfg, key=jax.random.key(3))
    save_inference_checkpoint(root / "ckpt", network, DataTransform(kind="dbz"), motion_method="LK")
    d = Daemon(root)
    d.start()
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def _rates(i: int) -> np.ndarray:
    """Scan i on the model grid in mm/h, as the daemon's [domain] averages it."""
    field = np.load(io.BytesIO(_scan_bytes(i)), allow_pickle=False)
    return block_average(field, 2)[0]


def test_a_lagrangian_forecast_times_its_motion_and_equals_evaluates(daemon):
    compilations = _value(daemon.metrics(), "nowcastd_jit_compilations_total")
    for i in range(4):
        daemon.move_in(i)
        daemon.wait_received(i + 1)
    path = daemon.wait_forecast(3)
    metrics = daemon.metrics()
    assert _value(metrics, "nowcastd_forecasts_written_total") == 2
    assert _value(metrics, "nowcastd_jit_compilations_total") == compilations
    assert _value(metrics, "nowcastd_stage_duration_seconds_count", stage="motion") == 2
    forecasts = [e for e in daemon.events() if e["event"] == "forecast"]
    assert len(forecasts) == 2
    assert all("motion" in e["seconds"] and not e["pre_encoded"] for e in forecasts)

    served = read_forecast(path)
    window = np.stack([_rates(i) for i in (1, 2, 3)])[None]
    loaded = load_model(daemon.root / "ckpt")
    expected = model_forecast(loaded, window, served.precip.shape[0], 1)[0]
    assert np.isnan(served.precip).any()  # rain from outside the grid is no data
    np.testing.assert_array_equal(np.isnan(served.precip), np.isnan(expected))
    # both are rounded to 1/128 mm/h on writing; float noise may round to a neighbour
    np.testing.assert_allclose(served.precip, expected, rtol=0, atol=1 / 128)


@pytest.fixture(scope="module")
def halo_daemon(tmp_path_factory):
    """The 48 x 48 middle of the 64 x 64 scans at block 2 (a 24 x 24 model grid) with the
    default halo: the 8 native pixels around it, 4 model pixels."""
    root = tmp_path_factory.mktemp("serve-halo")
    cfg = dataclasses.replace(tiny_network(size=24).cfg, predict_delta=True, lagrangian=True)
    network = PredRNN(cfg, key=jax.random.key(3))
    save_inference_checkpoint(root / "ckpt", network, DataTransform(kind="dbz"), motion_method="LK")
    d = Daemon(root, crop=8)
    d.start()
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_a_daemon_with_a_halo_compiles_nothing_after_ready_and_forecasts_as_evaluate(
    halo_daemon,
):
    daemon = halo_daemon
    compilations = _value(daemon.metrics(), "nowcastd_jit_compilations_total")
    for i in range(4):
        daemon.move_in(i)
        daemon.wait_received(i + 1)
    path = daemon.wait_forecast(3)
    metrics = daemon.metrics()
    assert _value(metrics, "nowcastd_forecasts_written_total") == 2
    assert _value(metrics, "nowcastd_jit_compilations_total") == compilations

    served = read_forecast(path)
    assert served.precip.shape[1:] == (24, 24)
    window = np.stack([_rates(i) for i in (1, 2, 3)])[None]  # 32 x 32: the grid and its halo
    loaded = load_model(daemon.root / "ckpt")
    expected = model_forecast(loaded, window, served.precip.shape[0], 1, margin=4)[0]
    alone = model_forecast(loaded, window[..., 4:-4, 4:-4], served.precip.shape[0], 1)[0]
    # the halo's rain reaches the edges that the grid alone leaves without data
    assert np.isnan(served.precip).sum() < np.isnan(alone).sum()
    np.testing.assert_array_equal(np.isnan(served.precip), np.isnan(expected))
    np.testing.assert_allclose(served.precip, expected, rtol=0, atol=1 / 128)
