"""The rules a scan's field must pass before it enters the model: the admission rules that
`nowcastd serve` and `nowcastd predict` share (`Pipeline.read` calls `admit_field`).

Rain rates are in mm/h, counted over the pixels with data (NaN is no data). In order:

1. `implausible_rain`: pixels outside 0..`max_rain_rate_mm_h` (1000 mm/h, beyond any rain
   measured) are clipped into it when they are a few (clutter, a hot pixel), and the scan is
   refused when they are more than `max_implausible_fraction` of it.
2. `saturated`: the scan is refused when more than `max_saturated_fraction` of it is at or
   above the rate where the model's input saturates (`saturation_rate_mm_h`: the rate the
   model's `DataTransform` maps to 1, ≈ 205 mm/h for the dbz transform with dbz_max 60 dBZ and
   Marshall-Palmer). The model sees all such rain as one value, so a scan of 500 mm/h
   everywhere would be forecast as a plausible field and nothing would say why.
3. `extreme_rain`: the scan is refused when more than `max_extreme_fraction` of it is above
   `extreme_rain_rate_mm_h` (150 mm/h), a rate no rain reaches over a share of a composite.
   In the five events of the development data (MeteoSwiss, MRMS, OPERA) at most 0.004 % of a
   scan's pixels exceed 150 mm/h, so the default 1 % leaves a margin of 250. A noise field
   (random raw values over the calibrated range) has a third or more of its pixels there.
4. `constant_field`: a scan whose pixels with data (two or more) all hold one non-zero value
   (a test pattern, a stuck feed, a fill value) is refused unless `refuse_constant_field` is
   off. A dry scan (all 0) is rain-free, not constant.

A fraction of 1 switches rules 1 to 3 off (no scan has more than all of its pixels there).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from nowcastd.io.readers import Scan, ScanRefused, printable
from nowcastd.io.transform import DataTransform
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.labels import RejectReason

__all__ = ["FieldRules", "admit_field", "saturation_rate_mm_h"]

logger = logging.getLogger(__name__)


def saturation_rate_mm_h(transform: DataTransform) -> float | None:
    """The rain rate where the model's input saturates: `transform` maps it, and every rate
    above, to 1 (`DataTransform.to_model` clips there). None for a transform without
    physical units (``identity``), which clips nothing."""
    if not transform.is_physical:
        return None
    return float(transform.to_physical(np.float64(1.0)))


@dataclass(frozen=True, kw_only=True)
class FieldRules:
    """The thresholds of the four rules (module docstring), from a `ServeConfig` and the
    model's transform."""

    max_rain_rate_mm_h: float
    max_implausible_fraction: float
    saturation_rate_mm_h: float | None
    max_saturated_fraction: float
    extreme_rain_rate_mm_h: float
    max_extreme_fraction: float
    refuse_constant_field: bool

    @classmethod
    def of(cls, cfg: ServeConfig, transform: DataTransform) -> FieldRules:
        return cls(
            max_rain_rate_mm_h=cfg.max_rain_rate_mm_h,
            max_implausible_fraction=cfg.max_implausible_fraction,
            saturation_rate_mm_h=saturation_rate_mm_h(transform),
            max_saturated_fraction=cfg.max_saturated_fraction,
            extreme_rain_rate_mm_h=cfg.extreme_rain_rate_mm_h,
            max_extreme_fraction=cfg.max_extreme_fraction,
            refuse_constant_field=cfg.refuse_constant_field,
        )


def admit_field(scan: Scan, rules: FieldRules) -> Scan:
    """`scan`, its few implausible pixels clipped; ScanRefused with the reason of the first
    rule it breaks."""
    scan = _clip_implausible(scan, rules.max_rain_rate_mm_h, rules.max_implausible_fraction)
    field = scan.field
    values = field[~np.isnan(field)]
    name = printable(scan.name)
    saturation = rules.saturation_rate_mm_h
    if saturation is not None:
        saturated = int(np.count_nonzero(values >= saturation))
        if saturated > rules.max_saturated_fraction * values.size:
            raise ScanRefused(
                RejectReason.SATURATED,
                f"{name}: expected at most {_percent(rules.max_saturated_fraction)} of the "
                f"pixels at or above {saturation:.1f} mm/h, where the model's input saturates "
                f"(all such rain is one value to it), got {_share(saturated, values.size)} "
                f"(max {values.max():g} mm/h)",
            )
    extreme = int(np.count_nonzero(values > rules.extreme_rain_rate_mm_h))
    if extreme > rules.max_extreme_fraction * values.size:
        limit = "" if saturation is None else f"; the model's input saturates at {saturation:.1f}"
        raise ScanRefused(
            RejectReason.EXTREME_RAIN,
            f"{name}: expected at most {_percent(rules.max_extreme_fraction)} of the pixels "
            f"above {rules.extreme_rain_rate_mm_h:g} mm/h (no rain reaches it over a composite"
            f"{limit}), got {_share(extreme, values.size)} (max {values.max():g} mm/h)",
        )
    if rules.refuse_constant_field and values.size > 1:
        low, high = values.min(), values.max()
        if low == high and low != 0:
            raise ScanRefused(
                RejectReason.CONSTANT_FIELD,
                f"{name}: expected a field that varies (rain, or 0 where dry), got "
                f"{low:g} mm/h in all {values.size} pixels with data",
            )
    return scan


def _clip_implausible(scan: Scan, max_rate: float, max_fraction: float) -> Scan:
    """The scan with rates outside 0..`max_rate` clipped; ScanRefused "implausible_rain" when
    more than `max_fraction` of its pixels with data are outside."""
    field = scan.field
    outside = ~np.isnan(field) & ~((field >= 0) & (field <= max_rate))
    count = int(np.count_nonzero(outside))
    if not count:
        return scan
    with_data = max(int(np.count_nonzero(~np.isnan(field))), 1)
    if count > max_fraction * with_data:
        raise ScanRefused(
            RejectReason.IMPLAUSIBLE_RAIN,
            f"{printable(scan.name)}: expected rain rates within 0..{max_rate:g} mm/h, got "
            f"{count} of {with_data} pixels outside (range {np.nanmin(field):g}.."
            f"{np.nanmax(field):g})",
        )
    clipped = np.where(outside, np.where(field < 0, 0.0, max_rate), field).astype(np.float32)
    logger.warning(
        "%s: %d pixels outside 0..%g mm/h clipped", printable(scan.name), count, max_rate
    )
    return dataclasses.replace(scan, field=clipped)


def _percent(fraction: float) -> str:
    return f"{fraction:.2%}".replace(".00%", "%")


def _share(count: int, total: int) -> str:
    return f"{count} of {total} ({count / max(total, 1):.1%})"
