"""The `nowcastd serve` process: watcher thread → queue → one worker that forecasts.

Start-up: metrics endpoint, model compile (every function, for the operational shape), removal
of temporary files a crash left, the scan reader process, the watcher, then a refill of the buffer from the newest scans already in the watch directory;
only then `READY=1`. So a restart forecasts at the next scan, not `input_length` scans later.

The worker (the main thread) takes every queued scan, reads them, pushes them into the buffer
in valid-time order, and forecasts once from the newest full buffer: when it falls behind,
the scans it did not forecast from are counted in `nowcastd_scans_skipped_total`. After each
forecast is written it starts pre-encoding the next window on a background thread, so the worker
is back at the queue at once (a scan that lands meanwhile is read while the encode finishes;
see `forecaster`). Scans are read in a killable worker process (`read_worker`) and pass the
plausibility rules (`Pipeline.admit`) before they are buffered. A ping thread feeds the systemd
watchdog while the worker makes progress; a worker without progress for `stall_seconds` gets
no more pings, so systemd restarts the unit. Once a second the worker checks that the watch
directory is still the one watched, and re-arms the watch when it was replaced. It sees the pipeline only through values: `Frame`, `Forecast` and
`PipelineStatus`; the one `ServeConfig` is the pipeline's, and SIGHUP replaces it whole.

Errors are caught in one place, `_attempt`: a refused scan is logged and counted by reason, a
failed stage by stage, and the loop goes on. Anything else is a bug and ends the process
(systemd restarts it).

Signals: SIGTERM and SIGINT finish the current forecast, stop the watcher and exit 0.
SIGHUP re-reads the config file (flags given at start still win) and applies what needs no
recompilation: log level, retention, reader settings (Z-R, format). A change of any other
key (paths, model, domain, leads, timing, metrics) is logged as needing a restart. Logs go to
stderr (the journal), so there are no log files to reopen.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nowcastd import __version__
from nowcastd.errors import NowcastdError
from nowcastd.io.atomic import is_ignored_name
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.io.readers import printable
from nowcastd.serve.buffer import Push
from nowcastd.serve.config import ServeConfig, load_serve_config
from nowcastd.serve.guards import (
    DirectoryIdentity,
    EscapeLogLines,
    check_directories,
    remove_litter,
)
from nowcastd.serve.metrics import CompileCounter, ServiceMetrics
from nowcastd.serve.notify import Notifier, watchdog_interval_seconds
from nowcastd.serve.pipeline import Forecast, Frame, Pipeline, ScanRejected
from nowcastd.serve.watcher import ScanEvent, ScanWatcher

__all__ = ["Service"]

logger = logging.getLogger(__name__)

#: Settings a SIGHUP applies; every other change needs a restart.
RELOADABLE = ("log_level", "retention_keep_last", "retention_max_age_hours", "reader")
_FAILED = object()
_TICK_SECONDS = 0.2
_DIR_CHECK_SECONDS = 1.0
#: The refill reads at most this many times the buffer's capacity of files.
_REFILL_TRIES = 8


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
        cfg.require("watch_dir", "output_dir")
        check_directories(cfg.watch_dir, cfg.output_dir)
        self.config_path = config_path
        self.flags = dict(flags or {})
        self.notifier = notifier or Notifier.from_environment()
        self.metrics = ServiceMetrics(
            model_name=model.cfg.model_name, checkpoint_digest=model.digest, version=__version__
        )
        # Counts every compilation from here on, the buffer's update function included.
        self.compile_counter = CompileCounter(on_compile=self.metrics.record_compilation)
        self.pipeline = Pipeline(cfg, model, metrics=self.metrics, isolate_reads=True)
        self.watcher = self._new_watcher()
        self._watch_dir = DirectoryIdentity(cfg.watch_dir)
        self._last_dir_check = 0.0
        self._watch_dir_missing = False
        self._progress = time.monotonic()
        self._started = threading.Event()  # READY=1 sent: the stall rule applies from then
        self._pinger: threading.Thread | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._seen: dict[Path, tuple[int, int]] = {}
        self._last_forecast: float | None = None
        self._handle_start = 0.0
        self.compilations_at_ready: int | None = None
        self.metrics.buffer_capacity_frames.set(self.pipeline.status().capacity)

    @property
    def cfg(self) -> ServeConfig:
        """The one config, held by the pipeline; a SIGHUP replaces it whole."""
        return self.pipeline.cfg

    def _new_watcher(self, events: queue.Queue[ScanEvent] | None = None) -> ScanWatcher:
        cfg = self.cfg
        return ScanWatcher(
            cfg.watch_dir,
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
        escape = EscapeLogLines()
        handlers = logging.getLogger().handlers
        for handler in handlers:
            handler.addFilter(escape)
        self.notifier.status("compiling the model")
        server, _ = self.metrics.start_http_server(self.cfg.metrics_port, self.cfg.metrics_addr)
        counter = self.compile_counter
        self._start_pinger()
        try:
            self.pipeline.compile()
            self.cfg.output_dir.mkdir(parents=True, exist_ok=True)
            remove_litter(self.cfg.output_dir)
            self.pipeline.read_worker.start()
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
            self._attempt("encode", "the next window", self.pipeline.wait_pre_encode)
            self._stop.set()
            self.watcher.stop()
            self.pipeline.read_worker.close()
            counter.close()
            server.shutdown()
            server.server_close()
            for handler in handlers:
                handler.removeFilter(escape)
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
            self._attempt("reload", "config", self.reload)
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
        if state == "same":
            return
        if state == "missing":
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
        for path, mtime in _entries(self.cfg.watch_dir):
            if mtime >= since * 1e9:
                self.watcher.queue.put(ScanEvent(path=path, event_time=time.monotonic()))

    # -- the one place errors are caught -----------------------------------------------------

    def _attempt(
        self, stage: str, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        try:
            return func(*args, **kwargs)
        except ScanRejected as e:
            logger.warning("rejected (%s): %s", e.reason, e)
            self.metrics.reject(e.reason)
        except (NowcastdError, OSError) as e:
            logger.error("%s failed for %s: %s", stage, name, e)
            self.metrics.fail(stage)
        return _FAILED

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
        self._seen[event.path] = stamp
        while len(self._seen) > 256:
            del self._seen[next(iter(self._seen))]
        return True

    def handle(self, events: list[ScanEvent]) -> Path | None:
        """Read the scans, buffer them in time order, forecast once from the newest."""
        pipe, m = self.pipeline, self.metrics
        self._handle_start = time.monotonic()
        read: list[tuple[Frame, ScanEvent]] = []
        for event in filter(self._fresh, events):
            m.scans_received.inc()
            frame = self._attempt("read", printable(event.path.name), pipe.read, event.path)
            self._progress = time.monotonic()
            if frame is not _FAILED:
                read.append((frame, event))
        read.sort(key=lambda pair: pair[0].valid_time)
        encode_wait = self._attempt("encode", "the next window", pipe.wait_pre_encode)
        forecastable = 0
        newest: ScanEvent | None = None
        for frame, event in read:
            outcome = self._attempt("transfer", frame.name, self._push, frame, None)
            if outcome in (Push.DUPLICATE, Push.OUT_OF_ORDER):
                m.reject(outcome.value)
            elif outcome is Push.RESET:
                m.buffer_resets.inc()
            if outcome is not _FAILED and outcome.accepted:
                m.newest_scan_valid_time.set(frame.valid_time.timestamp())
                newest = event
                forecastable += pipe.status().full
        status = pipe.status()
        m.buffer_frames.set(status.frames)
        if newest is None or not status.full:
            return None
        if forecastable > 1:
            m.scans_skipped.inc(forecastable - 1)
            logger.warning("behind: forecasting the newest scan only, %d skipped", forecastable - 1)
        waited = {} if encode_wait is _FAILED else {"encode_wait": encode_wait}
        return self._forecast(newest, waited)

    def _forecast(self, event: ScanEvent, timings: dict[str, float]) -> Path | None:
        pipe, m = self.pipeline, self.metrics
        name = printable(event.path.name)
        forecast: Forecast = self._attempt("rollout", name, pipe.forecast)
        if forecast is _FAILED:
            return None
        start = time.perf_counter()
        path = self._attempt("write", name, pipe.write, forecast, self.cfg.output_dir)
        if path is _FAILED:
            return None
        timings = {**timings, **forecast.timings, "write": time.perf_counter() - start}
        latency = time.monotonic() - event.event_time
        queued = self._handle_start - event.event_time  # watcher quiet time + queue wait
        m.forecast_latency.observe(latency)
        m.forecasts_written.inc()
        self._last_forecast = time.time()
        m.last_forecast_time.set(self._last_forecast)
        stages = " ".join(f"{k}={v:.4f}" for k, v in sorted(timings.items()))
        logger.info(
            "forecast %s from %s: latency=%.4f queued=%.4f %s pre_encoded=%s",
            path.name,
            name,
            latency,
            queued,
            stages,
            forecast.pre_encoded,
        )
        self._attempt("encode", name, pipe.pre_encode, background=True)
        self.notifier.status(self._status_line())
        self._attempt("retention", path.name, pipe.prune, self.cfg.output_dir)
        return path

    def _push(self, frame: Frame, max_age_seconds: float | None) -> Push:
        """The plausibility rules (`Pipeline.admit`), then the buffer's."""
        self.pipeline.admit(frame, now=datetime.now(UTC), max_age_seconds=max_age_seconds)
        return self.pipeline.push(frame)

    def refill(self) -> int:
        """Fill the buffer from the newest scans already in the watch directory.

        The same rules as for new scans apply, and scans older than `refill_max_age_hours`
        are refused; at most `_REFILL_TRIES` x the buffer's capacity files are tried.
        """
        pipe, m, watch_dir = self.pipeline, self.metrics, self.cfg.watch_dir
        capacity = pipe.status().capacity
        hours = self.cfg.refill_max_age_hours
        max_age = None if hours is None else hours * 3600.0
        frames: list[Frame] = []
        candidates = sorted(_entries(watch_dir), key=lambda item: item[1], reverse=True)
        for path, _ in candidates[: _REFILL_TRIES * capacity]:
            if len(frames) >= 2 * capacity:
                break
            m.scans_received.inc()  # the refill's scans are received scans too
            frame = self._attempt("read", printable(path.name), pipe.read, path)
            try:
                st = path.stat()
                self._seen[path] = (st.st_size, st.st_mtime_ns)
            except OSError:
                pass
            if frame is not _FAILED:
                frames.append(frame)
        for frame in sorted(frames, key=lambda f: f.valid_time):
            outcome = self._attempt("transfer", frame.name, self._push, frame, max_age)
            if outcome in (Push.DUPLICATE, Push.OUT_OF_ORDER):
                m.reject(outcome.value)
        status = pipe.status()
        m.buffer_frames.set(status.frames)
        if status.newest_time is not None:
            m.newest_scan_valid_time.set(status.newest_time.timestamp())
            self._attempt("encode", "the refilled window", pipe.pre_encode)
        logger.info(
            "refill: %d of %d scans in the buffer from %s",
            status.frames,
            status.capacity,
            watch_dir,
        )
        return status.frames

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
