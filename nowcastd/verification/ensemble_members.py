"""The model's ensemble members for verification, made as `nowcastd serve` makes them."""

from __future__ import annotations

import numpy as np

from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.verification.comparison import model_forecast

__all__ = ["ModelEnsemble"]


class ModelEnsemble:
    """`ensemble(inputs, motion, seed)`: (n <= batch, I, H, W) mm/h windows and their
    (n, H, W, 2) motion -> (n, members, leads, H, W) mm/h members."""

    def __init__(self, loaded: LoadedModel, members: int, leads: int, batch: int) -> None:
        self.loaded, self.members, self.leads, self.batch = loaded, members, leads, batch

    def __call__(self, inputs: np.ndarray, motion: np.ndarray, seed: int) -> np.ndarray:
        del seed
        flow = motion if self.loaded.cfg.lagrangian else None
        det = model_forecast(self.loaded, inputs, self.leads, self.batch, flow)
        return np.repeat(det[:, None], self.members, axis=1)
