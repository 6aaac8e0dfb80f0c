"""`nowcastd train` end to end on real files: the seed's flags, checkpoints, resume, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nowcastd.cli import app
from nowcastd.cli.train import SETTINGS
from nowcastd.io.model_checkpoint import checkpoint_dirs
from tests.paths import FIXTURES, REPO

MOVIE = FIXTURES / "radar" / "movie_small.h5"

# The seed command's flags, scaled down to a tiny model on the 12-frame 64x64 fixture movie.
SEED = [
    "--model_name",
    "predrnn_v2",
    "--num_hidden",
    "8,8",
    "--num_layers",
    "2",
    "--patch_size",
    "4",
    "--img_channel",
    "1",
    "--img_width",
    "64",
    "--total_length",
    "5",
    "--input_length",
    "4",
    "--lr",
    "0.001",
    "--batch_size",
    "2",
    "--reverse_scheduled_sampling",
    "0",
    "--decouple_beta",
    "0.1",
    "--filter_size",
    "3",
    "--layer_norm",
    "0",
    "--valid_fraction",
    "0.45",
]


def run_train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", *SEED, *args])
    if result.exit_code and not isinstance(result.exception, SystemExit):
        return result.exit_code, f"{result.output}\n{result.exception!r}"
    return result.exit_code, result.output


def records(save_dir: Path, kind: str) -> list[dict]:
    lines = (save_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_seed_flags_train_snapshot_evaluate_and_draw(tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    save.mkdir()
    (save / "notes.txt").write_text("mine")
    code, out = run_train(
        "--train_data_paths",
        str(MOVIE),
        "--save_dir",
        str(save),
        "--visual",
        "1",
        "--max_iterations",
        "6",
        "--display_interval",
        "2",
        "--snapshot_interval",
        "2",
        "--test_interval",
        "6",
        "--keep_checkpoints",
        "2",
        "--num_save_samples",
        "1",
    )
    assert code == 0, out
    assert (save / "notes.txt").read_text() == "mine"  # nothing in save_dir is deleted
    assert [p.name for p in checkpoint_dirs(save)] == ["ckpt-00000004", "ckpt-00000006"]
    train = records(save, "train")
    assert [r["iteration"] for r in train] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) for r in train)
    (ev,) = records(save, "eval")
    assert ev["leads"] == 1 and np.isfinite(ev["mean"]["mse"])
    assert "csi_1_mm_h" in ev["per_lead"]  # the movie's transform is physical
    figures = sorted(p.name for p in (save / "figures" / "00000006").iterdir())
    assert figures == ["decoupling_cosine.png", "sample_000.png"]
    meta = json.loads((save / "ckpt-00000006" / "meta.json").read_text())
    assert meta["step"] == 6 and meta["transform"]["kind"] == "dbz"
    assert meta["data_state"]["position"] >= 0 and meta["has_train_state"]


def test_interrupted_and_resumed_run_gives_the_same_losses(tmp_path: Path) -> None:
    common = [
        "--train_data_paths",
        str(MOVIE),
        "--display_interval",
        "1",
        "--test_interval",
        "1000",
        "--reverse_input",
        "1",
        "--reverse_scheduled_sampling",
        "1",
        "--seed",
        "7",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    code, out = run_train(
        *common, "--save_dir", str(full), "--max_iterations", "6", "--snapshot_interval", "6"
    )
    assert code == 0, out
    code, out = run_train(
        *common, "--save_dir", str(part), "--max_iterations", "3", "--snapshot_interval", "3"
    )
    assert code == 0, out
    code, out = run_train(
        *common,
        "--save_dir",
        str(part),
        "--max_iterations",
        "6",
        "--snapshot_interval",
        "3",
        "--resume",
    )
    assert code == 0, out
    want = [r["loss"] for r in records(full, "train")]
    got = [r["loss"] for r in records(part, "train")]
    assert len(want) == len(got) == 6
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_wrong_data_size_is_one_line_error_suggesting_dataset_build(tmp_path: Path) -> None:
    code, out = run_train(  # --save-dir: the kebab-case spelling of --save_dir
        "--train_data_paths", str(MOVIE), "--img_width", "40", "--save-dir", str(tmp_path / "c")
    )
    assert code == 1
    assert "64×64×1" in out and "40×40×1" in out and "nowcastd dataset build" in out
    assert "Traceback" not in out


def test_non_finite_loss_stops_with_a_clear_error_and_writes_no_bad_checkpoint(tmp_path) -> None:
    clips = np.full((4, 5, 64, 64, 1), np.inf, np.float32)
    np.save(tmp_path / "bad.npy", clips)
    save = tmp_path / "c"
    code, out = run_train(
        "--train_data_paths",
        str(tmp_path / "bad.npy"),
        "--save_dir",
        str(save),
        "--max_iterations",
        "4",
        "--display_interval",
        "2",
        "--snapshot_interval",
        "2",
        "--valid_fraction",
        "0",
    )
    assert code == 1
    assert "loss is" in out
    assert checkpoint_dirs(save) == []


def test_every_train_flag_carries_its_help_in_its_field() -> None:
    # the one place of a flag's help is its config field: a new field without help fails here
    assert [s.name for s in SETTINGS if not s.help.strip()] == []
    assert [s.name for s in SETTINGS if s.switch] == ["resume"]


def test_toml_config_sets_flags_and_command_line_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "train.toml"
    cfg.write_text(
        f'[train]\nmax_iterations = 2\ndisplay_interval = 1\nsave_dir = "{tmp_path / "a"}"\n'
        f'train_data_paths = ["{MOVIE}"]\nsnapshot_interval = 100\ntest_interval = 100\n'
    )
    code, out = run_train("--config", str(cfg), "--display_interval", "2")
    assert code == 0, out
    assert [r["iteration"] for r in records(tmp_path / "a", "train")] == [2]


def test_two_devices_give_the_same_loss_as_one() -> None:
    """One device; two devices with XLA's own gradient reduction; two devices with the mesh
    (per-shard gradients, one flat all-reduce); and the mesh with a valid mask (which keeps
    XLA's reduction): the same losses and the same weights after three iterations."""
    script = r"""
import jax, jax.numpy as jnp, numpy as np
from model.config import ModelConfig
from model.network import PredRNN
from model.sampling import SamplingConfig
from model.train import adam, init_train_state, make_train_step
from nowcastd.train.sharding import DataParallel
cfg = ModelConfig(model_name="predrnn_v2", num_hidden=(4, 4), filter_size=3, patch_size=2,
                  img_height=8, img_width=8, input_length=2, total_length=4)
rng = np.random.default_rng(0)
clips = rng.random((4, 4, 8, 8, 1), dtype=np.float32)
valid = (rng.random((4, 4, 8, 8, 1)) > 0.3).astype(np.float32)
def run(devices, use_mesh, with_valid):
    opt = adam(1e-3)
    state = init_train_state(PredRNN(cfg, key=jax.random.key(0)), opt, jax.random.key(1))
    dp = DataParallel.create() if devices == 2 else None
    mesh = dp.mesh if use_mesh else None
    step = make_train_step(opt, SamplingConfig(), reverse_input=True, mesh=mesh)
    put = dp.shard if dp else jnp.asarray
    if dp:
        assert dp.size == 2, dp.size
        state = dp.replicate(state)
    out = []
    for _ in range(3):
        args = (put(clips), put(valid)) if with_valid else (put(clips),)
        state, m = step(state, *args)
        out.append(float(m.loss))
    weights = [np.asarray(w).ravel() for w in jax.tree_util.tree_leaves(state.network)]
    return out, float(np.concatenate(weights).sum())
import json
runs = [run(1, False, False), run(2, False, False), run(2, True, False),
        run(1, False, True), run(2, True, True)]
print(json.dumps(runs))
"""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": str(REPO),
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    one, gspmd, mesh, one_valid, mesh_valid = json.loads(proc.stdout.strip().splitlines()[-1])
    for got, want in ((gspmd, one), (mesh, one), (mesh_valid, one_valid)):
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5)  # losses
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5)  # sum of the weights
    assert one[0] != one_valid[0]  # the valid mask changes the loss


