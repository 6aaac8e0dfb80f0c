"""pysteps' dense Lucas–Kanade, pair by pair, so that a stream of windows tracks each pair once.

`pysteps.motion.lucaskanade.dense_lucaskanade` tracks features over each consecutive pair of
the window's frames, pools the sparse vectors of all pairs (oldest pair first), drops outliers,
declusters them and interpolates them onto the grid. Only the tracking reads the frames, and
each pair's tracking reads only its two frames: in `serve`, where window t+1 shares I - 2 of
its I - 1 pairs with window t, `PairedLucasKanade` keeps each pair's sparse vectors (keyed by
the two frames' contents) and tracks only the new pair. Pooling, cleaning and interpolation then
run as pysteps runs them, with its defaults and its own functions in its order, so the field is
`dense_lucaskanade`'s (a test compares them on real scans).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree  # type: ignore[import-untyped]  # pysteps' dependency
from scipy.spatial.distance import cdist  # type: ignore[import-untyped]

__all__ = ["PairedLucasKanade", "dense_from_vectors", "idw_field", "pair_vectors"]

#: `dense_lucaskanade`'s defaults, which `MotionEstimator` uses.
NR_STD_OUTLIER = 3
K_OUTLIER = 30
SIZE_OPENING = 3
DECL_SCALE = 20
#: `idwinterp2d`'s defaults: the nearest vectors, the distance offset (px) and the power.
IDW_K = 20
IDW_OFFSET = 0.5
IDW_POWER = 0.5
IDW_BLOCK = 1 << 20  # distances computed at once (pixels x vectors): 8 MiB
#: k-th and (k+1)-th nearest vectors closer than this (relative) are a tie (`_idw_rows`).
TIE_TOLERANCE = 1e-9

Vectors = tuple[np.ndarray, np.ndarray]  # (n, 2) positions x, y and (n, 2) motion u, v


def _pysteps() -> Any:
    from pysteps import feature, utils  # first imported by `PairedLucasKanade()`
    from pysteps.tracking import lucaskanade
    from pysteps.utils import cleansing, images

    return feature, utils, lucaskanade, cleansing, images


def _masked(img: np.ndarray) -> np.ma.MaskedArray[Any, Any]:
    masked = np.ma.masked_invalid(img.copy())
    np.ma.set_fill_value(masked, masked.min())
    return masked


def pair_vectors(prev_db: np.ndarray, next_db: np.ndarray) -> Vectors:
    """One pair's sparse vectors, as `dense_lucaskanade`'s loop finds them: both frames
    opened (3 px), Shi–Tomasi corners of the first tracked into the second."""
    feature, _, lucaskanade, _, images = _pysteps()
    prev_img, next_img = _masked(prev_db), _masked(next_db)
    prev_img = images.morph_opening(prev_img, prev_img.min(), SIZE_OPENING)
    next_img = images.morph_opening(next_img, next_img.min(), SIZE_OPENING)
    points = feature.get_method("shitomasi")(prev_img).astype(np.float32)
    if points.shape[0] == 0:
        return np.empty((0, 2)), np.empty((0, 2))
    xy, uv = lucaskanade.track_features(prev_img, next_img, points)
    return np.asarray(xy), np.asarray(uv)


def dense_from_vectors(pairs: Sequence[Vectors], shape: tuple[int, int]) -> np.ndarray:
    """(2, H, W) from the pairs' sparse vectors, oldest pair first: pooled, outliers dropped,
    declustered and interpolated (inverse distance) as `dense_lucaskanade` does."""
    _, utils, _, cleansing, _ = _pysteps()
    xy, uv = np.empty((0, 2)), np.empty((0, 2))
    for xy_, uv_ in pairs:
        if xy_.shape[0]:
            xy, uv = np.append(xy, xy_, axis=0), np.append(uv, uv_, axis=0)
    if xy.shape[0] == 0:
        return np.zeros((2, *shape))
    outliers = local_outliers(xy, uv)
    xy, uv = cleansing.decluster(xy[~outliers], uv[~outliers], DECL_SCALE, 1, False)
    if xy.shape[0] == 0:
        return np.zeros((2, *shape))
    if xy.shape[0] < 2 or uv.max() == uv.min():  # pysteps' uniform fields
        interpolate: Callable[..., np.ndarray] = utils.get_method("idwinterp2d")
        return np.asarray(interpolate(xy, uv, np.arange(shape[1]), np.arange(shape[0])))
    return idw_field(xy, uv, shape)


def local_outliers(xy: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(n,) bool: pysteps' `detect_outliers(uv, 3, xy, 30)`, for all vectors at once: a vector
    is an outlier if its Mahalanobis distance to its 30 nearest neighbours' motion (their mean
    and covariance) exceeds 3. Few vectors or a singular covariance: pysteps' own loop."""
    n, k = uv.shape[0], min(uv.shape[0], K_OUTLIER + 1)
    if k < 4:
        return np.asarray(_pysteps()[3].detect_outliers(uv, NR_STD_OUTLIER, xy, K_OUTLIER, False))
    _, inds = cKDTree(xy).query(xy, k=k)
    neighbours = uv[inds[:, 1:]]  # (n, k - 1, 2), as np.cov reads them: centred twice
    mean = neighbours.mean(axis=1, keepdims=True)
    z = uv - mean[:, 0]
    centred = neighbours - mean
    centred = centred - centred.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred) * np.true_divide(1, k - 2)
    try:
        inverse = np.linalg.inv(cov)
    except np.linalg.LinAlgError:
        return np.asarray(_pysteps()[3].detect_outliers(uv, NR_STD_OUTLIER, xy, K_OUTLIER, False))
    distance = np.sqrt(np.einsum("ni,ni->n", np.einsum("ni,nij->nj", z, inverse), z))
    return np.asarray(distance > NR_STD_OUTLIER).reshape(n)


