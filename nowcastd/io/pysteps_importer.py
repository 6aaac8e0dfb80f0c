"""nowcastd forecast files for pysteps: the precipitation array and pysteps' metadata.

`read_pysteps(path)` returns `(precip, metadata)`: precip (lead, y, x) in mm/h, NaN where there
is no data, and the metadata dictionary every pysteps importer returns (`projection`, `x1`,
`y1`, `x2`, `y2`, `xpixelsize`, `ypixelsize`, `yorigin`, `unit`, `transform`, `zerovalue`,
`threshold`, `accutime`, `timestamps`). `timestamps` are the leads' valid times as naive UTC
datetimes, as pysteps' own importers and `pysteps.io.read_timeseries` give them.

`import_nowcastd` is the same reader in pysteps' importer form, `(precip, quality, metadata)`;
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
    return precip, metadata


def import_nowcastd(filename: str | Path, **kwargs: object) -> tuple[np.ndarray, None, dict[str, object]]:
    """pysteps' importer interface to `read_pysteps`: `(precip, quality, metadata)`.

    pysteps' wrapper handles its own keywords (`dtype`, `fillna`) after the call; no other
    keyword is known.
    """
    unknown = sorted(set(kwargs) - {"dtype", "fillna"})
    if unknown:
        raise TypeError(f"import_nowcastd: expected no keywords but dtype, fillna; got {unknown}")
    precip, metadata = read_pysteps(filename)
    return precip, None, metadata
