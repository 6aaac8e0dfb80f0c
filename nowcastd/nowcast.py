"""The one forecast: a window of frames to forecast rain rates, as serve and evaluate make it.

`forecast_rates(window, run)` is the single place where input windows become forecast fields:

1. the window (`Window.from_rates`, the one window builder, from mm/h): its frames in model
   units with no data as 0 (`DataTransform.to_model_input`; serve's buffer holds the same,
   made frame by frame, and enters through `Window.from_model`) and the motion input, those
   frames back in mm/h (`nowcastd.data.motion.motion_frames`, the rule training uses too);
2. `run` is a compiled rollout whose output went through `rollout_rates` on the device: the
   network's frames clipped to its [0, 1] range and turned into mm/h (`DataTransform.to_rates`);
3. the no-data rule: the forecast is NaN wherever the newest input frame had no data, and, for
   a Lagrangian network, where its rain would be advected in from outside the grid.

A halo (`Window.margin` pixels of the scan on every side of the model grid, `[domain]
halo_km`, `io.domain.Domain.halo`): the window's frames and motion input cover the padded
grid, a Lagrangian network takes its motion and advection from them (`model.rollout`), and the
forecast is the model grid; rain the radar saw just outside the grid enters it.

A Lagrangian network (`ModelConfig.lagrangian`) needs the motion of each window: the first
stage, "motion", estimates it from the window's rain rates on the host with the checkpoint's
optical flow (`nowcastd.data.motion`) on the window's motion input, as training did, and the
rollout takes it.

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

from model.compile import compile_program
from model.network import PredRNN
from model.rollout import rollout
from model.strategy import DEFAULT, Strategy
from nowcastd.data.motion import MotionEstimator, motion_frames
from nowcastd.io.transform import DataTransform

__all__ = [
    "Rollout",
    "StageTimer",
    "Window",
    "forecast_rates",
    "rollout_rates",
    "rollout_rates_jit",
    "rollout_rates_program",
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
    device array), `no_data` (n, H, W), the newest frame's pixels without data, and `motion`
    (n, I, H, W), the mm/h the optical flow reads (`nowcastd.data.motion.motion_frames`).

    With a halo, `context` and `motion` cover `margin` pixels more on every side of the model
    grid (H + 2 margin, W + 2 margin); `no_data` stays the model grid's, as the forecast is.

    Build it with `from_rates` (mm/h, the one window builder) or, from frames that are already
    model units made by the same rule (serve's buffer, training's clips), `from_model`."""

    context: jax.Array | np.ndarray
    no_data: np.ndarray
    motion: np.ndarray | None = None
    margin: int = 0

    def __post_init__(self) -> None:
        n, _, h, w, _ = self.context.shape
        inner = (n, h - 2 * self.margin, w - 2 * self.margin)
        if self.margin < 0 or min(inner) < 1 or self.no_data.shape != inner:
            raise ValueError(
                f"Window.no_data: expected shape {inner} (one mask per window, the context "
                f"less a margin of {self.margin}), got {self.no_data.shape}"
            )

    @classmethod
    def from_rates(
        cls,
        rates: np.ndarray,
        transform: DataTransform,
        *,
        context: jax.Array | None = None,
        margin: int = 0,
    ) -> Window:
        """The one window builder: `(n, I, H, W)` rain rates in mm/h, NaN where there is no
        data. The context is `transform.to_model_input` of them; `context`: the same, already
        on the device; `margin`: the halo the frames hold on every side of the model grid."""
        rates = np.asarray(rates, dtype=np.float32)
        model = np.asarray(transform.to_model_input(rates), dtype=np.float32)
        return cls.from_model(model, np.isnan(rates), transform, context=context, margin=margin)

    @classmethod
    def from_model(
        cls,
        frames: np.ndarray,
        no_data: np.ndarray | None,
        transform: DataTransform,
        *,
        context: jax.Array | None = None,
        with_motion: bool = True,
        margin: int = 0,
    ) -> Window:
        """`(n, I, H, W)` frames in model units, no data as 0, made from mm/h by
        `to_model_input` (serve's `Domain.model_input`, training's clips), and their no-data
        pixels `(n, I, H, W)` (None: none); `context`: the same frames on the device;
        `with_motion=False` leaves out the motion input (an Eulerian network's hot path);
        `margin`: the halo the frames hold on every side of the model grid."""
        frames = np.asarray(frames, dtype=np.float32)
        newest = np.zeros_like(frames[:, -1], bool) if no_data is None else no_data[:, -1]
        return cls(
            context=frames[..., None] if context is None else context,
            no_data=np.asarray(_inner(newest, margin), bool),
            motion=motion_frames(frames, transform, no_data) if with_motion else None,
            margin=margin,
        )


def _inner(frames: np.ndarray, margin: int) -> np.ndarray:
    """The model grid of (..., H, W) padded frames: `margin` pixels off every side."""
    return frames[..., margin : frames.shape[-2] - margin, margin : frames.shape[-1] - margin]


def rollout_rates(
    network: PredRNN,
    transform: DataTransform,
    context: Float[Array, "batch inputs height width 1"],
    num_leads: int,
    motion: Float[Array, "batch height width 2"] | None = None,
    *,
    strategy: Strategy = DEFAULT,
    margin: int = 0,
) -> Float[Array, "batch leads grid_height grid_width"]:
    """The network's rollout in mm/h: clipped to [0, 1], then physical (compile it with
    `model.compile.compile_program`); `motion` for a Lagrangian network; `margin`: the halo
    of the context and motion (`model.rollout.rollout`), cropped from the forecast."""
    forecast = rollout(network, context, num_leads, None, motion, strategy=strategy, margin=margin)
    return transform.to_rates(forecast[..., 0])


def rollout_rates_program(strategy: Strategy) -> Callable[..., Any]:
    """`rollout_rates` compiled under `strategy`, both its parts (`model.compile`), once per
    strategy and shapes: the program evaluate runs."""
    return compile_program(rollout_rates, strategy, inference=True)


def rollout_rates_jit(
    network: PredRNN, *args: Any, strategy: Strategy = DEFAULT, margin: int = 0
) -> Float[Array, "batch leads grid_height grid_width"]:
    """`rollout_rates(network, *args, margin=margin)` run by `rollout_rates_program(strategy)`."""
    out: Array = rollout_rates_program(strategy)(network, *args, margin=margin)
    return out


def forecast_rates(
    window: Window,
    run: Rollout,
    *,
    timed: StageTimer = _untimed,
    motion: MotionEstimator | None = None,
    flow: np.ndarray | None = None,
) -> np.ndarray:
    """`(n, K, H, W)` forecast rain rates in mm/h from `window` (the model grid, inside its
    halo), NaN where the newest input had no data. `run` is a compiled rollout ending in
    `DataTransform.to_rates` (with the window's margin); `timed`
    times each stage ("motion", "rollout"). `motion`: the optical flow of a Lagrangian
    network, run on `window.motion`; `flow`: that motion if already estimated (evaluate
    shares it with the baselines)."""
    if flow is None and motion is not None:
        if window.motion is None:
            raise ValueError("forecast_rates: the motion stage needs the window's motion input")
        with timed("motion"):
            flow = motion.batch(window.motion)
    with timed("rollout"):
        rates = np.array(run(window.context, flow), dtype=np.float32)
    rates[np.broadcast_to(window.no_data[:, None], rates.shape)] = np.nan
    return rates
