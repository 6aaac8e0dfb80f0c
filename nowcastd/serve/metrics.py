"""Prometheus metrics of the nowcasting service, and a counter of JAX/XLA compilations.

Every metric lives in a registry owned by one `ServiceMetrics`, never the process-global
one, so that tests (and one process serving several radars) can hold several side by side.
Label values that are known in advance are created at start-up so they are exported at 0.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from nowcastd.errors import ConfigError
from nowcastd.serve.labels import RejectReason, Stage, member

logger = logging.getLogger(__name__)

_Metric = TypeVar("_Metric", Counter, Histogram)

#: Stages of one forecast, as labels of `nowcastd_stage_duration_seconds`.
STAGES: tuple[Stage, ...] = tuple(stage for stage in Stage if stage.timed)
#: Stages that can fail: the forecast stages plus the service's own housekeeping.
FAILURE_STAGES: tuple[Stage, ...] = tuple(Stage)
#: Why a scan was refused, as labels of `nowcastd_scans_rejected_total`.
REJECT_REASONS: tuple[RejectReason, ...] = tuple(RejectReason)
#: Most metrics requests served at once; further connections are closed unanswered.
MAX_HTTP_CONNECTIONS = 8
#: A metrics connection idle this long is dropped.
HTTP_TIMEOUT_SECONDS = 10.0
#: From 1 ms (one stage of a small grid) to 5 min (a forecast that missed its own timestep).
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

#: The name JAX records each XLA backend compilation under (`jax._src.dispatch`). It is
#: also recorded when the executable comes from the persistent compilation cache.
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _with_known_labels(metric: _Metric, **known: tuple[str, ...]) -> _Metric:
    """`metric`, with a child for each label value known in advance (exported at 0)."""
    ((label, values),) = known.items()
    for value in values:
        metric.labels(**{label: value})
    return metric


class ServiceMetrics:
    """The service's metrics, in a registry of their own, and the HTTP endpoint exposing them."""

    def __init__(self, *, model_name: str, checkpoint_digest: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_start_time_seconds etc.; the alert rules use it to ignore start-up.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

        self.build = Info(
            "nowcastd_build", "Version, model and checkpoint of the running service.", registry=r
        )
        self.build.info(
            {"version": version, "model": model_name, "checkpoint_digest": checkpoint_digest}
        )
        self._serving = False
        # In this order: the registry exports them in the order they are declared.
        self._declare_scan_metrics()
        self._declare_compile_metrics()
        self._declare_state_metrics()

    def _declare_scan_metrics(self) -> None:
        """What became of the scans, and how long their forecasts took."""
        counter = functools.partial(Counter, registry=self.registry)
        histogram = functools.partial(
            Histogram, buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry
        )
        self.forecast_latency = histogram(
            "nowcastd_forecast_latency_seconds",
            "From the scan's file event to the forecast renamed into place.",
        )
        self.stage_duration = _with_known_labels(
            histogram(
                "nowcastd_stage_duration_seconds",
                "Duration of one stage of one forecast.",
                ["stage"],
            ),
            stage=STAGES,
        )

        self.scans_received = counter(
            "nowcastd_scans_received_total",
            "Scan files seen, including those later rejected or skipped.",
        )
        self.scans_rejected = _with_known_labels(
            counter("nowcastd_scans_rejected_total", "Scans refused, by reason.", ["reason"]),
            reason=REJECT_REASONS,
        )
        self.scans_skipped = counter(
            "nowcastd_scans_skipped_total",
            "Scans dropped unforecast because a newer one arrived while the worker was busy.",
        )
        self.forecasts_written = counter(
            "nowcastd_forecasts_written_total", "Forecasts written and renamed."
        )
        self.failures = _with_known_labels(
            counter(
                "nowcastd_failures_total", "Errors caught by the service loop, by stage.", ["stage"]
            ),
            stage=FAILURE_STAGES,
        )
        self.buffer_resets = counter(
            "nowcastd_buffer_resets_total",
            "Input buffer emptied because of a gap in the scan sequence.",
        )

    def _declare_compile_metrics(self) -> None:
        """XLA compilations, before and after ready."""
        counter = functools.partial(Counter, registry=self.registry)
        self.jit_compilations = counter(
            "nowcastd_jit_compilations_total",
            "XLA compilations (including loads from the persistent cache) since start.",
        )
        self.jit_compile_seconds = counter(
            "nowcastd_jit_compile_seconds_total", "Time spent in XLA compilation."
        )
        self.jit_compilations_after_ready = counter(
            "nowcastd_jit_compilations_after_ready_total",
            "XLA compilations after the service became ready (0 unless shapes or the cache change).",
        )

    def _declare_state_metrics(self) -> None:
        """The buffer, the last forecast, readiness, the watch directory and the watchdog."""
        counter = functools.partial(Counter, registry=self.registry)
        gauge = functools.partial(Gauge, registry=self.registry)
        self.buffer_frames = gauge("nowcastd_buffer_frames", "Scans held in the input buffer.")
        self.buffer_capacity_frames = gauge(
            "nowcastd_buffer_capacity_frames", "Scans the model needs as input."
        )
        self.newest_scan_valid_time = gauge(
            "nowcastd_newest_scan_valid_time_seconds",
            "Valid time of the newest accepted scan, unix seconds; 0 before the first.",
        )
        self.last_forecast_time = gauge(
            "nowcastd_last_forecast_time_seconds",
            "Wall-clock time the last forecast was written, unix seconds; 0 before the first.",
        )
        self.ready = gauge("nowcastd_ready", "1 once the model is loaded and compiled, else 0.")
        self.watch_dir_present = gauge(
            "nowcastd_watch_dir_present",
            "1 while the watched directory is the one being watched, 0 while it is missing.",
        )
        self.watch_dir_rearms = counter(
            "nowcastd_watch_dir_rearms_total",
            "Times the watch directory was found removed or replaced and watched afresh.",
        )
        self.watchdog_withheld = counter(
            "nowcastd_watchdog_withheld_total",
            "systemd watchdog pings withheld because the worker made no progress.",
        )

    def reject(self, reason: RejectReason) -> None:
        """Count one rejected scan (ValueError for a string that is no `RejectReason`)."""
        reason = member(RejectReason, reason, "reject reason")
        self.scans_rejected.labels(reason=reason).inc()

    def fail(self, stage: Stage) -> None:
        """Count one failure caught by the service loop (ValueError for a string that is no
        `Stage`)."""
        stage = member(Stage, stage, "failure stage")
        self.failures.labels(stage=stage).inc()

    @contextlib.contextmanager
    def time_stage(self, stage: Stage) -> Iterator[None]:
        """Observe the duration of the block in `nowcastd_stage_duration_seconds{stage=...}`.

        A block that raises is still observed; counting the failure is the caller's job.
        ValueError for a stage that is not timed (`Stage.timed`), or a string that is none.
        """
        if stage not in STAGES:  # a string equal to a member's value is in too
            timed = tuple(s.value for s in STAGES)
            raise ValueError(f"stage: expected one of {timed}, got {str(stage)!r}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_duration.labels(stage=stage).observe(time.perf_counter() - start)

    def mark_ready(self) -> None:
        """The model is loaded and compiled: `nowcastd_ready` 1; later compilations count as
        after ready."""
        self._serving = True
        self.ready.set(1)

    def record_compilation(self, duration_seconds: float) -> None:
        """Count one XLA compilation; a `CompileCounter` callback."""
        self.jit_compilations.inc()
        self.jit_compile_seconds.inc(duration_seconds)
        if self._serving:
            self.jit_compilations_after_ready.inc()

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format, as served over HTTP."""
        return prometheus_client.generate_latest(self.registry)

    def start_http_server(
        self, port: int, addr: str = "127.0.0.1"
    ) -> tuple[WSGIServer, threading.Thread]:
        """Serve the metrics on `addr:port` from a daemon thread; port 0 picks a free port.

        At most `MAX_HTTP_CONNECTIONS` requests are served at once (one thread each), each
        connection times out after `HTTP_TIMEOUT_SECONDS`. The bound port is
        `server.server_port`; stop with `server.shutdown()` and `server.server_close()`.
        ConfigError when the address cannot be bound (in use, unknown, ...).
        """
        app = prometheus_client.make_wsgi_app(self.registry)
        try:
            family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
            server_class = type("MetricsServer", (_BoundedServer,), {"address_family": family})
            server: WSGIServer = make_server(
                addr, port, app, server_class, handler_class=_QuietHandler
            )
        except OSError as e:
            raise ConfigError(f"metrics endpoint {addr}:{port}: cannot listen: {e}") from e
        thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
        thread.start()
        logger.info("metrics endpoint on http://%s:%d/metrics", addr, server.server_port)
        return server, thread


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the journal)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


_Request = socket.socket | tuple[bytes, socket.socket]


class _BoundedServer(WSGIServer):
    """A WSGI server with one thread per request, at most `MAX_HTTP_CONNECTIONS` of them."""

    daemon_threads = True

    def server_bind(self) -> None:
        self._slots = threading.BoundedSemaphore(MAX_HTTP_CONNECTIONS)
        super().server_bind()

    # socketserver's request: a socket for TCP (this server), (data, socket) for UDP
    def process_request(self, request: _Request, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: close, never queue a thread
            return
        threading.Thread(
            target=self._serve_one, args=(request, client_address), daemon=True
        ).start()

    def _serve_one(self, request: _Request, client_address: Any) -> None:
        try:
            if isinstance(request, socket.socket):
                request.settimeout(HTTP_TIMEOUT_SECONDS)
            self.finish_request(request, client_address)
        except OSError:
            pass  # a client that went away or timed out
        finally:
            self.shutdown_request(request)
            self._slots.release()


class CompileCounter:
    """Counts XLA compilations in this process through `jax.monitoring` listeners.

    JAX listeners are process-wide: a counter sees compilations from every thread. Use as a
    context manager, or call `close()`, to unregister it. `on_compile(duration_seconds)` is
    called from the compiling thread, e.g. `ServiceMetrics.record_compilation`.
    """

    def __init__(self, *, on_compile: Callable[[float], None] | None = None) -> None:
        import jax.monitoring  # here, so that the metrics alone do not import JAX

        self._monitoring = jax.monitoring
        self._lock = threading.Lock()
        self._on_compile = on_compile
        self.count = 0
        self.seconds = 0.0
        self._closed = False
        self._monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, event: str, duration_secs: float, **_: object) -> None:
        if event != BACKEND_COMPILE_EVENT:
            return
        with self._lock:
            self.count += 1
            self.seconds += duration_secs
        logger.debug("XLA compilation %d took %.3f s", self.count, duration_secs)
        if self._on_compile is not None:
            self._on_compile(duration_secs)

    def close(self) -> None:
        """Unregister the listeners; later compilations are not counted."""
        if self._closed:
            return
        self._closed = True
        self._monitoring.unregister_event_duration_listener(self._on_duration)

    def __enter__(self) -> CompileCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
