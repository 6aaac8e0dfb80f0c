"""What became of a scan: the closed set of values `Pipeline.step` returns.

- `Rejected`: refused by a rule (what the file is, what it says, the buffer's ordering);
  `reason` is one of `metrics.REJECT_REASONS`.
- `Failed`: a stage could not be done (a read that timed out is `Rejected`; a forecast that
  could not be written is `Failed` at stage "write"); `stage` is one of `FAILURE_STAGES`,
  `reason` one of `FAILURE_REASONS`: "error" for an error the stage names (I/O, a file it
  cannot write), "internal" for an exception no rule expected (a bug met by one file: it
  is that file's outcome, logged with its traceback, and the daemon goes on).
- `Buffered`: in the buffer, no forecast from it (the buffer is not full yet, or a newer scan
  of the same batch got the forecast: `skipped`).
- `Written`: its forecast file is in place.

Work done for the scan's neighbours can fail too (the background pre-encoding, retention):
every outcome carries those failures in `housekeeping`, so that the one loop that counts
outcomes counts them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nowcastd.io.readers import printable
from nowcastd.serve.buffer import Push
from nowcastd.serve.forecast import Forecast

__all__ = ["FAILURE_REASONS", "Buffered", "Failed", "Outcome", "Rejected", "Written"]

#: Why a stage failed: an error it names, or an exception nothing expected.
FAILURE_REASONS: tuple[str, ...] = ("error", "internal")


@dataclass(frozen=True, kw_only=True)
class _Outcome:
    path: Path
    housekeeping: tuple[Failed, ...] = ()

    @property
    def name(self) -> str:
        """The file name as one printable line, as logs and files show it."""
        return printable(self.path.name)


@dataclass(frozen=True, kw_only=True)
class Failed(_Outcome):
    stage: str
    detail: str
    reason: str = "error"

    def __post_init__(self) -> None:
        if self.reason not in FAILURE_REASONS:
            raise ValueError(
                f"Failed.reason: expected one of {FAILURE_REASONS}, got {self.reason!r}"
            )


@dataclass(frozen=True, kw_only=True)
class Rejected(_Outcome):
    reason: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class Buffered(_Outcome):
    valid_time: datetime
    push: Push
    skipped: bool = False


@dataclass(frozen=True, kw_only=True)
class Written(_Outcome):
    """`file`: the forecast file; `forecast`: what it holds; `push`: how the scan entered the
    buffer; `timings`: seconds per stage of this scan ("read", "transfer", "encode_wait",
    "rollout", "write"); `in_place`: `time.monotonic()` when the file was in place."""

    file: Path
    forecast: Forecast
    push: Push
    timings: Mapping[str, float]
    in_place: float


Outcome = Rejected | Failed | Buffered | Written
