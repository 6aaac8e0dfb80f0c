"""The official PredRNN generic ``.npz`` layout (the "mnist" loader), read and written.

Keys (REFERENCE.md §2): ``clips`` int (2, N, 2) with ``clips[0, j] = (start, length)`` of clip
j's input part and ``clips[1, j]`` of its output part; ``dims`` (1, 3) or (2, 3) rows of
(C, H, W); ``input_raw_data`` (N_frames, C, H, W); with two ``dims`` rows the output part is read
from ``output_raw_data``, otherwise from ``input_raw_data``. A clip is its input part followed by
its output part, transposed to channels-last: (N, T, H, W, C).

Differences from the official loader, all on purpose: every clip must have the same input and
output length (the official one pads a short output part with zeros and crashes on a short input
part); integer data are refused rather than fed unscaled; the data are identity-transformed
(no normalisation, as in the official code). Members stored uncompressed (``np.savez``) are
memory-mapped; compressed ones are read into memory. Pickled object arrays are refused.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.data.clips import ClipSet, WindowedClips
from nowcastd.errors import DataError
from nowcastd.io.atomic import atomic_file
from nowcastd.io.transform import DataTransform

REQUIRED_KEYS = ("clips", "dims", "input_raw_data")


def _member(path: Path, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """Array `key` of the npz: memory-mapped when stored uncompressed, else read."""
    info = zf.getinfo(key + ".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise DataError(f"npz {path.name}: member {key} has a bad local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise DataError(f"npz {path.name}: member {key} holds Python objects (pickle)")
        offset = f.tell()
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype)
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


def _lengths(part: np.ndarray, name: str, where: str) -> int:
    lengths = np.unique(part[:, 1])
    if lengths.size != 1:
        raise DataError(
            f"{where}: clips' {name} parts have lengths {lengths.tolist()}; "
            "every clip must have the same length"
        )
    return int(lengths[0])


def _read_arrays(path: Path, where: str) -> dict[str, Any]:
    """The npz's required members and ``output_raw_data`` when present."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n.removesuffix(".npy") for n in zf.namelist()}
            missing = [k for k in REQUIRED_KEYS if k not in names]
            if missing:
                raise DataError(f"{where}: missing keys {missing} (has {sorted(names)})")
            return {
                k: _member(path, zf, k) for k in (*REQUIRED_KEYS, "output_raw_data") if k in names
            }
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise DataError(f"{where}: cannot read as npz: {e}") from e


def _check_index(clips: np.ndarray, dims: np.ndarray, where: str) -> None:
    """``clips`` is integer (2, N, 2) and ``dims`` has one or two rows of (C, H, W)."""
    if clips.ndim != 3 or clips.shape[0] != 2 or clips.shape[2] != 2:
        raise DataError(f"{where}: 'clips' must be (2, N, 2), got {clips.shape}")
    if not np.issubdtype(clips.dtype, np.integer):
        raise DataError(f"{where}: 'clips' must be integer, got {clips.dtype}")
    if dims.shape not in ((1, 3), (2, 3)):
        raise DataError(f"{where}: 'dims' must be (1, 3) or (2, 3), got {dims.shape}")


def _sources(arrays: dict[str, Any], dims: np.ndarray, where: str) -> list[np.ndarray]:
    """The frames of the input and of the output parts, each checked against its ``dims`` row."""
    sources = [arrays["input_raw_data"]]
    if len(dims) == 2:
        if "output_raw_data" not in arrays:
            raise DataError(f"{where}: 'dims' has 2 rows but there is no 'output_raw_data'")
        sources.append(arrays["output_raw_data"])
    else:
        sources.append(arrays["input_raw_data"])
    for row, (key, arr) in enumerate(
        zip(("input_raw_data", "output_raw_data"), sources, strict=True)
    ):
        expected = tuple(int(v) for v in dims[min(row, dims.shape[0] - 1)])
        if arr.ndim != 4 or tuple(arr.shape[1:]) != expected:
            raise DataError(f"{where}: '{key}' must be (N_frames, *{expected}), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise DataError(f"{where}: '{key}' must be float in model units, got dtype {arr.dtype}")
    return sources


def _windows(clips: np.ndarray, sources: list[np.ndarray], where: str) -> tuple[WindowedClips, int]:
    """Each clip as its input part followed by its output part, channels-last; the input length."""
    in_len = _lengths(clips[0], "input", where)
    out_len = _lengths(clips[1], "output", where)
    parts = [
        (src.transpose(0, 2, 3, 1), clips[i, :, 0], length)
        for i, (src, length) in enumerate(zip(sources, (in_len, out_len), strict=True))
        if length > 0
    ]
    if not parts:
        raise DataError(f"{where}: every clip has zero length")
    if sources[0].shape[1:] != sources[1].shape[1:]:
        raise DataError(
            f"{where}: input {sources[0].shape[1:]} and output {sources[1].shape[1:]} frames differ"
        )
    try:
        return WindowedClips(parts), in_len
    except ValueError as e:
        raise DataError(f"{where}: {e}") from e


def read_official_npz(path: str | Path, *, transform: DataTransform | None = None) -> ClipSet:
    """Open an official generic ``.npz`` as an unsplit ClipSet (see the module docstring).

    ``transform`` declares the data's units (default identity; nothing is rescaled).

    Raises:
        DataError: not a readable npz, missing keys, inconsistent shapes, integer data.
    """
    path = Path(path)
    where = f"npz {path.name}"
    arrays = _read_arrays(path, where)
    clips, dims = np.asarray(arrays["clips"]), np.asarray(arrays["dims"])
    _check_index(clips, dims, where)
    sources = _sources(arrays, dims, where)
    windows, in_len = _windows(clips, sources, where)

    meta: dict[str, Any] = {"format": "official-npz", "input_length": in_len}
    contiguous = dims.shape[0] == 1 and np.array_equal(clips[1, :, 0], clips[0, :, 0] + in_len)
    if contiguous:
        meta["frame_starts"] = clips[0, :, 0].astype(int).tolist()
        meta["n_frames"] = int(sources[0].shape[0])
    return ClipSet(
        clips=windows,
        transform=transform or DataTransform(kind="identity"),
        source=f"{path.name} (official npz)",
        meta=meta,
    )


def save_official_npz(path: str | Path, clips: np.ndarray, *, input_length: int) -> Path:
    """Write (N, T, H, W, C) clips in the official layout, atomically; returns the path.

    Each clip's frames are stored once, in order, so ``clips[1, j]`` follows ``clips[0, j]``.
    """
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim != 5:
        raise ValueError(f"save_official_npz: clips must be (N, T, H, W, C), got {clips.shape}")
    n, t, h, w, c = clips.shape
    if not 0 < input_length <= t:
        raise ValueError(f"save_official_npz: input_length {input_length} not in 1..{t}")
    starts = np.arange(n, dtype=np.int32) * t
    index = np.stack(
        [
            np.stack([starts, np.full(n, input_length, np.int32)], axis=1),
            np.stack([starts + input_length, np.full(n, t - input_length, np.int32)], axis=1),
        ]
    )
    frames = clips.transpose(0, 1, 4, 2, 3).reshape(n * t, c, h, w)
    path = Path(path)
    with atomic_file(path) as f:
        np.savez(f, clips=index, dims=np.array([[c, h, w]], np.int32), input_raw_data=frames)
    return path
