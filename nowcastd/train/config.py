"""`TrainConfig`: everything `nowcastd train` needs beyond the model and schedule configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from model.config import ModelConfig
from model.sampling import SamplingConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    model: ModelConfig
    sampling: SamplingConfig = SamplingConfig()
    train_data_paths: tuple[Path, ...] = ()
    valid_data_paths: tuple[Path, ...] = ()
    save_dir: Path = Path("checkpoints")
    max_iterations: int = 80000
    display_interval: int = 100
    test_interval: int = 5000
    snapshot_interval: int = 5000
    num_save_samples: int = 10
    pretrained_model: Path | None = None
    lr: float = 0.001
    batch_size: int = 8
    reverse_input: bool = True
    visual: bool = False
    is_training: bool = True
    seed: int = 0
    resume: bool = False
    keep_checkpoints: int = 3
    valid_fraction: float = 0.2
    data_stride: int = 1
    data_block: int = 1
    data_crop: tuple[int, int, int, int] | None = None
    sequences: bool = False
    synthetic_fraction: float = 0.3
    block_choices: tuple[int, ...] = (1, 2, 4)
    loss: str = "mse"

    def __post_init__(self) -> None:
        positive = (
            "max_iterations",
            "display_interval",
            "test_interval",
            "snapshot_interval",
            "batch_size",
            "keep_checkpoints",
            "data_stride",
            "data_block",
        )
        for name in positive:
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"TrainConfig.{name}={value!r}: must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr={self.lr!r}: must be > 0")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(
                f"TrainConfig.valid_fraction={self.valid_fraction!r}: must be in [0, 1)"
            )
        if self.num_save_samples < 0:
            raise ValueError(
                f"TrainConfig.num_save_samples={self.num_save_samples!r}: must be >= 0"
            )
        if not 0 <= self.synthetic_fraction <= 1:
            raise ValueError(
                f"TrainConfig.synthetic_fraction={self.synthetic_fraction!r}: must be in [0, 1]"
            )
        if self.loss not in ("mse", "weighted"):
            raise ValueError(f"TrainConfig.loss={self.loss!r}: must be 'mse' or 'weighted'")
        if not self.train_data_paths and self.is_training:
            raise ValueError("TrainConfig.train_data_paths: at least one path is needed to train")

    @property
    def shared_split(self) -> bool:
        """Train and validation come from the same files: split them by time."""
        if self.sequences:  # random sequences use every frame: validation must be its own file
            return False
        return not self.valid_data_paths or self.valid_data_paths == self.train_data_paths
