"""The daemon driven from outside: a real `nowcastd serve` process, as `nowcastd demo` and the
daemon's tests run it.

- `write_config`: the TOML file the daemon reads (`[serve]`, `[reader]`, `[domain]`).
- `deliver`: a scan into the watch directory as a feed should, under a hidden name then renamed.
- `DaemonProcess`: `python -m nowcastd.cli serve --config FILE` as a subprocess, its output
  in a log file. Given the config's `events_file`, it follows that file: each forecast arrives
  as a `ForecastEvent` (`serve.events`, per-stage latency), never parsed out of the human log.
  `wait_ready` polls the metrics endpoint for `nowcastd_ready 1`; `stop` sends SIGTERM and
  returns the exit status.
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
from pathlib import Path

from nowcastd.demo.metrics import Families, scrape, value
from nowcastd.errors import NowcastdError
from nowcastd.io.atomic import atomic_path
from nowcastd.io.domain import Domain
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.serve.events import ForecastEvent, event_scan, parse_event

__all__ = ["DaemonProcess", "deliver", "free_port", "write_config"]

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


class DaemonProcess:
    """`nowcastd serve --config FILE` as a subprocess, started at once (see the module
    docstring). Its output goes to `log_path`, after what the file holds with `append_log` (a
    restarted daemon's log goes on). `events_path` is the config's `events_file`, followed
    for `next_forecast` and `wait_outcome`; None: not followed. `env` adds to this process's
    environment."""

    def __init__(
        self,
        config: Path,
        *,
        metrics_port: int,
        log_path: Path,
        events_path: Path | None = None,
        env: dict[str, str] | None = None,
        append_log: bool = False,
    ) -> None:
        self.url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.log_path = log_path
        self.events_path = events_path
        self.forecasts: queue.Queue[ForecastEvent] = queue.Queue()
        self._settled: set[str] = set()  # scans with an outcome (any event)
        self._settled_changed = threading.Condition()
        self._done = threading.Event()
        command = [sys.executable, "-m", "nowcastd.cli", "serve", "--config", str(config)]
        with log_path.open("ab" if append_log else "wb") as log:  # the daemon holds its own copy
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            )
        self._follower: threading.Thread | None = None
        if events_path is not None:
            self._follower = threading.Thread(
                target=self._follow, args=(events_path,), name="daemon-events", daemon=True
            )
            self._follower.start()

    def _follow(self, events_path: Path) -> None:
        """Queue each forecast event of the events file as its line is complete."""
        offset, partial = 0, ""
        while not self._done.wait(_FOLLOW_SECONDS):
            try:
                with events_path.open(encoding="utf-8") as f:
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
            raise NowcastdError(
                f"the daemon exited with status {code} while {doing}; the end of its log "
                f"({self.log_path}):\n{self.log_tail()}"
            )

    def wait_ready(self, timeout_seconds: float) -> Families:
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
        self._done.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
        return int(self.process.returncode)
