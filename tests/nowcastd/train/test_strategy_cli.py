"""`nowcastd train --strategy`: a real run times its training step's strategies and its CPU
device counts, logs them and caches them; a second run reads them back; bad names are one line."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nowcastd.cli import app
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.devices import device_counts
from nowcastd.strategy.machine import cpu_model
from nowcastd.train.cpu_devices import choose_cpu_devices
from nowcastd.train.sharding import cpu_devices_for
from tests.nowcastd.train.test_train_cli import MOVIE, SEED
from tests.paths import REPO


def _train(save_dir: Path, cache: Path, *flags: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {
        "JAX_PLATFORMS": "cpu",
        "NOWCASTD_STRATEGY_CACHE": str(cache),
        "PYTHONPATH": str(REPO),
    }
    args = [*SEED, "--train_data_paths", str(MOVIE), "--save_dir", str(save_dir)]
    args += ["--max_iterations", "2", "--test_interval", "1000", "--reverse_input", "0"]
    cmd = [sys.executable, "-m", "nowcastd.cli", "train", *args, *flags]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_train_logs_the_strategy_it_measured_and_then_reads_it_from_the_cache(tmp_path) -> None:
    cache = tmp_path / "cache"
    line = (
        "strategy for training step (2x5x64x64x1 float32 over 1 device, reverse_input 0) "
        f"on {cpu_model()}: "
    )
    first = _train(tmp_path / "a", cache, "--strategy", "auto", "--cpu_devices", "1")
    (logged,) = [x for x in first.splitlines() if line in x]
    assert "timed in" in logged
    second = _train(tmp_path / "b", cache, "--strategy", "auto", "--cpu_devices", "1")
    (again,) = [x for x in second.splitlines() if line in x]
    assert "from the cache" in again and again.split(": ")[1] == logged.split(": ")[1]


def test_a_bad_strategy_name_is_a_one_line_error() -> None:
    result = CliRunner().invoke(app, ["train", *SEED, "--strategy", "fastest"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    # what was expected (the names' grammar, as model.strategy spells it) and what arrived
    assert line.startswith("error: --strategy: expected auto, default or a strategy name (")
    assert "ynn=on|off|auto" in line and "wgrad=N" in line and line.endswith(", got 'fastest'")


CORES = len(os.sched_getaffinity(0))
COUNTS = device_counts(2, CORES)
#: the search's one log line for the device counts of these tests' runs
LINE = f"strategy for training step CPU devices (2 clips per process, reverse_input 0) on {cpu_model()}: "


def test_the_device_counts_are_the_automatic_one_half_of_it_and_no_split() -> None:
    assert device_counts(16, 8) == (8, 4, 1)
    assert device_counts(6, 8) == (6, 3, 1)
    assert device_counts(6, 4) == (3, 1)  # half of 3 is no count
    assert device_counts(4, 2) == (2, 1)
    assert device_counts(5, 2) == (1,)
    assert device_counts(2, CORES)[0] == cpu_devices_for(2)


@pytest.mark.skipif(len(COUNTS) < 2, reason="one usable core: one device count to try")
def test_cpu_device_counts_are_timed_in_child_processes_and_cached(
    tiny_cfg, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="nowcastd.strategy")
    cache = StrategyCache(tmp_path)
    count = choose_cpu_devices(tiny_cfg, 2, reverse_input=False, cache=cache)
    assert count in COUNTS
    (path,) = tmp_path.glob("training-step-cpu-devices-*.json")
    assert json.loads(path.read_text())["strategy"] == str(count)
    message = caplog.records[-1].getMessage()
    assert message.startswith(LINE + f"{count} (") and "candidates timed in" in message
    assert choose_cpu_devices(tiny_cfg, 2, reverse_input=False, cache=cache) == count
    assert caplog.records[-1].getMessage().startswith(LINE + f"{count} (")
    assert "from the cache" in caplog.records[-1].getMessage()


@pytest.mark.skipif(len(COUNTS) < 2, reason="one usable core: one device count to try")
def test_a_short_run_times_one_device_count_and_caches_nothing(tiny_cfg, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="nowcastd.strategy")
    cache = StrategyCache(tmp_path)
    count = choose_cpu_devices(tiny_cfg, 2, reverse_input=False, cache=cache, iterations=1)
    assert count == cpu_devices_for(2)
    message = caplog.records[-1].getMessage()
    assert message.startswith(LINE) and "1 candidate timed in" in message
    assert f"{len(COUNTS) - 1} left out" in message and "not cached" in message
    assert not list(tmp_path.glob("*.json"))
