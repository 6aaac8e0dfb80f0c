"""Reference forecasts that a nowcaster must beat: persistence, and pysteps' extrapolation and
S-PROG on the same motion field.

- `persistence`: the last input frame, repeated for every lead.
- `LagrangianExtrapolation`: the motion of the input frames (`nowcastd.data.motion`: pysteps'
  Lucas–Kanade by default, in its dB units), then pysteps' semi-Lagrangian advection of the
  last frame (`extrapolation.semilagrangian`), in dB as in its own example, back to mm/h with
  values below -10 dB as 0.
- `SProg`: pysteps' S-PROG (`nowcasts.sprog`, Seed 2003) on the same motion: the last three
  frames decomposed into 6 spatial scales, each advected and evolved by its own AR(2) process,
  so that the scales that cannot be predicted fade out; with mean-preserving probability
  matching (`probmatching_method="mean"`). pysteps' guide to benchmarking machine-learning
  nowcasts names it the fair deterministic baseline for a model trained on an error.
- `Steps`: pysteps' STEPS ensemble (`nowcasts.steps`, Bowler et al. 2006, Seed et al. 2013)
  on the same motion, the ensemble baseline: S-PROG's cascade plus noise with the scan's own
  spectrum (`nonparametric`) in every scale, perturbed motion (`bps`, which needs the pixel
  size and the time step), the incremental rain mask and CDF probability matching, with
  pysteps' defaults for all of these; one seed per forecast.

Rain advected in from outside the frame is no data (NaN) for both, as it is for the Lagrangian
model: the comparison then scores only the pixels where every method has data.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np

from nowcastd.data.motion import MotionEstimator, to_db

logger = logging.getLogger(__name__)

__all__ = ["LagrangianExtrapolation", "SProg", "Steps", "persistence"]

DB_BACK_THRESHOLD = -10.0


def persistence(inputs: np.ndarray, leads: int) -> np.ndarray:
    """(B, I, ...) inputs -> (B, leads, ...): the last input frame at every lead. The one
    persistence of evaluate, the training run's validation and the demo's skill table."""
    inputs = np.asarray(inputs)
    return np.repeat(inputs[:, -1:], leads, axis=1)


def _from_db(db: np.ndarray) -> np.ndarray:
    """pysteps' dB -> mm/h: below -10 dB is 0, NaN stays NaN."""
    rain = db >= DB_BACK_THRESHOLD
    rate = np.where(rain, 10.0 ** (np.where(rain, db, 0.0) / 10.0), 0.0)
    return np.where(np.isnan(db), np.nan, rate).astype(np.float32)


