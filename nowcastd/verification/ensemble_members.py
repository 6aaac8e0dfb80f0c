"""The model's ensemble members for verification, made as `nowcastd serve` makes them."""

from __future__ import annotations

import numpy as np

from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.verification.comparison import model_forecast

__all__ = ["ModelEnsemble"]


class ModelEnsemble:
    """`ensemble(inputs, motion, seed)`: (n <= batch, I, H, W) mm/h windows and their
    (n, H, W, 2) motion, with a halo of `margin` pixels -> (n, members, leads, H, W) mm/h
    members on the grid inside the halo."""

    def __init__(
        self, loaded: LoadedModel, members: int, leads: int, batch: int, margin: int = 0
    ) -> None:
        self.loaded, self.members, self.leads, self.batch = loaded, members, leads, batch
        self.margin = margin

    def __call__(self, inputs: np.ndarray, motion: np.ndarray, seed: int) -> np.ndarray:
        del seed
        flow = motion if self.loaded.cfg.lagrangian else None
        det = model_forecast(self.loaded, inputs, self.leads, self.batch, flow, margin=self.margin)
        return np.repeat(det[:, None], self.members, axis=1)
