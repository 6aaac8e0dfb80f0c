"""The host's part of an ensemble forecast, once per scan: the perturbations' parameters, by
pysteps, and the draws that make them reproducible.

- The noise's spatial spectrum: `pysteps.noise.fftgenerators.initialize_param_2d_fft_filter`
  (two power-law slopes fitted to the newest frame's power spectrum) on the newest frame in
  model units, the dBZ-like logarithmic scale the network sees; the compiled program filters
  white noise with it (`nowcastd.ensemble.members`). A frame without rain (or one pysteps
  cannot fit) gets a flat spectrum: rank matching leaves such a forecast dry anyway.
- The motion perturbations: pysteps' BPS (`pysteps.noise.motion.initialize_bps`,
  `generate_bps`, Bowler et al. 2006, STEPS' default) with its fitted parameters, one draw per
  member, evaluated at every lead t = k * timestep. BPS perturbs each pixel's velocity along
  and across its local motion by amounts that are the same over the grid, so a member's
  perturbation at one lead is two numbers: pysteps is asked for it on a one-pixel unit motion
  and the program applies it to the local directions.
- A raw threefry key (2 uint32) for the program's noise.

Everything is drawn from `numpy.random.default_rng(seed)`: the same seed gives the same
members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pysteps.noise.fftgenerators import initialize_param_2d_fft_filter
from pysteps.noise.motion import generate_bps, initialize_bps

from nowcastd.ensemble.settings import EnsembleSettings

__all__ = ["Perturbations", "estimate_perturbations", "noise_spectrum"]

#: A unit motion along x on one pixel: BPS along it is the x component, across it the y one.
_UNIT_MOTION = np.array([[[1.0]], [[0.0]]])


@dataclass(frozen=True, kw_only=True, eq=False)
class Perturbations:
    """`spectrum` (n, H, W // 2 + 1) float32: the noise filter's rfft half per window;
    `coefficients` (n, N, K, 2) float32 pixels per step along and across the local motion, per
    member and lead; `key` (2,) uint32: the program's noise key."""

    spectrum: np.ndarray
    coefficients: np.ndarray
    key: np.ndarray


def noise_spectrum(newest: np.ndarray) -> np.ndarray:
    """The (H, W // 2 + 1) Fourier filter of an (H, W) field in model units (no data as 0)."""
    newest = np.asarray(newest, dtype=np.float64)
    h, w = newest.shape
    flat = np.ones((h, w // 2 + 1), np.float32)
    if not np.all(np.isfinite(newest)) or np.ptp(newest) <= 0:
        return flat
    with np.errstate(all="ignore"):
        try:
            field = initialize_param_2d_fft_filter(newest)["field"]
        except (ValueError, np.linalg.LinAlgError):
            return flat
    half = np.asarray(field[:, : w // 2 + 1], dtype=np.float32)
    return half if np.all(np.isfinite(half)) else flat


def _motion_coefficients(
    rng: np.random.Generator, members: int, leads: int, settings: EnsembleSettings
) -> np.ndarray:
    """(N, K, 2) BPS velocity perturbations in pixels per step, along and across the motion."""
    out = np.zeros((members, leads, 2), np.float32)
    if not settings.motion_perturbation:
        return out
    minutes = settings.timestep_minutes
    for m in range(members):
        state = np.random.RandomState(int(rng.integers(0, 2**31 - 1)))
        bps = initialize_bps(_UNIT_MOTION, 1.0 / settings.pixel_km, minutes, randstate=state)
        for k in range(leads):
            out[m, k] = generate_bps(bps, (k + 1) * minutes)[:, 0, 0]
    return out


def estimate_perturbations(
    newest: np.ndarray, leads: int, settings: EnsembleSettings, *, seed: int
) -> Perturbations:
    """The perturbations of `settings.members` members over `leads` leads for `n` windows
    whose newest frames, in model units with no data as 0, are `newest` (n, H, W)."""
    newest = np.asarray(newest)
    if newest.ndim != 3:
        raise ValueError(f"newest: expected (n, H, W) frames, got shape {newest.shape}")
    rng = np.random.default_rng(seed)
    n, members = newest.shape[0], settings.members
    coefficients = np.stack([_motion_coefficients(rng, members, leads, settings) for _ in range(n)])
    return Perturbations(
        spectrum=np.stack([noise_spectrum(frame) for frame in newest]),
        coefficients=coefficients,
        key=rng.integers(0, 2**32, size=2, dtype=np.uint32),
    )
