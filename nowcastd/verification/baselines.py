"""Reference forecasts that a nowcaster must beat: persistence and pysteps' extrapolation.

- `persistence`: the last input frame, repeated for every lead.
- `LagrangianExtrapolation`: pysteps' Lucas–Kanade optical flow (`motion.get_method("LK")`,
  its defaults) on the input frames, then semi-Lagrangian advection of the last frame
  (`extrapolation.semilagrangian`), both in pysteps' dB units as in its own extrapolation
  example: R >= 0.1 mm/h -> 10·log10(R), drier pixels and pixels without data -> -15 dB; the
  advected field goes back to mm/h with values below -10 dB as 0. Rain advected in from outside
  the frame is 0, as it is for the model, which sees no data as 0.

pysteps (and OpenCV, which its Lucas–Kanade needs) come with the optional extra
``nowcastd[baselines]``; `load_extrapolation` says why it cannot be used when they are missing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["INSTALL_HINT", "LagrangianExtrapolation", "load_extrapolation", "persistence"]

INSTALL_HINT = "pip install 'nowcastd[baselines]'"
DB_THRESHOLD_MM_H = 0.1
DB_ZERO = -15.0
DB_BACK_THRESHOLD = -10.0


def persistence(inputs: np.ndarray, leads: int) -> np.ndarray:
    """(B, I, ...) inputs -> (B, leads, ...): the last input frame at every lead. The one
    persistence of evaluate, the training run's validation and the demo's skill table."""
    inputs = np.asarray(inputs)
    return np.repeat(inputs[:, -1:], leads, axis=1)


class LagrangianExtrapolation:
    """pysteps' Lucas–Kanade motion and semi-Lagrangian extrapolation (module docstring)."""

    def __init__(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its rc file is
            from pysteps import extrapolation, motion
        self._motion = motion.get_method("LK")
        self._extrapolate = extrapolation.get_method("semilagrangian")

    @staticmethod
    def _to_db(rate: np.ndarray) -> np.ndarray:
        r = np.asarray(rate, dtype=np.float64)
        wet = np.isfinite(r) & (r >= DB_THRESHOLD_MM_H)
        return np.where(wet, 10.0 * np.log10(np.where(wet, r, 1.0)), DB_ZERO)

    @staticmethod
    def _from_db(db: np.ndarray) -> np.ndarray:
        rain = db >= DB_BACK_THRESHOLD
        return np.where(rain, 10.0 ** (np.where(rain, db, 0.0) / 10.0), 0.0)

    def motion(self, inputs: np.ndarray) -> np.ndarray:
        """(I, H, W) mm/h (I >= 2) -> the (2, H, W) motion field in pixels per time step."""
        if inputs.ndim != 3 or inputs.shape[0] < 2:
            raise ValueError(f"motion: expected (I >= 2, H, W) frames, got {inputs.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Singular matrix" etc. on near-empty fields
            return self._motion(self._to_db(inputs))

    def __call__(self, inputs: np.ndarray, leads: int) -> np.ndarray:
        """(I, H, W) input frames in mm/h (NaN = no data) -> (leads, H, W) mm/h."""
        inputs = np.asarray(inputs)
        velocity = self.motion(inputs)
        last = self._to_db(inputs[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            advected = self._extrapolate(last, velocity, leads, outval=DB_ZERO)
        return self._from_db(np.asarray(advected)).astype(np.float32)


def load_extrapolation(input_length: int) -> tuple[LagrangianExtrapolation | None, str]:
    """The pysteps baseline, or None and the reason it cannot be scored."""
    if input_length < 2:
        return None, f"optical flow needs at least 2 input frames, the model takes {input_length}"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import pysteps  # noqa: F401
    except ImportError:
        return None, f"pysteps is not installed ({INSTALL_HINT})"
    try:
        import cv2  # noqa: F401
    except ImportError:
        return None, (
            "pysteps' Lucas-Kanade optical flow needs OpenCV, which is not installed "
            f"({INSTALL_HINT})"
        )
    return LagrangianExtrapolation(), ""
