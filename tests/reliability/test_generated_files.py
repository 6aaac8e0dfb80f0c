"""Generated hostile files (`mutations`): every reader returns a Scan or refuses the file with a
`ScanError` that has a reason and names the file, and never raises anything else.

A fixed, derandomized number of examples per format runs here; bench/fuzz_readers.py runs as
many as asked against a live daemon.
"""

import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nowcastd.errors import ScanError
from nowcastd.io.readers import ReadPolicy, Scan, detect_format, printable, read_scan
from nowcastd.io.readers.geometry import EXTENT_METRES, PIXEL_METRES
from nowcastd.io.readers.knmi import read_knmi
from nowcastd.io.readers.npy import read_npy
from nowcastd.io.readers.odim import read_odim
from nowcastd.serve.metrics import REJECT_REASONS
from tests.reliability.mutations import KINDS, HypothesisDraw, hostile, scan_name

SHAPE = (64, 64)
T = datetime(2026, 1, 1, tzinfo=UTC)
READERS = {"odim": read_odim, "knmi": read_knmi, "npy": read_npy}
#: What the readers themselves refuse for (the daemon adds ordering and plausibility reasons).
READER_REASONS = set(REJECT_REASONS) - {"timeout", "reader_crashed", "out_of_order", "duplicate"}


def _check_scan(scan: Scan) -> None:
    assert scan.field.dtype == np.float32 and scan.field.ndim == 2
    grid = scan.grid
    for size in (grid.xpixelsize, grid.ypixelsize):
        assert size is None or PIXEL_METRES[0] <= size <= PIXEL_METRES[1]
    if grid.has_extent:
        assert all(abs(e) <= EXTENT_METRES for e in (grid.x1, grid.y1, grid.x2, grid.y2))
    for lon, lat in grid.corners_lonlat or ():
        assert math.isfinite(lon) and -90 <= lat <= 90


def _outcome(path: Path, read) -> str:
    try:
        _check_scan(read())
    except ScanError as e:
        assert e.reason in READER_REASONS, f"{e.reason}: {e}"
        assert str(e).startswith(printable(path.name) + ": "), str(e)
        return e.reason
    return "scan"


@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_reader_returns_a_scan_or_refuses_by_name(kind, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / scan_name(kind, T)
        hostile(HypothesisDraw(data), path, kind, SHAPE, T, bomb_mib=256)
        on_grid = ReadPolicy(expected_shape=SHAPE)
        _outcome(path, lambda: read_scan(path, policy=on_grid))
        _outcome(path, lambda: read_scan(path))
        _outcome(path, lambda: READERS[kind](path))
        _outcome(path, lambda: read_scan(path, fmt="odim" if kind == "knmi" else "knmi"))
        _outcome(path, lambda: detect_format(path) and read_scan(path, fmt=detect_format(path)))
