"""The daemon as `nowcastd demo` runs it: a real `nowcastd serve` process fed by a fake radar.

- `write_config`: the TOML file the daemon reads (`[serve]`, `[reader]`, `[domain]`).
- `deliver`: a scan into the watch directory as a feed should, under a hidden name then renamed.
- `Daemon`: `python -m nowcastd.cli serve --config FILE` as a subprocess; its log goes to a
  file, and each forecast's log line is parsed into a `ForecastLine` (per-stage latency).
  `wait_ready` polls the metrics endpoint for `nowcastd_ready 1`; `stop` sends SIGTERM and
  returns the exit status.
- `scrape` and `metrics_summary`: one real HTTP scrape of the endpoint and the lines a person
  reads from it (scans, rejections, forecasts, latency histogram, compilations after ready).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nowcastd.errors import NowcastdError
from nowcastd.io.atomic import atomic_path
from nowcastd.io.domain import Domain
from nowcastd.io.scan_settings import ReaderConfig

__all__ = [
    "Daemon",
    "ForecastLine",
    "deliver",
    "free_port",
    "metrics_summary",
    "scrape",
    "write_config",
]

_FORECAST = re.compile(r"forecast (?P<file>\S+) from (?P<scan>\S+): (?P<fields>.*)$")
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True, kw_only=True)
class ForecastLine:
    """One forecast as the daemon logged it: file names and seconds per stage."""

    file: str
    scan: str
    seconds: dict[str, float]
    pre_encoded: bool


def parse_forecast_line(line: str) -> ForecastLine | None:
    """The daemon's `forecast F from S: latency=… read=… …` log line, or None for others."""
    match = _FORECAST.search(line)
    if match is None:
        return None
    seconds, pre_encoded = {}, False
    for key, value in _FIELD.findall(match["fields"]):
        if key == "pre_encoded":
            pre_encoded = value == "True"
            continue
        try:
            seconds[key] = float(value)
        except ValueError:
            continue
    return ForecastLine(
        file=match["file"], scan=match["scan"], seconds=seconds, pre_encoded=pre_encoded
    )


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
    """`nowcastd serve --config FILE` as a subprocess (see the module docstring)."""

    def __init__(self, config: Path, *, metrics_port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.log_path = log_path
        self.forecasts: queue.Queue[ForecastLine] = queue.Queue()
        self._log = log_path.open("w", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
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

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._log.write(line)
            self._log.flush()
            parsed = parse_forecast_line(line.rstrip("\n"))
            if parsed is not None:
                self.forecasts.put(parsed)

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
            if _value(families, "nowcastd_ready") == 1:
                return families
            time.sleep(0.25)
        raise NowcastdError(
            f"the daemon was not ready after {timeout_seconds:.0f} s; the end of its log "
            f"({self.log_path}):\n{self.log_tail()}"
        )

    def next_forecast(self, timeout_seconds: float) -> ForecastLine | None:
        """The next forecast the daemon logs, or None after `timeout_seconds`."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                return self.forecasts.get(timeout=max(0.01, min(0.2, timeout_seconds)))
            except queue.Empty:
                self._check_alive("forecasting")
                if time.monotonic() >= deadline:
                    return None

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


def _value(families: dict[str, dict], sample: str, **labels: str) -> float | None:
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
    received = _value(families, "nowcastd_scans_received_total") or 0
    rejected = {
        labels["reason"]: value
        for name, labels, value in families.get("nowcastd_scans_rejected", {}).get("samples", [])
        if name == "nowcastd_scans_rejected_total" and value
    }
    written = _value(families, "nowcastd_forecasts_written_total") or 0
    skipped = _value(families, "nowcastd_scans_skipped_total") or 0
    failures = _total(families, "nowcastd_failures_total")
    compilations = _value(families, "nowcastd_jit_compilations_total") or 0
    latency = "nowcastd_forecast_latency_seconds"
    count = _value(families, f"{latency}_count") or 0
    mean = (_value(families, f"{latency}_sum") or 0) / count if count else float("nan")
    buckets = sorted(_buckets(families, latency))
    quantiles = ", ".join(
        f"p{round(100 * q)} ≤ {_bound(_upper_bound(q, buckets))}" for q in (0.5, 0.9, 0.99)
    )
    stages = []
    for stage in ("read", "transfer", "rollout", "write", "encode"):
        n = _value(families, "nowcastd_stage_duration_seconds_count", stage=stage) or 0
        total = _value(families, "nowcastd_stage_duration_seconds_sum", stage=stage) or 0
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
    return _value(families, "nowcastd_jit_compilations_total") or 0.0