@pytest.mark.parametrize("flag", ["--num_layers", "--num_hidden"])
def test_num_layers_is_checked_against_num_hidden(tmp_path: Path, flag: str) -> None:
    value = "3" if flag == "--num_layers" else "8,8,8"
    code, out = run_train(
        "--train_data_paths", str(MOVIE), flag, value, "--save_dir", str(tmp_path / "c")
    )
    assert code == 1 and "--num_layers" in out


def test_toml_config_with_an_unknown_key_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "train.toml"
    cfg.write_text("[train]\nmax_iteration = 2\n")
    code, out = run_train("--config", str(cfg), "--train_data_paths", str(MOVIE))
    assert code == 1
    assert out.strip().splitlines() == [
        "error: [train] max_iteration: unknown key (did you mean max_iterations?); expected one "
        "of " + ", ".join(sorted(s.name for s in SETTINGS))
    ]


def _movie(path: Path, seed: int, frames: int = 8, size: int = 64, step: int = 300) -> Path:
    import h5py

    rain = np.random.default_rng(seed).gamma(0.6, 3.0, (frames, size, size)).astype(np.float32)
    with h5py.File(path, "w") as h:
        h.create_dataset("precip", data=rain).attrs["units"] = "mm/h"
        h.attrs["timestep_seconds"] = step
    return path