def _grid(shape: tuple[int, int]) -> np.ndarray:
    cols, rows = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]))
    return np.column_stack((cols.ravel(), rows.ravel())).astype(np.float64)


def _idw_rows(points: np.ndarray, xy: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(m, 2) grid points -> (m, 2) inverse-distance means of their `IDW_K` nearest vectors."""
    dist = cdist(points, xy)
    k = min(IDW_K, xy.shape[0])
    if k < xy.shape[0]:
        ordered = np.sort(dist, axis=1)  # faster than np.partition for tens of vectors
        nearest = dist <= ordered[:, k - 1 : k]
        tied = ordered[:, k] - ordered[:, k - 1] <= TIE_TOLERANCE * (1.0 + ordered[:, k - 1])
    else:
        nearest, tied = np.ones(dist.shape, bool), np.zeros(dist.shape[0], bool)
    weights = dist + IDW_OFFSET  # in place from here: (d + offset)^-IDW_POWER, 0 if not nearest
    np.sqrt(weights, out=weights)  # IDW_POWER = 1/2 (np.power's result, about 5x faster)
    np.divide(1.0, weights, out=weights)
    np.multiply(weights, nearest, out=weights)
    weights /= weights.sum(axis=1, keepdims=True)
    # (m, n) x (n, 2) as einsum over uv transposed: faster than matmul's threads on a busy host
    out = np.asarray(np.einsum("ij,kj->ik", weights, np.ascontiguousarray(uv.T)))
    if tied.any():  # which of two equally far vectors counts is the k-d tree's choice
        out[tied] = _idw_tree(points[tied], xy, uv, k)
    return out


def _idw_tree(points: np.ndarray, xy: np.ndarray, uv: np.ndarray, k: int) -> np.ndarray:
    dist, inds = cKDTree(xy).query(points, k=k)
    weights = 1.0 / np.power(dist + IDW_OFFSET, IDW_POWER)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.asarray(np.sum(uv[inds, :] * weights[..., None], axis=1))


def idw_field(xy: np.ndarray, uv: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(2, H, W): pysteps' `idwinterp2d` of the vectors onto the pixel grid (its defaults: the
    20 nearest vectors, weights (d + 0.5 px)^-1/2), computed from all the distances at once in
    row blocks rather than by k-d tree queries; equal to it to rounding (a test says so)."""
    grid = _grid(shape)
    rows = max(1, IDW_BLOCK // max(1, xy.shape[0]))
    out = np.concatenate([_idw_rows(grid[i : i + rows], xy, uv) for i in range(0, len(grid), rows)])
    return np.ascontiguousarray(out.T.reshape(2, *shape))


def _digest(frame: np.ndarray) -> bytes:
    data = np.ascontiguousarray(frame, dtype=np.float64)
    return hashlib.blake2b(data.tobytes(), digest_size=16).digest() + repr(data.shape).encode()


class PairedLucasKanade:
    """`lk(db_frames)`: (I, H, W) dB -> (2, H, W), `dense_lucaskanade(db_frames)`'s field, each
    pair tracked once across calls (the last `max_pairs` pairs are kept). Thread-safe."""

    def __init__(self, max_pairs: int = 16) -> None:
        if max_pairs < 1:
            raise ValueError(f"max_pairs: expected >= 1, got {max_pairs}")
        self.max_pairs = max_pairs
        with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its rc file is
            _pysteps()  # imported once here, on the thread that builds the estimator
        self._pairs: OrderedDict[tuple[bytes, bytes], Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self.tracked = 0  # pairs tracked (not found in the cache), for tests and benchmarks

    def __call__(self, db_frames: np.ndarray, verbose: bool = False) -> np.ndarray:
        del verbose  # the signature of pysteps' motion methods
        frames = np.asarray(db_frames, dtype=np.float64)
        if frames.ndim != 3 or frames.shape[0] < 2:
            raise ValueError(f"motion: expected (I >= 2, H, W) frames, got {frames.shape}")
        keys = [_digest(f) for f in frames]
        pairs = [self._vectors(keys[n], keys[n + 1], frames, n) for n in range(len(frames) - 1)]
        return dense_from_vectors(pairs, (frames.shape[1], frames.shape[2]))

    def _vectors(self, key0: bytes, key1: bytes, frames: np.ndarray, n: int) -> Vectors:
        with self._lock:
            found = self._pairs.get((key0, key1))
            if found is not None:
                self._pairs.move_to_end((key0, key1))
                return found
        vectors = pair_vectors(frames[n], frames[n + 1])
        with self._lock:
            self.tracked += 1
            self._pairs[(key0, key1)] = vectors
            while len(self._pairs) > self.max_pairs:
                self._pairs.popitem(last=False)
        return vectors
