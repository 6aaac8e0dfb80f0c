"""Deployment files: systemd units, Prometheus config and rules, the example config.

The external checkers (promtool from Debian's `prometheus` package, systemd-analyze) are
skipped when missing locally, and make the test fail when missing in CI (CI=true).
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.paths import REPO

REPO = REPO
DEPLOY = REPO / "deploy"
SYSTEMD = REPO / "systemd"
INSTALLED_BINARY = "/opt/nowcastd/venv/bin/nowcastd"
# Unit file name as installed -> name verified (a template needs an instance).
UNITS = {"nowcastd.service": "nowcastd.service", "nowcastd@.service": "nowcastd@radar1.service"}


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} not found; CI must install it: apt-get install -y {package}")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return path


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def _unit_copy(unit: str, tmp_path: Path) -> Path:
    """The unit under its instance name, with an ExecStart binary that exists here."""
    text = (SYSTEMD / unit).read_text()
    assert INSTALLED_BINARY in text
    path = tmp_path / UNITS[unit]
    path.write_text(text.replace(INSTALLED_BINARY, "/bin/true"))
    return path


def _directives(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(unit, tmp_path):
    tool = _tool("systemd-analyze", "systemd")
    path = _unit_copy(unit, tmp_path)
    result = _run([tool, "verify", str(path)])
    # Unknown keys and bad values are warnings on stderr with exit 0: refuse those too.
    complaints = [line for line in result.stderr.splitlines() if path.name in line]
    assert result.returncode == 0 and not complaints, result.stderr


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_security_exposure_is_low(unit, tmp_path):
    tool = _tool("systemd-analyze", "systemd")
    path = _unit_copy(unit, tmp_path)
    result = _run([tool, "security", "--offline=yes", "--no-pager", str(path)])
    if "--offline" in result.stderr:
        pytest.skip(f"systemd-analyze too old for --offline: {result.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_template_differs_from_plain_unit_only_by_instance():
    plain = _directives(SYSTEMD / "nowcastd.service")
    template = _directives(SYSTEMD / "nowcastd@.service")
    instance_lines = {
        "Description=nowcastd radar precipitation nowcasting": (
            "Description=nowcastd radar precipitation nowcasting for %i"
        ),
        "StateDirectory=nowcastd": "StateDirectory=nowcastd/%i",
    }
    as_template = [
        instance_lines.get(line, line.replace("/nowcastd.toml", "/%i.toml")) for line in plain
    ]
    assert as_template == template


def test_units_keep_memory_writable_and_executable_for_xla():
    for unit in UNITS:
        assert "MemoryDenyWriteExecute=yes" not in (SYSTEMD / unit).read_text()


def test_example_config_parses_and_matches_the_units():
    config = tomllib.loads((DEPLOY / "config.example.toml").read_text())
    assert set(config) == {"serve", "reader", "domain"}
    keys = [key for section in config.values() for key in section]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in keys), keys
    serve = config["serve"]
    # Writable under ProtectSystem=strict only through StateDirectory=nowcastd.
    assert serve["watch_dir"].startswith("/var/lib/nowcastd/")
    assert serve["output_dir"].startswith("/var/lib/nowcastd/")
    assert serve["compile_cache_dir"] == "/var/cache/nowcastd"
    assert isinstance(serve["poll"], bool)
    assert serve["metrics_addr"] == "127.0.0.1"  # IPAddressAllow=localhost in the units
    targets = re.search(r"targets: \[(.*)\]", (DEPLOY / "prometheus.yml").read_text())
    assert targets and f'"localhost:{serve["metrics_port"]}"' in targets.group(1)
    domain = config["domain"]
    assert domain["height"] % domain["block"] == 0 and domain["width"] % domain["block"] == 0
    assert domain["row0"] + domain["height"] <= domain["native_shape"][0]
    assert domain["col0"] + domain["width"] <= domain["native_shape"][1]


def test_example_config_domain_is_the_sample_window_the_demo_uses():
    config = tomllib.loads((DEPLOY / "config.example.toml").read_text())
    sample = tomllib.loads((REPO / "nowcastd" / "sample" / "knmi_domain.toml").read_text())
    assert config["domain"] == sample["domain"]


def test_prometheus_config_passes_promtool():
    promtool = _tool("promtool", "prometheus")
    result = _run([promtool, "check", "config", "prometheus.yml"], cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_promtool():
    promtool = _tool("promtool", "prometheus")
    result = _run([promtool, "check", "rules", "alerts.yml"], cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass():
    promtool = _tool("promtool", "prometheus")
    result = _run([promtool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
