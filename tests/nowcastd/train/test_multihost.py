"""Two real `nowcastd train` processes on 127.0.0.1, joined by jax.distributed: they train one
model, hold the same parameters, and lose exactly what one process loses on the same batches."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from model.checkpoint import config_from_json
from model.network import PredRNN
from model.sampling import SamplingConfig
from model.train import adam, init_train_state, make_train_step
from nowcastd.data.loader import BatchIterator, open_dataset
from nowcastd.io.model_checkpoint import checkpoint_dirs
from nowcastd.io.run_checkpoints import restore_run_checkpoint
from nowcastd.train.hosts import param_digest
from tests.paths import REPO

BATCH, SEED, LR = 4, 3, 0.01


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(data: Path, save: Path, iterations: int, *flags: str) -> None:
    port = _free_port()
    args = [
        "--model_name", "predrnn_v2", "--num_hidden", "4", "--num_layers", "1",
        "--patch_size", "4", "--img_width", "8", "--total_length", "3", "--input_length", "2",
        "--filter_size", "3", "--layer_norm", "0", "--reverse_input", "0", "--batch_size", str(BATCH), "--seed", str(SEED), "--lr", str(LR),
        "--max_iterations", str(iterations), "--display_interval", "1",
        "--snapshot_interval", "100", "--valid_fraction", "0", "--train_data_paths", str(data),
        "--save_dir", str(save), "--cpu_devices", "1",
        "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {
        "JAX_PLATFORMS": "cpu",
        # the second pair of processes compiles nothing the first one did
        "JAX_COMPILATION_CACHE_DIR": str(save.parent / "xla-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nowcastd.cli", "train", *args, "--process_id", str(i), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )  # fmt: skip
        for i in range(2)
    ]
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"process {i}:\n{err}"


def _reference(data: Path, meta: dict, iterations: int):
    """One process, one device, the run's configs: the global batch is process 0's share (its
    generator seeded (seed, 0)) then process 1's."""
    model = config_from_json(meta["model_config"])
    run = meta["train_config"]
    train_set = open_dataset(
        data, total_length=3, img_height=8, img_width=8, img_channel=1, valid_fraction=0.0
    )
    shares = [
        BatchIterator(train_set, BATCH // 2, np.random.default_rng([SEED, i]), with_mask=True)
        for i in range(2)
    ]
    k_init, k_run = jax.random.split(jax.random.key(SEED))
    optimizer = adam(LR)
    state = init_train_state(PredRNN(model, key=k_init), optimizer, k_run)
    step = make_train_step(
        optimizer, SamplingConfig(**run["sampling"]), reverse_input=run["reverse_input"]
    )
    losses = []
    for _ in range(iterations):
        clips = np.concatenate([next(s)[0] for s in shares])
        state, metrics = step(state, clips)
        losses.append(float(metrics.loss))
    return state, losses


def test_two_processes_train_as_one_and_resume(tmp_path: Path) -> None:
    data = tmp_path / "clips.npy"
    np.save(data, np.random.default_rng(0).random((12, 3, 8, 8, 1)).astype(np.float32))
    save = tmp_path / "run"
    _two_processes(data, save, 2)
    assert [p.name for p in checkpoint_dirs(save)] == ["ckpt-00000002"]
    _two_processes(data, save, 4, "--resume")
    assert [p.name for p in checkpoint_dirs(save)] == ["ckpt-00000002", "ckpt-00000004"]

    records = [json.loads(line) for line in (save / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    digests = [r["param_digests"] for r in records if r["kind"] == "hosts"]
    saved, meta = restore_run_checkpoint(checkpoint_dirs(save)[-1], adam(LR))
    want_state, want_losses = _reference(data, meta, 4)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    assert len(digests) == 2 and all(len(set(d)) == 1 for d in digests)
    assert digests[-1][0] == param_digest(saved.network)  # both processes hold what was saved
    assert meta["data_state"]["kind"] == "processes" and len(meta["data_state"]["states"]) == 2
    got = jax.tree_util.tree_leaves(saved.network)
    want = jax.tree_util.tree_leaves(want_state.network)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)
