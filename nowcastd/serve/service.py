"""The `nowcastd serve` process: watcher thread → queue → one worker that forecasts.

Start-up: metrics endpoint, model compile (every function, for the operational shape), removal
of temporary files a crash left, the scan reader process, the watcher, then a refill of the buffer from the newest scans already in the watch directory;
only then `READY=1`. So a restart forecasts at the next scan, not `input_length` scans later.

The worker (the main thread) takes every queued scan and steps the pipeline with them
(`Pipeline.step`: read, admitted, buffered in valid-time order, one forecast from the
newest); each scan comes back as one `Outcome` (`serve.outcome`), which `_record` logs,
counts and writes as an event line (`events_file`, `serve.events`): the one place outcomes
are counted. When it falls behind, the scans it did not forecast from are counted in
`nowcastd_scans_skipped_total`. The service holds no stage: it queues, steps, counts, pings
systemd and handles signals. A ping thread feeds the systemd watchdog while the worker makes
progress; a worker without progress for `stall_seconds` gets no more pings, so systemd
restarts the unit. Once a second the worker checks that the watch directory is still the one
watched, and re-arms the watch when it was replaced. The one `ServeConfig` is the pipeline's,
and SIGHUP replaces it whole.

The pipeline turns a refused scan or a failed stage into an outcome, logged and counted here,
and the loop goes on; so is any exception raised while a stage handles one scan (a failure
with reason "internal"), at start-up's refill as later, so no file in the watch directory can
stop a start. Only a failure of the daemon itself (its loop, its configuration, the model)
ends the process (systemd restarts it).

Signals: SIGTERM and SIGINT finish the current forecast, stop the watcher and exit 0.
SIGHUP re-reads the config file (flags given at start still win) and applies what needs no
recompilation: log level, retention, reader settings (Z-R, format). A change of any other
key (paths, model, domain, leads, timing, metrics) is logged as needing a restart. Logs go to
stderr (the journal), so there are no log files to reopen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nowcastd import __version__
from nowcastd.errors import NowcastdError
from nowcastd.io.atomic import is_ignored_name
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.serve.buffer import Push
from nowcastd.serve.config import ServeConfig, load_serve_config
from nowcastd.serve.events import EventLog, event_record
from nowcastd.serve.guards import (
    DirectoryIdentity,
    DirectoryState,
    check_directories,
    remove_litter,
)
from nowcastd.serve.labels import Stage
from nowcastd.serve.metrics import CompileCounter, ServiceMetrics
from nowcastd.serve.notify import Notifier, watchdog_interval_seconds
from nowcastd.serve.outcome import Buffered, Failed, Outcome, Rejected, Written
from nowcastd.serve.pipeline import Pipeline, PipelineStatus
from nowcastd.serve.watcher import ScanEvent, ScanWatcher

__all__ = ["Service"]

logger = logging.getLogger(__name__)

#: Settings a SIGHUP applies; every other change needs a restart.
RELOADABLE = ("log_level", "retention_keep_last", "retention_max_age_hours", "reader")
_TICK_SECONDS = 0.2
_DIR_CHECK_SECONDS = 1.0


class Service:
    """One radar's daemon: `run()` blocks until SIGTERM/SIGINT and returns the exit code."""

    def __init__(
        self,
        cfg: ServeConfig,
        model: LoadedModel,
        *,
        config_path: Path | None = None,
        flags: Mapping[str, Any] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        watch_dir, output_dir = cfg.served_dirs()
        check_directories(watch_dir, output_dir)
        self.config_path = config_path
        self.flags = dict(flags or {})
        self.notifier = notifier or Notifier.from_environment()
        self.metrics = ServiceMetrics(
            model_name=model.cfg.model_name, checkpoint_digest=model.digest, version=__version__
        )
        # Counts every compilation from here on, the buffer's update function included.
        self.compile_counter = CompileCounter(on_compile=self.metrics.record_compilation)
        self.pipeline = Pipeline(
            cfg, model, metrics=self.metrics, isolate_reads=True, retention=True
        )
        self.watcher = self._new_watcher()
        self._watch_dir = DirectoryIdentity(watch_dir)
        self._last_dir_check = 0.0
        self._watch_dir_missing = False
        self._progress = time.monotonic()
        self._started = threading.Event()  # READY=1 sent: the stall rule applies from then
        self._pinger: threading.Thread | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._seen: dict[Path, tuple[int, int]] = {}
        self._last_forecast: float | None = None
        self._events: EventLog | None = None
        self.compilations_at_ready: int | None = None
        self.metrics.buffer_capacity_frames.set(self.pipeline.status().capacity)

    @property
    def cfg(self) -> ServeConfig:
        """The one config, held by the pipeline; a SIGHUP replaces it whole."""
        return self.pipeline.cfg

    def _new_watcher(self, events: queue.Queue[ScanEvent] | None = None) -> ScanWatcher:
        cfg = self.cfg
        watch_dir, _ = cfg.served_dirs()
        return ScanWatcher(
            watch_dir,
            poll=cfg.poll,
            poll_interval_seconds=cfg.poll_interval_seconds,
            settle_seconds=cfg.settle_seconds,
            debounce_seconds=cfg.debounce_seconds,
            events=events,
        )

    # -- signals -----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            logger.info(
                "%s: finishing the current forecast, then exiting", signal.strsignal(signum)
            )
            self._stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    # -- lifetime ----------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        self.notifier.status("compiling the model")
        server, _ = self.metrics.start_http_server(self.cfg.metrics_port, self.cfg.metrics_addr)
        counter = self.compile_counter
        self._start_pinger()
        try:
            self.pipeline.compile()
            _, output_dir = self.cfg.served_dirs()
            output_dir.mkdir(parents=True, exist_ok=True)
            remove_litter(output_dir)
            if self.cfg.events_file is not None:
                self._events = EventLog(self.cfg.events_file)
            self.pipeline.start()
            self._watch_dir.remember()
            self.watcher.start()
            self.metrics.watch_dir_present.set(1)
            self.refill()
            self.compilations_at_ready = counter.count
            self.metrics.mark_ready()
            self._progress = time.monotonic()
            self._started.set()
            self.notifier.ready(self._status_line())
            status = self.pipeline.status()
            logger.info(
                "ready: %d XLA compilations, buffer %d/%d",
                counter.count,
                status.frames,
                status.capacity,
            )
            while not self._stop.is_set():
                self._turn()
            after = counter.count - self.compilations_at_ready
            logger.info("stopping: %d XLA compilations after ready", after)
        finally:
            self.notifier.stopping("stopping")
            self._stop.set()
            self.watcher.stop()
            for failed in self.pipeline.close():
                self._record(failed, scan=False)
            if self._events is not None:
                self._events.close()
            counter.close()
            server.shutdown()
            server.server_close()
        return 0

    # -- liveness ----------------------------------------------------------------------------

    def _start_pinger(self) -> None:
        interval = watchdog_interval_seconds()
        if interval is None:
            return
        self._pinger = threading.Thread(
            target=self._ping_loop, args=(interval / 2,), name="watchdog-ping", daemon=True
        )
        self._pinger.start()

    def _ping_loop(self, period: float) -> None:
        """Ping the systemd watchdog while the worker makes progress (always before READY)."""
        withheld = False
        while not self._stop.wait(period):
            age = time.monotonic() - self._progress
            if not self._started.is_set() or age <= self.cfg.stall_seconds:
                if withheld:
                    logger.warning("worker progressing again; watchdog pings resumed")
                withheld = False
                self.notifier.watchdog()
                continue
            if not withheld:
                logger.error(
                    "worker stalled: no progress for %.1f s (stall_seconds %g); "
                    "withholding the watchdog ping so that systemd restarts the service",
                    age,
                    self.cfg.stall_seconds,
                )
            withheld = True
            self.metrics.watchdog_withheld.inc()

    def _turn(self) -> None:
        """One turn of the worker loop: progress, the watch dir, maybe reload, the queue."""
        self._progress = time.monotonic()
        self._check_watch_dir()
        if self._reload.is_set():
            self._reload.clear()
            try:
                self.reload()
            except (NowcastdError, OSError) as e:
                logger.error("reload failed for config: %s", e)
                self.metrics.fail(Stage.RELOAD)
        try:
            first = self.watcher.queue.get(timeout=_TICK_SECONDS)
        except queue.Empty:
            return
        batch = [first]
        while True:
            try:
                batch.append(self.watcher.queue.get_nowait())
            except queue.Empty:
                break
        self.handle(batch)

    def _check_watch_dir(self) -> None:
        """Re-arm the watch when the watch directory was removed or replaced (once a second)."""
        now = time.monotonic()
        if now - self._last_dir_check < _DIR_CHECK_SECONDS:
            return
        self._last_dir_check = now
        state = self._watch_dir.check()
        m = self.metrics
        if state is DirectoryState.SAME:
            return
        if state is DirectoryState.MISSING:
            if not self._watch_dir_missing:
                logger.error("watch_dir %s vanished; waiting for it to return", self.cfg.watch_dir)
                m.watch_dir_present.set(0)
            self._watch_dir_missing = True
            return
        self._watch_dir_missing = False
        logger.warning("watch_dir %s was replaced; watching the new one", self.cfg.watch_dir)
        since = time.time() - _DIR_CHECK_SECONDS - 1.0
        self.watcher.stop()
        self.watcher = self._new_watcher(self.watcher.queue)
        self._watch_dir.remember()
        try:
            self.watcher.start()
        except (OSError, NowcastdError) as e:
            logger.error("watch_dir %s: cannot watch it: %s", self.cfg.watch_dir, e)
            self._watch_dir.identity = None
            return
        m.watch_dir_rearms.inc()
        m.watch_dir_present.set(1)
        # Files that landed before the new watch began: handed on like new ones.
        watch_dir, _ = self.cfg.served_dirs()
        for path, mtime in _entries(watch_dir):
            if mtime >= since * 1e9:
                self.watcher.queue.put(ScanEvent(path=path, event_time=time.monotonic()))

    # -- work --------------------------------------------------------------------------------

    def _fresh(self, event: ScanEvent) -> bool:
        """False for a second event about a file already handled, unchanged."""
        try:
            st = os.stat(event.path)
        except OSError:
            return True  # the read will report it
        stamp = (st.st_size, st.st_mtime_ns)
        if self._seen.get(event.path) == stamp:
            logger.debug("%s: already handled, unchanged", event.path.name)
            return False
        self._remember(event.path, stamp)
        return True

    def _remember(self, path: Path, stamp: tuple[int, int]) -> None:
        self._seen[path] = stamp
        while len(self._seen) > 256:
            del self._seen[next(iter(self._seen))]

    def handle(self, events: Sequence[ScanEvent]) -> list[Outcome]:
        """Step the pipeline with the scans of `events`; record each outcome."""
        started = time.monotonic()
        fresh = [event for event in events if self._fresh(event)]
        outcomes = self.pipeline.step([e.path for e in fresh], datetime.now(UTC))
        for event, outcome in zip(fresh, outcomes, strict=True):
            self._record(outcome, event=event, started=started)
        self._progress = time.monotonic()
        self._update_buffer_gauges()
        return outcomes

    def refill(self) -> int:
        """Fill the buffer from the newest scans already in the watch directory (the same
        rules as for new scans; `Pipeline.refill`); returns the frames buffered."""
        watch_dir, _ = self.cfg.served_dirs()
        candidates = sorted(_entries(watch_dir), key=lambda item: item[1], reverse=True)
        outcomes = self.pipeline.refill([path for path, _ in candidates], datetime.now(UTC))
        for outcome in outcomes:
            with contextlib.suppress(OSError):
                st = outcome.path.stat()
                self._remember(outcome.path, (st.st_size, st.st_mtime_ns))
            self._record(outcome)
        status = self._update_buffer_gauges()
        logger.info(
            "refill: %d of %d scans in the buffer from %s",
            status.frames,
            status.capacity,
            watch_dir,
        )
        return status.frames

    def _update_buffer_gauges(self) -> PipelineStatus:
        status = self.pipeline.status()
        self.metrics.buffer_frames.set(status.frames)
        if status.newest_time is not None:
            self.metrics.newest_scan_valid_time.set(status.newest_time.timestamp())
        return status

    # -- the one place outcomes are counted --------------------------------------------------

    def _record(
        self,
        outcome: Outcome,
        *,
        scan: bool = True,
        event: ScanEvent | None = None,
        started: float | None = None,
    ) -> None:
        """Log, count and write the event line of one outcome (and of its housekeeping);
        `scan`: the outcome of a scan received (not of housekeeping)."""
        m = self.metrics
        latency = queued = 0.0
        if event is not None and started is not None:
            done = outcome.in_place if isinstance(outcome, Written) else time.monotonic()
            latency = done - event.event_time
            queued = started - event.event_time  # the watcher's quiet time + the queue
        if scan:
            m.scans_received.inc()
        if isinstance(outcome, Failed):
            logger.error(
                "%s failed for %s (%s): %s",
                outcome.stage,
                outcome.name,
                outcome.reason,
                outcome.detail,
            )
            m.fail(outcome.stage)
        elif isinstance(outcome, Rejected):
            logger.warning("rejected (%s): %s", outcome.reason, outcome.detail)
            m.reject(outcome.reason)
        elif isinstance(outcome, Buffered | Written) and outcome.push is Push.RESET:
            m.buffer_resets.inc()
        if isinstance(outcome, Buffered) and outcome.skipped:
            m.scans_skipped.inc()
            logger.warning("behind: %s skipped, a newer scan gets the forecast", outcome.name)
        if isinstance(outcome, Written):
            self._record_forecast(outcome, latency=latency, queued=queued)
        if self._events is not None:
            self._events.write(event_record(outcome, latency=latency, queued=queued))
        for failed in outcome.housekeeping:
            self._record(failed, scan=False)

    def _record_forecast(self, outcome: Written, *, latency: float, queued: float) -> None:
        m = self.metrics
        m.forecast_latency.observe(latency)
        m.forecasts_written.inc()
        self._last_forecast = time.time()
        m.last_forecast_time.set(self._last_forecast)
        stages = " ".join(f"{k}={v:.4f}" for k, v in sorted(outcome.timings.items()))
        logger.info(
            "forecast %s from %s: latency=%.4f queued=%.4f %s pre_encoded=%s",
            outcome.file.name,
            outcome.name,
            latency,
            queued,
            stages,
            outcome.forecast.pre_encoded,
        )
        self.notifier.status(self._status_line())

    def reload(self) -> None:
        """SIGHUP: re-read the config; apply the reloadable settings, warn about the rest."""
        self.notifier.reloading("reloading the config")
        try:
            old = self.cfg
            new = load_serve_config(self.config_path, flags=self.flags)
            changed = [
                f.name
                for f in dataclasses.fields(ServeConfig)
                if getattr(new, f.name) != getattr(old, f.name)
            ]
            applied = {k: getattr(new, k) for k in changed if k in RELOADABLE}
            for key in sorted(set(changed) - set(applied)):
                logger.warning("reload: %s changed; it takes effect after a restart", key)
            self.pipeline.reconfigure(dataclasses.replace(old, **applied))
            logging.getLogger().setLevel(self.cfg.log_level)
            logger.info("reload: applied %s", sorted(applied) or "nothing")
        finally:
            self.notifier.ready(self._status_line())

    def _status_line(self) -> str:
        status = self.pipeline.status()
        last = self._last_forecast
        when = (
            "none yet" if last is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last))
        )
        newest = status.newest_time
        newest_text = newest.strftime("%Y-%m-%dT%H:%MZ") if newest else "none"
        return (
            f"last forecast {when}; newest scan {newest_text}; "
            f"buffer {status.frames}/{status.capacity}"
        )


def _entries(directory: Path) -> list[tuple[Path, int]]:
    """(path, mtime in ns) of every entry of `directory` that is no directory and no ignored
    name; a FIFO or symlink is listed too, so that reading it refuses it visibly."""
    found = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if is_ignored_name(entry.name) or entry.is_dir(follow_symlinks=False):
                        continue
                    found.append((Path(entry.path), entry.stat(follow_symlinks=False).st_mtime_ns))
                except OSError:
                    continue
    except OSError as e:
        logger.error("cannot list %s: %s", directory, e)
    return found
