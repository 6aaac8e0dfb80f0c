"""The daemon's ensemble stage: the ensemble's compiled program for the operational shape and
what one forecast asks of it.

With `[serve] ensemble_members` > 0 the pipeline builds one `EnsembleStage`; `compile` runs at
start-up with the forecaster's programs (before ready, so no compilation follows). For each
forecast, `flow` estimates the window's motion once (stage "motion", shared with the
deterministic rollout of a Lagrangian network), and `products` makes the members
(`nowcastd.ensemble.forecast_ensemble`, stage "ensemble") and what the file holds of them:
exceedance probabilities at `probability_thresholds_mm_h`, the mean and, with
`ensemble_write_members`, the members. Each scan's seed is `ensemble_seed` plus its time, so a
file can be made again bit for bit. The arrays are made afresh for every forecast and dropped
with it: memory stays flat.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from nowcastd.data.motion import MotionEstimator
from nowcastd.ensemble import EnsembleProgram, EnsembleSettings, forecast_ensemble, products
from nowcastd.io.ensemble_file import EnsembleProducts
from nowcastd.io.forecast_file import LEAST_SIGNIFICANT_DIGIT, quantize
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.nowcast import StageTimer, Window
from nowcastd.serve.config import ServeConfig

__all__ = ["EnsembleStage"]


class EnsembleStage:
    """The ensemble of one pipeline: `settings` on the model grid `grid` inside a halo of
    `margin` pixels (a Lagrangian network's), `num_leads` leads."""

    def __init__(
        self,
        model: LoadedModel,
        settings: EnsembleSettings,
        *,
        num_leads: int,
        grid: tuple[int, int],
        margin: int,
        motion: MotionEstimator | None = None,
    ) -> None:
        self.settings = settings
        # the window's motion for the rollout and the members, each frame pair tracked once:
        # the forecaster's estimator when it has one (a Lagrangian network's)
        self.motion = motion or MotionEstimator(model.motion_method, reuse_pairs=True)
        self.program = EnsembleProgram(
            model.network,
            model.transform,
            settings,
            num_leads=num_leads,
            grid=grid,
            motion_method=model.motion_method,
            margin=margin,
            motion=self.motion,
        )

    def compile(self) -> float:
        """Compile and warm up the program; the seconds it took."""
        seconds = self.program.compile()
        rain = np.random.default_rng(0).gamma(0.6, 3.0, (2, *self.program.grid))
        self.motion(rain)  # the optical flow's first call is slower (OpenCV)
        return seconds

    def flow(self, window: Window, timed: StageTimer) -> np.ndarray:
        """The window's motion (n, H, W, 2), stage "motion"."""
        if window.motion is None:
            raise ValueError("ensemble: expected the window's motion input")
        with timed("motion"):
            return self.motion.batch(window.motion)

    def products(
        self,
        window: Window,
        flow: np.ndarray,
        issue_time: datetime,
        cfg: ServeConfig,
        timed: StageTimer,
    ) -> EnsembleProducts:
        """The products of the members of one window (stage "ensemble"), by `cfg`'s thresholds
        and members setting (which a reload may change)."""
        seed = self.settings.scan_seed(int(issue_time.timestamp()))
        members = forecast_ensemble(window, self.program, seed=seed, flow=flow, timed=timed)
        # rounded as the file stores rain rates, so its members give its probabilities exactly
        rounded = quantize(members[0], LEAST_SIGNIFICANT_DIGIT)
        return products(
            rounded, cfg.probability_thresholds_mm_h, keep_members=cfg.ensemble_write_members
        )
