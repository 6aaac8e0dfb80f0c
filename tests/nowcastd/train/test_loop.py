"""The training loop's checkpoint rule: no checkpoint of a diverged state is ever written."""

from pathlib import Path

import numpy as np
import pytest

from model.config import ModelConfig
from nowcastd.io.model_checkpoint import checkpoint_dirs, resolve_checkpoint
from nowcastd.train.config import TrainConfig
from nowcastd.train.loop import TrainingDiverged, run

MODEL = ModelConfig(
    model_name="predrnn_v2",
    num_hidden=(4, 4),
    filter_size=3,
    patch_size=4,
    img_height=16,
    img_width=16,
    input_length=2,
    total_length=3,
)


def _clips(path: Path, value: float) -> Path:
    clips = np.random.default_rng(0).random((4, 3, 16, 16, 1)).astype(np.float32)
    np.save(path, clips if np.isfinite(value) else np.full_like(clips, value))
    return path


def _config(data: Path, save_dir: Path, *, max_iterations: int, resume: bool) -> TrainConfig:
    return TrainConfig(
        model=MODEL,
        train_data_paths=(data,),
        save_dir=save_dir,
        max_iterations=max_iterations,
        display_interval=100,  # neither interval falls on the last iteration:
        snapshot_interval=100,  # only the final snapshot saves it
        test_interval=100,
        batch_size=2,
        valid_fraction=0.0,
        resume=resume,
    )


def test_final_snapshot_of_a_diverged_run_is_refused_and_the_good_one_stays_newest(
    tmp_path: Path,
) -> None:
    save = tmp_path / "run"
    run(_config(_clips(tmp_path / "good.npy", 0.0), save, max_iterations=1, resume=False))
    assert [p.name for p in checkpoint_dirs(save)] == ["ckpt-00000001"]

    bad = _clips(tmp_path / "bad.npy", np.inf)
    with pytest.raises(TrainingDiverged, match=r"iteration 2: loss is (nan|inf)") as err:
        run(_config(bad, save, max_iterations=2, resume=True))
    assert "\n" not in str(err.value)
    assert [p.name for p in checkpoint_dirs(save)] == ["ckpt-00000001"]
    assert resolve_checkpoint(save).name == "ckpt-00000001"  # what serve would load
