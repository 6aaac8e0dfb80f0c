"""The demo's view of the daemon: its forecast log line and one real HTTP scrape."""

from nowcastd.serve.demo import metrics_summary, parse_forecast_line, scrape
from nowcastd.serve.metrics import ServiceMetrics

LINE = (
    "INFO nowcastd.serve.service: forecast forecast_20100826T050000Z.h5 from "
    "RAD_NL25_RAP_5min_201008260500.h5: latency=0.5610 queued=0.5002 encode_wait=0.0000 "
    "read=0.0170 rollout=0.0310 transfer=0.0010 write=0.0100 pre_encoded=True"
)


def test_forecast_log_line_is_parsed_into_stage_seconds() -> None:
    line = parse_forecast_line(LINE)
    assert line is not None and line.pre_encoded
    assert (line.file, line.scan) == (
        "forecast_20100826T050000Z.h5",
        "RAD_NL25_RAP_5min_201008260500.h5",
    )
    assert line.seconds["latency"] == 0.561 and line.seconds["rollout"] == 0.031
    assert parse_forecast_line("INFO nowcastd.serve.service: ready: 4 XLA compilations") is None


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
