"""The closed sets of labels a scan's outcome carries: the stages of the pipeline, why a scan
was refused and why a stage failed.

Each is a `StrEnum` whose values are the label values of the metrics
(`nowcastd_stage_duration_seconds{stage}`, `nowcastd_failures_total{stage}`,
`nowcastd_scans_rejected_total{reason}`), the event lines' fields and the log's words, so a
label that no metric knows cannot be built. The order of the members is the order the
metrics export them in.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = ["FailureReason", "RejectReason", "Stage", "member"]

_E = TypeVar("_E", bound=StrEnum)


class Stage(StrEnum):
    """A stage of the pipeline; the `timed` ones are the stages of one forecast."""

    READ = "read"
    TRANSFER = "transfer"
    MOTION = "motion"
    ROLLOUT = "rollout"
    ENSEMBLE = "ensemble"
    WRITE = "write"
    ENCODE = "encode"
    # the service's housekeeping: can fail, is not timed
    RETENTION = "retention"
    RELOAD = "reload"

    @property
    def timed(self) -> bool:
        """Whether `nowcastd_stage_duration_seconds` has the stage."""
        return self not in (Stage.RETENTION, Stage.RELOAD)


class RejectReason(StrEnum):
    """Why a scan was refused."""

    CORRUPT = "corrupt"
    WRONG_GRID = "wrong_grid"
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    UNKNOWN_FORMAT = "unknown_format"
    # what the file is (`nowcastd.io.readers.guard`)
    NOT_REGULAR = "not_regular"
    SYMLINK = "symlink"
    EXTERNAL_REFERENCE = "external_reference"
    TOO_LARGE = "too_large"
    UNSUPPORTED_DTYPE = "unsupported_dtype"
    IMPLAUSIBLE_CALIBRATION = "implausible_calibration"
    # how reading it went (`read_worker`)
    TIMEOUT = "timeout"
    READER_CRASHED = "reader_crashed"
    # what it says (`pipeline`)
    FUTURE = "future"
    STALE = "stale"
    OFF_CADENCE = "off_cadence"
    IMPLAUSIBLE_RAIN = "implausible_rain"
    # what its field is (`plausibility`) and whether its grid survives the crop (`domain`)
    SATURATED = "saturated"
    EXTREME_RAIN = "extreme_rain"
    CONSTANT_FIELD = "constant_field"
    BAD_GEOMETRY = "bad_geometry"


class FailureReason(StrEnum):
    """Why a stage failed: an error it names (I/O, a file it cannot write), or an exception
    no rule expected (a bug met by one file)."""

    ERROR = "error"
    INTERNAL = "internal"


def member(kind: type[_E], value: str, what: str) -> _E:
    """`value` as a member of `kind`; ValueError naming `what`, the values allowed and
    `value` for a string that is none of them."""
    try:
        return kind(value)
    except ValueError:
        allowed = tuple(m.value for m in kind)
        raise ValueError(f"{what}: expected one of {allowed}, got {value!r}") from None
