"""The loss terms beside the data term that a run turns on (`model.objectives`), in model units.

`model/` knows only model units. The intensity-weighted L1 of NowcastNet weighs each target
pixel by w(R) = min(24, 1 + R) with R its rain rate in mm/h; `intensity_table` gives the model
that curve as knots: the rates of `INTENSITY_KNOTS_MMH`, each mapped to model units by the run's
`DataTransform.to_model`, with the weight w(R) of each. Between knots the model interpolates
linearly in model units, so the weight is exact at every knot and, for the dBZ transform (whose
units grow with log R), within 4 % of w(R) between them. With the default Marshall-Palmer
scaling (1 ≈ 205 mm/h) the knots 0, 0.1, 0.2, 0.5, 1, 2, 3, 5, 7, 10, 15 and 23 mm/h are 0,
0.117, 0.197, 0.303, 0.384, 0.464, 0.511, 0.570, 0.609, 0.650, 0.697 and 0.747 model units,
with weights 1, 1.1, 1.2, 1.5, 2, 3, 4, 6, 8, 11, 16 and 24 (the cap, kept above 23 mm/h).
For an identity transform the rates are the model's own values.
"""

import dataclasses

import numpy as np

from model.loss import LossConfig
from nowcastd.io.transform import DataTransform
from nowcastd.train.config import TrainConfig

__all__ = ["INTENSITY_KNOTS_MMH", "intensity_table", "nowcastnet_weight", "with_departures"]

#: Rain rates (mm/h) at which the intensity weight is given to the model: dense where the
#: weight changes fastest in model units, ending where it reaches its cap.
INTENSITY_KNOTS_MMH = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 23.0)

#: NowcastNet's cap on the weight of heavy rain.
INTENSITY_CAP = 24.0


def nowcastnet_weight(rate_mm_h: np.ndarray) -> np.ndarray:
    """NowcastNet's pixel weight of an observed rain rate: min(24, 1 + R / (mm/h))."""
    weight: np.ndarray = np.minimum(INTENSITY_CAP, 1.0 + np.maximum(rate_mm_h, 0.0))
    return weight


def intensity_table(transform: DataTransform) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(knots in model units, weights) of NowcastNet's weight for `transform`'s units; knots
    that the transform maps onto one value (rates below its floor) are given once."""
    rates = np.asarray(INTENSITY_KNOTS_MMH, np.float64)
    units = np.asarray(transform.to_model(rates), np.float64)
    keep = np.concatenate([[True], np.diff(units) > 0])
    knots = tuple(float(u) for u in units[keep])
    weights = tuple(float(w) for w in nowcastnet_weight(rates[keep]))
    return knots, weights


def with_departures(loss: LossConfig, cfg: TrainConfig, transform: DataTransform) -> LossConfig:
    """`loss` with the run's Fourier and intensity terms (their weights 0 leave it as it is)."""
    knots: tuple[float, ...]
    weights: tuple[float, ...]
    if not cfg.intensity_l1_weight:
        knots, weights = (), ()
    else:
        knots, weights = intensity_table(transform)
    return dataclasses.replace(
        loss,
        fourier_amplitude_weight=cfg.fourier_amplitude_weight,
        fourier_correlation_weight=cfg.fourier_correlation_weight,
        intensity_l1_weight=cfg.intensity_l1_weight,
        intensity_knots=knots,
        intensity_weights=weights,
    )
