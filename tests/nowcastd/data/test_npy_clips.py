"""Pre-cut .npy clips: memory-mapped, validated, with an optional sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nowcastd.data.npy_clips import read_npy_clips
from nowcastd.errors import DataError
from nowcastd.io.transform import DataTransform


def _clips(shape=(5, 6, 4, 4, 1), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_five_dim_clips_are_memory_mapped_and_identity(tmp_path):
    x = _clips()
    np.save(tmp_path / "c.npy", x)
    cs = read_npy_clips(tmp_path / "c.npy")
    assert cs.shape == x.shape and cs.transform.kind == "identity"
    assert isinstance(cs.clips._parts[0][0].base, np.memmap)
    np.testing.assert_array_equal(cs.clips[[3, 1]], x[[3, 1]])
    np.testing.assert_array_equal(np.asarray(cs.clips), x)
    np.testing.assert_array_equal(cs.clips[2, 1:3, 0], x[2, 1:3, 0])
    assert "frame_starts" not in cs.meta and cs.valid_mask is None


def test_four_dim_clips_get_one_channel(tmp_path):
    x = _clips((3, 5, 4, 4))
    np.save(tmp_path / "c.npy", x)
    cs = read_npy_clips(tmp_path / "c.npy")
    assert cs.shape == (3, 5, 4, 4, 1)
    np.testing.assert_array_equal(cs.clips[1][..., 0], x[1])


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.zeros((2, 3, 4), np.float32), "expected shape"),
        (np.zeros((2, 3, 4, 4, 1), np.uint8), "dtype uint8"),
        (np.zeros((2, 3, 4, 4, 1, 1), np.float32), "expected shape"),
    ],
)
def test_wrong_ndim_or_dtype_raise(tmp_path, arr, match):
    np.save(tmp_path / "c.npy", arr)
    with pytest.raises(DataError, match=match):
        read_npy_clips(tmp_path / "c.npy")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "c.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot read"):
        read_npy_clips(tmp_path / "c.npy")


def test_sidecar_declares_transform_times_and_mask(tmp_path):
    x = _clips((2, 3, 4, 4, 1))
    m = np.ones_like(x)
    m[1, 2, 0, 0, 0] = 0.0
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "c_valid_mask.npy", m)
    side = {
        "transform": {"kind": "dbz"},
        "start_frame": [0, 3],
        "total_length": 3,
        "n_frames": 6,
        "start_time": ["2010-08-26T00:00:00Z", "2010-08-26T00:15:00Z"],
        "timestep_seconds": 300,
        "valid_mask": "c_valid_mask.npy",
        "block": 2,
    }
    (tmp_path / "c.json").write_text(json.dumps(side))
    cs = read_npy_clips(tmp_path / "c.npy")
    assert cs.transform == DataTransform(kind="dbz") and cs.timestep_seconds == 300
    assert cs.meta["frame_starts"] == [0, 3] and cs.meta["n_frames"] == 6
    assert cs.meta["block"] == 2 and cs.times[1] == "2010-08-26T00:15:00Z"
    np.testing.assert_array_equal(cs.valid_mask[1], m[1])
    with pytest.raises(DataError, match="declares transform"):
        read_npy_clips(tmp_path / "c.npy", transform=DataTransform(kind="identity"))


def test_without_sidecar_the_given_transform_is_declared(tmp_path):
    np.save(tmp_path / "c.npy", _clips((2, 3, 4, 4, 1)))
    cs = read_npy_clips(tmp_path / "c.npy", transform=DataTransform(kind="dbz"))
    assert cs.transform.is_physical


def test_broken_sidecar_raises(tmp_path):
    np.save(tmp_path / "c.npy", _clips((2, 3, 4, 4, 1)))
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(DataError, match="c.json"):
        read_npy_clips(tmp_path / "c.npy")
    (tmp_path / "c.json").write_text(json.dumps({"start_frame": [0]}))
    with pytest.raises(DataError, match="1 start frames for 2 clips"):
        read_npy_clips(tmp_path / "c.npy")
