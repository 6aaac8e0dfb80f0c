"""`TrainConfig`: everything `nowcastd train` needs beyond the model and schedule configs."""

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Literal

from model.config import ModelConfig
from model.sampling import SamplingConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The training run. Defaults are run.py's, except `save_dir` (`checkpoints`, not run.py's
    `checkpoints/mnist_predrnn`): the one default of `nowcastd train`.

    `fourier_amplitude_weight`, `fourier_correlation_weight` and `intensity_l1_weight` add the
    loss terms of `model.objectives` beside `loss` (0: off, the official objective), as
    `nowcastd.train.departures` builds them."""

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
    loss: Literal["mse", "weighted"] = "mse"
    fourier_amplitude_weight: float = 0.0
    fourier_correlation_weight: float = 0.0
    intensity_l1_weight: float = 0.0
    motion_method: Literal["LK", "darts", "proesmans", "vet"] = "LK"
    valid_time_range: tuple[str, str] | None = None

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
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a number > 0, got {self.lr!r}")
        if not 0 <= self.valid_fraction < 1:
            raise ValueError(
                f"valid_fraction: expected a number in [0, 1), got {self.valid_fraction!r}"
            )
        if self.num_save_samples < 0:
            raise ValueError(
                f"num_save_samples: expected an integer >= 0, got {self.num_save_samples!r}"
            )
        if not 0 <= self.synthetic_fraction <= 1:
            raise ValueError(
                f"synthetic_fraction: expected a number in [0, 1], got {self.synthetic_fraction!r}"
            )
        for name in (
            "fourier_amplitude_weight",
            "fourier_correlation_weight",
            "intensity_l1_weight",
        ):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if not self.block_choices or min(self.block_choices) < 1:
            raise ValueError(f"block_choices: expected integers >= 1, got {self.block_choices!r}")
        if self.sequences and self.is_training and not self.valid_data_paths:
            raise ValueError(
                "valid_data_paths: expected a validation movie with --sequences 1 (random "
                "sequences use every frame of the training movies), got none"
            )
        if self.model.lagrangian and self.reverse_input and self.is_training:
            raise ValueError(
                "reverse_input: expected 0 with --lagrangian 1 (a time-reversed clip has "
                "another motion), got 1"
            )
        if self.valid_time_range is not None:
            _time_range(self.valid_time_range)
            if self.shared_split:
                raise ValueError(
                    "valid_time_range: expected --valid_data_paths other than the training "
                    "data (or --sequences 1, which leaves the range out of training), got the "
                    "same files"
                )
        if not self.train_data_paths and self.is_training:
            raise ValueError("train_data_paths: expected at least one path to train, got none")

    @property
    def valid_range_unix(self) -> tuple[int, int] | None:
        """`valid_time_range` as (first, last) Unix seconds, both included."""
        return None if self.valid_time_range is None else _time_range(self.valid_time_range)

    @property
    def shared_split(self) -> bool:
        """Train and validation come from the same files: split them by time."""
        if self.sequences:  # random sequences use every frame: validation must be its own file
            return False
        return not self.valid_data_paths or self.valid_data_paths == self.train_data_paths


def _unix(text: str) -> int:
    """Unix seconds of an ISO 8601 time (naive: UTC); ValueError if it is none."""
    t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp())


def _time_range(times: tuple[str, str]) -> tuple[int, int]:
    """(first, last) Unix seconds of two ISO 8601 times; ValueError naming the setting."""
    try:
        first, last = (_unix(t) for t in times)
    except ValueError:
        raise ValueError(
            "valid_time_range: expected two ISO 8601 UTC times FIRST,LAST such as "
            f"2010-08-26T06:00,2010-08-26T07:35, got {times!r}"
        ) from None
    if last < first:
        raise ValueError(f"valid_time_range: expected FIRST <= LAST, got {times!r}")
    return first, last
