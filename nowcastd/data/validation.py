"""The validation sets: one whole event and a held-out final part of each training event.

A model is judged on kinds of weather, not on one event (`bench/bench_evaluate.py --sets all`,
`nowcastd evaluate --data` with several movies). The radar data directory (``shared/data/radar``
beside the repository) holds the events; each set names its file there, the time range it
holds (UTC, both ends included), the frame stride that gives its time step, how many leads it
can score, and the crops that make its 4 km and 2 km model grids:

| set | weather | held out | step, leads |
|---|---|---|---|
| `mch_20150515` | MeteoSwiss validation event | the whole event (40 frames) | 5 min, 12 |
| `mch_20160711` | MeteoSwiss summer convection | the last 20 of 40 frames | 5 min, 12 |
| `mch_20170131` | MeteoSwiss winter stratiform | the last 20 of 40 frames | 5 min, 12 |
| `mrms_20190610` | NOAA MRMS mesoscale system | the last 20 of 36 two-minute frames | 4 min, 5 |
| `knmi_20100826` | KNMI band (`movie.h5`) | the last 30 of 92 frames | 5 min, 12 |

The MRMS event spans 70 minutes: a window of 4 inputs and 12 leads at a 4-minute step needs 61,
so its held-out part scores 5 leads (20 minutes), and the 16-frame training windows no longer fit
in its first part. The KNMI event trained the bundled model before these sets existed: its
scores there are in-sample for that model.

Training never draws from these time ranges: `held_out_range` gives, for a movie's times, the
range its windows must not touch (`nowcastd.data.sequences.Movie.exclude`), whatever the file is
called; the ranges of different events do not overlap in time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

__all__ = ["VALIDATION_SETS", "ValidationSet", "held_out_range", "movie_held_out_range"]

#: (row0, col0, height, width) in native pixels, and the block factor
Crop = tuple[tuple[int, int, int, int], int]

MCH_CROPS: dict[str, Crop] = {
    "4km": ((64, 96, 512, 512), 4),  # 512 x 512 km, about 5 % without data
    "2km": ((192, 320, 256, 256), 2),  # the middle 256 x 256 km, where the rain is
}


def _unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


@dataclass(frozen=True, kw_only=True)
class ValidationSet:
    """One validation set (module docstring); `first`, `last`: ISO-8601 UTC, included."""

    name: str
    weather: str
    file: str  # relative to the radar data directory
    first: str
    last: str
    stride: int = 1
    lead_frames: int = 12
    crops: dict[str, Crop] = field(default_factory=lambda: dict(MCH_CROPS))

    @property
    def range_unix(self) -> tuple[int, int]:
        return _unix(self.first), _unix(self.last)

    def frames(self, time_unix: np.ndarray) -> slice:
        """The movie's frames of this set, every `stride`-th from the first."""
        lo, hi = self.range_unix
        inside = np.flatnonzero((time_unix >= lo) & (time_unix <= hi))
        if inside.size == 0:
            raise ValueError(
                f"validation set {self.name}: no frame from {self.first} to {self.last}"
            )
        return slice(int(inside[0]), int(inside[-1]) + 1, self.stride)


VALIDATION_SETS: tuple[ValidationSet, ...] = (
    ValidationSet(
        name="mch_20150515",
        weather="MeteoSwiss validation event, whole",
        file="events/mch_20150515.h5",
        first="2015-05-15T15:45:00Z",
        last="2015-05-15T19:00:00Z",
    ),
    ValidationSet(
        name="mch_20160711",
        weather="summer convection, held-out last 100 min",
        file="events/mch_20160711.h5",
        first="2016-07-11T22:25:00Z",
        last="2016-07-12T00:00:00Z",
    ),
    ValidationSet(
        name="mch_20170131",
        weather="winter stratiform, held-out last 100 min",
        file="events/mch_20170131.h5",
        first="2017-01-31T11:25:00Z",
        last="2017-01-31T13:00:00Z",
    ),
    ValidationSet(
        name="mrms_20190610",
        weather="US mesoscale system, held-out last 40 min",
        file="events/mrms_20190610.h5",
        first="2019-06-10T00:32:00Z",
        last="2019-06-10T01:10:00Z",
        stride=2,
        lead_frames=5,
        crops={"4km": ((0, 0, 1024, 1024), 4), "2km": ((256, 256, 512, 512), 2)},
    ),
    ValidationSet(
        name="knmi_20100826",
        weather="KNMI band, held-out last 150 min",
        file="movie.h5",
        first="2010-08-26T05:10:00Z",
        last="2010-08-26T07:35:00Z",
        crops={"4km": ((0, 0, 256, 256), 4), "2km": ((0, 0, 256, 256), 2)},
    ),
)


def held_out_range(
    time_unix: np.ndarray,
    also: tuple[int, int] | None = None,
    sets: Sequence[ValidationSet] = VALIDATION_SETS,
) -> tuple[int, int] | None:
    """The time range (first, last Unix seconds) that training windows of a movie valid at
    `time_unix` must not touch: the smallest one covering every validation range that falls
    within the movie's span, and `also` (a held-out range of the run's own); None if none."""
    t = np.asarray(time_unix, dtype=np.int64)
    ranges = [] if also is None else [also]
    if t.size:
        lo, hi = int(t.min()), int(t.max())
        ranges += [s.range_unix for s in sets if s.range_unix[0] <= hi and s.range_unix[1] >= lo]
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def movie_held_out_range(
    path: str | Path, also: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """`held_out_range` of the movie at `path` from its `time_unix` (without one, only `also`:
    a movie that does not say when it was observed cannot be matched to a validation set)."""
    try:
        with h5py.File(path, "r") as h:
            times = np.asarray(h["time_unix"][:], np.int64) if "time_unix" in h else None
    except OSError:  # not readable: `load_movie` says why
        return also
    return also if times is None else held_out_range(times, also)
