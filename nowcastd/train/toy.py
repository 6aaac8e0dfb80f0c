"""The demo's toy model: a small PredRNN-v2 trained on the spot on the sample movie's frames
before the sample scans (minutes on a CPU; its skill says it is a toy)."""

from __future__ import annotations

import logging
import time
from importlib import resources
from pathlib import Path

from model.config import ModelConfig
from model.sampling import SamplingConfig
from nowcastd.train import loop as training
from nowcastd.train.config import TrainConfig

__all__ = ["sample_movie", "train_toy_model"]

logger = logging.getLogger(__name__)


def sample_movie() -> Path:
    """The bundled KNMI movie of the sample night (64 x 64 at 4 km)."""
    return Path(str(resources.files("nowcastd") / "sample" / "knmi_20100826_64px.h5"))


def train_toy_model(save_dir: Path, *, iterations: int, grid: tuple[int, int]) -> tuple[Path, str]:
    """Train the toy model into `save_dir`; (save_dir, a line saying how it went)."""
    half = max(iterations // 2, 1)
    cfg = TrainConfig(
        model=ModelConfig(
            model_name="predrnn_v2",
            num_hidden=(32, 32),
            filter_size=3,
            patch_size=4,
            img_height=grid[0],
            img_width=grid[1],
            layer_norm=False,
            input_length=4,
            total_length=16,
            predict_delta=True,
        ),
        # teacher forcing fades out over the first half, so the model learns to roll out
        sampling=SamplingConfig(sampling_stop_iter=half, sampling_changing_rate=1.0 / half),
        train_data_paths=(sample_movie(),),
        save_dir=save_dir,
        max_iterations=iterations,
        display_interval=max(iterations // 10, 1),
        test_interval=iterations,
        snapshot_interval=iterations,
        keep_checkpoints=1,
        lr=1e-3,
        batch_size=4,
        reverse_input=False,
        # the last 37 of the movie's 92 frames (04:35 on) are held out: the sample scans
        valid_fraction=0.4,
        seed=0,
    )
    t0 = time.perf_counter()
    result = training.run(cfg)
    loss = result.get("loss", float("nan"))
    return save_dir, (
        f"trained in {time.perf_counter() - t0:.0f} s, last loss {loss:.5f}; checkpoint {save_dir}"
    )
