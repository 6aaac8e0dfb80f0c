"""The scan reader process: a Python exception while it reads a file is that file's refusal
and the same process reads the next file; only a death outside Python (a signal, the memory
limit, the time limit) restarts it."""

import os
import signal
from datetime import UTC, datetime

import numpy as np
import pytest

from nowcastd.io.readers import ReadPolicy, ScanRefused
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.serve.read_worker import ReadWorker
from tests.reliability.mutations import odim_scan

T = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = ReadPolicy(expected_shape=(64, 64))


@pytest.fixture
def worker():
    w = ReadWorker(timeout_seconds=30, memory_limit_bytes=2 << 30)
    yield w
    w.close()


def test_a_python_error_in_the_reader_is_a_refusal_and_the_process_goes_on(worker, tmp_path):
    path = tmp_path / "scan_202601010000.npy"
    np.save(path, np.ones((64, 64), np.float32))
    broken = ReaderConfig(npy_time_pattern="(unclosed", npy_time_format="%Y")  # re.error
    with pytest.raises(ScanRefused, match=r"scan_202601010000\.npy: expected a readable scan") as e:
        worker.read(path, broken, POLICY)
    assert e.value.reason == "corrupt"
    assert "error" in str(e.value)
    scan = worker.read(path, ReaderConfig(), POLICY)
    assert scan.valid_time == T
    assert worker.started == 1


def test_a_refused_hostile_file_keeps_the_process(worker, tmp_path):
    path = tmp_path / "odim.h5"
    odim_scan(path, (64, 64), T)
    data = path.read_bytes()
    at = data.index(b"TREE")  # the root group's B-tree: "Link visitation failed"
    path.write_bytes(data[:at] + bytes(8) + data[at + 8 :])
    with pytest.raises(ScanRefused, match=r"RuntimeError: Link visitation failed") as e:
        worker.read(path, ReaderConfig(), POLICY)
    assert e.value.reason == "corrupt"
    assert worker.started == 1


def test_a_reader_killed_by_a_signal_is_replaced_by_a_new_process(worker, tmp_path):
    path = tmp_path / "odim.h5"
    odim_scan(path, (64, 64), T)
    worker.read(path, ReaderConfig(), POLICY)
    os.kill(worker._proc.pid, signal.SIGSEGV)
    worker._proc.wait()
    assert worker.read(path, ReaderConfig(), POLICY).valid_time == T
    assert worker.started == 2
