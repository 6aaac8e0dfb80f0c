"""What became of a scan: the closed set of values `Pipeline.step` returns.

- `Rejected`: refused by a rule (what the file is, what it says, the buffer's ordering);
  `reason` is a `RejectReason`.
- `Failed`: a stage could not be done (a read that timed out is `Rejected`; a forecast that
  could not be written is `Failed` at stage "write"); `stage` is a `Stage`, `reason` a
  `FailureReason`: "error" for an error the stage names (I/O, a file it cannot write),
  "internal" for an exception no rule expected (a bug met by one file: it is that file's
  outcome, logged with its traceback, and the daemon goes on).
- `Buffered`: in the buffer, no forecast from it (the buffer is not full yet, or a newer scan
  of the same batch got the forecast: `skipped`).
- `Written`: its forecast file is in place.

Work done for the scan's neighbours can fail too (the background pre-encoding, retention):
every outcome carries those failures in `housekeeping`, so that the one loop that counts
outcomes counts them too.

The labels (`serve.labels`) are normalised on construction: a string that is no member is a
ValueError, so no outcome holds a label the metrics do not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nowcastd.io.readers import printable
from nowcastd.serve.buffer import Push
from nowcastd.serve.forecast import Forecast
from nowcastd.serve.labels import FailureReason, RejectReason, Stage, member

__all__ = ["Buffered", "Failed", "Outcome", "Rejected", "Written"]


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
    stage: Stage
    detail: str
    reason: FailureReason = FailureReason.ERROR

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage", member(Stage, self.stage, "Failed.stage"))
        object.__setattr__(self, "reason", member(FailureReason, self.reason, "Failed.reason"))


@dataclass(frozen=True, kw_only=True)
class Rejected(_Outcome):
    reason: RejectReason
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", member(RejectReason, self.reason, "Rejected.reason"))


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
