"""A real `nowcastd serve` subprocess on tmp_path with a tiny model, fed real files.

The tests of this module share one daemon and run in order: three ways of delivering scans,
then rejections, then SIGTERM, then a restart with the scans already present.
"""

import json
import os
import signal
import time
from datetime import timedelta

import h5py
import numpy as np
import pytest

from nowcastd.cli.predict import run_predict
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from nowcastd.serve.events import parse_event
from tests.nowcastd.serve.daemon import T0, Daemon, _scan_bytes, _scan_name
from tests.nowcastd.serve.daemon import value as _value
from tests.nowcastd.serve.tiny import tiny_network


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    network = tiny_network(size=32)
    save_inference_checkpoint(root / "ckpt", network, DataTransform(kind="dbz"))
    d = Daemon(root)
    d.start()
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_each_delivery_gives_one_forecast_matching_predict(daemon):
    compilations_at_ready = _value(daemon.metrics(), "nowcastd_jit_compilations_total")
    daemon.move_in(0)
    daemon.wait_received(1)  # a moved-in file waits settle_seconds; keep the two in order
    daemon.write_then_rename(1)
    daemon.wait_received(2)
    assert daemon.forecasts() == []  # two of three inputs: no forecast yet
    deliveries = {2: daemon.write_slowly, 3: daemon.write_then_rename, 4: daemon.move_in}
    for i, deliver in deliveries.items():
        deliver(i)
        daemon.wait_forecast(i)
    time.sleep(1.0)  # a second forecast of the same scan would show up here
    assert len(daemon.forecasts()) == 3
    metrics = daemon.metrics()
    assert _value(metrics, "nowcastd_forecasts_written_total") == 3
    assert _value(metrics, "nowcastd_scans_received_total") == 5
    assert _value(metrics, "nowcastd_jit_compilations_total") == compilations_at_ready
    assert _value(metrics, "nowcastd_jit_compilations_after_ready_total") == 0
    assert "pre_encoded=True" in daemon.log_text()
    events = daemon.events()
    assert [e["event"] for e in events] == ["buffered"] * 2 + ["forecast"] * 3
    forecast_events = [parse_event(json.dumps(e)) for e in events[2:]]
    assert [e.file for e in forecast_events] == daemon.forecasts()
    assert [e.scan for e in forecast_events] == [_scan_name(i) for i in deliveries]
    for e in forecast_events:
        assert set(e.seconds) == {"read", "transfer", "encode_wait", "rollout", "write"}
        assert e.latency >= e.queued + sum(e.seconds.values()) - e.seconds["encode_wait"]
    assert forecast_events[-1].pre_encoded

    for i in deliveries:
        served = read_forecast(daemon.out / daemon.forecasts()[i - 2])
        scans = [daemon.incoming / _scan_name(j) for j in range(i - 2, i + 1)]
        flags = {"output_dir": daemon.root / f"predict{i}"}
        predicted = read_forecast(run_predict(scans, config=daemon.config, flags=flags))
        assert served.issue_time == predicted.issue_time == T0 + timedelta(minutes=5 * i)
        # Both are rounded to 1/128 mm/h on writing; float noise may round to a neighbour.
        np.testing.assert_allclose(served.precip, predicted.precip, rtol=0, atol=1 / 128)
        np.testing.assert_array_equal(served.input_nan_mask, predicted.input_nan_mask)
        assert np.isnan(served.precip[:, 0, 0]).all()  # the NaN rule: no data in, none out
        assert served.attrs["input_scans"] == [s.name for s in scans]


def test_bad_scans_are_rejected_and_counted_while_serving(daemon):
    truncated = _scan_bytes(5)[:200]  # a valid .npy header, then nothing
    daemon.write_then_rename(5, truncated)
    wrong_grid = daemon.staging / _scan_name(6)
    np.save(wrong_grid, np.zeros((48, 48), np.float32))
    os.rename(wrong_grid, daemon.incoming / wrong_grid.name)
    hdf5 = daemon.staging / "whole.h5"
    with h5py.File(hdf5, "w") as h:
        h["image1/image_data"] = np.zeros((64, 64), np.uint16)
    (daemon.staging / "broken.h5").write_bytes(hdf5.read_bytes()[:1000])  # truncated HDF5
    os.rename(daemon.staging / "broken.h5", daemon.incoming / "broken.h5")
    (daemon.staging / "notes.txt").write_text("not a radar scan")
    os.rename(daemon.staging / "notes.txt", daemon.incoming / "notes.txt")
    old = daemon.staging / "scan_202512312355.npy"  # before every buffered scan
    old.write_bytes(_scan_bytes(99))
    os.rename(old, daemon.incoming / old.name)
    daemon.wait_for(
        lambda: _value(daemon.metrics(), "nowcastd_scans_rejected_total", reason="out_of_order"),
        20,
        "out_of_order rejection",
    )
    # Scans 5 and 6 were refused, so 7 comes 15 min after 4: more than 1.5 timesteps, the
    # buffer is emptied; 7, 8 and 9 refill it and 9 gets the next forecast.
    for i in (7, 8, 9):
        daemon.write_then_rename(i)
    daemon.wait_forecast(9)
    metrics = daemon.metrics()
    assert _value(metrics, "nowcastd_scans_rejected_total", reason="corrupt") == 2
    assert _value(metrics, "nowcastd_scans_rejected_total", reason="unknown_format") == 1
    assert _value(metrics, "nowcastd_scans_rejected_total", reason="wrong_grid") == 1
    assert _value(metrics, "nowcastd_scans_rejected_total", reason="out_of_order") == 1
    assert _value(metrics, "nowcastd_buffer_resets_total") == 1
    assert _value(metrics, "nowcastd_buffer_frames") == 3
    assert _value(metrics, "nowcastd_forecasts_written_total") == 4
    assert _value(metrics, "nowcastd_failures_total", stage="rollout") == 0
    assert _value(metrics, "nowcastd_ready") == 1
    rejected = sorted(e["reason"] for e in daemon.events() if e["event"] == "rejected")
    assert rejected == ["corrupt", "corrupt", "out_of_order", "unknown_format", "wrong_grid"]
    assert any(m.startswith("WATCHDOG=1") for m in daemon.messages)
    assert any("STATUS=last forecast" in m for m in daemon.messages)


def test_sigterm_exits_zero(daemon):
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=20) == 0
    time.sleep(0.3)
    assert any("STOPPING=1" in m for m in daemon.messages)


def test_restart_with_scans_present_forecasts_at_the_next_scan(daemon):
    assert daemon.proc.poll() is not None
    before = len(daemon.forecasts())
    daemon.start()
    assert _value(daemon.metrics(), "nowcastd_buffer_frames") == 3
    daemon.write_then_rename(10)
    daemon.wait_forecast(10)
    assert len(daemon.forecasts()) == before + 1
    assert daemon.log_text().rstrip().count("pre_encoded=True") >= 2
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=20) == 0
