"""The daemon's structured events: one JSON line per scan outcome, for programs.

With `events_file` set, `nowcastd serve` appends one line per outcome and flushes it, e.g.

    {"event": "forecast", "scan": "scan_202601010010.npy", "file": "forecast_...h5",
     "valid_time": "2026-01-01T00:10:00Z", "latency_seconds": 0.051, "queued_seconds": 0.0002,
     "seconds": {"read": 0.004, "transfer": 0.0001, "encode_wait": 0.0, "rollout": 0.03,
     "write": 0.008}, "pre_encoded": true}

and `"event": "buffered"` (`push`, `skipped`), `"rejected"` (`reason`, `detail`) or
`"failed"` (`stage`, `reason`: "error" or "internal", `detail`) for the others. journald
and log shippers take such lines as they are; `nowcastd demo` and `bench/bench_serve.py` read
them (`ForecastEvent`, `forecast_events`) instead of the human log line, which stays for
people.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from nowcastd.serve.outcome import Buffered, Failed, Outcome, Rejected, Written

__all__ = [
    "EventLog",
    "ForecastEvent",
    "event_record",
    "event_scan",
    "forecast_events",
    "parse_event",
]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_record(outcome: Outcome, *, latency: float, queued: float) -> dict[str, object]:
    """The JSON object of one outcome; `latency`, `queued`: seconds from the scan's event to
    its forecast file, and to the start of its handling."""
    base: dict[str, object] = {"scan": outcome.name}
    if isinstance(outcome, Written):
        return {
            "event": "forecast",
            **base,
            "file": outcome.file.name,
            "valid_time": _iso(outcome.forecast.issue_time),
            "latency_seconds": latency,
            "queued_seconds": queued,
            "seconds": dict(outcome.timings),
            "pre_encoded": outcome.forecast.pre_encoded,
        }
    if isinstance(outcome, Buffered):
        return {
            "event": "buffered",
            **base,
            "valid_time": _iso(outcome.valid_time),
            "push": outcome.push.value,
            "skipped": outcome.skipped,
        }
    if isinstance(outcome, Rejected):
        return {"event": "rejected", **base, "reason": outcome.reason, "detail": outcome.detail}
    assert isinstance(outcome, Failed)
    return {
        "event": "failed",
        **base,
        "stage": outcome.stage,
        "reason": outcome.reason,
        "detail": outcome.detail,
    }


class EventLog:
    """Appends event lines to a file (created if missing), one flushed line per event."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, object]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True, kw_only=True)
class ForecastEvent:
    """One `"forecast"` event: the scan, its forecast file, seconds from the scan's event to
    the file (`latency`) and to its handling (`queued`), seconds per stage."""

    scan: str
    file: str
    latency: float
    queued: float
    seconds: Mapping[str, float]
    pre_encoded: bool


def _record(line: str) -> dict[str, object]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"event line: expected a JSON object, got {line[:80]!r}") from e
    if not isinstance(record, dict) or "event" not in record or "scan" not in record:
        raise ValueError(
            f"event line: expected an object with 'event' and 'scan', got {line[:80]!r}"
        )
    return record


def event_scan(line: str) -> str:
    """The scan an event line is the outcome of, whatever the outcome; ValueError for a line
    that is no event."""
    return str(_record(line)["scan"])


def parse_event(line: str) -> ForecastEvent | None:
    """The forecast event of one JSON line, None for other events; ValueError for a line
    that is no event."""
    record: dict[str, Any] = _record(line)
    if record["event"] != "forecast":
        return None
    return ForecastEvent(
        scan=record["scan"],
        file=record["file"],
        latency=float(record["latency_seconds"]),
        queued=float(record["queued_seconds"]),
        seconds={k: float(v) for k, v in record["seconds"].items()},
        pre_encoded=bool(record["pre_encoded"]),
    )


def forecast_events(path: Path) -> Iterator[ForecastEvent]:
    """Every forecast event of an events file written so far."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and (event := parse_event(line)) is not None:
                yield event
