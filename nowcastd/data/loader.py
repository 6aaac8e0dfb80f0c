"""Open any supported data file as a ClipSet that fits the model, and draw batches from it.

`open_dataset` detects the format by content (not by name): the ``.npy`` magic, an HDF5 file
with a ``precip`` dataset (a radar movie) or a zip (``.npz``) holding ``clips``. It splits
train/validation by time (see `nowcastd.data.clips`), checks the clips against the model's
(H, W, C) and ``total_length`` and trims longer clips to ``total_length``.

`BatchIterator` yields float32 (B, T, H, W, C) batches, reshuffling every epoch with the
`np.random.Generator` it is given, and saves/restores its exact position (`state_dict`).
"""

from __future__ import annotations

import copy
import logging
import math
import zipfile
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload

import h5py
import numpy as np

from nowcastd.data.clips import ClipSet, split_boundary, split_select
from nowcastd.data.movie import read_movie
from nowcastd.data.npy_clips import read_npy_clips
from nowcastd.data.official_npz import read_official_npz
from nowcastd.errors import DataError
from nowcastd.io.readers.detect import sniff
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)


def detect_dataset_format(path: str | Path) -> str:
    """``"npy"``, ``"hdf5-movie"`` or ``"official-npz"`` from the file's content."""
    path = Path(path)
    try:
        container = sniff(path)
    except OSError as e:
        raise DataError(f"data {path}: cannot open: {e}") from e
    if container == "npy":
        return "npy"
    if container == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except zipfile.BadZipFile as e:
            raise DataError(f"data {path.name}: broken zip/npz: {e}") from e
        if "clips.npy" in names:
            return "official-npz"
        raise DataError(f"data {path.name}: an npz without 'clips' (has {sorted(names)})")
    if container == "hdf5":
        with h5py.File(path, "r") as h:
            if "precip" in h:
                return "hdf5-movie"
        raise DataError(f"data {path.name}: an HDF5 file without a 'precip' dataset")
    raise DataError(
        f"data {path.name}: unknown format (expected .npy clips, an HDF5 movie with 'precip' "
        "or an official .npz with 'clips')"
    )


def _subset(cs: ClipSet, keep: np.ndarray, meta: dict[str, Any]) -> ClipSet:
    idx = np.flatnonzero(keep)
    extra = {}
    if "frame_starts" in cs.meta:
        extra["frame_starts"] = [cs.meta["frame_starts"][i] for i in idx]
    return ClipSet(
        clips=cs.clips.subset(idx),
        valid_mask=None if cs.valid_mask is None else cs.valid_mask.subset(idx),
        transform=cs.transform,
        times=None if cs.times is None else tuple(cs.times[i] for i in idx),
        timestep_seconds=cs.timestep_seconds,
        source=cs.source,
        meta={**cs.meta, **meta, **extra},
    )


def split_clipset(cs: ClipSet, split: str, valid_fraction: float) -> ClipSet:
    """The clips of `split` under the time rule of `nowcastd.data.clips` (DataError if none)."""
    if "frame_starts" in cs.meta:
        starts = np.asarray(cs.meta["frame_starts"], dtype=np.int64)
        length, n_frames, by = cs.shape[1], int(cs.meta["n_frames"]), "time"
    else:
        starts, length, n_frames, by = np.arange(len(cs)), 1, len(cs), "clip order"
        if valid_fraction > 0:
            logger.warning(
                "%s: the clips' place in time is unknown; splitting by clip order, so "
                "overlapping clips may leak between train and validation",
                cs.source,
            )
    boundary = split_boundary(n_frames, valid_fraction)
    keep = split_select(starts, length, boundary, n_frames, split)
    lo, hi = (0, boundary) if split == "train" else (boundary, n_frames)
    if not keep.any():
        unit = "frames" if by == "time" else "clips"
        what = f"no complete clip of {length} frames" if by == "time" else "no clip"
        if split == "valid":
            hint = f"valid_fraction >= {math.ceil(100 * length / n_frames) / 100:.2f}"
        else:
            hint = f"valid_fraction <= {math.floor(100 * (1 - length / n_frames)) / 100:.2f}"
        raise DataError(
            f"{cs.source}: the {split} split ({unit} {lo}..{hi - 1} of {n_frames}, "
            f"valid_fraction {valid_fraction}) holds {what}; "
            f"use {hint}"
        )
    return _subset(cs, keep, {"split": split, "split_by": by, "split_range": [lo, hi]})


