"""The values a scan becomes on its way through the pipeline: a `Frame`, then a `Forecast`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TypedDict

import numpy as np

from nowcastd.io.ensemble_file import EnsembleProducts
from nowcastd.io.readers import GridInfo, printable

__all__ = ["FileContents", "Forecast", "Frame", "timings"]


def timings(values: Mapping[str, float]) -> Mapping[str, float]:
    """A read-only copy of seconds per stage."""
    return MappingProxyType(dict(values))


@dataclass(frozen=True, kw_only=True, eq=False)
class Frame:
    """One scan on the model grid, in model units, NaN filled with 0, with its NaN mask.

    `timings`: seconds per stage this frame went through ("read", then "transfer" once
    buffered).
    """

    path: Path
    valid_time: datetime
    model: np.ndarray  # (H, W, 1) float32, with the halo of a Lagrangian model (`Domain.halo`)
    nan_mask: np.ndarray  # (H, W) bool, the same grid
    grid: GridInfo
    timings: Mapping[str, float]

    @property
    def name(self) -> str:
        """The file name as one printable line (`guard.printable`), as logs and files show it."""
        return printable(self.path.name)


class FileContents(TypedDict):
    """`write_forecast`'s keyword arguments: what a forecast file holds."""

    precip: np.ndarray
    issue_time: datetime
    lead_seconds: tuple[int, ...]
    input_names: tuple[str, ...]
    input_times: tuple[datetime, ...]
    grid: GridInfo
    nan_mask: np.ndarray
    model_name: str
    checkpoint_digest: str
    ensemble: EnsembleProducts | None


@dataclass(frozen=True, kw_only=True, eq=False)
class Forecast:
    """One forecast, everything its file holds: `precip` (K, H, W) mm/h, NaN where the
    newest input had no data (`nan_mask`), on `grid`, from the inputs named, oldest first;
    `ensemble`: the ensemble's products when the service makes them.

    `pre_encoded`: whether the pre-encoded window was used (not written).
    """

    precip: np.ndarray
    issue_time: datetime
    lead_seconds: tuple[int, ...]
    input_names: tuple[str, ...]
    input_times: tuple[datetime, ...]
    grid: GridInfo
    nan_mask: np.ndarray
    model_name: str
    checkpoint_digest: str
    pre_encoded: bool
    ensemble: EnsembleProducts | None = None

    def __post_init__(self) -> None:
        k = self.precip.shape[0]
        if len(self.lead_seconds) != k:
            raise ValueError(f"lead_seconds: expected {k} (one per lead), got {self.lead_seconds}")
        self.precip.flags.writeable = False
        self.nan_mask.flags.writeable = False

    @property
    def valid_times(self) -> tuple[datetime, ...]:
        return tuple(self.issue_time + timedelta(seconds=s) for s in self.lead_seconds)

    def file_contents(self) -> FileContents:
        """`write_forecast`'s keyword arguments: every field but how the forecast was run."""
        return FileContents(
            precip=self.precip,
            issue_time=self.issue_time,
            lead_seconds=self.lead_seconds,
            input_names=self.input_names,
            input_times=self.input_times,
            grid=self.grid,
            nan_mask=self.nan_mask,
            model_name=self.model_name,
            checkpoint_digest=self.checkpoint_digest,
            ensemble=self.ensemble,
        )
