"""ServeConfig: the example config parses; flag > environment > file > default."""

from pathlib import Path

import pytest

from model.strategy import DEFAULT, Strategy
from nowcastd.errors import ConfigError
from nowcastd.io.scan_settings import ReaderConfig
from nowcastd.serve.config import SERVE_SETTINGS, ServeConfig, load_serve_config
from tests.paths import REPO

EXAMPLE = REPO / "deploy" / "config.example.toml"


def test_example_config_parses_exactly():
    cfg = load_serve_config(EXAMPLE, environ={})
    assert cfg.watch_dir == Path("/var/lib/nowcastd/incoming")
    assert cfg.metrics_addr == "127.0.0.1" and cfg.metrics_port == 9810
    assert cfg.lead_frames == 12 and cfg.timestep_seconds == 300.0
    assert cfg.gap_seconds == 450 and cfg.poll is False
    assert cfg.domain.model_shape == (64, 64) and cfg.domain.native_shape == (765, 700)
    assert cfg.reader == ReaderConfig(format="auto", zr_a=200.0, zr_b=1.6)
    assert cfg.compile_cache_dir == Path("/var/cache/nowcastd")
    assert cfg.strategy == "auto"


def test_every_setting_carries_its_flags_help_and_a_bool_is_a_switch():
    # the one place of a setting's help is its field: the CLI builds its flags from these
    assert [s.name for s in SERVE_SETTINGS if not s.help.strip()] == []
    assert [s.name for s in SERVE_SETTINGS if s.switch != (s.hint is bool)] == []


def test_strategy_is_auto_default_or_a_name_and_a_bad_one_is_one_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[serve]\nstrategy = "ynn=on,unroll=off"\n')
    assert load_serve_config(path, environ={}).strategy == Strategy(ynn=True, unroll=False)
    flags = {"strategy": "default"}
    assert load_serve_config(path, flags=flags, environ={}).strategy == DEFAULT
    with pytest.raises(ConfigError) as e:
        load_serve_config(path, environ={"NOWCASTD_SERVE_STRATEGY": "quick"})
    message = str(e.value)
    assert message.startswith("NOWCASTD_SERVE_STRATEGY: expected auto, default or a strategy")
    assert message.endswith("got 'quick'") and "\n" not in message


def test_flag_beats_environment_beats_file_beats_default(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[serve]\nmetrics_port = 9000\nlead_frames = 4\nsettle_seconds = 1.5\n")
    env = {"NOWCASTD_SERVE_METRICS_PORT": "9100", "NOWCASTD_SERVE_LEAD_FRAMES": "6"}
    cfg = load_serve_config(path, flags={"metrics_port": 9200, "lead_frames": None}, environ=env)
    assert cfg.metrics_port == 9200  # flag
    assert cfg.lead_frames == 6  # environment (the flag was not given)
    assert cfg.settle_seconds == 1.5  # file
    assert cfg.debounce_seconds == 0.5  # default


def test_environment_values_are_parsed_to_their_types():
    env = {
        "NOWCASTD_SERVE_POLL": "yes",
        "NOWCASTD_COMPILE_CACHE": "/tmp/cache",
        "NOWCASTD_SERVE_RETENTION_KEEP_LAST": "",
    }
    cfg = load_serve_config(None, environ=env)
    assert cfg.poll is True
    assert cfg.compile_cache_dir == Path("/tmp/cache")
    assert cfg.retention_keep_last is None
    with pytest.raises(
        ConfigError, match="^NOWCASTD_SERVE_POLL: expected true or false, got 'maybe'$"
    ):
        load_serve_config(None, environ={"NOWCASTD_SERVE_POLL": "maybe"})
    with pytest.raises(ConfigError, match="^NOWCASTD_SERVE_METRICS_PORT: expected an integer"):
        load_serve_config(None, environ={"NOWCASTD_SERVE_METRICS_PORT": "high"})
    # the names of other commands mean nothing to serve
    assert load_serve_config(None, environ={"NOWCASTD_METRICS_PORT": "1"}).metrics_port == 9810


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "[serve]\nmetrics_prot = 1\n",
            r"\[serve\] metrics_prot: unknown key \(did you mean metrics_port\?\)",
        ),
        ("[srv]\n", r"\[srv\]: unknown table \(did you mean \[serve\]\?\)"),
        ("[serve]\npoll = 1\n", r"\[serve\] poll: expected true or false, got 1$"),
        ("[serve]\nmetrics_port = 1.5\n", r"\[serve\] metrics_port: expected an integer, got 1.5$"),
        ("[serve]\nlead_frames = '12'\n", r"\[serve\] lead_frames: expected an integer, got '12'$"),
        ("poll = true\n", r"c.toml: poll: expected a key inside a table such as \[serve\]"),
        ("[serve]\nmetrics_port = 70000\n", "metrics_port: expected 0..65535, got 70000"),
        ("[serve\n", "not valid TOML"),
        ("[reader]\nformat = 'gif'\n", r"\[reader\] format"),
        (
            "[domain]\nnative_shape = [10, 10]\n",
            r"^missing settings: \[domain\] row0; \[domain\] col0; \[domain\] height; "
            r"\[domain\] width$",
        ),
        (
            "[domain]\nnative_shape = [10]\n",
            r"\[domain\] native_shape: expected a list of 2 integers",
        ),
        (
            "[domain]\nnative_shape=[8,8]\nrow0=0\ncol0=0\nheight=9\nwidth=8\n",
            r"^\[domain\] height: expected",
        ),
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


def test_require_lists_every_missing_setting_in_one_line():
    with pytest.raises(ConfigError) as e:
        ServeConfig(watch_dir=Path("/x")).require("watch_dir", "output_dir", "checkpoint")
    assert str(e.value) == (
        "missing settings: --output_dir or [serve] output_dir or NOWCASTD_SERVE_OUTPUT_DIR; "
        "--checkpoint or [serve] checkpoint or NOWCASTD_SERVE_CHECKPOINT"
    )
    ServeConfig(watch_dir=Path("/x")).require("watch_dir")
