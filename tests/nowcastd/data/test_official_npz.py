"""The official generic .npz layout: assembled into (N, T, H, W, C)."""

from __future__ import annotations

import numpy as np
import pytest

from nowcastd.data.official_npz import read_official_npz, save_official_npz
from nowcastd.errors import DataError


def _frames(n, c=1, h=4, w=5, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


def test_one_dims_row_reads_input_then_output_part(tmp_path):
    raw = _frames(30, c=2)
    clips = np.array([[[0, 3], [10, 3]], [[3, 2], [13, 2]]])  # (2, N=2, 2)
    np.savez(tmp_path / "d.npz", clips=clips, dims=np.array([[2, 4, 5]]), input_raw_data=raw)
    cs = read_official_npz(tmp_path / "d.npz")
    assert cs.shape == (2, 5, 4, 5, 2) and cs.transform.kind == "identity"
    expect = np.concatenate([raw[10:13], raw[13:15]]).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(cs.clips[1], expect)
    assert cs.meta["frame_starts"] == [0, 10] and cs.meta["n_frames"] == 30
    assert isinstance(cs.clips._parts[0][0].base, np.memmap)


def test_two_dims_rows_read_the_output_part_from_output_raw_data(tmp_path):
    raw_in, raw_out = _frames(8), _frames(6, seed=1)
    clips = np.array([[[0, 4], [4, 4]], [[0, 3], [3, 3]]])
    np.savez(
        tmp_path / "d.npz",
        clips=clips,
        dims=np.array([[1, 4, 5], [1, 4, 5]]),
        input_raw_data=raw_in,
        output_raw_data=raw_out,
    )
    cs = read_official_npz(tmp_path / "d.npz")
    assert cs.shape == (2, 7, 4, 5, 1) and "frame_starts" not in cs.meta
    np.testing.assert_array_equal(cs.clips[1][4:, ..., 0], raw_out[3:6, 0])
    np.testing.assert_array_equal(cs.clips[1][:4, ..., 0], raw_in[4:8, 0])


def test_save_then_read_roundtrips_and_compressed_files_work(tmp_path):
    x = np.random.default_rng(2).random((3, 6, 4, 4, 1)).astype(np.float32)
    path = save_official_npz(tmp_path / "o.npz", x, input_length=2)
    cs = read_official_npz(path)
    np.testing.assert_array_equal(np.asarray(cs.clips), x)
    assert cs.meta["input_length"] == 2 and cs.meta["frame_starts"] == [0, 6, 12]
    with np.load(path, allow_pickle=False) as z:
        np.savez_compressed(tmp_path / "z.npz", **{k: z[k] for k in z.files})
    np.testing.assert_array_equal(np.asarray(read_official_npz(tmp_path / "z.npz").clips), x)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "keys, match",
    [
        ({"dims": np.array([[1, 4, 5]])}, "missing keys"),
        (
            {
                "clips": np.zeros((2, 2, 2), int),
                "dims": np.array([[1, 4, 5]]),
                "input_raw_data": np.zeros((8, 1, 4, 5), np.uint8),
            },
            "dtype uint8",
        ),
        (
            {
                "clips": np.zeros((2, 2, 2), int),
                "dims": np.array([[1, 4, 4]]),
                "input_raw_data": np.zeros((8, 1, 4, 5), np.float32),
            },
            "must be",
        ),
        (
            {
                "clips": np.array([[[0, 2], [2, 3]], [[2, 2], [5, 2]]]),
                "dims": np.array([[1, 4, 5]]),
                "input_raw_data": np.zeros((8, 1, 4, 5), np.float32),
            },
            "same length",
        ),
        (
            {
                "clips": np.zeros((2, 2, 2), int),
                "dims": np.array([[1, 4, 5], [1, 4, 5]]),
                "input_raw_data": np.zeros((8, 1, 4, 5), np.float32),
            },
            "output_raw_data",
        ),
    ],
)
def test_malformed_files_raise(tmp_path, keys, match):
    np.savez(tmp_path / "d.npz", **keys)
    with pytest.raises(DataError, match=match):
        read_official_npz(tmp_path / "d.npz")


def test_object_arrays_are_refused(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        clips=np.zeros((2, 1, 2), int),
        dims=np.array([[1, 4, 5]]),
        input_raw_data=np.array([None, {"x": 1}], dtype=object),
    )
    with pytest.raises(DataError, match="pickle|object"):
        read_official_npz(tmp_path / "d.npz")
