"""`EnsembleProgram`: the ensemble's compiled program for one grid, lead count and batch, and
`forecast_ensemble`, the one function that turns a window into members (serve, predict and
evaluate call it).

The program (`nowcastd.ensemble.members.ensemble_rates`) is compiled ahead of time by
`compile()` (serve calls it before it reports ready): a call with other shapes is an error,
never a silent recompilation. The host's part (`estimate_perturbations`, pysteps) runs once per
call, outside it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from model.compile import compile_program
from model.network import PredRNN
from model.strategy import DEFAULT, Strategy
from nowcastd.data.motion import MotionEstimator
from nowcastd.ensemble.members import ensemble_rates
from nowcastd.ensemble.perturbations import Perturbations, estimate_perturbations
from nowcastd.ensemble.settings import EnsembleSettings
from nowcastd.io.transform import DataTransform
from nowcastd.nowcast import StageTimer, Window

__all__ = ["EnsembleProgram", "forecast_ensemble"]

logger = logging.getLogger(__name__)


def _spec(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
    # jax leaves ShapeDtypeStruct's constructor unannotated
    return jax.ShapeDtypeStruct(shape, dtype)  # type: ignore[no-untyped-call]


def _untimed(stage: str) -> contextlib.AbstractContextManager[Any]:
    del stage
    return contextlib.nullcontext()


class EnsembleProgram:
    """The members of up to `batch` windows of `grid` (H, W) over `num_leads` leads, compiled.

    `margin`: the halo of a Lagrangian network's windows (`nowcastd.nowcast.Window.margin`),
    pixels on every side of `grid`; the members are the grid inside it."""

    def __init__(
        self,
        network: PredRNN,
        transform: DataTransform,
        settings: EnsembleSettings,
        *,
        num_leads: int,
        grid: tuple[int, int] | None = None,
        batch: int = 1,
        motion_method: str = "LK",
        strategy: Strategy = DEFAULT,
        margin: int = 0,
        motion: MotionEstimator | None = None,
    ) -> None:
        cfg = network.cfg
        if num_leads < 1 or batch < 1:
            raise ValueError(f"num_leads, batch: expected >= 1, got {num_leads}, {batch}")
        self.settings = settings
        self.transform = transform
        self.num_leads = num_leads
        self.batch = batch
        self.input_length = cfg.input_length
        self.grid = grid or (cfg.img_height, cfg.img_width)
        self.margin = margin if cfg.lagrangian else 0
        self.motion = motion or MotionEstimator(motion_method)
        self.strategy = strategy
        self._params, self._static = eqx.partition(network, eqx.is_array)
        self._program: Callable[..., Any] | None = None
        self.compile_seconds = 0.0

    def _fn(self, params: PredRNN, *args: jax.Array, strategy: Strategy) -> jax.Array:
        network: PredRNN = eqx.combine(params, self._static)
        s = self.settings
        return ensemble_rates(
            network,
            self.transform,
            *args,
            design=s.design,
            gain=s.noise_gain,
            margin=self.margin,
            strategy=strategy,
        )

    def _example_args(self) -> tuple[Any, ...]:
        n, k, m = self.batch, self.num_leads, self.settings.members
        h, w = (size + 2 * self.margin for size in self.grid)
        spec = _spec
        return (
            self._params,
            spec((n, self.input_length, h, w, 1), jnp.float32),
            spec((n, h, w, 2), jnp.float32),
            spec((n, h, w // 2 + 1), jnp.float32),
            spec((n, m, k, 2), jnp.float32),
            spec((2,), jnp.uint32),
        )

    def compile(self) -> float:
        """Compile ahead of time for the shapes and run once; returns the seconds it took."""
        start = time.perf_counter()
        args = self._example_args()
        self._program = compile_program(self._fn, self.strategy, inference=True, example_args=args)
        zeros = [np.zeros(a.shape, a.dtype) for a in args[1:]]
        np.asarray(self._program(self._params, *zeros))
        self.compile_seconds = time.perf_counter() - start
        logger.info(
            "compiled the ensemble (%d members, %s design) for %dx%d, %d leads, in %.1f s",
            self.settings.members, self.settings.design, *self.grid, self.num_leads,
            self.compile_seconds,
        )  # fmt: skip
        return self.compile_seconds

    def __call__(
        self, context: jax.Array | np.ndarray, flow: np.ndarray, perturbations: Perturbations
    ) -> np.ndarray:
        """(n, N, K, H, W) mm/h from n <= `batch` windows: a context (n, I, H, W, 1), its motion
        (n, H, W, 2) and the host's perturbations, all with the halo (the NaN rule of
        `forecast_ensemble` not applied). Fewer than `batch` windows are padded with the last."""
        if self._program is None:
            self.compile()
        program, p, n = self._program, perturbations, context.shape[0]
        assert program is not None
        if not 1 <= n <= self.batch:
            raise ValueError(f"ensemble: expected 1..{self.batch} windows, got {n}")
        args = [np.asarray(a, np.float32) for a in (context, flow, p.spectrum, p.coefficients)]
        if n < self.batch:
            args = [np.concatenate([a, np.repeat(a[-1:], self.batch - n, axis=0)]) for a in args]
        out = program(self._params, *args, p.key)
        return np.array(out, dtype=np.float32)[:n]  # sliced on the host: no device op


def forecast_ensemble(
    window: Window,
    program: EnsembleProgram,
    *,
    seed: int,
    flow: np.ndarray | None = None,
    timed: StageTimer = _untimed,
) -> np.ndarray:
    """(n, N, K, H, W) members in mm/h from `window`, NaN where the newest input had no data
    (as `forecast_rates`) or a member's rain would come from off the grid. `flow`: the window's
    motion (n, H, W, 2) as `forecast_rates` used it; None: estimated here (stage "motion").
    `timed` times the stage "ensemble": the host's perturbations and the compiled program."""
    if flow is None:
        if window.motion is None:
            raise ValueError("forecast_ensemble: expected a flow or the window's motion input")
        with timed("motion"):
            flow = program.motion.batch(window.motion)
    with timed("ensemble"):
        context = np.asarray(window.context, dtype=np.float32)  # the host's copy: no device op
        perturbations = estimate_perturbations(
            context[:, -1, ..., 0], program.num_leads, program.settings, seed=seed
        )
        members = program(window.context, np.asarray(flow, np.float32), perturbations)
    no_data = np.broadcast_to(window.no_data[:, None, None], members.shape)
    members[no_data] = np.nan
    return members