def test_random_sequences_from_several_movies_train_and_validate_on_another(tmp_path):
    a, b = _movie(tmp_path / "a.h5", 0), _movie(tmp_path / "b.h5", 1, step=120, frames=14)
    valid = _movie(tmp_path / "v.h5", 2)
    save = tmp_path / "run"
    code, out = run_train(
        "--train_data_paths", f"{a},{b}", "--valid_data_paths", str(valid),
        "--sequences", "1", "--synthetic_fraction", "0.5", "--block_choices", "1,2",
        "--loss", "weighted", "--predict_delta", "1", "--img_width", "16",
        "--data_crop", "0,0,32,32", "--data_block", "2",
        "--save_dir", str(save), "--max_iterations", "2", "--display_interval", "1",
        "--snapshot_interval", "2", "--test_interval", "2", "--reverse_input", "0",
    )  # fmt: skip
    assert code == 0, out
    ckpt = checkpoint_dirs(save)[-1]
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["model_config"]["predict_delta"] is True
    assert meta["train_config"]["loss"] == "weighted"
    assert "random sequences from a.h5, b.h5" in meta["data_source"]
    evals = records(save, "eval")
    assert evals and evals[-1]["n_sequences"] > 0


def test_lagrangian_training_records_its_motion_and_serves_through_load_model(tmp_path):
    """With a halo of 4 pixels: the sequences carry their surroundings, and the model trained
    on them serves as any other."""
    a, valid = _movie(tmp_path / "a.h5", 0), _movie(tmp_path / "v.h5", 2)
    save = tmp_path / "run"
    code, out = run_train(
        "--train_data_paths", str(a), "--valid_data_paths", str(valid), "--sequences", "1",
        "--synthetic_fraction", "0.5", "--block_choices", "1", "--predict_delta", "1",
        "--lagrangian", "1", "--motion_method", "LK", "--img_width", "16",
        "--data_crop", "0,0,32,32", "--data_block", "2", "--save_dir", str(save),
        "--max_iterations", "2", "--display_interval", "1", "--snapshot_interval", "2",
        "--test_interval", "2", "--reverse_input", "0", "--halo", "4",
    )  # fmt: skip
    assert code == 0, out
    from nowcastd.io.model_checkpoint import load_model

    loaded = load_model(save)
    assert loaded.cfg.lagrangian and loaded.motion_method == "LK"
    assert loaded.cfg.img_height == loaded.cfg.img_width == 16  # the grid, not the halo
    assert all(np.isfinite(r["loss"]) for r in records(save, "train"))
    meta = json.loads((checkpoint_dirs(save)[-1] / "meta.json").read_text())
    assert meta["train_config"]["halo"] == 4
    assert records(save, "eval")[-1]["n_sequences"] > 0


def test_blur_free_losses_and_rank_matching_are_recorded_and_honoured_by_the_forecast(tmp_path):
    import jax.numpy as jnp

    from model.lagrangian import extrapolation
    from nowcastd.data.motion import MotionEstimator
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.nowcast import Window, forecast_rates, rollout_rates_jit

    a, valid = _movie(tmp_path / "a.h5", 0), _movie(tmp_path / "v.h5", 2)
    save = tmp_path / "run"
    code, out = run_train(
        "--train_data_paths", str(a), "--valid_data_paths", str(valid), "--sequences", "1",
        "--block_choices", "1", "--predict_delta", "1", "--lagrangian", "1",
        "--match_extrapolation", "1", "--fourier_amplitude_weight", "0.5",
        "--fourier_correlation_weight", "0.1", "--intensity_l1_weight", "1",
        "--img_width", "16", "--data_crop", "0,0,32,32", "--data_block", "2",
        "--save_dir", str(save), "--max_iterations", "2", "--display_interval", "1",
        "--snapshot_interval", "2", "--test_interval", "100", "--reverse_input", "0",
    )  # fmt: skip
    assert code == 0, out
    assert all(np.isfinite(r["loss"]) for r in records(save, "train"))
    meta = json.loads((checkpoint_dirs(save)[-1] / "meta.json").read_text())
    run = meta["train_config"]
    assert (run["fourier_amplitude_weight"], run["fourier_correlation_weight"]) == (0.5, 0.1)
    assert run["intensity_l1_weight"] == 1.0
    loaded = load_model(save)  # what serve and evaluate load
    assert loaded.cfg.match_extrapolation
    rates = np.random.default_rng(5).gamma(0.6, 3.0, (1, 4, 16, 16)).astype(np.float32)
    window = Window.from_rates(rates, loaded.transform)
    motion = MotionEstimator(loaded.motion_method)

    def rollout(context, flow):
        return rollout_rates_jit(loaded.network, loaded.transform, context, 1, flow)

    forecast = forecast_rates(window, rollout, motion=motion)[0, 0]
    flow = jnp.asarray(motion.batch(rates))
    advected = extrapolation(jnp.asarray(window.context[:, -1]), flow, 1)
    expected = loaded.transform.to_rates(np.asarray(advected)[0, 0, ..., 0])
    np.testing.assert_array_equal(np.isnan(forecast), np.isnan(expected))
    kept = ~np.isnan(forecast)
    np.testing.assert_allclose(np.sort(forecast[kept]), np.sort(expected[kept]), rtol=1e-5)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lagrangian", "1"], "lagrangian=True: needs predict_delta=True"),
        (
            ["--lagrangian", "1", "--predict_delta", "1"],
            "reverse_input: expected 0 with --lagrangian 1",
        ),
        (["--motion_method", "flow"], "motion_method"),
        (["--halo", "2"], "halo: expected 0, or pixels >= 0 with --sequences 1 and --lagrangian 1"),
    ],
)
def test_lagrangian_flag_mistakes_are_one_line(tmp_path, flags, message):
    code, out = run_train("--train_data_paths", str(MOVIE), *flags)
    assert code == 1, out
    assert message in out and "Traceback" not in out


