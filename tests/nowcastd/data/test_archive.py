"""`nowcastd dataset archive`: scans of a tree in one HDF5 archive, in time order, gaps kept,
appends idempotent and crash-safe, damaged files skipped and named, serve's fields."""

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from typer.testing import CliRunner

from nowcastd.cli.app import app
from nowcastd.data.archive import ARCHIVE_FORMAT, build_archive
from nowcastd.data.movie import time_step
from nowcastd.io.domain import Domain
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.io.transform import DBZ
from tests.nowcastd.serve.daemon import NATIVE
from tests.paths import REPO
from tests.reliability.hostile import odim_scan

SAMPLE = sorted((REPO / "nowcastd" / "sample" / "knmi").glob("RAD_NL25_*.h5"))
# the sample's 256 km window at 4 km: small frames, serve's example [domain]
DOMAIN = Domain(native_shape=(765, 700), row0=268, col0=248, height=256, width=256, block=4)
CONFIG = """[domain]
native_shape = [765, 700]
row0 = 268
col0 = 248
height = 256
width = 256
block = 4
"""


def _tree(root: Path, scans: list[Path]) -> Path:
    """The scans spread over two folders whose path order is not the time order."""
    for i, scan in enumerate(scans):
        folder = root / ("late" if i < len(scans) // 2 else "early")  # early sorts first
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(scan, folder / scan.name)
    return root


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as h:
        assert h.attrs["format"] == ARCHIVE_FORMAT
        return h["precip"][:], h["time_unix"][:]


def test_frames_are_in_time_order_with_gaps_kept_and_equal_to_serve_fields(tmp_path) -> None:
    scans = [s for i, s in enumerate(SAMPLE[:7]) if i != 3]  # 04:55 is missing
    root = _tree(tmp_path / "scans", scans[::-1])
    out = tmp_path / "archive.h5"
    summary = build_archive(root, out, domain=DOMAIN)
    precip, times = _read(out)
    assert summary.added == summary.frames == 6 and summary.gaps == 1
    assert np.all(np.diff(times) > 0)
    assert np.diff(times).tolist() == [300, 300, 600, 300, 300]  # no frame invented
    reader = ReaderConfig()
    for frame, scan_path in zip(precip, scans, strict=True):
        scan = reader.read(scan_path)
        model, _ = DOMAIN.model_input(scan, DBZ)  # what serve feeds the model
        np.testing.assert_array_equal(np.nan_to_num(DBZ.to_model(frame), nan=0.0), model)
        np.testing.assert_array_equal(frame, DOMAIN.apply(scan), strict=True)
    with h5py.File(out, "r") as h:
        assert h["precip"].chunks == (1, 64, 64) and h["precip"].compression == "lzf"
        assert h.attrs["timestep_seconds"] == 300 and "stere" in h.attrs["projection"]


def test_time_step_of_a_tie_is_the_smaller_step_as_for_movies(tmp_path) -> None:
    scans = [SAMPLE[0], SAMPLE[2], SAMPLE[3]]  # a 600 s step, then a 300 s one: a tie
    out = tmp_path / "archive.h5"
    build_archive(_tree(tmp_path / "scans", scans), out, domain=DOMAIN)
    _, times = _read(out)
    assert np.diff(times).tolist() == [600, 300]
    with h5py.File(out, "r") as h:
        assert h.attrs["timestep_seconds"] == 300 == time_step(times)


def test_append_adds_only_newer_scans_and_is_idempotent(tmp_path) -> None:
    root = _tree(tmp_path / "scans", SAMPLE[:4])
    out = tmp_path / "archive.h5"
    build_archive(root, out, domain=DOMAIN)
    shutil.copy(SAMPLE[4], root / "early" / SAMPLE[4].name)
    shutil.copy(SAMPLE[5], root / SAMPLE[5].name)
    first = build_archive(root, out, domain=DOMAIN, append=True)
    assert (first.added, len(first.duplicates), first.frames) == (2, 4, 6)
    before = _read(out)
    again = build_archive(root, out, domain=DOMAIN, append=True)
    assert (again.added, len(again.duplicates), again.frames) == (0, 6, 6)
    for a, b in zip(before, _read(out), strict=True):
        np.testing.assert_array_equal(a, b)
    shutil.copy(SAMPLE[0], root / "old_copy.h5")  # the first scan again, under another name
    third = build_archive(root, out, domain=DOMAIN, append=True)
    assert third.added == 0 and "old_copy.h5" in third.duplicates


CRASH = """
import os, signal, sys
from pathlib import Path
from nowcastd.data.archive import build_archive
from tests.nowcastd.data.test_archive import DOMAIN

def crash(done, total):
    if done == int(sys.argv[3]):  # mid-append: some new frames written, others not
        os.kill(os.getpid(), signal.SIGKILL)

build_archive(Path(sys.argv[1]), Path(sys.argv[2]), domain=DOMAIN, append=True, progress=crash)
"""


def test_an_append_killed_midway_leaves_the_archive_as_it_was(tmp_path) -> None:
    root = _tree(tmp_path / "scans", SAMPLE[:3])
    out = tmp_path / "archive.h5"
    build_archive(root, out, domain=DOMAIN)
    before = out.read_bytes()
    for scan in SAMPLE[3:6]:
        shutil.copy(scan, root / scan.name)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(root), str(out), "2"],  # 2 of the 3 new scans
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert out.read_bytes() == before
    assert len(list(tmp_path.glob(".archive.h5.*.tmp"))) == 1  # what the killed run wrote
    summary = build_archive(root, out, domain=DOMAIN, append=True)  # the next run completes
    assert (summary.added, summary.frames) == (3, 6)
    assert np.all(np.diff(_read(out)[1]) == 300)
    assert not list(tmp_path.glob(".archive.h5.*"))


