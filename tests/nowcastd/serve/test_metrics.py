"""Metrics: observed values come back over a real HTTP scrape of the endpoint."""

import os
import re
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nowcastd.serve.labels import RejectReason, Stage
from nowcastd.serve.metrics import (
    FAILURE_STAGES,
    REJECT_REASONS,
    STAGES,
    CompileCounter,
    ServiceMetrics,
)


def _metrics() -> ServiceMetrics:
    return ServiceMetrics(model_name="predrnn_v2", checkpoint_digest="sha256:abc", version="0.1.0")


@pytest.fixture
def served():
    metrics = _metrics()
    server, thread = metrics.start_http_server(0)
    try:
        yield metrics, server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_returns_observed_values(served):
    metrics, port = served
    metrics.scans_received.inc(3)
    metrics.reject("duplicate")
    metrics.fail("rollout")
    metrics.forecasts_written.inc()
    metrics.buffer_frames.set(4)
    metrics.buffer_capacity_frames.set(5)
    metrics.last_forecast_time.set(1_700_000_000)
    metrics.ready.set(1)
    metrics.forecast_latency.observe(1.5)
    with metrics.time_stage("write"):
        pass

    samples = _samples(_scrape(port))

    assert samples[("nowcastd_scans_received_total", ())] == 3
    assert samples[("nowcastd_scans_rejected_total", (("reason", "duplicate"),))] == 1
    assert samples[("nowcastd_failures_total", (("stage", "rollout"),))] == 1
    assert samples[("nowcastd_forecasts_written_total", ())] == 1
    assert samples[("nowcastd_buffer_frames", ())] == 4
    assert samples[("nowcastd_buffer_capacity_frames", ())] == 5
    assert samples[("nowcastd_last_forecast_time_seconds", ())] == 1_700_000_000
    assert samples[("nowcastd_ready", ())] == 1
    assert samples[("nowcastd_forecast_latency_seconds_count", ())] == 1
    assert samples[("nowcastd_forecast_latency_seconds_bucket", (("le", "1.0"),))] == 0
    assert samples[("nowcastd_forecast_latency_seconds_bucket", (("le", "2.5"),))] == 1
    assert samples[("nowcastd_stage_duration_seconds_count", (("stage", "write"),))] == 1
    build = (("checkpoint_digest", "sha256:abc"), ("model", "predrnn_v2"), ("version", "0.1.0"))
    assert samples[("nowcastd_build_info", build)] == 1
    assert ("process_start_time_seconds", ()) in samples


def test_known_label_values_are_exported_at_zero(served):
    _, port = served
    samples = _samples(_scrape(port))
    for reason in REJECT_REASONS:
        assert samples[("nowcastd_scans_rejected_total", (("reason", reason),))] == 0
    for stage in FAILURE_STAGES:
        assert samples[("nowcastd_failures_total", (("stage", stage),))] == 0
    for stage in STAGES:
        assert samples[("nowcastd_stage_duration_seconds_count", (("stage", stage),))] == 0
    assert samples[("nowcastd_jit_compilations_total", ())] == 0


def test_unknown_label_values_are_refused():
    metrics = _metrics()
    with pytest.raises(ValueError, match="reject reason"):
        metrics.reject("because")
    with pytest.raises(ValueError, match="failure stage"):
        metrics.fail("lunch")
    with pytest.raises(ValueError, match="stage"), metrics.time_stage("nap"):
        pass
    with pytest.raises(ValueError, match="got 'retention'"), metrics.time_stage(Stage.RETENTION):
        pass


def test_label_values_are_exported_as_the_same_words_in_the_same_order():
    metrics = _metrics()
    metrics.reject(RejectReason.DUPLICATE)
    metrics.fail(Stage.RELOAD)
    text = metrics.exposition().decode()
    assert 'nowcastd_scans_rejected_total{reason="duplicate"} 1.0\n' in text
    assert 'nowcastd_failures_total{stage="reload"} 1.0\n' in text
    stages = re.findall(r'nowcastd_failures_total\{stage="(\w+)"\}', text)
    assert stages == [
        "read", "transfer", "motion", "rollout", "ensemble", "write", "encode", "retention", "reload",
    ]  # fmt: skip
    timed = re.findall(r'nowcastd_stage_duration_seconds_count\{stage="(\w+)"\}', text)
    assert timed == stages[:7]
    reasons = re.findall(r'nowcastd_scans_rejected_total\{reason="(\w+)"\}', text)
    assert reasons == [
        "corrupt", "wrong_grid", "out_of_order", "duplicate", "unknown_format", "not_regular",
        "symlink", "external_reference", "too_large", "unsupported_dtype",
        "implausible_calibration", "timeout", "reader_crashed", "future", "stale", "off_cadence",
        "implausible_rain", "saturated", "extreme_rain", "constant_field", "bad_geometry",
    ]  # fmt: skip


def test_two_instances_have_separate_registries():
    a, b = _metrics(), _metrics()
    a.scans_received.inc()
    assert b"nowcastd_scans_received_total 0.0" in b.exposition()
    assert b"nowcastd_scans_received_total 1.0" in a.exposition()


def test_compile_counter_counts_new_compilations_only():
    import jax
    import jax.numpy as jnp

    metrics = _metrics()

    @jax.jit
    def f(x):
        return jnp.sin(x) * 3.0 + 1.0

    # Inputs made first, so that only f's own compilations happen inside the block.
    a, b, c, d = (jnp.ones(shape) for shape in [(7, 3), (7, 3), (5, 2), (9, 9)])
    with CompileCounter(on_compile=metrics.record_compilation) as counter:
        f(a).block_until_ready()
        after_first = counter.count
        f(b).block_until_ready()
        after_same_shape = counter.count
        f(c).block_until_ready()
        after_new_shape = counter.count
    f(d).block_until_ready()  # after close: not counted

    assert after_first >= 1
    assert after_same_shape == after_first
    assert after_new_shape > after_same_shape
    assert counter.count == after_new_shape
    assert counter.seconds > 0
    assert b"nowcastd_jit_compilations_total %d.0" % counter.count in metrics.exposition()


def test_scrape_passes_promtool_check_metrics(served):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not found; CI must install it: apt-get install -y prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    metrics, port = served
    metrics.forecast_latency.observe(0.3)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=_scrape(port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compilations_after_ready_count_only_those_after_mark_ready(served):
    metrics, port = served
    metrics.record_compilation(2.0)
    metrics.record_compilation(1.0)
    before = _samples(_scrape(port))
    metrics.mark_ready()
    metrics.record_compilation(0.5)
    after = _samples(_scrape(port))
    assert before[("nowcastd_ready", ())] == 0 and after[("nowcastd_ready", ())] == 1
    assert before[("nowcastd_jit_compilations_after_ready_total", ())] == 0
    assert after[("nowcastd_jit_compilations_after_ready_total", ())] == 1
    assert after[("nowcastd_jit_compilations_total", ())] == 3
