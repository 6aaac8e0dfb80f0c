"""nowcastd forecast files for pysteps: the precipitation array and pysteps' metadata.

`read_pysteps(path)` returns `(precip, metadata)`: precip (lead, y, x) in mm/h, NaN where there
is no data, and the metadata dictionary every pysteps importer returns (`projection`, `x1`,
`y1`, `x2`, `y2`, `xpixelsize`, `ypixelsize`, `yorigin`, `unit`, `transform`, `zerovalue`,
`threshold`, `accutime`, `timestamps`). `timestamps` are the leads' valid times as naive UTC
datetimes, as pysteps' own importers and `pysteps.io.read_timeseries` give them.

A file with an ensemble (`nowcastd.io.ensemble_file`) adds `ensemble_members` (N),
`thresholds_mm_h` (T values), `probability` (T, lead, y, x), `ensemble_mean` (lead, y, x) and, if
the file keeps them, `members` (N, lead, y, x): pysteps' ensemble layout.

`import_nowcastd` is the same reader in pysteps' importer form, `(precip, quality, metadata)`;
its `product` keyword picks the array: "deterministic" (the default, `precip`), "mean",
"members" or "probability";
pyproject.toml registers it under the `pysteps.plugins.importer` entry point, so once nowcastd
is installed `pysteps.io.get_method("nowcastd", "importer")` returns it.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import numpy as np

from nowcastd.errors import DataError
from nowcastd.io.forecast_file import read_forecast
from nowcastd.io.transform import RAIN_THRESHOLD_MM_H

__all__ = ["import_nowcastd", "read_pysteps"]

_GRID_KEYS = ("projection", "x1", "y1", "x2", "y2", "xpixelsize", "ypixelsize", "yorigin")


def read_pysteps(path: str | Path) -> tuple[np.ndarray, dict[str, object]]:
    """A forecast file as pysteps reads a field: `(precip, metadata)` (see the module doc).

    DataError when the file is no forecast, or its grid's projection or extent is not known
    (a forecast from `.npy` scans without `[domain]` `projection` and `extent`).
    """
    path = Path(path)
    forecast = read_forecast(path)
    attrs = forecast.attrs
    missing = [key for key in _GRID_KEYS if key not in attrs]
    if missing:
        raise DataError(
            f"{path.name}: expected the grid's {', '.join(_GRID_KEYS)} for pysteps, "
            f"got none for {', '.join(missing)} (give [domain] projection and extent)"
        )
    precip = forecast.precip
    leads = forecast.lead_seconds
    steps = np.diff(np.concatenate([[0], leads]))
    metadata: dict[str, object] = {key: attrs[key] for key in _GRID_KEYS}
    metadata.update(
        unit="mm/h",
        transform=None,
        zerovalue=0.0,
        # every forecast rate below it is 0 (`DataTransform.to_rates`)
        threshold=RAIN_THRESHOLD_MM_H,
        # pysteps' accumulation time in minutes: a rain rate's is the time step.
        accutime=float(steps.min()) / 60.0,
        timestamps=np.array([t.astimezone(UTC).replace(tzinfo=None) for t in forecast.valid_times]),
    )
    ensemble = forecast.ensemble
    if ensemble is not None:
        metadata.update(
            ensemble_members=ensemble.member_count,
            thresholds_mm_h=list(ensemble.thresholds_mm_h),
            probability=ensemble.probability,
            ensemble_mean=ensemble.mean,
        )
        if ensemble.members is not None:
            metadata["members"] = ensemble.members
    return precip, metadata


_PRODUCTS = {"mean": "ensemble_mean", "members": "members", "probability": "probability"}


def import_nowcastd(
    filename: str | Path, product: str = "deterministic", **kwargs: object
) -> tuple[np.ndarray, None, dict[str, object]]:
    """pysteps' importer interface to `read_pysteps`: `(precip, quality, metadata)`, the array
    being `product` ("deterministic", or an ensemble's "mean", "members" or "probability").

    pysteps' wrapper handles its own keywords (`dtype`, `fillna`) after the call; no other
    keyword is known.
    """
    unknown = sorted(set(kwargs) - {"dtype", "fillna"})
    if unknown:
        raise TypeError(
            f"import_nowcastd: expected no keywords but product, dtype, fillna; got {unknown}"
        )
    if product != "deterministic" and product not in _PRODUCTS:
        raise ValueError(
            f"import_nowcastd: expected product deterministic, {', '.join(_PRODUCTS)}; "
            f"got {product!r}"
        )
    precip, metadata = read_pysteps(filename)
    if product == "deterministic":
        return precip, None, metadata
    array = metadata.get(_PRODUCTS[product])
    if not isinstance(array, np.ndarray):
        raise DataError(f"{Path(filename).name}: expected an ensemble's {product}, found none")
    return array, None, metadata
