"""The ensemble's variables in a forecast file (`nowcastd.io.forecast_file` writes and reads
them beside `precip`, which stays the deterministic forecast):

- `threshold` (threshold,) float64 mm h-1, a dimension scale, `standard_name = rainfall_rate`:
  the thresholds of the probabilities (CF's way of giving a probability its threshold: a
  coordinate variable of the thresholded quantity);
- `precip_probability` (threshold, lead_time, y, x) float32, units "1", in [0, 1]: the share of
  the members at or above the threshold, NaN where no member has data. CF has no standard name
  for an exceedance probability of a rain rate, so it has a `long_name` only, and
  `threshold:spp__relative_to_threshold = "greater_than_or_equal_to"` says which side counts;
- `precip_ensemble_mean` (lead_time, y, x) float32 mm h-1 (no `cell_methods`: CF wants its
  name to be a dimension of the variable, which the realization is not);
- the `realization` coordinate (N,) int32, `standard_name = realization`, and optionally
  `precip_members` (realization, lead_time, y, x) float32 mm h-1.

The mean and members are rounded as `precip` is (`least_significant_digit`); the probabilities
are multiples of 1/N and stored as they are. Root attribute `ensemble_members`: N.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import h5py
import numpy as np

__all__ = ["EnsembleProducts", "read_ensemble", "write_ensemble"]

_Attach = Callable[[h5py.Dataset, tuple[str, ...]], None]


@dataclass(frozen=True, kw_only=True, eq=False)
class EnsembleProducts:
    """One forecast's ensemble products: `thresholds_mm_h` (T,), `probability` (T, K, H, W),
    `mean` (K, H, W) mm/h, `members` (N, K, H, W) mm/h or None when not kept, and
    `member_count` N."""

    thresholds_mm_h: tuple[float, ...]
    probability: np.ndarray
    mean: np.ndarray
    member_count: int
    members: np.ndarray | None = None

    def __post_init__(self) -> None:
        t, k, h, w = self.probability.shape
        if t != len(self.thresholds_mm_h) or self.mean.shape != (k, h, w):
            raise ValueError(
                f"EnsembleProducts: expected probability ({len(self.thresholds_mm_h)}, K, H, W) "
                f"and mean (K, H, W), got {self.probability.shape} and {self.mean.shape}"
            )
        if self.members is not None and self.members.shape != (self.member_count, k, h, w):
            raise ValueError(
                f"EnsembleProducts: expected members ({self.member_count}, {k}, {h}, {w}), "
                f"got {self.members.shape}"
            )


def _field(f: h5py.File, name: str, data: np.ndarray, attrs: dict[str, object]) -> h5py.Dataset:
    chunks = (*(1,) * (data.ndim - 2), *data.shape[-2:])
    ds = f.create_dataset(
        name,
        data=np.ascontiguousarray(data, np.float32),
        chunks=chunks,
        compression="gzip",
        compression_opts=1,
        shuffle=True,
        fillvalue=np.float32(np.nan),
    )
    ds.attrs.update({**attrs, "_FillValue": np.float32(np.nan), "coordinates": "valid_time"})
    if "grid_mapping" in f["precip"].attrs:
        ds.attrs["grid_mapping"] = f["precip"].attrs["grid_mapping"]
    return ds


def _scale(f: h5py.File, name: str, values: np.ndarray, attrs: dict[str, object]) -> None:
    ds = f.create_dataset(name, data=values)
    ds.attrs.update(attrs)
    ds.make_scale(name)


def write_ensemble(
    f: h5py.File,
    products: EnsembleProducts,
    *,
    attach: _Attach,
    rounded: Callable[[np.ndarray], np.ndarray],
    rate_attrs: dict[str, object],
) -> None:
    """The ensemble's variables in an open forecast file that holds `precip` and its scales;
    `attach` attaches dimension scales, `rounded` rounds as `precip` was, `rate_attrs` are
    `precip`'s CF attributes less those of its own."""
    thresholds = np.asarray(products.thresholds_mm_h, np.float64)
    _scale(f, "threshold", thresholds, {
        "units": "mm h-1",
        "standard_name": "rainfall_rate",
        "long_name": "rain rate threshold of the exceedance probability",
        "spp__relative_to_threshold": "greater_than_or_equal_to",
    })  # fmt: skip
    probability = _field(f, "precip_probability", products.probability, {
        "units": "1",
        "long_name": "probability of a rain rate at or above the threshold",
        "valid_min": np.float32(0.0),
        "valid_max": np.float32(1.0),
    })  # fmt: skip
    attach(probability, ("threshold", "lead_time", "y", "x"))
    mean = _field(f, "precip_ensemble_mean", rounded(products.mean), {
        **rate_attrs,
        "long_name": "ensemble mean nowcast rain rate (the mean of the members with data)",
    })  # fmt: skip
    attach(mean, ("lead_time", "y", "x"))
    f.attrs["ensemble_members"] = np.int32(products.member_count)
    _scale(f, "realization", np.arange(products.member_count, dtype=np.int32), {
        "units": "1",
        "standard_name": "realization",
        "long_name": "ensemble member",
    })  # fmt: skip
    if products.members is None:
        return
    members = _field(f, "precip_members", rounded(products.members), {
        **rate_attrs,
        "long_name": "nowcast rain rate of each ensemble member",
    })  # fmt: skip
    attach(members, ("realization", "lead_time", "y", "x"))


def read_ensemble(f: h5py.File) -> EnsembleProducts | None:
    """The ensemble's variables of an open forecast file, or None in a file without them."""
    if "precip_probability" not in f:
        return None
    members = f["precip_members"][...].astype(np.float32) if "precip_members" in f else None
    return EnsembleProducts(
        thresholds_mm_h=tuple(float(v) for v in f["threshold"][...]),
        probability=f["precip_probability"][...].astype(np.float32),
        mean=f["precip_ensemble_mean"][...].astype(np.float32),
        member_count=int(f.attrs["ensemble_members"]),
        members=members,
    )
