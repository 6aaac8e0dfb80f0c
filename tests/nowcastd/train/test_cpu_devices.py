"""`nowcastd train` splits a CPU into host devices, one batch shard each."""

import os
import subprocess
import sys

import pytest

from nowcastd.train.sharding import cpu_devices_for
from tests.paths import FIXTURES, REPO

CORES = len(os.sched_getaffinity(0))


def test_automatic_count_is_the_largest_core_count_dividing_the_batch() -> None:
    for batch in (1, 2, 3, 4, 6, 16):
        n = cpu_devices_for(batch)
        assert 1 <= n <= CORES and batch % n == 0
        assert all(batch % m for m in range(n + 1, CORES + 1))
    assert cpu_devices_for(16, 4) == 4  # asked for explicitly, even beyond the cores


def test_a_count_that_does_not_divide_the_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="3 devices cannot split a batch of 8"):
        cpu_devices_for(8, 3)
    with pytest.raises(ValueError, match=">= 0"):
        cpu_devices_for(8, -1)


def train(save_dir, *flags: str) -> subprocess.CompletedProcess:
    args = [
        "--model_name", "predrnn_v2", "--num_hidden", "4,4", "--num_layers", "2",
        "--patch_size", "4", "--img_width", "64", "--total_length", "4", "--input_length", "3",
        "--batch_size", "2", "--filter_size", "3", "--max_iterations", "1", "--valid_fraction", "0.45",
        "--train_data_paths", str(FIXTURES / "radar" / "movie_small.h5"),
        "--save_dir", str(save_dir),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "nowcastd.cli", "-v", "train", *args, *flags],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("flags", [(), ("--cpu_devices", "1")])
def test_train_runs_data_parallel_over_the_split(tmp_path, flags) -> None:
    proc = train(tmp_path / "run", *flags)
    assert proc.returncode == 0, proc.stderr
    devices = int(flags[1]) if flags else cpu_devices_for(2)
    split = f"data parallel over {devices} devices"
    assert (split in proc.stderr) == (devices > 1), proc.stderr
    assert (tmp_path / "run" / "ckpt-00000001").is_dir()


def test_train_refuses_a_split_that_does_not_divide_the_batch(tmp_path) -> None:
    proc = train(tmp_path / "run", "--cpu_devices", "3")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: cpu_devices: 3 devices cannot split a batch of 2; expected a divisor of "
        "batch_size, or 0 for automatic"
    )
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
