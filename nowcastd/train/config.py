"""`TrainConfig`: everything `nowcastd train` needs beyond the model and schedule configs."""

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Literal

from model.config import ModelConfig
from model.sampling import SamplingConfig
from nowcastd.settings import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The training run. Defaults are run.py's, except `save_dir` (`checkpoints`, not run.py's
    `checkpoints/mnist_predrnn`): the one default of `nowcastd train`.

    `fourier_amplitude_weight`, `fourier_correlation_weight` and `intensity_l1_weight` add the
    loss terms of `model.objectives` beside `loss` (0: off, the official objective), as
    `nowcastd.train.departures` builds them."""

    model: ModelConfig
    sampling: SamplingConfig = SamplingConfig()
    train_data_paths: tuple[Path, ...] = setting(
        (),
        ".npy clips (N,T,H,W,C), an HDF5 radar movie, or an official .npz; comma-separated",
    )
    valid_data_paths: tuple[Path, ...] = setting(
        (),
        "validation data; empty or equal to the training data: split it by time",
    )
    save_dir: Path = setting(
        Path("checkpoints"),
        "checkpoints, metrics.jsonl and figures (nothing in it is ever deleted)",
    )
    max_iterations: int = setting(80000, "iterations to run")
    display_interval: int = setting(100, "log the loss every this many iterations")
    test_interval: int = setting(5000, "evaluate every this many iterations")
    snapshot_interval: int = setting(5000, "checkpoint every this many iterations")
    num_save_samples: int = setting(10, "sequences drawn per evaluation with --visual 1")
    pretrained_model: Path | None = setting(
        None,
        "start from a nowcastd checkpoint or an official model.ckpt-N",
    )
    lr: float = setting(0.001, "Adam learning rate")
    batch_size: int = setting(
        8,
        "sequences per batch, of all processes together (split over devices)",
    )
    reverse_input: bool = setting(
        True,
        "1: a second Adam step on the time-reversed clip each iteration",
    )
    visual: bool = setting(
        False,
        "1: PNG figures and the v2 decoupling histogram at each evaluation",
    )
    is_training: bool = setting(True, "1: train; 0: evaluate --pretrained_model once")
    seed: int = setting(0, "seed of weights, masks and data order")
    resume: bool = setting(False, "continue from the newest checkpoint in --save_dir", switch=True)
    keep_checkpoints: int = setting(3, "how many of this run's newest checkpoints to keep")
    valid_fraction: float = setting(0.2, "share of the time range held out for validation")
    data_stride: int = setting(1, "movie: frames between window starts")
    data_block: int = setting(1, "movie: block-average factor")
    data_crop: tuple[int, int, int, int] | None = setting(
        None,
        "movie: crop row0,col0,height,width before averaging",
    )
    sequences: bool = setting(
        False,
        "1: draw random sequences from every --train_data_paths movie (crops, block factors, "
        "flips, rotations, time reversal, per-movie time step); validation needs "
        "--valid_data_paths",
    )
    synthetic_fraction: float = setting(
        0.3,
        "with --sequences 1: share of synthetic sequences (a real frame advected by a random "
        "smooth flow, with growth and decay)",
    )
    block_choices: tuple[int, ...] = setting(
        (1, 2, 4),
        "with --sequences 1: block-average factors to draw from, comma-separated",
    )
    halo: int = setting(
        0,
        "with --sequences 1 and --lagrangian 1: model pixels of each sequence's surroundings on "
        "every side that the motion and the advection read, as serve's [domain] halo does "
        "(the loss is the grid's); 0: none",
    )
    loss: Literal["mse", "weighted"] = setting(
        "mse",
        "mse (the official loss) or weighted (HKO-7 rain-weighted MSE + MAE)",
    )
    fourier_amplitude_weight: float = setting(
        0.0,
        "weight of a term beside --loss that compares the Fourier amplitudes of forecast and "
        "observed frames, which blur loses and a displacement keeps (FACL, Yan et al. 2024); "
        "0: off",
    )
    fourier_correlation_weight: float = setting(
        0.0,
        "weight of FACL's Fourier correlation term beside --loss (1 - the correlation of "
        "forecast and observed frames); 0: off",
    )
    intensity_l1_weight: float = setting(
        0.0,
        "weight of NowcastNet's intensity-weighted L1 beside --loss (|error| weighted "
        "min(24, 1 + R) by the observed rain rate R in mm/h); 0: off",
    )
    motion_method: Literal["LK", "darts", "proesmans", "vet"] = setting(
        "LK",
        "with --lagrangian 1: pysteps' optical flow for each clip's motion (LK, darts, proesmans "
        "or vet; serve and evaluate take it from the checkpoint)",
    )
    valid_time_range: tuple[str, str] | None = setting(
        None,
        "FIRST,LAST ISO 8601 UTC times: validate on the frames of the --valid_data_paths movie or "
        "archive valid then; with --sequences 1, training sequences leave that range out of the "
        "same files",
    )

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
        self._check_sequence_settings()
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

    def _check_sequence_settings(self) -> None:
        if not self.block_choices or min(self.block_choices) < 1:
            raise ValueError(f"block_choices: expected integers >= 1, got {self.block_choices!r}")
        if self.halo < 0 or (self.halo and not (self.sequences and self.model.lagrangian)):
            raise ValueError(
                f"halo: expected 0, or pixels >= 0 with --sequences 1 and --lagrangian 1, "
                f"got {self.halo!r}"
            )

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