def check_fits(
    cs: ClipSet, *, total_length: int, img_height: int, img_width: int, img_channel: int
) -> ClipSet:
    """Raise a one-line DataError unless the clips fit the model; trim longer clips."""
    _, t, h, w, c = cs.shape
    if (h, w, c) != (img_height, img_width, img_channel):
        flag = (
            f"--img_width {img_width}"
            if img_height == img_width
            else (f"--img_height {img_height} --img_width {img_width}")
        )
        if c != img_channel:
            flag += f" --img_channel {img_channel}"
        raise DataError(
            f"data clips are {h}×{w}×{c} but the model expects {img_height}×{img_width}×"
            f"{img_channel} ({flag}): run `nowcastd dataset build` to crop/average the data to "
            "the model size"
        )
    if t < total_length:
        raise DataError(
            f"data clips have {t} frames but the model needs {total_length} "
            f"(--total_length {total_length}): run `nowcastd dataset build` with total_length "
            f"{total_length} or lower --total_length"
        )
    if t > total_length:
        logger.info("%s: using the first %d of %d frames per clip", cs.source, total_length, t)
        cs = ClipSet(
            clips=cs.clips.truncated(total_length),
            valid_mask=None if cs.valid_mask is None else cs.valid_mask.truncated(total_length),
            transform=cs.transform,
            times=cs.times,
            timestep_seconds=cs.timestep_seconds,
            source=cs.source,
            meta=cs.meta,
        )
    return cs


def _check_already_cut(
    path: Path,
    fmt: str,
    *,
    stride: int,
    crop: tuple[int, int, int, int] | None,
    block: int,
    time_range: tuple[int, int] | None,
) -> None:
    """Refuse the options that cut a movie when `path` is a clip file (already cut)."""
    if time_range is not None:
        raise DataError(
            f"data {path.name}: a time range applies to HDF5 movies and archives, whose "
            f"frames have times; got a {fmt} file"
        )
    if crop is not None or block != 1 or stride != 1:
        raise DataError(
            f"data {path.name}: crop, block and stride apply to HDF5 movies; clip files are "
            "already cut: run `nowcastd dataset build` to re-cut them"
        )


def _read_any(
    path: Path,
    *,
    total_length: int,
    transform: DataTransform | None,
    stride: int,
    crop: tuple[int, int, int, int] | None,
    block: int,
    time_range: tuple[int, int] | None,
) -> ClipSet:
    """All the clips of `path` in the format its content shows: a movie cut, a clip file as is."""
    fmt = detect_dataset_format(path)
    if fmt == "hdf5-movie":
        return read_movie(
            path,
            total_length=total_length,
            stride=stride,
            transform=transform,
            crop=crop,
            block=block,
            time_range=time_range,
        )
    _check_already_cut(path, fmt, stride=stride, crop=crop, block=block, time_range=time_range)
    if fmt == "npy":
        return read_npy_clips(path, transform=transform)
    return read_official_npz(path, transform=transform)


def open_dataset(
    path: str | Path,
    *,
    total_length: int,
    img_height: int,
    img_width: int,
    img_channel: int,
    split: str = "train",
    valid_fraction: float = 0.2,
    transform: DataTransform | None = None,
    stride: int = 1,
    crop: tuple[int, int, int, int] | None = None,
    block: int = 1,
    time_range: tuple[int, int] | None = None,
) -> ClipSet:
    """Open `path` (any supported format) as the `split` ClipSet fitting the model.

    Args:
        path: a ``.npy`` clip file, an HDF5 movie or an official ``.npz``.
        total_length, img_height, img_width, img_channel: what the model expects.
        split: ``"train"`` or ``"valid"``; valid_fraction: the time share of validation.
        transform: None: the file's own (sidecar, movie units) or identity; else declared (clip
            files) or applied (movies).
        stride, crop, block: how to cut a movie (see `nowcastd.data.movie`); clip files are
            already cut, so they accept only the defaults.
        time_range: (first, last) Unix seconds: a movie's frames valid then (movies only).

    Raises:
        DataError: unreadable or unknown file, an empty split, clips that do not fit the model.
    """
    if split not in ("train", "valid"):
        raise ValueError(f"split: got {split!r}, expected 'train' or 'valid'")
    path = Path(path)
    cs = _read_any(
        path,
        total_length=total_length,
        transform=transform,
        stride=stride,
        crop=crop,
        block=block,
        time_range=time_range,
    )
    cs = check_fits(
        cs,
        total_length=total_length,
        img_height=img_height,
        img_width=img_width,
        img_channel=img_channel,
    )
    cs = split_clipset(cs, split, valid_fraction)
    logger.info(
        "%s: %s split, %d clips of shape %s, transform %s",
        cs.source,
        split,
        len(cs),
        cs.shape[1:],
        cs.transform.kind,
    )
    return cs


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [int(v) for v in obj.ravel().tolist()]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# What a `BatchIterator` yields: the clips, or (clips, valid_mask) pairs with `with_mask=True`.
_Batch = TypeVar("_Batch")
_Pair = tuple[np.ndarray, np.ndarray]


