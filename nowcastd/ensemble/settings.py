"""`EnsembleSettings`: how many members an ensemble forecast has and how they are perturbed."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DESIGNS", "EnsembleSettings"]

#: "perturb": the network runs once and the members perturb its Lagrangian forecast (as STEPS
#: perturbs an extrapolation); "network": every member runs the network on its own perturbed
#: input (a batch of N).
DESIGNS = ("perturb", "network")


@dataclass(frozen=True, kw_only=True)
class EnsembleSettings:
    """`members` (N >= 1) perturbed forecasts and what is derived from them.

    `thresholds_mm_h`: the exceedance probabilities' thresholds, increasing. `noise_gain`
    scales the amplitude of the spatially correlated noise (0: motion perturbations only);
    `motion_perturbation`: pysteps' BPS velocity perturbations, which need the grid's pixel
    size `pixel_km` and the time step `timestep_minutes`. `seed`: the base of every scan's seed.
    """

    members: int
    thresholds_mm_h: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0)
    write_members: bool = False
    design: str = "perturb"
    noise_gain: float = 1.0
    motion_perturbation: bool = True
    pixel_km: float = 4.0
    timestep_minutes: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or not isinstance(self.members, int) or self.members < 1:
            raise ValueError(f"members: expected an int >= 1, got {self.members!r}")
        t = tuple(float(v) for v in self.thresholds_mm_h)
        if not t or any(not (math.isfinite(v) and v > 0) for v in t) or list(t) != sorted(set(t)):
            raise ValueError(
                f"thresholds_mm_h: expected increasing finite numbers > 0, got {self.thresholds_mm_h}"
            )
        object.__setattr__(self, "thresholds_mm_h", t)
        if self.design not in DESIGNS:
            raise ValueError(f"design: expected one of {DESIGNS}, got {self.design!r}")
        if not (math.isfinite(self.noise_gain) and self.noise_gain >= 0):
            raise ValueError(f"noise_gain: expected a finite number >= 0, got {self.noise_gain}")
        for name in ("pixel_km", "timestep_minutes"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")

    def scan_seed(self, issue_seconds: int) -> int:
        """The seed of the forecast issued `issue_seconds` after the epoch: reproducible per
        scan, different from scan to scan."""
        return (self.seed + int(issue_seconds)) % (1 << 63)
