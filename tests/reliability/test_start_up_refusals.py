"""A file the daemon cannot use, alone in the watch directory at start-up, is refused by name
and cannot stop the start: an ODIM_H5 composite whose `where/yscale` is 1e308 (finite,
positive, and infinite once the `[domain]` block of 4 multiplies it) and a scan of 500 mm/h
everywhere. The real daemon becomes ready and forecasts the next good scans."""

import os

import h5py
import numpy as np
import pytest

from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from tests.nowcastd.serve.daemon import NATIVE, Daemon, _scan_name, value
from tests.nowcastd.serve.tiny import tiny_network
from tests.reliability.hostile import _npy, odim_scan

REJECTED = "nowcastd_scans_rejected_total"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup")
    save_inference_checkpoint(root / "ckpt", tiny_network(size=16), DataTransform(kind="dbz"))
    d = Daemon(root, block=4)  # 64 x 64 native, 16 x 16 model grid
    odim_scan(d.staging / "yscale.h5", 0)
    with h5py.File(d.staging / "yscale.h5", "a") as h:
        h["where"].attrs["yscale"] = 1e308
    os.rename(d.staging / "yscale.h5", d.incoming / "yscale.h5")
    (d.incoming / _scan_name(1)).write_bytes(_npy(np.full((NATIVE, NATIVE), 500.0, np.float32)))
    d.start()  # fails unless READY=1 comes
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_the_reproduction_cannot_stop_a_start_and_its_refusal_is_named(daemon):
    metrics = daemon.metrics()
    assert value(metrics, REJECTED, reason="bad_geometry") == 1
    assert value(metrics, REJECTED, reason="saturated") == 1
    assert value(metrics, "nowcastd_failures_total", stage="read") == 0
    events = {e["scan"]: e for e in daemon.events()}
    assert events["yscale.h5"]["event"] == "rejected"
    assert events["yscale.h5"]["reason"] == "bad_geometry"
    assert events["yscale.h5"]["detail"].startswith("yscale.h5: ")
    assert "rejected (bad_geometry): yscale.h5: " in daemon.log_text()
    assert "205.0 mm/h" in events[_scan_name(1)]["detail"]


def test_after_the_refusals_the_next_good_scans_are_forecast(daemon):
    for i in range(2, 5):
        daemon.write_then_rename(i)
    daemon.wait_forecast(4)
    assert daemon.proc.poll() is None
    assert value(daemon.metrics(), "nowcastd_forecasts_written_total") == 1
