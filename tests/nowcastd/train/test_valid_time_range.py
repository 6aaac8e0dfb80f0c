"""`--valid_time_range`: validation on an archive's frames of a time range, which the training
sequences of the same archive leave out."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from model.config import ModelConfig
from nowcastd.data.sequences import load_movie
from nowcastd.errors import DataError
from nowcastd.train.config import TrainConfig
from nowcastd.train.loop import open_split

MODEL = ModelConfig(
    model_name="predrnn_v2",
    num_hidden=(4,),
    filter_size=3,
    patch_size=4,
    img_height=8,
    img_width=8,
    input_length=2,
    total_length=3,
)
T0 = 1282780800  # 2010-08-26T00:00Z


def _archive(path: Path, n: int = 24) -> Path:
    with h5py.File(path, "w") as h:
        d = h.create_dataset("precip", data=np.ones((n, 8, 8), np.float32), chunks=(1, 8, 8))
        d.attrs["units"] = "mm/h"
        h["time_unix"] = T0 + 300 * np.arange(n)
        h.attrs["timestep_seconds"] = 300
    return path


def _config(path: Path, times: tuple[str, str], *, sequences: bool = True) -> TrainConfig:
    return TrainConfig(
        model=MODEL,
        train_data_paths=(path,),
        valid_data_paths=(path,),
        valid_time_range=times,
        sequences=sequences,
    )


def test_validation_reads_only_the_range_and_training_leaves_it_out(tmp_path) -> None:
    path = _archive(tmp_path / "archive.h5")
    cfg = _config(path, ("2010-08-26T01:00", "2010-08-26T01:30Z"))  # frames 12..18
    valid = open_split(cfg, "valid")
    assert valid.times == tuple(f"2010-08-26T01:{m:02d}:00Z" for m in (0, 5, 10, 15, 20))
    movie = load_movie(path, exclude=cfg.valid_range_unix)
    starts = movie.starts(3, 1)
    windows = starts[:, None] + np.arange(3)
    assert not np.any((windows >= 12) & (windows <= 18))
    assert starts.tolist() == [*range(0, 10), 19, 20, 21]


def test_a_range_outside_the_archive_is_refused_by_its_extent(tmp_path) -> None:
    cfg = _config(_archive(tmp_path / "a.h5"), ("2011-01-01T00:00", "2011-02-01T00:00"))
    with pytest.raises(DataError, match="the file holds 2010-08-26T00:00:00Z to 2010-08-26T01"):
        open_split(cfg, "valid")


def test_bad_ranges_and_a_range_over_a_shared_split_are_refused(tmp_path) -> None:
    path = tmp_path / "a.h5"
    with pytest.raises(ValueError, match="valid_time_range: expected two ISO 8601"):
        _config(path, ("yesterday", "today"))
    with pytest.raises(ValueError, match="expected FIRST <= LAST"):
        _config(path, ("2010-08-26T02:00", "2010-08-26T01:00"))
    with pytest.raises(ValueError, match="other than the training data"):
        _config(path, ("2010-08-26T01:00", "2010-08-26T02:00"), sequences=False)
