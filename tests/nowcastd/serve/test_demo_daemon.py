"""The demo's view of the daemon: its event lines (read from the real daemon in
test_service.py) and one real HTTP scrape."""

import pytest

from nowcastd.demo.metrics import metrics_summary, scrape
from nowcastd.serve.events import parse_event
from nowcastd.serve.metrics import ServiceMetrics


def test_event_lines_that_are_not_forecasts_or_not_events() -> None:
    assert parse_event('{"event": "rejected", "scan": "x", "reason": "corrupt"}') is None
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_event("INFO nowcastd.serve.service: forecast f.h5 from s.npy: latency=0.5")
    with pytest.raises(ValueError, match="expected an object with 'event'"):
        parse_event("[1, 2]")


def test_summary_of_a_real_scrape() -> None:
    metrics = ServiceMetrics(model_name="predrnn_v2", checkpoint_digest="x", version="0")
    for _ in range(3):
        metrics.scans_received.inc()
    metrics.reject("corrupt")
    metrics.forecasts_written.inc(2)
    metrics.forecast_latency.observe(0.3)
    metrics.forecast_latency.observe(0.7)
    metrics.stage_duration.labels(stage="rollout").observe(0.02)
    metrics.record_compilation(1.0)
    metrics.record_compilation(1.0)
    server, _ = metrics.start_http_server(0)
    try:
        families = scrape(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    lines = metrics_summary(families, compilations_at_ready=1)
    assert lines[0] == (
        "scans received 3 (rejected: corrupt 1; skipped 0), forecasts written 2, failures 0"
    )
    assert lines[1].startswith(
        "forecast latency, scan event to file (n=2): mean 500 ms, p50 ≤ 0.5 s"
    )
    assert lines[2] == "mean per stage: rollout 20 ms"
    assert lines[3] == "XLA compilations: 1 at start-up, 1 after ready"
