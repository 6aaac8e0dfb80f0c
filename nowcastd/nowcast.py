"""The one forecast: a window of frames to forecast rain rates, as serve and evaluate make it.

`forecast_rates(window, run)` is the single place where input windows become forecast fields:

1. the window's frames are in model units with no data as 0 (`Window.from_rates`, or the
   serve buffer, filled frame by frame with the same `DataTransform.to_model_input`);
2. `run` is a compiled rollout whose output went through `rollout_rates` on the device: the
   network's frames clipped to its [0, 1] range and turned into mm/h (`DataTransform.to_rates`);
3. the no-data rule: the forecast is NaN wherever the newest input frame had no data, and, for
   a Lagrangian network, where its rain would be advected in from outside the grid.

A Lagrangian network (`ModelConfig.lagrangian`) needs the motion of each window: the first
stage, "motion", estimates it from the window's rain rates on the host with the checkpoint's
optical flow (`nowcastd.data.motion`, as training did), and the rollout takes it.

`nowcastd serve` (`serve.forecaster`, with its ahead-of-time executables and pre-encoding) and
`nowcastd evaluate` (`verification.comparison`, with `rollout_rates_jit`) both call it, so a
forecast file holds what evaluate scores (`tests/nowcastd/test_nowcast.py` holds them to it).
Stages that come before the network call (a motion field, say) belong in `forecast_rates`,
each timed with `timed(stage)`: serve passes its stage timer, so a new stage reaches the
forecast's timings, the events and `nowcastd_stage_duration_seconds` (once named in
`serve.metrics.STAGES`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, Float

from model.network import PredRNN
from model.rollout import rollout
from model.strategy import jitted
from nowcastd.data.motion import MotionEstimator
from nowcastd.io.transform import DataTransform

__all__ = [
    "Rollout",
    "StageTimer",
    "Window",
    "forecast_rates",
    "rollout_rates",
    "rollout_rates_jit",
]

#: A compiled rollout: `(n, I, H, W, 1)` model units and, for a Lagrangian network, the
#: `(n, H, W, 2)` motion (else None) -> `(n, K, H, W)` mm/h (`rollout_rates`).
Rollout = Callable[[jax.Array | np.ndarray, np.ndarray | None], jax.Array | np.ndarray]
#: A timer of one named stage: `with timed("rollout"): ...`.
StageTimer = Callable[[str], contextlib.AbstractContextManager[Any]]


def _untimed(stage: str) -> contextlib.AbstractContextManager[Any]:
    del stage
    return contextlib.nullcontext()


@dataclass(frozen=True, kw_only=True, eq=False)
class Window:
    """`n` input windows: `context` (n, I, H, W, 1) in model units, no data as 0 (a host or
    device array), `no_data` (n, H, W), the newest frame's pixels without data, and `rates`
    (n, I, H, W), the same frames in mm/h on the host, which the motion stage needs."""

    context: jax.Array | np.ndarray
    no_data: np.ndarray
    rates: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, _, h, w, _ = self.context.shape
        if self.no_data.shape != (n, h, w):
            raise ValueError(
                f"Window.no_data: expected shape {(n, h, w)} (one mask per window), "
                f"got {self.no_data.shape}"
            )

    @classmethod
    def from_rates(cls, rates: np.ndarray, transform: DataTransform) -> Window:
        """Windows from `(n, I, H, W)` rain rates, NaN where there is no data."""
        context = transform.to_model_input(rates).astype(np.float32)[..., None]
        return cls(context=context, no_data=np.isnan(rates[:, -1]), rates=rates)


def rollout_rates(
    network: PredRNN,
    transform: DataTransform,
    context: Float[Array, "batch inputs height width 1"],
    num_leads: int,
    motion: Float[Array, "batch height width 2"] | None = None,
) -> Float[Array, "batch leads height width"]:
    """The network's rollout in mm/h: clipped to [0, 1], then physical (jit it); `motion`
    for a Lagrangian network."""
    return transform.to_rates(rollout(network, context, num_leads, None, motion)[..., 0])


def rollout_rates_jit(network: PredRNN, *args: Any) -> Float[Array, "batch leads height width"]:
    """`rollout_rates(network, *args)`, jitted with the XLA options of the network's strategy
    for inference (model.rollout's `INFERENCE_COMPILER_OPTIONS` for the default)."""
    out: Array = jitted(rollout_rates, network.strategy, inference=True)(network, *args)
    return out


def forecast_rates(
    window: Window,
    run: Rollout,
    *,
    timed: StageTimer = _untimed,
    motion: MotionEstimator | None = None,
) -> np.ndarray:
    """`(n, K, H, W)` forecast rain rates in mm/h from `window`, NaN where the newest input
    had no data. `run` is a compiled rollout ending in `DataTransform.to_rates`; `timed`
    times each stage ("motion", "rollout"). `motion`: the optical flow of a Lagrangian
    network, run on `window.rates`."""
    flow = None
    if motion is not None:
        if window.rates is None:
            raise ValueError("forecast_rates: the motion stage needs the window's rates")
        with timed("motion"):
            flow = motion.batch(window.rates)
    with timed("rollout"):
        rates = np.array(run(window.context, flow), dtype=np.float32)
    rates[np.broadcast_to(window.no_data[:, None], rates.shape)] = np.nan
    return rates
