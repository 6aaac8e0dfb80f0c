"""The demo's run of the daemon (`feed_and_report`): the first scans already in the watch
directory, the daemon started, the rest delivered one by one, a line per forecast event, one
scrape of the metrics, SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from nowcastd.demo.driver import DaemonProcess, deliver
from nowcastd.demo.metrics import metrics_summary, ready_compilations, scrape
from nowcastd.errors import NowcastdError
from nowcastd.serve.events import ForecastEvent
from nowcastd.verification.sequence import ScanFile

__all__ = ["feed_and_report"]


def feed_and_report(
    *,
    config: Path,
    port: int,
    work: Path,
    scans: Sequence[ScanFile],
    preloaded: int,
    cadence_seconds: float,
    say: Callable[[str], None],
) -> int:
    """Run the demo's daemon on `config` (watch directory `work/incoming`, events file
    `work/events.jsonl`): `preloaded` scans are in the watch directory at start-up, the rest
    arrive by rename every `cadence_seconds`; one line per forecast, then the metrics. Returns
    the number of forecasts; NowcastdError when the daemon did not exit 0 after SIGTERM."""
    watch = work / "incoming"
    for scan in scans[:preloaded]:  # already there at start-up: the refill reads them
        deliver(scan.path, watch)
    say(
        f"starting `nowcastd serve --config {config}` (log: {work / 'daemon.log'}); "
        f"{preloaded} scans already in its watch directory"
    )
    t0 = time.perf_counter()
    daemon = DaemonProcess(
        config, metrics_port=port, log_path=work / "daemon.log", events_path=work / "events.jsonl"
    )
    seen = 0
    try:
        ready = daemon.wait_ready(timeout_seconds=600)
        say(f"ready after {time.perf_counter() - t0:.1f} s (model loaded and compiled)")
        _say_header(say, len(scans) - preloaded, cadence_seconds)
        times = {scan.path.name: scan.valid_time for scan in scans}
        for scan in scans[preloaded:]:
            deliver(scan.path, watch)
            seen += _report_forecasts(daemon, times, time.monotonic() + cadence_seconds, say)
        daemon.wait_outcome(scans[-1].path.name, timeout_seconds=60.0)
        seen += _report_forecasts(daemon, times, None, say)
        families = scrape(daemon.url)
        say(f"\nmetrics, one scrape of {daemon.url}:")
        for text in metrics_summary(families, compilations_at_ready=ready_compilations(ready)):
            say(f"  {text}")
    finally:
        code = daemon.stop()
    if code != 0:
        raise NowcastdError(
            f"the daemon exited with status {code} after SIGTERM; the end of its log:\n"
            f"{daemon.log_tail()}"
        )
    say(f"SIGTERM: the daemon finished and exited 0 ({seen} forecasts)")
    return seen


def _say_header(say: Callable[[str], None], count: int, cadence_seconds: float) -> None:
    """What is delivered, what the columns mean, and the columns' heads."""
    say(
        f"delivering {count} scans, one every {cadence_seconds:g} s; "
        "latency: from the scan's arrival to the forecast file in place; queued: until "
        "the daemon's worker took it (a renamed file is read at once)"
    )
    say(
        f"{'scan (UTC)':>16} {'latency':>8} {'queued':>7} {'read':>6} {'motion':>7} "
        f"{'rollout':>8} {'ensemble':>9} {'write':>6}  forecast file"
    )


def _report_forecasts(
    daemon: DaemonProcess,
    times: dict[str, datetime],
    deadline: float | None,
    say: Callable[[str], None],
) -> int:
    """A row for each forecast event until the `deadline` (`time.monotonic`), or for those
    already written with None; how many."""
    seen = 0
    while True:
        left = 0.0 if deadline is None else deadline - time.monotonic()
        event = daemon.next_forecast(left)
        if event is None:
            return seen
        seen += 1
        say(_forecast_row(event, times))


def _forecast_row(event: ForecastEvent, times: dict[str, datetime]) -> str:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{1e3 * value:.0f}"

    stages = event.seconds
    valid = times.get(event.scan)
    when = f"{valid:%Y-%m-%d %H:%M}" if valid else event.scan
    note = "" if event.pre_encoded else " (not pre-encoded)"
    return (
        f"{when:>16} {ms(event.latency):>5} ms {ms(event.queued):>4} ms "
        f"{ms(stages.get('read')):>3} ms {ms(stages.get('motion')):>4} ms "
        f"{ms(stages.get('rollout')):>5} ms {ms(stages.get('ensemble')):>6} ms "
        f"{ms(stages.get('write')):>3} ms  {event.file}{note}"
    )
