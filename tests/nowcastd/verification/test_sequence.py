"""Radar sequences from an HDF5 movie and from a directory of real KNMI scans."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from nowcastd.errors import ConfigError, DataError
from nowcastd.io.readers import read_scan
from nowcastd.verification.sequence import open_sequence, read_movie_sequence
from tests.nowcastd.verification.conftest import write_movie
from tests.paths import FIXTURES

KNMI = FIXTURES / "knmi"


def _block_nanmean(x: np.ndarray, block: int) -> np.ndarray:
    """Mean of the valid pixels of each block x block tile, NaN where none is valid."""
    t, h, w = x.shape
    tiles = x.reshape(t, h // block, block, w // block, block)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty"):
        return np.nanmean(tiles, axis=(2, 4))


def test_movie_crop_and_block_average_ignore_nan(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.gamma(0.5, 2.0, (6, 40, 36)).astype(np.float32)
    x[:, 8:12, 4:8] = np.nan  # one whole 4 x 4 block of the crop without data
    x[:, 12, 8] = np.nan  # one pixel of another block
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", x), crop=(8, 4, 32, 32), block=4)

    assert seq.grid == (8, 8) and seq.timestep_seconds == 300
    np.testing.assert_allclose(
        seq.precip, _block_nanmean(x[:, 8:40, 4:36], 4), rtol=1e-6, equal_nan=True
    )
    assert np.isnan(seq.precip[:, 0, 0]).all() and np.isfinite(seq.precip[:, 1, 1]).all()


def test_movie_windows_never_span_a_time_gap(tmp_path):
    times = 1_000_000 + 300 * np.array([0, 1, 2, 3, 5, 6, 7, 8])  # one scan missing
    seq = read_movie_sequence(write_movie(tmp_path / "m.h5", np.zeros((8, 8, 8)), times=times))
    assert seq.starts(3).tolist() == [0, 1, 4, 5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop": (0, 0, 6, 8)}, "crop height: expected a multiple of block=4"),
        ({"crop": (4, 0, 8, 8), "block": 1}, "crop height: expected row0 \\+ height <= 8"),
    ],
)
def test_movie_bad_crop_is_a_data_error(tmp_path, kwargs, message):
    path = write_movie(tmp_path / "m.h5", np.zeros((3, 8, 8)))
    with pytest.raises(DataError, match=message):
        read_movie_sequence(path, **{"block": 4, **kwargs})


def test_scan_directory_with_the_serve_domain(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text(
        "[serve]\ntimestep_seconds = 300\n[reader]\nformat = 'auto'\n"
        "[domain]\nnative_shape = [765, 700]\nrow0 = 126\ncol0 = 94\n"
        "height = 256\nwidth = 256\nblock = 4\n"
    )
    seq = open_sequence(KNMI, config=config)  # README.md in there is no scan: skipped

    assert seq.precip.shape == (4, 64, 64) and seq.timestep_seconds == 300
    assert np.diff(seq.time_unix).tolist() == [300, 300, 300]
    scans = sorted(KNMI.glob("*.h5"))
    native = np.stack([read_scan(p).field[126:382, 94:350] for p in scans])
    np.testing.assert_allclose(seq.precip, _block_nanmean(native, 4), rtol=1e-6, equal_nan=True)
    assert seq.iso_time(0) == "2010-08-26T00:00:00Z"


def test_scan_directory_with_crop_flags_and_a_domain_is_refused(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text(
        "[domain]\nnative_shape = [765, 700]\nrow0 = 0\ncol0 = 0\nheight = 8\nwidth = 8\n"
    )
    with pytest.raises(ConfigError, match="not both"):
        open_sequence(KNMI, config=config, block=2)


def test_scan_directory_needs_two_scans(tmp_path):
    shutil.copy(sorted(KNMI.glob("*.h5"))[0], tmp_path)
    (tmp_path / "notes.txt").write_text("not a scan")
    with pytest.raises(DataError, match=r"at least 2 radar scans, got 1 \(1 files skipped\)"):
        open_sequence(tmp_path, crop=(0, 0, 64, 64))
