"""Ensemble nowcasts: members from perturbations that STEPS uses, exceedance probabilities.

- `settings`: `EnsembleSettings`;
- `perturbations`: the host's part, once per scan, with pysteps;
- `members`: the JAX part, inside the compiled program, with its pieces `noise` (the noise,
  scale by scale), `paths` (the members' trajectories) and `matching` (their rank matching);
- `program`: `EnsembleProgram` (compiled ahead of time) and `forecast_ensemble`;
- `products`: `exceedance`, `ensemble_mean`, `EnsembleProducts`.
"""

from nowcastd.ensemble.products import EnsembleProducts, ensemble_mean, exceedance, products
from nowcastd.ensemble.program import EnsembleProgram, forecast_ensemble
from nowcastd.ensemble.settings import EnsembleSettings

__all__ = [
    "EnsembleProducts",
    "EnsembleProgram",
    "EnsembleSettings",
    "ensemble_mean",
    "exceedance",
    "forecast_ensemble",
    "products",
]
