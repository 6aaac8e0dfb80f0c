"""Helpers for the data tests: small HDF5 movies in tmp_path, the radar development set."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.paths import REPO

FIXTURE_MOVIE = REPO / "tests" / "fixtures" / "radar" / "movie_small.h5"
T0_UNIX = 1282780800  # 2010-08-26T00:00:00Z


def write_movie(
    path: Path,
    precip: np.ndarray,
    *,
    time_unix: np.ndarray | None = None,
    units: str = "mm/h",
    timestep_seconds: int | None = 300,
    with_iso: bool = True,
) -> Path:
    """An HDF5 movie in the layout of the development set's movie.h5."""
    precip = np.asarray(precip, np.float32)
    if time_unix is None:
        time_unix = T0_UNIX + 300 * np.arange(precip.shape[0], dtype=np.int64)
    with h5py.File(path, "w") as h:
        d = h.create_dataset("precip", data=precip, chunks=(1, *precip.shape[1:]))
        d.attrs["units"] = units
        h.create_dataset("time_unix", data=np.asarray(time_unix, np.int64))
        if with_iso:
            iso = np.datetime_as_string(np.asarray(time_unix).astype("datetime64[s]"), unit="s")
            h.create_dataset("time", data=np.array([f"{s}Z" for s in iso], dtype="S20"))
        if timestep_seconds is not None:
            h.attrs["timestep_seconds"] = timestep_seconds
        h.attrs["units"] = units
        h.attrs["projection"] = "+proj=stere +lat_0=90 +lon_0=0 +lat_ts=60"
    return path


def rain_movie(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Rates in mm/h: about a third exactly 0, the rest log-normal."""
    rng = np.random.default_rng(seed)
    r = rng.lognormal(mean=0.0, sigma=1.2, size=(t, h, w)).astype(np.float32)
    r[rng.random((t, h, w)) < 0.35] = 0.0
    return r


def dev_data_dir() -> Path | None:
    """The shared radar development set, when this checkout has it beside or inside it."""
    candidates = [
        os.environ.get("NOWCASTD_DEV_DATA", ""),
        REPO / "shared" / "data" / "radar",
        REPO.parent / "shared" / "data" / "radar",
    ]
    for c in candidates:
        if c and (Path(c) / "movie.h5").is_file() and (Path(c) / "train_clips.npy").is_file():
            return Path(c)
    return None


@pytest.fixture
def dev_data() -> Path:
    d = dev_data_dir()
    if d is None:
        pytest.skip("radar development set (shared/data/radar) not present")
    return d