class BatchIterator(Generic[_Batch]):
    """Batches of whole clips, float32 (B, T, H, W, C), in a fresh random order every epoch.

    Iterating never ends when ``repeat`` (training: the next epoch starts after the last full
    batch); with ``repeat=False`` it stops at the end of the current epoch (one evaluation
    pass). ``with_mask=True`` yields ``(clips, valid_mask)`` pairs (ones where none is known).

    Give it its own Generator: `state_dict` records the generator's state at the start of the
    epoch, and `load_state_dict` restores it and redraws that epoch's order, so a resumed run
    sees exactly the batches the interrupted one would have seen.
    """

    @overload
    def __init__(
        self: BatchIterator[np.ndarray],
        clipset: ClipSet,
        batch_size: int,
        rng: np.random.Generator,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        repeat: bool = True,
        with_mask: Literal[False] = False,
    ) -> None: ...
    @overload
    def __init__(
        self: BatchIterator[_Pair],
        clipset: ClipSet,
        batch_size: int,
        rng: np.random.Generator,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        repeat: bool = True,
        with_mask: Literal[True],
    ) -> None: ...
    def __init__(
        self,
        clipset: ClipSet,
        batch_size: int,
        rng: np.random.Generator,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        repeat: bool = True,
        with_mask: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size}, expected >= 1")
        n = len(clipset)
        if n == 0 or (drop_last and n < batch_size):
            raise DataError(f"{clipset.source}: {n} clips cannot fill a batch of {batch_size}")
        self.clipset, self.batch_size, self.rng = clipset, batch_size, rng
        self.shuffle, self.drop_last, self.repeat, self.with_mask = (
            shuffle,
            drop_last,
            repeat,
            with_mask,
        )
        self.epoch = 0
        self.position = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_state = copy.deepcopy(self.rng.bit_generator.state)
        n = len(self.clipset)
        self._order = self.rng.permutation(n) if self.shuffle else np.arange(n)

    @property
    def batches_per_epoch(self) -> int:
        n, b = len(self.clipset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _epoch_done(self) -> bool:
        n = len(self.clipset)
        return self.position + (self.batch_size if self.drop_last else 1) > n

    def __iter__(self) -> BatchIterator[_Batch]:
        return self

    @overload
    def __next__(self: BatchIterator[np.ndarray]) -> np.ndarray: ...
    @overload
    def __next__(self: BatchIterator[_Pair]) -> _Pair: ...
    def __next__(self) -> np.ndarray | _Pair:
        if self._epoch_done():
            if not self.repeat:
                raise StopIteration
            self.epoch += 1
            self.position = 0
            self._start_epoch()
        idx = self._order[self.position : self.position + self.batch_size]
        self.position += len(idx)
        clips = np.asarray(self.clipset.clips[idx], dtype=np.float32)
        if not self.with_mask:
            return clips
        mask = self.clipset.valid_mask
        mask = np.ones_like(clips) if mask is None else np.asarray(mask[idx], dtype=np.float32)
        return clips, mask

    def state_dict(self) -> dict[str, Any]:
        """JSON-able position: epoch, position in it, generator state at the epoch's start."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "n_clips": len(self.clipset),
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "rng_state": _jsonable(self._epoch_state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict`; DataError if the data or the batch size changed."""
        expected = (len(self.clipset), self.batch_size, self.shuffle)
        got = (state.get("n_clips"), state.get("batch_size"), state.get("shuffle"))
        if got != expected:
            raise DataError(
                "cannot resume the data order: saved (clips, batch_size, shuffle) = "
                f"{got}, now {expected}"
            )
        self.rng.bit_generator.state = state["rng_state"]
        self.epoch = int(state["epoch"])
        self._start_epoch()
        self.position = int(state["position"])
