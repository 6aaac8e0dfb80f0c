"""Synthetic training sequences: a real rain field carried along a random smooth motion field.

Real events hold few distinct motions; these sequences are unlimited and teach extrapolation.
A sequence starts from one real frame (larger than the model grid by the farthest distance rain
can travel) and, for every step t, samples that frame at the point a parcel would have come
from: the back-trajectory of t steps through a steady flow u(x), integrated one step at a time
so that curved flows stay curved. Rain grows or decays by a smooth random factor exp(t·g(x)).

Everything is numpy and driven by the `np.random.Generator` the caller passes in.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Flow", "MotionConfig", "advect_sequence", "bilinear", "random_flow", "smooth_field"]


@dataclass(frozen=True, kw_only=True)
class MotionConfig:
    """Ranges for the random motion and growth, in model pixels per step.

    Attributes:
        max_speed: largest speed of the uniform part of the flow.
        max_shear: largest amplitude of the smooth non-uniform part, added to the uniform one.
        max_growth: largest |growth rate| per step (exp(±max_growth) per step at most).
    """

    max_speed: float = 3.0
    max_shear: float = 0.7
    max_growth: float = 0.04

    def __post_init__(self) -> None:
        for name in ("max_speed", "max_shear", "max_growth"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0):
                raise ValueError(f"MotionConfig.{name}: expected a number >= 0, got {value!r}")

    def margin(self, steps: int) -> int:
        """How far (whole pixels) rain can travel in `steps` steps: the source frame's border."""
        return int(np.ceil((self.max_speed + self.max_shear) * steps)) + 1


def bilinear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`image` sampled at fractional (rows, cols), clamped to its edges (float64)."""
    h, w = image.shape
    rows = np.clip(rows, 0.0, h - 1.0)
    cols = np.clip(cols, 0.0, w - 1.0)
    r0 = np.minimum(np.floor(rows).astype(np.int64), h - 2 if h > 1 else 0)
    c0 = np.minimum(np.floor(cols).astype(np.int64), w - 2 if w > 1 else 0)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = rows - r0, cols - c0
    top = image[r0, c0] * (1 - fc) + image[r0, c1] * fc
    bottom = image[r1, c0] * (1 - fc) + image[r1, c1] * fc
    sampled: np.ndarray = top * (1 - fr) + bottom * fr
    return sampled


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, *, knots: int = 4) -> np.ndarray:
    """A smooth random field in [-1, 1] of `shape`: a `knots`² random grid, interpolated."""
    coarse = rng.uniform(-1.0, 1.0, size=(knots, knots))
    rows = np.linspace(0, knots - 1, shape[0])[:, None] * np.ones((1, shape[1]))
    cols = np.linspace(0, knots - 1, shape[1])[None, :] * np.ones((shape[0], 1))
    return bilinear(coarse, rows, cols)


@dataclass(frozen=True)
class Flow:
    """A steady flow (u_row, u_col) in pixels per step on the source grid, and a growth rate
    per step on the output grid."""

    u_row: np.ndarray
    u_col: np.ndarray
    growth: np.ndarray


def random_flow(
    source_shape: tuple[int, int],
    size: tuple[int, int],
    motion: MotionConfig,
    rng: np.random.Generator,
) -> Flow:
    """A uniform motion of random speed and direction plus smooth shear, and smooth growth."""
    speed = rng.uniform(0.0, motion.max_speed)
    angle = rng.uniform(0.0, 2 * np.pi)
    shear = motion.max_shear * rng.uniform()
    u_row = speed * np.sin(angle) + shear * smooth_field(source_shape, rng)
    u_col = speed * np.cos(angle) + shear * smooth_field(source_shape, rng)
    growth = motion.max_growth * rng.uniform() * smooth_field(size, rng)
    return Flow(u_row, u_col, growth)


def advect_sequence(source: np.ndarray, flow: Flow, *, steps: int) -> np.ndarray:
    """`steps` frames carried by `flow` from the centre of `source`.

    Args:
        source: (H, W) rain rate in physical units, NaN where there is no data, larger than
            the output grid (`flow.growth`'s shape) by the distance rain travels on each side.
        flow: the steady flow (on `source`'s grid) and growth rate (on the output grid).
        steps: frames to make; frame 0 is the source's centre crop itself.

    Returns:
        float32 (steps, height, width); NaN where a back-trajectory lands on missing data.
    """
    h, w = flow.growth.shape
    if source.shape[0] < h or source.shape[1] < w or flow.u_row.shape != source.shape:
        raise ValueError(
            f"advect_sequence: expected a source of at least {(h, w)} with a flow on its grid, "
            f"got source {source.shape} and flow {flow.u_row.shape}"
        )
    r0 = (source.shape[0] - h) // 2
    c0 = (source.shape[1] - w) // 2
    values = np.nan_to_num(source.astype(np.float64), nan=0.0)
    missing = np.isnan(source).astype(np.float64)
    rows = np.arange(h, dtype=np.float64)[:, None] + r0 + np.zeros((1, w))
    cols = np.arange(w, dtype=np.float64)[None, :] + c0 + np.zeros((h, 1))
    out = np.empty((steps, h, w), dtype=np.float32)
    for t in range(steps):
        field = bilinear(values, rows, cols) * np.exp(flow.growth * t)
        field[bilinear(missing, rows, cols) > 1e-6] = np.nan
        out[t] = field
        # one more step back along the flow, sampled where the parcel is now
        dr, dc = bilinear(flow.u_row, rows, cols), bilinear(flow.u_col, rows, cols)
        rows, cols = rows - dr, cols - dc
    return out
