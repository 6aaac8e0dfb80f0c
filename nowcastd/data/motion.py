"""Motion fields of radar rain from consecutive frames, with pysteps' optical flow.

One estimator for training, `serve` and `evaluate`, so that the Lagrangian network sees the
same motion everywhere and pysteps' extrapolation baseline starts from it too. The frames go
to pysteps' dB units as in its own examples (R >= 0.1 mm/h -> 10·log10(R); drier pixels and
no data -> -15 dB), then `pysteps.motion.get_method(method)` with its defaults: Lucas–Kanade
(`LK`, the default), `darts`, `proesmans` or `vet`. The result is `(H, W, 2)` float32 in
pixels per time step, x (columns) then y (rows), the layout `model.advection` takes.

What the flow reads is one rule for every caller (`motion_frames`): the window's frames as the
network sees them, in model units, back in mm/h, NaN where there is no data. Above the model's
range (60 dBZ, about 205 mm/h) every rate is that range's top, in serve (whose buffer holds
model units), training (clips in model units), predict and evaluate (`nowcast.Window`) alike.

`MotionEstimator(reuse_pairs=True)` (serve) runs Lucas–Kanade pair by pair
(`motion_pairs.PairedLucasKanade`): each consecutive pair of frames is tracked once across the
windows of a stream, and the dense field is `dense_lucaskanade`'s to rounding (1e-14 px/step).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nowcastd.data.motion_pairs import PairedLucasKanade
from nowcastd.io.transform import DataTransform

__all__ = [
    "DB_THRESHOLD_MM_H",
    "DB_ZERO",
    "MOTION_METHODS",
    "MotionEstimator",
    "motion_frames",
    "to_db",
]

MOTION_METHODS = ("LK", "darts", "proesmans", "vet")
DB_THRESHOLD_MM_H = 0.1
DB_ZERO = -15.0


def motion_frames(
    model_frames: np.ndarray, transform: DataTransform, no_data: np.ndarray | None = None
) -> np.ndarray:
    """(..., H, W) frames in model units (no data as 0) -> the mm/h the optical flow reads:
    `transform.to_physical` of them, NaN where `no_data` (None: every pixel has data). The one
    motion input of serve, training, predict and evaluate (module docstring)."""
    rates = transform.to_physical(np.asarray(model_frames, dtype=np.float32))
    if no_data is not None:
        rates = np.where(no_data, np.float32(np.nan), rates)
    return np.asarray(rates, dtype=np.float32)


def to_db(rate: np.ndarray) -> np.ndarray:
    """mm/h -> pysteps' dB: 10·log10(R) where R >= 0.1 mm/h, else (and for NaN) -15 dB."""
    r = np.asarray(rate, dtype=np.float64)
    wet = np.isfinite(r) & (r >= DB_THRESHOLD_MM_H)
    return np.where(wet, 10.0 * np.log10(np.where(wet, r, 1.0)), DB_ZERO)


#: pysteps' Lucas–Kanade warns when its outlier test meets a singular covariance (a near-empty
#: field) and goes on without it: expected. Python's warning filters are process-wide and
#: `catch_warnings` races on worker threads, so this module installs no filter: the CLI's one
#: set-up (`cli.common.setup_logging`) ignores it, and pyproject's pytest settings do in tests.
OUTLIER_WARNING = r".* during outlier detection"


def _pysteps_method(method: str) -> Callable[..., np.ndarray]:
    with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its rc file is
        from pysteps import motion
    fn: Callable[..., np.ndarray] = motion.get_method(method)
    return fn


@dataclass(frozen=True)
class MotionEstimator:
    """`estimator(frames)`: (I >= 2, H, W) mm/h, NaN = no data -> (H, W, 2) pixels per step.

    `reuse_pairs` (LK only): keep each frame pair's sparse vectors for the next windows, which
    share all pairs but the newest with this one (serve's stream of windows)."""

    method: str = "LK"
    reuse_pairs: bool = False
    _fn: Callable[..., np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in MOTION_METHODS:
            raise ValueError(
                f"motion method: expected one of {', '.join(MOTION_METHODS)}, got {self.method!r}"
            )
        if self.reuse_pairs and self.method == "LK":
            object.__setattr__(self, "_fn", PairedLucasKanade())
        else:
            object.__setattr__(self, "_fn", _pysteps_method(self.method))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[0] < 2:
            raise ValueError(f"motion: expected (I >= 2, H, W) frames, got {frames.shape}")
        # Runs on training's and serve's worker threads: nothing here may touch process-wide
        # state (warnings.catch_warnings, redirect_stdout), which would race with the other
        # threads. numpy's error state is per thread; pysteps prints only when verbose.
        with np.errstate(all="ignore"):
            uv = np.asarray(self._fn(to_db(frames), verbose=False), dtype=np.float64)
        uv = np.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0)
        return np.ascontiguousarray(np.moveaxis(uv, 0, -1), dtype=np.float32)

    def batch(self, frames: np.ndarray) -> np.ndarray:
        """(B, I, H, W) -> (B, H, W, 2)."""
        return np.stack([self(x) for x in np.asarray(frames)])