def test_default_sequences_train_on_an_archive_no_larger_than_the_model_grid(tmp_path):
    from tests.nowcastd.data.test_archive import CONFIG, SAMPLE

    config = tmp_path / "archive.toml"
    config.write_text(CONFIG)  # the sample's 256 km at 4 km: a 64 x 64 archive
    archive = tmp_path / "archive.h5"
    result = CliRunner().invoke(
        app, ["dataset", "archive", str(SAMPLE[0].parent), "--out", str(archive),
              "--config", str(config)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    save = tmp_path / "run"
    code, out = run_train(
        "--train_data_paths", str(archive), "--valid_data_paths", str(archive),
        "--sequences", "1", "--save_dir", str(save), "--max_iterations", "2",
        "--display_interval", "1", "--snapshot_interval", "2", "--test_interval", "2",
    )  # fmt: skip
    assert code == 0, out
    assert "padded with no data" in out  # synthetic sequences say what they are drawn from
    assert [r["iteration"] for r in records(save, "train")] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in records(save, "train"))
    meta = json.loads((checkpoint_dirs(save)[-1] / "meta.json").read_text())
    assert meta["train_config"]["synthetic_fraction"] == 0.3  # the default, not turned off


def test_random_sequences_need_a_validation_movie(tmp_path):
    a = _movie(tmp_path / "a.h5", 0)
    code, out = run_train("--train_data_paths", str(a), "--sequences", "1")
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("error: valid_data_paths: expected a validation")


def test_resume_may_switch_inference_options_but_not_the_network(tmp_path):
    save = tmp_path / "run"
    common = ("--train_data_paths", str(MOVIE), "--save_dir", str(save), "--reverse_input", "0")
    code, out = run_train(*common, "--max_iterations", "2", "--snapshot_interval", "2",
                          "--display_interval", "1", "--test_interval", "100")  # fmt: skip
    assert code == 0, out
    code, out = run_train(*common, "--resume", "--max_iterations", "3", "--match_intensity", "1",
                          "--snapshot_interval", "1", "--display_interval", "1",
                          "--test_interval", "100")  # fmt: skip
    assert code == 0, out
    meta = json.loads((checkpoint_dirs(save)[-1] / "meta.json").read_text())
    assert meta["model_config"]["match_intensity"] is True
    code, out = run_train(*common, "--resume", "--max_iterations", "4", "--num_hidden", "4,4",
                          "--num_layers", "2")  # fmt: skip
    assert code == 1
    assert (
        "the model flags differ from the checkpoint's: --num_hidden (8, 8) (flags: (4, 4))"
        in (out.strip().splitlines()[-1])
    )


def test_pretrained_weights_may_start_a_run_with_other_matching_but_not_another_network(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    common = ("--train_data_paths", str(MOVIE), "--reverse_input", "0", "--max_iterations", "1",
              "--snapshot_interval", "1", "--display_interval", "1", "--test_interval", "100")  # fmt: skip
    code, out = run_train(*common, "--save_dir", str(first), "--match_intensity", "1")
    assert code == 0, out
    pretrained = checkpoint_dirs(first)[-1]
    code, out = run_train(*common, "--save_dir", str(second), "--pretrained_model", str(pretrained))
    assert code == 0, out
    meta = json.loads((checkpoint_dirs(second)[-1] / "meta.json").read_text())
    assert meta["model_config"]["match_intensity"] is False
    code, out = run_train(*common, "--save_dir", str(tmp_path / "third"),
                          "--pretrained_model", str(pretrained), "--num_hidden", "4,4",
                          "--num_layers", "2")  # fmt: skip
    assert code == 1
    assert "differs from the flags" in out.strip().splitlines()[-1]
