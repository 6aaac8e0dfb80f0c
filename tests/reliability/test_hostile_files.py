"""The real daemon against hostile files: each is refused and counted under its reason, and the
next good scan is forecast. Some of them are already in the watch directory at start-up."""

import os
import time
from datetime import timedelta

import pytest

from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.model_checkpoint import save_inference_checkpoint
from nowcastd.io.transform import DataTransform
from tests.nowcastd.serve.daemon import T0, Daemon, _scan_bytes, _scan_name, value
from tests.nowcastd.serve.tiny import tiny_network
from tests.reliability.hostile import CASES, fifo, huge_hdf5, odim_hhmm_scan, year_2099

REJECTED = "nowcastd_scans_rejected_total"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    save_inference_checkpoint(root / "ckpt", tiny_network(size=32), DataTransform(kind="dbz"))
    d = Daemon(root, extra="read_timeout_seconds = 5\n")
    # Already there at start-up: the refill must refuse them and the daemon become ready.
    for n, build in enumerate((fifo, huge_hdf5, year_2099)):
        stage = root / f"startup{n}"
        stage.mkdir()
        name = build(stage, 0)
        os.rename(stage / "fifo", os.fsencode(d.incoming) + b"/" + name)
    d.start()
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def _deliver_good(d: Daemon, i: int) -> None:
    d.write_then_rename(i)


def test_start_up_with_hostile_files_present_becomes_ready_and_forecasts(daemon):
    metrics = daemon.metrics()
    assert value(metrics, REJECTED, reason="not_regular") == 1
    assert value(metrics, REJECTED, reason="wrong_grid") == 1
    assert value(metrics, REJECTED, reason="future") == 1  # 2099 never became the newest
    assert value(metrics, "nowcastd_buffer_frames") == 0
    for i in range(3):
        _deliver_good(daemon, i)
    daemon.wait_forecast(2)


@pytest.mark.parametrize(("case", "build", "reason"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_counted_and_the_next_scan_forecast(
    daemon, tmp_path, case, build, reason
):
    i = 3 + [c[0] for c in CASES].index(case)
    before = value(daemon.metrics(), REJECTED, reason=reason)
    name = build(tmp_path, i)
    os.rename(tmp_path / "fifo", os.fsencode(daemon.incoming) + b"/" + name)
    daemon.wait_for(
        lambda: value(daemon.metrics(), REJECTED, reason=reason) > before, 30, f"{reason} counted"
    )
    _deliver_good(daemon, i)
    daemon.wait_forecast(i)
    assert daemon.proc.poll() is None


def test_names_that_are_not_utf8_or_forge_log_lines_stay_one_escaped_line(daemon):
    log = daemon.log_text()
    assert not any(
        line.startswith("ERROR nowcastd.serve.service: FORGED") for line in log.splitlines()
    )
    assert "x\\nERROR nowcastd.serve.service: FORGED LINE.h5" in log
    i = 3 + len(CASES)
    name = os.fsencode(f"scan_\udcff\udcfe_{(T0 + timedelta(minutes=5 * i)):%Y%m%d%H%M}.npy")
    (daemon.staging / "good.npy").write_bytes(_scan_bytes(i))
    os.rename(daemon.staging / "good.npy", os.fsencode(daemon.incoming) + b"/" + name)
    forecast = read_forecast(daemon.wait_forecast(i))
    assert forecast.attrs["input_scans"][-1].startswith("scan_\\xff\\xfe_")


def test_odim_hhmm_endtime_is_read_as_hours_and_minutes(daemon):
    i = 4 + len(CASES)
    odim_hhmm_scan(daemon.staging / "hhmm.h5", i)
    os.rename(daemon.staging / "hhmm.h5", daemon.incoming / "hhmm.h5")
    forecast = read_forecast(daemon.wait_forecast(i))  # named for HH:MM:00, not HH:00:0M
    assert forecast.issue_time == T0 + timedelta(minutes=5 * i)
    assert "expected HHmmss, read it as HHMM" in daemon.log_text()


def test_no_reader_litter_and_one_reader_process(daemon):
    time.sleep(0.2)
    children = os.listdir(f"/proc/{daemon.proc.pid}/task")
    assert len(children) < 40  # threads stay bounded through the whole matrix
    assert _scan_name(0) in os.listdir(daemon.incoming)
    assert not [n for n in os.listdir(daemon.out) if n.endswith(".tmp")]
