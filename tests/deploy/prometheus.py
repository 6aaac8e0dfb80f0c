"""A real `prometheus` server on 127.0.0.1, configured from deploy/prometheus.yml, and the PromQL
that deploy/alerts.yml and the Grafana dashboard hold.

`PrometheusAPI` answers instant and range queries and rule states over the HTTP API.
`Prometheus` writes the scrape config (deploy's job and labels, the target replaced, intervals
shortened), starts the server on a free loopback port and stops the process by its PID.
`short_for_rules` is the test-only rule file: deploy's rules in a group of their own with
every `for:` made short.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.paths import REPO

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "nowcastd.json"
SHORT_GROUP = "nowcastd_short_for"
_METRIC = re.compile(r"\b(?:nowcastd|process)_[a-z0-9_]+\b|\bup\b")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alert_rules() -> list[dict]:
    """The rules of deploy/alerts.yml (each `alert`, `expr`, ...)."""
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@dataclass(frozen=True, kw_only=True)
class PanelQuery:
    """One target of one dashboard panel, with Grafana's variables still in it."""

    panel: str
    legend: str
    expr: str

    def label(self, labels: dict[str, str]) -> str:
        """The legend of one series: `{{name}}` replaced by its label's value."""
        text = self.legend
        for key, value in labels.items():
            text = text.replace("{{" + key + "}}", value)
        return text

    def promql(self, *, window: str) -> str:
        """The query Grafana would send: every instance, `window` for `$__rate_interval`."""
        return self.expr.replace("$__rate_interval", window).replace("$instance", ".+")


def dashboard_queries(path: Path = DASHBOARD) -> list[PanelQuery]:
    """Every target of every panel of the dashboard, in panel order."""
    dashboard = json.loads(path.read_text())
    return [
        PanelQuery(panel=panel["title"], legend=target.get("legendFormat", ""), expr=target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (nowcastd_*, process_*, up), outside strings
    (label values)."""
    return set(_METRIC.findall(_STRING.sub('""', expr)))


def short_for_rules(path: Path, for_: str = "1s") -> Path:
    """deploy/alerts.yml's rules as one group `SHORT_GROUP`, every `for:` set to `for_`."""
    rules = [{**rule, "for": for_} for rule in alert_rules()]
    path.write_text(yaml.safe_dump({"groups": [{"name": SHORT_GROUP, "rules": rules}]}))
    return path


class PromQLError(RuntimeError):
    pass


class PrometheusAPI:
    """Prometheus' HTTP API at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def api(self, path: str, **params: str) -> object:
        """`data` of one API call; PromQLError with Prometheus' message when it fails."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400/422: a bad query, with Prometheus' reason
            body = json.load(e)
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """The instant vector (or scalar as one sample) of `expr` now."""
        data = self.api("query", query=expr)
        assert isinstance(data, dict)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, *, start: float, end: float, step: float) -> list[dict]:
        data = self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))
        assert isinstance(data, dict)
        return list(data["result"])

    def rule_groups(self) -> dict[str, list[dict]]:
        """Each rule group's rules, with their `state`, `health` and `lastError`."""
        data = self.api("rules")
        assert isinstance(data, dict)
        return {g["name"]: g["rules"] for g in data["groups"]}

    def metric_names(self) -> set[str]:
        data = self.api("label/__name__/values")
        assert isinstance(data, list)
        return set(data)


class Prometheus(PrometheusAPI):
    """`prometheus` scraping `target` every second, evaluating `rule_files` every second."""

    def __init__(self, root: Path, *, target: str, rule_files: list[Path]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus not found: apt-get install prometheus")
        self.root = root
        self.port = _free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        config["rule_files"] = [str(p) for p in rule_files]
        (job,) = config["scrape_configs"]
        (static,) = job["static_configs"]
        static["targets"] = [target]
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = root / "prometheus.log"
        self.cmd = [
            binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout} s:\n{self.log_text()}")

    def stop(self) -> None:
        """SIGTERM to the PID, SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")
