"""The validation sets: training never draws a window that touches a held-out one."""

from __future__ import annotations

from datetime import UTC, datetime

import h5py
import numpy as np
import pytest

from nowcastd.data.sequences import load_movie
from nowcastd.data.validation import (
    VALIDATION_SETS,
    ValidationSet,
    held_out_range,
    movie_held_out_range,
)

#: the frames of each event file in the radar data directory: first time, count, step
EVENTS = {
    "mch_20150515": ("2015-05-15T15:45:00", 40, 300),
    "mch_20160711": ("2016-07-11T20:45:00", 40, 300),
    "mch_20170131": ("2017-01-31T09:45:00", 40, 300),
    "mrms_20190610": ("2019-06-10T00:00:00", 36, 120),
    "knmi_20100826": ("2010-08-26T00:00:00", 92, 300),
}
TRAINING_LENGTH = 16  # the bundled model's 4 inputs + 12 leads


def _event_movie(path, name: str):
    """A small movie with the event's frame times (the rain does not matter here)."""
    first, count, step = EVENTS[name]
    t0 = int(datetime.fromisoformat(first).replace(tzinfo=UTC).timestamp())
    unix = t0 + step * np.arange(count, dtype=np.int64)
    with h5py.File(path, "w") as h:
        h.create_dataset("precip", data=np.ones((count, 8, 8), np.float32)).attrs["units"] = "mm/h"
        h["time_unix"] = unix
        h.attrs["timestep_seconds"] = step
    return path, unix


def _held_out_frames(v: ValidationSet, unix: np.ndarray) -> set[int]:
    """Every frame a validation window of `v` reads."""
    return set(range(len(unix))[v.frames(unix)])


@pytest.mark.parametrize("v", VALIDATION_SETS, ids=lambda v: v.name)
def test_no_training_window_overlaps_a_held_out_window(tmp_path, v):
    path, unix = _event_movie(tmp_path / "event.h5", v.name)
    movie = load_movie(path, exclude=movie_held_out_range(path))  # as `nowcastd train` opens it
    held_out = _held_out_frames(v, unix)
    assert held_out and max(held_out) >= len(unix) - v.stride  # the final part
    drawn = 0
    for stride in movie.strides:
        for start in movie.starts(TRAINING_LENGTH, stride):
            frames = set(range(start, start + (TRAINING_LENGTH - 1) * stride + 1, stride))
            assert not frames & held_out, (v.name, start, stride)
            drawn += 1
    if v.name in ("mch_20160711", "mch_20170131", "knmi_20100826"):
        assert drawn > 0  # their first parts still train
    else:
        assert drawn == 0  # the validation event, and MRMS's first 30 min are too short
    # without the exclusion the same movie would have drawn from the held-out frames
    unguarded = load_movie(path)
    assert any(
        set(range(s, s + (TRAINING_LENGTH - 1) * stride + 1, stride)) & held_out
        for stride in unguarded.strides
        for s in unguarded.starts(TRAINING_LENGTH, stride)
    )


def test_the_held_out_parts_are_final_and_long_enough_to_score():
    for v in VALIDATION_SETS:
        first, count, step = EVENTS[v.name]
        t0 = int(datetime.fromisoformat(first).replace(tzinfo=UTC).timestamp())
        unix = t0 + step * np.arange(count, dtype=np.int64)
        frames = v.frames(unix)
        scored = len(range(count)[frames])
        assert unix[frames.start] == v.range_unix[0] and unix[-1] == v.range_unix[1], v.name
        assert scored >= 4 + v.lead_frames + 1, v.name  # at least two forecasts


def test_held_out_range_covers_the_sets_a_movie_overlaps_and_the_runs_own():
    mch = next(v for v in VALIDATION_SETS if v.name == "mch_20160711")
    lo, hi = mch.range_unix
    inside = np.arange(lo - 3600, hi + 1, 300)
    assert held_out_range(inside) == (lo, hi)
    assert held_out_range(inside, also=(lo - 7200, lo - 3600)) == (lo - 7200, hi)
    assert held_out_range(np.array([0, 300])) is None  # 1970: no validation set then
    assert held_out_range(np.array([0, 300]), also=(0, 10)) == (0, 10)
