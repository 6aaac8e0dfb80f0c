"""The clip set and its one split rule: the core types every data source builds.

* `WindowedClips`: a lazy (N, T, H, W, C) float32 array-like whose clip j is the time-concatenation
  of windows ``frames[start_j : start_j + length]`` of one or more frame arrays (T_f, H, W, C).
  It covers pre-cut ``.npy`` clips (frames = the clips reshaped), sliding windows over a movie
  and the official ``.npz`` layout (an input and an output part). Only indexed clips are read.
* `ClipSet`: the clips plus their validity mask, transform, start times and metadata.
* `split_boundary` / `split_select`: the one train/validation rule, by time (see below).

Split rule: with ``valid_fraction = f`` over a sequence of F frames, the last ``ceil(f·F)``
frames form the validation range and the frames before it the training range; a window belongs to
a split only if it lies entirely inside that split's range, so no training clip shares a frame
with a validation clip (windows that straddle the boundary are dropped). Sources that do not know
where their clips lie in time apply the same rule to the clip order (each clip one "frame").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from nowcastd.io.transform import DataTransform

# Which clips: one index, a slice, indices or a boolean mask.
ClipIndex: TypeAlias = int | np.integer[Any] | slice | np.ndarray | Sequence[int]


class WindowedClips:
    """Lazy (N, T, H, W, C) float32 clips cut as windows from frame arrays.

    Args:
        parts: one or more ``(frames, starts, length)``: ``frames`` an array-like (T_f, H, W, C)
            (numpy array, memmap or a view of one), ``starts`` the N window starts in it and
            ``length`` the window length. Clip j concatenates the parts' windows along time.
    """

    def __init__(self, parts: Sequence[tuple[Any, Sequence[int] | np.ndarray, int]]):
        if not parts:
            raise ValueError("WindowedClips: expected at least one part, got none")
        checked: list[tuple[Any, np.ndarray, int]] = []
        n = len(np.asarray(parts[0][1]).reshape(-1))
        for frames, part_starts, length in parts:
            starts = np.asarray(part_starts, dtype=np.int64).reshape(-1)
            if len(starts) != n:
                raise ValueError(f"WindowedClips: parts have {n} and {len(starts)} clips")
            if len(frames.shape) != 4:
                raise ValueError(f"WindowedClips: frames must be (T, H, W, C), got {frames.shape}")
            if starts.size and (starts.min() < 0 or starts.max() + length > frames.shape[0]):
                raise ValueError(
                    f"WindowedClips: windows of {length} from starts {starts.min()}.."
                    f"{starts.max()} exceed {frames.shape[0]} frames"
                )
            if checked and tuple(frames.shape[1:]) != tuple(checked[0][0].shape[1:]):
                raise ValueError(
                    f"WindowedClips: part frames {frames.shape[1:]} differ from "
                    f"{checked[0][0].shape[1:]}"
                )
            checked.append((frames, starts, int(length)))
        self._parts = tuple(checked)
        t_len = sum(p[2] for p in checked)
        self.shape = (int(n), t_len, *(int(s) for s in checked[0][0].shape[1:]))
        self.dtype = np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 5

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.float32)
        t0 = 0
        for frames, starts, length in self._parts:
            for i, s in enumerate(starts[idx]):
                out[i, t0 : t0 + length] = frames[s : s + length]
            t0 += length
        return out

    def __getitem__(self, key: ClipIndex | tuple[ClipIndex, ...]) -> np.ndarray:
        if isinstance(key, tuple):
            head = self[key[0]]
            rest = key[1:] if head.ndim == 4 else (slice(None), *key[1:])
            part: np.ndarray = head[rest]
            return part
        idx = self._index(key)
        if np.ndim(idx) == 0:
            clip: np.ndarray = self._read(np.asarray([idx]))[0]
            return clip
        return self._read(np.asarray(idx))

    def _index(self, key: ClipIndex) -> npt.NDArray[np.int64] | np.int64:
        index: npt.NDArray[np.int64] | np.int64 = np.arange(self.shape[0])[key]
        return index

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        arr = self._read(np.arange(self.shape[0]))
        return arr if dtype is None else arr.astype(dtype)

    def subset(self, mask_or_idx: ClipIndex) -> WindowedClips:
        """A lazy WindowedClips of the selected clips (boolean mask or indices)."""
        idx = self._index(mask_or_idx)
        return WindowedClips([(f, s[idx], n) for f, s, n in self._parts])

    def truncated(self, total_length: int) -> WindowedClips:
        """The first `total_length` frames of every clip (lazy)."""
        if not 0 < total_length <= self.shape[1]:
            raise ValueError(f"truncated: total_length {total_length} not in 1..{self.shape[1]}")
        parts, left = [], total_length
        for frames, starts, length in self._parts:
            if left <= 0:
                break
            parts.append((frames, starts, min(length, left)))
            left -= length
        return WindowedClips(parts)


@dataclass(frozen=True, kw_only=True)
class ClipSet:
    """Clips in model units with what is known about them.

    Attributes:
        clips: (N, T, H, W, C) float32 array-like (`WindowedClips` or ndarray) in model units.
        valid_mask: same shape, float32, 1 = valid data, 0 = missing (filled with 0 in `clips`),
            fractions for blocks averaged over partly missing pixels; None when all are valid.
        transform: how model units map to physical units.
        times: ISO-8601 UTC valid time of each clip's first frame, when known.
        timestep_seconds: the time between frames, when known.
        source: a short description of where the clips came from (file name, format).
        meta: further JSON-able facts (start frames, crop, block, split range, ...).
    """

    clips: Any
    valid_mask: Any | None = None
    transform: DataTransform = field(default_factory=DataTransform)
    times: tuple[str, ...] | None = None
    timestep_seconds: int | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.clips.shape) != 5:
            raise ValueError(f"ClipSet.clips: expected (N, T, H, W, C), got {self.clips.shape}")
        if self.valid_mask is not None and tuple(self.valid_mask.shape) != tuple(self.shape):
            raise ValueError(
                f"ClipSet.valid_mask: shape {self.valid_mask.shape} differs from clips {self.shape}"
            )
        if self.times is not None and len(self.times) != len(self):
            raise ValueError(f"ClipSet.times: {len(self.times)} times for {len(self)} clips")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.clips.shape)

    def __len__(self) -> int:
        return self.shape[0]


def split_boundary(n_frames: int, valid_fraction: float) -> int:
    """The first frame of the validation range: ``n_frames - ceil(valid_fraction · n_frames)``."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction: got {valid_fraction}, expected 0 <= f < 1")
    n_valid = math.ceil(valid_fraction * n_frames - 1e-9)
    return n_frames - n_valid


def split_select(
    starts: np.ndarray, length: int, boundary: int, n_frames: int, split: str
) -> np.ndarray:
    """Boolean mask of the windows lying entirely in the `split` range ("train" or "valid")."""
    starts = np.asarray(starts)
    if split == "train":
        return starts + length <= boundary
    if split == "valid":
        return (starts >= boundary) & (starts + length <= n_frames)
    raise ValueError(f"split: got {split!r}, expected 'train' or 'valid'")
