"""Pre-cut clips in a ``.npy`` file: (N, T, H, W, C) or (N, T, H, W) float, in model units.

This is the seed's format. The file is memory-mapped (``allow_pickle=False``), so only the clips
that are drawn into a batch are read. A JSON sidecar next to it, when present, declares the
transform, the clips' place in time and a validity mask:

* ``<stem>.json`` as written by `nowcastd.data.build.build_clips` (keys ``transform``,
  ``start_frame``, ``total_length``, ``n_frames``, ``start_time``, ``timestep_seconds``,
  ``valid_mask``), or
* ``<stem>_index.json`` as shipped with the radar development set (``train_clips_index.json``:
  ``start_frame``, ``clip_len``, ``start_time`` and a ``scaling`` text naming the dBZ transform).

Without a sidecar the transform is the caller's (identity by default) and the clips' place in time
is unknown, so the train/validation split falls back to the clip order.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from nowcastd.data.clips import ClipSet, WindowedClips
from nowcastd.errors import DataError
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)

#: The ``scaling`` text of the development set's ``train_clips_index.json``.
DEV_SET_SCALING = "x = clip(10*log10(200*R**1.6)/60, 0, 1)"


def load_npy(path: Path, *, what: str = "clips") -> np.ndarray:
    """Memory-map a ``.npy`` file without pickle, raising DataError on any failure."""
    try:
        clips: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        return clips
    except (OSError, ValueError) as e:
        raise DataError(f"{what} {path.name}: cannot read as .npy: {e}") from e


def _as_frames(arr: np.ndarray, path: Path) -> tuple[np.ndarray, int, int]:
    """(N, T, H, W[, C]) clips -> (N·T, H, W, C) frame view, N, T."""
    if arr.ndim not in (4, 5):
        raise DataError(
            f"clips {path.name}: expected shape (N, T, H, W, C) or (N, T, H, W), got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(
            f"clips {path.name}: expected float clips in model units, got dtype {arr.dtype} "
            "(scale the data to model units first, e.g. with `nowcastd dataset build`)"
        )
    if arr.ndim == 4:
        arr = arr[..., None]
    n, t = arr.shape[:2]
    return arr.reshape(n * t, *arr.shape[2:]), n, t


def find_sidecar(path: Path) -> Path | None:
    """``<stem>.json`` or ``<stem>_index.json`` beside `path`, if either exists."""
    for cand in (path.with_suffix(".json"), path.with_name(path.stem + "_index.json")):
        if cand.is_file():
            return cand
    return None


def _sidecar_transform(side: dict[str, Any], name: str) -> DataTransform | None:
    if "transform" in side:
        try:
            return DataTransform.from_json(side["transform"])
        except (TypeError, ValueError) as e:
            raise DataError(f"sidecar {name}: bad transform: {e}") from e
    if DEV_SET_SCALING in str(side.get("scaling", "")):
        return DataTransform(kind="dbz")
    return None


def _timestep(side: dict[str, Any], starts: list[int] | None) -> int | None:
    if side.get("timestep_seconds") is not None:
        return int(side["timestep_seconds"])
    times = side.get("start_time")
    if starts is None or not times or len(times) < 2 or starts[1] == starts[0]:
        return None
    t0, t1 = (dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times[:2])
    return int((t1 - t0).total_seconds()) // (starts[1] - starts[0])


def _read_sidecar(
    path: Path, transform: DataTransform | None, n: int
) -> tuple[dict[str, Any], str | None, DataTransform | None]:
    """The sidecar beside `path` ({} without one), its name and the transform it declares.

    Raises:
        DataError: unreadable JSON, a transform other than `transform`, start frames not one
            per clip.
    """
    side_path = find_sidecar(path)
    if side_path is None:
        return {}, None, None
    try:
        side: dict[str, Any] = json.loads(side_path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"sidecar {side_path.name}: cannot read JSON: {e}") from e
    declared = _sidecar_transform(side, side_path.name)
    if transform is not None and declared is not None and transform != declared:
        raise DataError(
            f"clips {path.name}: sidecar {side_path.name} declares transform "
            f"{declared.to_json()} but {transform.to_json()} was requested"
        )
    starts = side.get("start_frame")
    if starts is not None and len(starts) != n:
        raise DataError(f"sidecar {side_path.name}: {len(starts)} start frames for {n} clips")
    return side, side_path.name, declared


def _sidecar_meta(side: dict[str, Any], t: int) -> dict[str, Any]:
    """What the sidecar says of the clips' place in the source (frame starts, crop, ...)."""
    meta: dict[str, Any] = {}
    starts = side.get("start_frame")
    if starts is not None:
        clip_len = int(side.get("total_length", side.get("clip_len", t)))
        meta["frame_starts"] = [int(s) for s in starts]
        meta["n_frames"] = int(side.get("n_frames", max(starts, default=0) + clip_len))
    for key in ("crop", "block", "source", "stride"):
        if key in side:
            meta[key] = side[key]
    return meta


def _read_mask(
    path: Path, side: dict[str, Any], frames: np.ndarray, n: int, t: int
) -> WindowedClips | None:
    """The validity mask the sidecar names (None if none), checked against the clips' shape."""
    if not side.get("valid_mask"):
        return None
    mask_path = path.with_name(side["valid_mask"])
    mframes, mn, mt = _as_frames(load_npy(mask_path, what="valid mask"), mask_path)
    if (mn, mt, *mframes.shape[1:]) != (n, t, *frames.shape[1:]):
        raise DataError(
            f"valid mask {mask_path.name}: shape {(mn, mt, *mframes.shape[1:])} differs "
            f"from clips {(n, t, *frames.shape[1:])}"
        )
    return WindowedClips([(mframes, np.arange(n) * t, t)])


def read_npy_clips(path: str | Path, *, transform: DataTransform | None = None) -> ClipSet:
    """Open a ``.npy`` clip file (and its sidecar) as an unsplit ClipSet.

    Args:
        path: the ``.npy`` file.
        transform: the transform the clips were made with. None: the sidecar's, else identity.
            If both are given they must agree.

    Raises:
        DataError: unreadable file, wrong ndim or dtype, a bad sidecar or a transform conflict.
    """
    path = Path(path)
    frames, n, t = _as_frames(load_npy(path), path)
    side, side_name, declared = _read_sidecar(path, transform, n)
    chosen = transform or declared or DataTransform(kind="identity")
    meta: dict[str, Any] = {"format": "npy", "clip_frames": t}
    if side_name is not None:
        meta["sidecar"] = side_name
    meta.update(_sidecar_meta(side, t))
    times = side.get("start_time")
    times = tuple(str(s) for s in times) if times is not None and len(times) == n else None
    mask = _read_mask(path, side, frames, n, t)

    logger.debug("opened %s: %d clips of %d frames, transform %s", path.name, n, t, chosen.kind)
    return ClipSet(
        clips=WindowedClips([(frames, np.arange(n) * t, t)]),
        valid_mask=mask,
        transform=chosen,
        times=times,
        timestep_seconds=_timestep(side, side.get("start_frame")),
        source=f"{path.name} (npy)",
        meta=meta,
    )