def test_cli_skips_a_damaged_scan_and_names_it(tmp_path) -> None:
    root = _tree(tmp_path / "scans", SAMPLE[:3])
    damaged = root / "early" / "RAD_NL25_RAP_5min_201008260455.h5"
    damaged.write_bytes(SAMPLE[3].read_bytes()[:3000])  # truncated in transfer
    (root / "notes.txt").write_text("not a scan")
    config = tmp_path / "archive.toml"
    config.write_text(CONFIG)
    out = tmp_path / "archive.h5"
    result = CliRunner().invoke(
        app, ["dataset", "archive", str(root), "--out", str(out), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "3 scans added, 3 frames 2010-08-26 04:40 UTC to 2010-08-26 04:50 UTC" in result.output
    assert "skipped 2 unreadable:" in result.output
    assert "early/RAD_NL25_RAP_5min_201008260455.h5: unreadable (damaged or truncated?)" in (
        result.output
    )
    assert "notes.txt:" in result.output
    assert len(_read(out)[1]) == 3


def test_cli_skips_a_scan_whose_geometry_the_domain_makes_infinite(tmp_path) -> None:
    root = tmp_path / "scans"
    root.mkdir()
    for i in range(3):
        odim_scan(root / f"scan{i}.h5", i)
    odim_scan(root / "a_yscale.h5", 3)  # the first in path order: it would found the archive
    with h5py.File(root / "a_yscale.h5", "a") as h:
        h["where"].attrs["yscale"] = 1e308
    config = tmp_path / "block4.toml"
    config.write_text(
        f"[domain]\nnative_shape = [{NATIVE}, {NATIVE}]\nrow0 = 0\ncol0 = 0\n"
        f"height = {NATIVE}\nwidth = {NATIVE}\nblock = 4\n"
    )
    out = tmp_path / "archive.h5"
    result = CliRunner().invoke(
        app,
        ["dataset", "archive", str(root), "--out", str(out), "--config", str(config)]
        + ["--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "3 scans added" in result.output
    assert "skipped 1 unreadable:\n    a_yscale.h5: " in result.output
    with h5py.File(out, "r") as h:
        assert h["precip"].shape == (3, NATIVE // 4, NATIVE // 4)
        assert h.attrs["ypixelsize"] == 4000.0  # the good scans' 1 km pixels, 4 x 4 blocks
