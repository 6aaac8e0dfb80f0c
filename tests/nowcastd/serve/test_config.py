"""ServeConfig: the example config parses; flag > environment > file > default."""

from pathlib import Path

import pytest

from nowcastd.errors import ConfigError
from nowcastd.serve.config import ReaderConfig, ServeConfig, load_serve_config
from tests.paths import REPO

EXAMPLE = REPO / "deploy" / "config.example.toml"


def test_example_config_parses_exactly():
    cfg = load_serve_config(EXAMPLE, environ={})
    assert cfg.watch_dir == Path("/var/lib/nowcastd/incoming")
    assert cfg.metrics_addr == "127.0.0.1" and cfg.metrics_port == 9810
    assert cfg.lead_frames == 12 and cfg.timestep_seconds == 300.0
    assert cfg.gap_seconds == 450 and cfg.poll is False
    assert cfg.domain.model_shape == (256, 256) and cfg.domain.native_shape == (765, 700)
    assert cfg.reader == ReaderConfig(format="auto", zr_a=200.0, zr_b=1.6)
    assert cfg.compile_cache_dir == Path("/var/cache/nowcastd")


def test_flag_beats_environment_beats_file_beats_default(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[serve]\nmetrics_port = 9000\nlead_frames = 4\nsettle_seconds = 1.5\n")
    env = {"NOWCASTD_METRICS_PORT": "9100", "NOWCASTD_LEAD_FRAMES": "6"}
    cfg = load_serve_config(path, flags={"metrics_port": 9200, "lead_frames": None}, environ=env)
    assert cfg.metrics_port == 9200  # flag
    assert cfg.lead_frames == 6  # environment (the flag was not given)
    assert cfg.settle_seconds == 1.5  # file
    assert cfg.debounce_seconds == 0.5  # default


def test_environment_values_are_parsed_to_their_types():
    env = {
        "NOWCASTD_POLL": "yes",
        "NOWCASTD_COMPILE_CACHE": "/tmp/cache",
        "NOWCASTD_RETENTION_KEEP_LAST": "",
    }
    cfg = load_serve_config(None, environ=env)
    assert cfg.poll is True
    assert cfg.compile_cache_dir == Path("/tmp/cache")
    assert cfg.retention_keep_last is None
    with pytest.raises(ConfigError, match="NOWCASTD_POLL"):
        load_serve_config(None, environ={"NOWCASTD_POLL": "maybe"})
    with pytest.raises(ConfigError, match="NOWCASTD_METRICS_PORT"):
        load_serve_config(None, environ={"NOWCASTD_METRICS_PORT": "high"})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[serve]\nmetrics_prot = 1\n", "unknown keys \\['metrics_prot'\\]"),
        ("[srv]\n", "unknown tables"),
        ("[serve]\npoll = 1\n", "poll: expected true or false"),
        ("[serve]\nmetrics_port = 1.5\n", "metrics_port: expected an integer"),
        ("[serve]\nmetrics_port = 70000\n", "metrics_port: expected 0..65535, got 70000"),
        ("[serve\n", "not valid TOML"),
        ("[reader]\nformat = 'gif'\n", "reader.format"),
        ("[domain]\nnative_shape = [10, 10]\n", "Domain"),
        ("[domain]\nnative_shape=[8,8]\nrow0=0\ncol0=0\nheight=9\nwidth=8\n", "Domain.height"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_key(tmp_path, text, match):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_serve_config(path, environ={})


def test_zero_retention_in_a_file_means_no_limit(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[serve]\nretention_keep_last = 0\nretention_max_age_hours = 0\n")
    cfg = load_serve_config(path, environ={})
    assert cfg.retention_keep_last is None and cfg.retention_max_age_hours is None


def test_validation_names_field_and_value():
    with pytest.raises(ValueError, match="timestep_seconds: expected a finite number > 0, got -1"):
        ServeConfig(timestep_seconds=-1)
    with pytest.raises(ValueError, match="log_level"):
        ServeConfig(log_level="LOUD")


def test_require_names_the_missing_setting():
    with pytest.raises(ConfigError, match="watch_dir.*--watch-dir.*NOWCASTD_WATCH_DIR"):
        ServeConfig().require("watch_dir")
    ServeConfig(watch_dir=Path("/x")).require("watch_dir")
