"""`dataset archive` with worker processes: the same archive as one process writes, frames
equal to serve's fields, and a worker that dies never stops the build."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from nowcastd.data.archive import FILES_PER_WORKER, build_archive, default_workers
from nowcastd.data.archive_frames import TileEncoder, precip_layout
from nowcastd.io.scan_settings import ReaderConfig
from tests.nowcastd.data.test_archive import DOMAIN, SAMPLE
from tests.paths import REPO

DIED = "its reader's process died reading it"


def _tree(root: Path) -> Path:
    """Six scans in two folders (path order is not time order), a truncated scan, a text
    file, and first in path order `aa_other.h5`: the first scan's time with other rain, so
    the first scan itself is the duplicate."""
    for i, scan in enumerate(SAMPLE[:6]):
        folder = root / ("late" if i < 3 else "early")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(scan, folder / scan.name)
    (root / "early" / "damaged.h5").write_bytes(SAMPLE[6].read_bytes()[:3000])
    (root / "notes.txt").write_text("not a scan")
    other = root / "aa_other.h5"
    shutil.copy(SAMPLE[0], other)
    with h5py.File(other, "r+") as h:
        raw = h["image1/image_data"][...]
        h["image1/image_data"][...] = np.where(raw == 65535, raw, raw // 2 + 3)
    return root


def _bits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as h:
        return h["precip"][:].view(np.uint32), h["time_unix"][:]


def _workers() -> list[int]:
    return [p.pid for p in multiprocessing.active_children()]


@pytest.mark.parametrize("domain", [None, DOMAIN], ids=["native", "domain"])
def test_workers_write_the_archive_one_process_writes(tmp_path, domain) -> None:
    root = _tree(tmp_path / "scans")
    one = build_archive(root, tmp_path / "one.h5", domain=domain, workers=1)
    two = build_archive(root, tmp_path / "two.h5", domain=domain, workers=2)
    precip, times = _bits(tmp_path / "one.h5")
    other_precip, other_times = _bits(tmp_path / "two.h5")
    np.testing.assert_array_equal(other_precip, precip)  # NaN bits too
    np.testing.assert_array_equal(other_times, times)
    first = f"late/{SAMPLE[0].name}"  # after aa_other.h5 in path order
    assert (one.added, one.duplicates) == (two.added, two.duplicates) == (6, (first,))
    assert [n for n, _ in two.unreadable] == ["early/damaged.h5", "notes.txt"]
    assert one.unreadable == two.unreadable
    reader = ReaderConfig()
    stored = [root / "aa_other.h5", *SAMPLE[1:6]]
    for frame, scan_path in zip(precip, stored, strict=True):  # serve's fields, bit for bit
        scan = reader.read(scan_path)
        field = scan.field if domain is None else domain.apply(scan)
        np.testing.assert_array_equal(frame, field.view(np.uint32))


def test_stored_tiles_decode_as_h5py_writes_them(tmp_path) -> None:
    """Tiles of one value (no data, no rain) reuse the first such tile's bytes; every tile,
    edge tiles of a grid no multiple of the tile included, reads back as the frame."""
    fields = [ReaderConfig().read(p).field for p in SAMPLE[:3]]
    fields.append(np.zeros_like(fields[0]))
    fields.append(np.full_like(fields[0], np.nan))
    encoder = TileEncoder()
    shape = fields[0].shape
    with h5py.File(tmp_path / "direct.h5", "w") as h:
        ds = h.create_dataset("p", shape=(len(fields), *shape), **precip_layout(shape))
        for t, field in enumerate(fields):
            for row, col, mask, data in encoder.tiles(field):
                ds.id.write_direct_chunk((t, row, col), data, mask)
        stored = ds[:]
    encoder.close()
    np.testing.assert_array_equal(stored.view(np.uint32), np.stack(fields).view(np.uint32))


def test_a_worker_killed_midway_loses_no_scan(tmp_path) -> None:
    root = _tree(tmp_path / "scans")
    build_archive(root, tmp_path / "one.h5", domain=DOMAIN, workers=1)
    killed: list[int] = []

    def kill_a_worker(done: int, total: int) -> None:
        if done == 2:
            killed.extend(_workers()[:1])
            os.kill(killed[0], signal.SIGKILL)

    summary = build_archive(
        root, tmp_path / "two.h5", domain=DOMAIN, workers=2, progress=kill_a_worker
    )
    assert killed and summary.added == 6 and len(summary.unreadable) == 2
    for a, b in zip(_bits(tmp_path / "one.h5"), _bits(tmp_path / "two.h5"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_scan_whose_reader_dies_is_named_and_the_build_goes_on(tmp_path) -> None:
    """Every reader process is killed after each file from the third on: what was being read
    is unreadable and named, every other scan is stored, and as one process stores it."""
    root = _tree(tmp_path / "scans")
    build_archive(root, tmp_path / "one.h5", domain=DOMAIN, workers=1)
    precip, times = _bits(tmp_path / "one.h5")

    def kill_every_worker(done: int, total: int) -> None:
        if done >= 3:
            for pid in _workers():
                os.kill(pid, signal.SIGKILL)

    summary = build_archive(
        root, tmp_path / "two.h5", domain=DOMAIN, workers=2, progress=kill_every_worker
    )
    died = [n for n, reason in summary.unreadable if reason.endswith(DIED)]
    others = {n for n, reason in summary.unreadable if not reason.endswith(DIED)}
    assert others <= {"early/damaged.h5", "notes.txt"}
    assert summary.added + len(summary.duplicates) + len(summary.unreadable) == 9
    stored_precip, stored_times = _bits(tmp_path / "two.h5")
    assert summary.added == len(stored_times) >= 6 - len(died)
    keep = np.isin(times, stored_times)
    np.testing.assert_array_equal(stored_times, times[keep])
    np.testing.assert_array_equal(stored_precip, precip[keep])


def test_workers_must_be_at_least_one(tmp_path) -> None:
    root = _tree(tmp_path / "scans")
    with pytest.raises(ValueError, match="workers: expected an int >= 1"):
        build_archive(root, tmp_path / "a.h5", workers=0)
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".a.h5*"))


def test_a_small_tree_is_read_in_this_process_by_default() -> None:
    """A worker's start costs about what reading 64 scans does: one per 64 files at most."""
    cores = default_workers(1 << 20)
    assert cores >= 1
    assert default_workers(0) == default_workers(FILES_PER_WORKER - 1) == 1
    assert default_workers(2 * FILES_PER_WORKER) == min(cores, 2)


KILLED = """
import multiprocessing, os, signal, sys
from pathlib import Path
from nowcastd.data.archive import build_archive

def crash(done, total):
    if done == 2:
        print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    build_archive(Path(sys.argv[1]), Path(sys.argv[2]), workers=2, progress=crash)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def test_a_build_killed_by_sigkill_leaves_no_reader_process(tmp_path) -> None:
    root = _tree(tmp_path / "scans")
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    proc = subprocess.run(
        [sys.executable, str(script), str(root), str(tmp_path / "a.h5")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,  # returns once every process holding its pipes has exited
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2 and all(_gone(p) for p in pids)
