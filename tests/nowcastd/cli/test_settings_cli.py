"""Every command resolves its settings one way: the real CLI, real files, real environment."""

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nowcastd.cli import app
from tests.paths import FIXTURES

MOVIE = FIXTURES / "radar" / "movie_small.h5"  # 12 frames of 64x64


def run(args: list, *, env: dict | None = None, config: str | None = None, tmp: Path | None = None):
    """The app on `args` (with `--config FILE` holding `config`); (exit code, stderr lines)."""
    args = [str(a) for a in args]
    if config is not None:
        assert tmp is not None
        path = tmp / "c.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.stderr.strip().splitlines(), result


def one_error(args: list, **kw) -> str:
    """The one line a configuration mistake gives, checked to be one line with exit 1."""
    code, lines, result = run(args, **kw)
    assert code == 1, result.output
    assert len(lines) == 1, lines
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "config", "env", "message"),
    [
        (
            ["evaluate", "--checkpoint", "c", "--data", "d"],
            '[evaluate]\nbatch_size = "x"\n',
            {},
            "error: [evaluate] batch_size: expected an integer, got 'x'",
        ),
        (
            ["evaluate", "--checkpoint", "c", "--data", "d"],
            "[evaluate]\nbatch_size = 8\nsplit = 'test'\n",
            {},
            "error: [evaluate] split: expected one of 'valid', 'train', 'all', got 'test'",
        ),
        (
            ["train", "--train_data_paths", MOVIE],
            "[train]\nbatch_size = 'x'\n",
            {},
            "error: [train] batch_size: expected an integer, got 'x'",
        ),
        (
            ["train", "--train_data_paths", MOVIE],
            "[train]\nnum_hidden = '8,8'\n",
            {},
            "error: [train] num_hidden: expected a list of integers (comma-separated on the "
            "command line), got '8,8'",
        ),
        (
            ["train", "--num_hidden", "8,x"],
            None,
            {},
            "error: --num_hidden: expected a list of integers (comma-separated on the command "
            "line), got '8,x'",
        ),
        (
            ["train", "--layer_norm", "maybe"],
            None,
            {},
            "error: --layer_norm: expected true or false, got 'maybe'",
        ),
        (
            ["train", "--train_data_paths", MOVIE],
            "[trian]\nbatch_size = 2\n",
            {},
            "unknown table (did you mean [train]?)",
        ),
        (
            ["dataset", "build", MOVIE, "--out", "x.npy"],
            "[dataset]\nstrid = 2\n",
            {},
            "error: [dataset] strid: unknown key (did you mean stride?)",
        ),
        (
            ["dataset", "build", MOVIE, "--out", "x.npy"],
            None,
            {"NOWCASTD_DATASET_STRIDE": "two"},
            "error: NOWCASTD_DATASET_STRIDE: expected an integer, got 'two'",
        ),
        (
            ["train", "--train_data_paths", MOVIE],
            None,
            {"NOWCASTD_TRAIN_STRIDE": "2"},  # the cell stride, not the clip stride
            "error: stride=2: must be 1 (other strides break the recurrence)",
        ),
        (
            ["predict", "scan.h5", "--checkpoint", "c"],
            "[serve]\nlead_frames = '12'\n",
            {},
            "error: [serve] lead_frames: expected an integer, got '12'",
        ),
        (
            ["serve", "--watch-dir", "w", "--output-dir", "o", "--checkpoint", "c"],
            None,
            {"NOWCASTD_SERVE_METRICS_PORT": "high"},
            "error: NOWCASTD_SERVE_METRICS_PORT: expected an integer, got 'high'",
        ),
        (
            ["import-torch", "x.npz", "--out", "o", "--transform", "rainbow"],
            None,
            {},
            "error: --transform: expected one of 'identity', 'dbz', got 'rainbow'",
        ),
        (
            ["demo", "--iterations", "many"],
            None,
            {},
            "error: --iterations: expected an integer, got 'many'",
        ),
    ],
)
def test_a_configuration_mistake_is_one_line_naming_the_key(tmp_path, args, config, env, message):
    line = one_error(args, config=config, env=env, tmp=tmp_path)
    assert message in line
    assert line.startswith("error: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--train_data_paths", MOVIE, "--batch_size", "0"], "batch_size: expected an integer >= 1, got 0"),
        (["train", "--train_data_paths", MOVIE, "--filter_size", "4"], "filter_size=4: must be a positive odd integer"),
        (["train", "--train_data_paths", MOVIE, "--r_exp_alpha", "0"], "r_exp_alpha=0: must be > 0"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_setting_not_a_class(args, message):
    line = one_error(args)
    assert line == f"error: {message}"


def test_missing_settings_are_listed_together():
    assert one_error(["serve"]) == (
        "error: missing settings: --watch_dir or [serve] watch_dir or NOWCASTD_SERVE_WATCH_DIR; "
        "--output_dir or [serve] output_dir or NOWCASTD_SERVE_OUTPUT_DIR"
    )
    # --watch-dir (kebab-case) is accepted and counts; the checkpoint defaults to the bundled one
    assert one_error(["serve", "--watch-dir", "w"]) == (
        "error: missing settings: --output_dir or [serve] output_dir or NOWCASTD_SERVE_OUTPUT_DIR"
    )
    assert one_error(["evaluate"]) == (
        "error: missing settings: --data or [evaluate] data or NOWCASTD_EVALUATE_DATA"
    )
    assert one_error(["train"]) == (
        "error: missing settings: --train_data_paths or [train] train_data_paths or "
        "NOWCASTD_TRAIN_TRAIN_DATA_PATHS"
    )


def test_flag_beats_environment_beats_file_beats_default(tmp_path):
    out = tmp_path / "clips.npy"
    config = "[dataset]\ntotal_length = 4\nstride = 3\nblock = 2\n"
    env = {"NOWCASTD_DATASET_STRIDE": "2"}
    code, lines, result = run(
        ["dataset", "build", MOVIE, "--out", out, "--total-length", "5"],
        config=config,
        env=env,
        tmp=tmp_path,
    )
    assert code == 0, result.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["shape"][1] == 5  # flag (kebab-case) over the file's 4
    assert side["start_frame"] == [0, 2, 4, 6]  # environment's 2 over the file's 3
    assert side["block"] == 2 and side["shape"][2:4] == [32, 32]  # file over the default 0
    assert side["crop"] is None  # default: the whole field


def test_one_config_file_serves_several_commands(tmp_path):
    """A table of another command is no mistake; only names nowcastd does not know are."""
    out = tmp_path / "clips.npy"
    config = "[dataset]\ntotal_length = 12\n[serve]\nlead_frames = 3\n[train]\nlr = 0.1\n"
    code, _, result = run(["dataset", "build", MOVIE, "--out", out], config=config, tmp=tmp_path)
    assert code == 0, result.output
    assert json.loads(out.with_suffix(".json").read_text())["shape"][:2] == [1, 12]


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_command_logs_debug(tmp_path, where):
    args = ["dataset", "build", MOVIE, "--out", tmp_path / "x.npy", "--total_length", "12"]
    args = ["--verbose", *args] if where == "before" else [*args, "-v"]
    code, _, result = run(args)
    assert code == 0, result.output
    assert logging.getLogger().level == logging.DEBUG


def test_serve_help_shows_defaults_kebab_aliases_and_required_options():
    # wide enough for the longest flag pair (--probability_thresholds_mm_h, 60 characters)
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0
    lines = {line.split()[1]: line for line in result.output.splitlines() if "--" in line[:6]}
    assert "--watch-dir" in lines["--watch_dir,--watch-dir"]
    assert "[required]" in lines["--watch_dir,--watch-dir"]
    assert "[default: 9810]" in lines["--metrics_port,--metrics-port"]
    assert "[default: off]" in lines["--poll"]
