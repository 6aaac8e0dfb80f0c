"""The daemon as `nowcastd demo` runs it: a real `nowcastd serve` process fed by a fake radar.

- `write_config`: the TOML file the daemon reads (`[serve]`, `[reader]`, `[domain]`).
- `deliver`: a scan into the watch directory as a feed should, under a hidden name then renamed.
- `Daemon`: `python -m nowcastd.cli serve --config FILE` as a subprocess; its log goes to a
  file, and its `events_file` is followed: each forecast arrives as a `ForecastEvent`
  (`serve.events`, per-stage latency), never parsed out of the human log. `wait_ready` polls
  the metrics endpoint for `nowcastd_ready 1`; `stop` sends SIGTERM and returns the exit
  status.
- `scrape` and `metrics_summary`: one real HTTP scrape of the endpoint and the lines a person
  reads from it (scans, rejections, forecasts, latency histogram, compilations after ready).
- `feed_and_report`: the demo's run: the first scans already in the watch directory, the
  daemon started, the rest delivered one by one, a line per forecast event, one scrape, SIGTERM.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

from nowcastd.errors import NowcastdError
from nowcastd.io.atomic import atomic_path
from nowcastd.io.domain import Domain
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.serve.events import ForecastEvent, event_scan, parse_event
from nowcastd.serve.metrics import STAGES
from nowcastd.verification.sequence import ScanFile

__all__ = [
    "Daemon",
    "deliver",
    "feed_and_report",
    "free_port",
    "metrics_summary",
    "scrape",
    "value",
    "write_config",
]

#: How often the events file is read for new lines.
_FOLLOW_SECONDS = 0.005


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write_config(
    path: Path,
    *,
    serve: dict[str, object],
    reader: ReaderConfig,
    domain: Domain,
) -> Path:
    """The daemon's config file: `[serve]` as given, the reader and the domain (unset keys
    left out)."""
    tables = {
        "serve": serve,
        "reader": {k: getattr(reader, k) for k in reader.__dataclass_fields__},
        "domain": {k: getattr(domain, k) for k in domain.__dataclass_fields__},
    }
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def deliver(scan: Path, watch_dir: Path) -> Path:
    """Copy `scan` into `watch_dir` under a hidden name, then rename it into place."""
    final = watch_dir / scan.name
    with atomic_path(final) as tmp:
        shutil.copyfile(scan, tmp)
    return final


class Daemon:
    """`nowcastd serve --config FILE` as a subprocess (see the module docstring); the config
    names `events_path` as its `events_file`."""

    def __init__(
        self,
        config: Path,
        *,
        metrics_port: int,
        log_path: Path,
        events_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.log_path = log_path
        self.events_path = events_path
        self.forecasts: queue.Queue[ForecastEvent] = queue.Queue()
        self._settled: set[str] = set()  # scans with an outcome (any event)
        self._settled_changed = threading.Condition()
        self._log = log_path.open("w", encoding="utf-8")
        self._done = threading.Event()
        env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nowcastd.cli", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name="demo-daemon-log", daemon=True
        )
        self._reader.start()
        self._follower = threading.Thread(
            target=self._follow, name="demo-daemon-events", daemon=True
        )
        self._follower.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._log.write(line)
            self._log.flush()

    def _follow(self) -> None:
        """Queue each forecast event of the events file as its line is complete."""
        offset, partial = 0, ""
        while not self._done.wait(_FOLLOW_SECONDS):
            try:
                with self.events_path.open(encoding="utf-8") as f:
                    f.seek(offset)
                    text = f.read()
                    offset = f.tell()
            except FileNotFoundError:
                continue
            *lines, partial = (partial + text).split("\n")
            for line in lines:
                event = parse_event(line)
                if event is not None:
                    self.forecasts.put(event)
                with self._settled_changed:
                    self._settled.add(event_scan(line))
                    self._settled_changed.notify_all()

    def log_tail(self, lines: int = 8) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _check_alive(self, doing: str) -> None:
        code = self.process.poll()
        if code is not None:
            self._reader.join(timeout=5)
            raise NowcastdError(
                f"the daemon exited with status {code} while {doing}; the end of its log "
                f"({self.log_path}):\n{self.log_tail()}"
            )

    def wait_ready(self, timeout_seconds: float) -> dict[str, dict]:
        """Poll the metrics endpoint until `nowcastd_ready` is 1; returns that scrape."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            self._check_alive("starting")
            try:
                families = scrape(self.url, timeout_seconds=2.0)
            except OSError:
                families = {}
            if value(families, "nowcastd_ready") == 1:
                return families
            time.sleep(0.25)
        raise NowcastdError(
            f"the daemon was not ready after {timeout_seconds:.0f} s; the end of its log "
            f"({self.log_path}):\n{self.log_tail()}"
        )

    def next_forecast(self, timeout_seconds: float) -> ForecastEvent | None:
        """The next forecast event of the daemon, or None after `timeout_seconds`."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                return self.forecasts.get(timeout=max(0.01, min(0.2, timeout_seconds)))
            except queue.Empty:
                self._check_alive("forecasting")
                if time.monotonic() >= deadline:
                    return None

    def wait_outcome(self, scan: str, timeout_seconds: float) -> bool:
        """Wait until the events file holds the outcome of the scan named `scan` (a forecast,
        or its buffering, rejection or failure); False after `timeout_seconds`. A forecast
        event is queued before its scan counts as settled."""
        deadline = time.monotonic() + timeout_seconds
        with self._settled_changed:
            while scan not in self._settled:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._check_alive("forecasting")
                self._settled_changed.wait(min(0.2, left))
        return True

    def stop(self, timeout_seconds: float = 60.0) -> int:
        """SIGTERM (the daemon finishes its forecast and exits); its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        self._done.set()
        self._follower.join(timeout=5)
        self._log.close()
        return int(self.process.returncode)


