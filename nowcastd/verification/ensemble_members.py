"""The model's ensemble members for verification, made as `nowcastd serve` makes them: the one
ensemble forecast function (`nowcastd.ensemble.forecast_ensemble`) on a compiled
`EnsembleProgram` of the checkpoint's network, strategy and optical flow."""

from __future__ import annotations

import numpy as np

from nowcastd.ensemble import EnsembleProgram, EnsembleSettings, forecast_ensemble
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.nowcast import Window

__all__ = ["ModelEnsemble"]


class ModelEnsemble:
    """`ensemble(inputs, motion, seed)`: (n <= batch, I, H, W) mm/h windows and their
    (n, H, W, 2) motion, with a halo of `margin` pixels -> (n, members, leads, H, W) mm/h
    members on the grid inside the halo. The program compiles on the first call."""

    def __init__(
        self,
        loaded: LoadedModel,
        settings: EnsembleSettings,
        leads: int,
        batch: int,
        grid: tuple[int, int],
        margin: int = 0,
    ) -> None:
        self.loaded, self.settings = loaded, settings
        self.program = EnsembleProgram(
            loaded.network,
            loaded.transform,
            settings,
            num_leads=leads,
            grid=grid,
            batch=batch,
            motion_method=loaded.motion_method,
            strategy=loaded.strategy,
            margin=margin,
        )
        self.crop = margin - self.program.margin  # an Eulerian network takes no halo

    def __call__(self, inputs: np.ndarray, motion: np.ndarray, seed: int) -> np.ndarray:
        c = self.crop
        if c:
            inputs = inputs[..., c : inputs.shape[-2] - c, c : inputs.shape[-1] - c]
            motion = motion[:, c : motion.shape[1] - c, c : motion.shape[2] - c]
        window = Window.from_rates(inputs, self.loaded.transform, margin=self.program.margin)
        return forecast_ensemble(window, self.program, seed=seed, flow=motion)
