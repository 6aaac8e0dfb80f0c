"""The scan watcher with a real watchdog observer on tmp_path: one event per complete file."""

import os
import queue
import time

import numpy as np
import pytest

from nowcastd.serve.watcher import ScanWatcher


@pytest.fixture
def watch(tmp_path):
    started = []

    def make(**options):
        incoming = tmp_path / "incoming"
        incoming.mkdir(exist_ok=True)
        options = {"debounce_seconds": 0.1, "settle_seconds": 0.4, **options}
        watcher = ScanWatcher(incoming, **options)
        watcher.start()
        started.append(watcher)
        return watcher

    yield make
    for watcher in started:
        watcher.stop()


def _events(watcher: ScanWatcher, wait: float = 1.5) -> list[str]:
    """Every queued file name, collected until `wait` s pass without a new one."""
    names = []
    while True:
        try:
            names.append(watcher.queue.get(timeout=wait).path.name)
        except queue.Empty:
            return names


def test_file_written_in_place_slowly_is_queued_once_after_close(watch):
    watcher = watch()
    with (watcher.directory / "scan_202601010000.npy").open("wb") as f:
        for _ in range(4):
            f.write(b"x" * 1000)
            f.flush()
            time.sleep(0.2)  # slower than the debounce: only the close counts
        assert watcher.queue.empty()
    assert _events(watcher) == ["scan_202601010000.npy"]


def test_file_written_then_renamed_is_queued_once_under_its_final_name(watch):
    watcher = watch()
    tmp = watcher.directory / ".scan_202601010005.npy.tmp"
    np.save(tmp.with_suffix(".part.npy"), np.zeros(3))  # ignored name, never queued either
    tmp.write_bytes(b"data")
    os.rename(tmp, watcher.directory / "scan_202601010005.npy")
    assert _events(watcher) == ["scan_202601010005.npy"]


def test_file_renamed_into_place_skips_the_debounce_that_a_write_in_place_waits(watch):
    watcher = watch(debounce_seconds=30.0)  # longer than either wait below
    tmp = watcher.directory / ".scan_202601010020.npy.tmp"
    tmp.write_bytes(b"data")
    os.rename(tmp, watcher.directory / "scan_202601010020.npy")
    assert watcher.queue.get(timeout=5).path.name == "scan_202601010020.npy"
    (watcher.directory / "scan_202601010025.npy").write_bytes(b"data")  # in place
    assert _events(watcher, wait=1.0) == []


def test_file_moved_in_from_elsewhere_is_queued_after_settling(watch, tmp_path):
    watcher = watch()
    src = tmp_path / "scan_202601010010.npy"
    src.write_bytes(b"data")
    os.rename(src, watcher.directory / src.name)  # inotify: a creation that is never closed
    start = time.monotonic()
    event = watcher.queue.get(timeout=5)
    assert event.path.name == src.name
    assert time.monotonic() - start >= 0.3  # it waited for settle_seconds
    assert _events(watcher, wait=1.0) == []


def test_burst_is_queued_in_event_order(watch):
    watcher = watch()
    names = [f"scan_2026010100{m:02d}.npy" for m in (0, 5, 10)]
    for name in names:
        (watcher.directory / name).write_bytes(b"data")
    assert _events(watcher) == names


def test_polling_observer_queues_a_file_once_it_stops_changing(watch):
    watcher = watch(poll=True, poll_interval_seconds=0.1, settle_seconds=0.5)
    path = watcher.directory / "scan_202601010015.npy"
    with path.open("wb") as f:
        for _ in range(3):
            f.write(b"x" * 1000)
            f.flush()
            time.sleep(0.3)  # changes seen by the poller keep it pending
        assert watcher.queue.empty()
    assert _events(watcher) == [path.name]
    assert path.stat().st_size == 3000