def _sprog_quiet() -> contextlib.ExitStack:
    """pysteps' S-PROG prints its settings and progress whatever its arguments say (it has no
    verbosity switch): its stdout is dropped. Only S-PROG needs this; `evaluate` runs it on
    the calling thread. numpy's error state is per thread."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(np.errstate(all="ignore"))
    return stack


class LagrangianExtrapolation:
    """Optical flow and semi-Lagrangian extrapolation of the last frame (module docstring)."""

    def __init__(self, motion: MotionEstimator | None = None) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its rc file is
            from pysteps import extrapolation
        self.motion = motion or MotionEstimator()
        self._extrapolate = extrapolation.get_method("semilagrangian")

    def __call__(
        self, inputs: np.ndarray, leads: int, velocity: np.ndarray | None = None
    ) -> np.ndarray:
        """(I, H, W) input frames in mm/h (NaN = no data) -> (leads, H, W) mm/h. `velocity`:
        the (H, W, 2) motion of these inputs, if already estimated."""
        inputs = np.asarray(inputs)
        v = self.motion(inputs) if velocity is None else velocity
        # pysteps prints only when verbose; numpy's error state is per thread: nothing
        # process-wide is touched, so this may run on worker threads.
        with np.errstate(all="ignore"):
            advected = self._extrapolate(
                to_db(inputs[-1]), np.moveaxis(v, -1, 0), leads, verbose=False
            )
        return _from_db(np.asarray(advected))


class SProg:
    """pysteps' S-PROG nowcast on the inputs' motion (module docstring)."""

    AR_ORDER = 2

    def __init__(self, motion: MotionEstimator | None = None) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            from pysteps import nowcasts
        self.motion = motion or MotionEstimator()
        self._forecast = nowcasts.get_method("sprog")

    def __call__(
        self, inputs: np.ndarray, leads: int, velocity: np.ndarray | None = None
    ) -> np.ndarray:
        """(I >= 3, H, W) mm/h -> (leads, H, W) mm/h; a dry input forecasts dry."""
        inputs = np.asarray(inputs)
        if inputs.shape[0] < self.AR_ORDER + 1:
            raise ValueError(f"S-PROG: expected at least 3 input frames, got {inputs.shape[0]}")
        v = self.motion(inputs) if velocity is None else velocity
        db = to_db(inputs[-(self.AR_ORDER + 1) :])
        if not (db > DB_BACK_THRESHOLD).any():
            return np.zeros((leads, *inputs.shape[1:]), np.float32)
        with _sprog_quiet():
            out = self._forecast(
                db,
                np.moveaxis(v, -1, 0),
                leads,
                precip_thr=DB_BACK_THRESHOLD,
                n_cascade_levels=6,
                ar_order=self.AR_ORDER,
                probmatching_method="mean",
                extrap_kwargs={"allow_nonfinite_values": True},
            )
        return _from_db(np.asarray(out))


class Steps:
    """pysteps' STEPS ensemble on the inputs' motion (module docstring)."""

    AR_ORDER = 2

    def __init__(
        self, pixel_km: float, timestep_minutes: float, motion: MotionEstimator | None = None
    ) -> None:
        if not (pixel_km > 0 and timestep_minutes > 0):
            raise ValueError(
                f"STEPS: expected a pixel size and a time step > 0, got {pixel_km} km and "
                f"{timestep_minutes} min"
            )
        with contextlib.redirect_stdout(io.StringIO()):
            from pysteps import nowcasts
        self.motion = motion or MotionEstimator()
        self.pixel_km, self.timestep_minutes = float(pixel_km), float(timestep_minutes)
        self._forecast = nowcasts.get_method("steps")

    def __call__(
        self,
        inputs: np.ndarray,
        leads: int,
        members: int,
        seed: int,
        velocity: np.ndarray | None = None,
    ) -> np.ndarray:
        """(I >= 3, H, W) mm/h -> (members, leads, H, W) mm/h; a dry input forecasts dry.
        `seed` seeds the forecast's noise and motion perturbations."""
        inputs = np.asarray(inputs)
        if inputs.shape[0] < self.AR_ORDER + 1:
            raise ValueError(f"STEPS: expected at least 3 input frames, got {inputs.shape[0]}")
        v = self.motion(inputs) if velocity is None else velocity
        db = to_db(inputs[-(self.AR_ORDER + 1) :])
        if not (db > DB_BACK_THRESHOLD).any():
            return np.zeros((members, leads, *inputs.shape[1:]), np.float32)
        with _sprog_quiet():
            out = self._forecast(
                db,
                np.moveaxis(v, -1, 0),
                leads,
                n_ens_members=members,
                precip_thr=DB_BACK_THRESHOLD,
                kmperpixel=self.pixel_km,
                timestep=self.timestep_minutes,
                ar_order=self.AR_ORDER,
                seed=seed,
                extrap_kwargs={"allow_nonfinite_values": True},
            )
        return _from_db(np.asarray(out))


def baseline_unavailable(method: str, input_length: int) -> str:
    """Why `method` cannot forecast from `input_length` frames ('' if it can)."""
    need = {
        "pysteps_lk": 2,
        "pysteps_sprog": SProg.AR_ORDER + 1,
        "pysteps_steps": Steps.AR_ORDER + 1,
    }.get(method, 1)
    if input_length < need:
        return f"it needs at least {need} input frames, the model takes {input_length}"
    return ""
