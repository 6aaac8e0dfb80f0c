"""deploy/alerts.yml and the Grafana dashboard against a real Prometheus scraping a real daemon.

promtool checks the rules' syntax and unit-tests them on synthetic series; a metric named with a
typo passes both. Here every metric the rules and panels name must be in the live scrape, every
expression must evaluate, every panel must get data, and removing the watch directory must take
an alert (its `for:` shortened by the test-only rule file) from inactive to firing and back.
"""

import shutil
import subprocess
import sys
import time

from nowcastd.serve.metrics import FAILURE_STAGES
from tests.deploy.prometheus import (
    SHORT_GROUP,
    alert_rules,
    dashboard_queries,
    metric_names,
)
from tests.paths import REPO

#: `$__rate_interval` in the panels' queries: every 1 s scrape since the feed began.
WINDOW = "2m"


def test_every_metric_named_by_the_alerts_and_the_dashboard_is_in_the_live_scrape(live):
    named = {name for rule in alert_rules() for name in metric_names(rule["expr"])}
    named |= {name for query in dashboard_queries() for name in metric_names(query.expr)}
    assert {"up", "nowcastd_watch_dir_present", "nowcastd_forecast_latency_seconds_bucket"} <= named
    missing = named - live.prometheus.metric_names()
    assert not missing, f"named by a rule or panel but not exported: {sorted(missing)}"


def test_every_rule_evaluates_without_error(live):
    groups = live.prometheus.rule_groups()
    assert set(groups) == {"nowcastd", SHORT_GROUP}
    for rules in groups.values():
        assert [r["name"] for r in rules] == [r["alert"] for r in alert_rules()]
        for rule in rules:
            assert rule["health"] == "ok" and not rule.get("lastError"), rule
            assert not rule["lastEvaluation"].startswith("0001"), rule  # it was evaluated
    for rule in alert_rules():
        live.prometheus.query(rule["expr"])  # PromQLError names the rule's mistake


def test_every_panel_query_returns_data(live):
    queries = dashboard_queries()
    assert len({q.panel for q in queries}) == 9
    for query in queries:
        result = live.prometheus.query(query.promql(window=WINDOW))
        assert result, (
            f"{query.panel} / {query.legend}: no series for {query.promql(window=WINDOW)}"
        )
    instances = live.prometheus.api("label/instance/values", **{"match[]": "nowcastd_ready"})
    assert instances == [f"127.0.0.1:{live.daemon.port}"]  # the $instance variable's choices


def _panel(live, title: str) -> dict[str, float]:
    """{legend, its labels filled in: value now} over the targets of the panel `title`."""
    out = {}
    for query in dashboard_queries():
        if query.panel == title:
            for series in live.prometheus.query(query.promql(window=WINDOW)):
                labels = {**series["metric"], "instance": ""}
                out[query.label(labels).strip()] = float(series["value"][1])
    return out


def test_panel_values_say_what_the_daemon_did(live):
    assert _panel(live, "Buffer fill") == {"frames held": 3, "frames needed": 3}
    assert _panel(live, "Watch directory present") == {"": 1}
    assert _panel(live, "XLA compilations after ready") == {"": 0}
    scans = _panel(live, "Scans received and rejected by reason")
    assert set(scans) == {"received", "skipped", "rejected: corrupt"}  # zero reasons left out
    assert scans["received"] > scans["rejected: corrupt"] > 0
    assert _panel(live, "Forecasts written")["forecasts per hour"] > 0
    ensemble = _panel(live, "Ensemble stage")
    assert 0 < ensemble["p50 ensemble"] <= ensemble["p99 ensemble"]
    failures = _panel(live, "Failures by stage")
    assert len(failures) == len(FAILURE_STAGES) and set(failures.values()) == {0}
    (age,) = _panel(live, "Newest scan's age").values()
    assert 0 <= age < 600  # the newest scan is of the last full timestep


def test_render_preview_draws_every_panel_from_the_live_prometheus(live, tmp_path):
    out = tmp_path / "preview.png"
    script = REPO / "deploy" / "grafana" / "render_preview.py"
    args = ["--prometheus", live.prometheus.url, "--minutes", "2", "--rate-window", WINDOW]
    result = subprocess.run(
        [sys.executable, str(script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [line for line in result.stdout.splitlines() if line.startswith("panel ")]
    assert len(lines) == 9 and all(" 0 series" not in line for line in lines), result.stdout


def _rule_state(live, name: str) -> str:
    (rule,) = [r for r in live.prometheus.rule_groups()[SHORT_GROUP] if r["name"] == name]
    return rule["state"]


def _firing(live) -> list[str]:
    rules = live.prometheus.rule_groups()[SHORT_GROUP]
    return sorted(r["name"] for r in rules if r["state"] == "firing")


def test_watch_dir_removed_fires_its_alert_and_its_return_resolves_it(live):
    name = "NowcastdWatchDirMissing"
    before = _firing(live)
    print(f"alerts firing before the fault ({SHORT_GROUP}): {before}")
    assert name not in before and _rule_state(live, name) == "inactive"
    shutil.rmtree(live.daemon.incoming)
    states = [_rule_state(live, name)]
    deadline = time.monotonic() + 30
    while states[-1] != "firing" and time.monotonic() < deadline:
        time.sleep(0.2)
        if (state := _rule_state(live, name)) != states[-1]:
            states.append(state)
    print(f"{name} after the watch directory was removed: {' -> '.join(states)}")
    print(f"alerts firing with the fault ({SHORT_GROUP}): {_firing(live)}")
    assert states[-1] == "firing", (states, live.daemon.log_text())
    live.daemon.incoming.mkdir()
    deadline = time.monotonic() + 30
    while _rule_state(live, name) != "inactive" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _rule_state(live, name) == "inactive"
    assert live.daemon.proc.poll() is None  # the daemon lived through it