def scrape(url: str, *, timeout_seconds: float = 5.0) -> dict[str, dict]:
    """One HTTP scrape: {family name: {"type": ..., "samples": [(name, labels, value)]}}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
        text = response.read().decode("utf-8")
    return {
        family.name: {
            "type": family.type,
            "samples": [(s.name, dict(s.labels), float(s.value)) for s in family.samples],
        }
        for family in text_string_to_metric_families(text)
    }


def value(families: dict[str, dict], sample: str, **labels: str) -> float | None:
    """The value of one sample in a scrape (None if absent)."""
    for family in families.values():
        for name, sample_labels, value in family["samples"]:
            if name == sample and all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
    return None


def _total(families: dict[str, dict], sample: str) -> float:
    return sum(
        value
        for family in families.values()
        for name, _, value in family["samples"]
        if name == sample
    )


def _buckets(families: dict[str, dict], family: str, **labels: str) -> list[tuple[float, float]]:
    samples = families.get(family, {}).get("samples", [])
    return [
        (float(lab["le"]), value)
        for name, lab, value in samples
        if name == f"{family}_bucket" and all(lab.get(k) == v for k, v in labels.items())
    ]


def _upper_bound(q: float, buckets: list[tuple[float, float]]) -> float:
    """The upper bound of the bucket holding quantile `q` (what the histogram can say)."""
    total = buckets[-1][1] if buckets else 0.0
    for upper, count in buckets:
        if total and count >= q * total:
            return upper
    return float("nan")


def _bound(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds:g} s"


def _ms(seconds: float) -> str:
    return "—" if seconds != seconds else f"{1e3 * seconds:.0f} ms"


def metrics_summary(families: dict[str, dict], *, compilations_at_ready: float) -> list[str]:
    """What a person reads from one scrape of the daemon's metrics."""
    received = value(families, "nowcastd_scans_received_total") or 0
    rejected = {
        labels["reason"]: value
        for name, labels, value in families.get("nowcastd_scans_rejected", {}).get("samples", [])
        if name == "nowcastd_scans_rejected_total" and value
    }
    written = value(families, "nowcastd_forecasts_written_total") or 0
    skipped = value(families, "nowcastd_scans_skipped_total") or 0
    failures = _total(families, "nowcastd_failures_total")
    compilations = value(families, "nowcastd_jit_compilations_total") or 0
    latency = "nowcastd_forecast_latency_seconds"
    count = value(families, f"{latency}_count") or 0
    mean = (value(families, f"{latency}_sum") or 0) / count if count else float("nan")
    buckets = sorted(_buckets(families, latency))
    quantiles = ", ".join(
        f"p{round(100 * q)} ≤ {_bound(_upper_bound(q, buckets))}" for q in (0.5, 0.9, 0.99)
    )
    stages = []
    for stage in STAGES:
        n = value(families, "nowcastd_stage_duration_seconds_count", stage=stage) or 0
        total = value(families, "nowcastd_stage_duration_seconds_sum", stage=stage) or 0
        if n:
            stages.append(f"{stage} {_ms(total / n)}")
    rejected_text = ", ".join(f"{k} {v:g}" for k, v in rejected.items()) or "none"
    return [
        f"scans received {received:g} (rejected: {rejected_text}; skipped {skipped:g}), "
        f"forecasts written {written:g}, failures {failures:g}",
        f"forecast latency, scan event to file (n={count:g}): mean {_ms(mean)}, {quantiles} "
        "(histogram buckets)",
        "mean per stage: " + (", ".join(stages) or "none"),
        f"XLA compilations: {compilations_at_ready:g} at start-up, "
        f"{compilations - compilations_at_ready:g} after ready",
    ]


def ready_compilations(families: dict[str, dict]) -> float:
    """`nowcastd_jit_compilations_total` in a scrape (0 if absent)."""
    return value(families, "nowcastd_jit_compilations_total") or 0.0


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
    daemon = Daemon(
        config, metrics_port=port, log_path=work / "daemon.log", events_path=work / "events.jsonl"
    )
    seen = 0
    try:
        ready = daemon.wait_ready(timeout_seconds=600)
        say(f"ready after {time.perf_counter() - t0:.1f} s (model loaded and compiled)")
        say(
            f"delivering {len(scans) - preloaded} scans, one every {cadence_seconds:g} s; "
            "latency: from the scan's arrival to the forecast file in place; queued: until "
            "the daemon's worker took it (a renamed file is read at once)"
        )
        say(
            f"{'scan (UTC)':>16} {'latency':>8} {'queued':>7} {'read':>6} {'motion':>7} "
            f"{'rollout':>8} {'write':>6}  forecast file"
        )
        times = {scan.path.name: scan.valid_time for scan in scans}
        for scan in scans[preloaded:]:
            deliver(scan.path, watch)
            deadline = time.monotonic() + cadence_seconds
            while (event := daemon.next_forecast(deadline - time.monotonic())) is not None:
                seen += 1
                say(_forecast_row(event, times))
        daemon.wait_outcome(scans[-1].path.name, timeout_seconds=60.0)
        while (event := daemon.next_forecast(0.0)) is not None:
            seen += 1
            say(_forecast_row(event, times))
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
        f"{ms(stages.get('rollout')):>5} ms "
        f"{ms(stages.get('write')):>3} ms  {event.file}{note}"
    )
