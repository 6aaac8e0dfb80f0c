"""`nowcastd train`: run.py's training flags, resolved into typed configs, then the loop."""

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import typer

from model.sampling import SamplingConfig
from nowcastd.cli.model_flags import MODEL_FLAGS, ModelFlags
from nowcastd.cli.options import build_error, env_prefix, settings_command
from nowcastd.settings import missing_error, setting, specs, strategy_cache_dir
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.search import StrategySetting, parse_setting
from nowcastd.train.config import TrainConfig
from nowcastd.train.hosts import Hosts, per_process_batch

HELP = {
    "is_training": "1: train; 0: evaluate --pretrained_model once",
    "train_data_paths": ".npy clips (N,T,H,W,C), an HDF5 radar movie, or an official .npz; "
    "comma-separated",
    "valid_data_paths": "validation data; empty or equal to the training data: split it by time",
    "save_dir": "checkpoints, metrics.jsonl and figures (nothing in it is ever deleted)",
    "max_iterations": "iterations to run",
    "display_interval": "log the loss every this many iterations",
    "test_interval": "evaluate every this many iterations",
    "snapshot_interval": "checkpoint every this many iterations",
    "num_save_samples": "sequences drawn per evaluation with --visual 1",
    "pretrained_model": "start from a nowcastd checkpoint or an official model.ckpt-N",
    "lr": "Adam learning rate",
    "batch_size": "sequences per batch, of all processes together (split over devices)",
    "reverse_input": "1: a second Adam step on the time-reversed clip each iteration",
    "visual": "1: PNG figures and the v2 decoupling histogram at each evaluation",
    "seed": "seed of weights, masks and data order",
    "resume": "continue from the newest checkpoint in --save_dir",
    "keep_checkpoints": "how many of this run's newest checkpoints to keep",
    "valid_fraction": "share of the time range held out for validation",
    "data_stride": "movie: frames between window starts",
    "data_block": "movie: block-average factor",
    "data_crop": "movie: crop row0,col0,height,width before averaging",
    "sequences": "1: draw random sequences from every --train_data_paths movie (crops, block "
    "factors, flips, rotations, time reversal, per-movie time step); validation needs "
    "--valid_data_paths",
    "synthetic_fraction": "with --sequences 1: share of synthetic sequences (a real frame "
    "advected by a random smooth flow, with growth and decay)",
    "block_choices": "with --sequences 1: block-average factors to draw from, comma-separated",
    "loss": "mse (the official loss) or weighted (HKO-7 rain-weighted MSE + MAE)",
    "fourier_amplitude_weight": "weight of a term beside --loss that compares the Fourier "
    "amplitudes of forecast and observed frames, which blur loses and a displacement keeps "
    "(FACL, Yan et al. 2024); 0: off",
    "fourier_correlation_weight": "weight of FACL's Fourier correlation term beside --loss "
    "(1 - the correlation of forecast and observed frames); 0: off",
    "intensity_l1_weight": "weight of NowcastNet's intensity-weighted L1 beside --loss "
    "(|error| weighted min(24, 1 + R) by the observed rain rate R in mm/h); 0: off",
    "motion_method": "with --lagrangian 1: pysteps' optical flow for each clip's motion "
    "(LK, darts, proesmans or vet; serve and evaluate take it from the checkpoint)",
    "valid_time_range": "FIRST,LAST ISO 8601 UTC times: validate on the frames of the "
    "--valid_data_paths movie or archive valid then; with --sequences 1, training sequences "
    "leave that range out of the same files",
    "scheduled_sampling": "0: always feed the model its own predictions",
    "sampling_stop_iter": "scheduled sampling: eta is 0 from here",
    "sampling_start_value": "scheduled sampling: starting eta",
    "sampling_changing_rate": "scheduled sampling: eta decrement per iteration",
    "r_sampling_step_1": "reverse scheduled sampling: s1",
    "r_sampling_step_2": "reverse scheduled sampling: s2",
    "r_exp_alpha": "reverse scheduled sampling: exponential time constant",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiHost:
    coordinator_address: str = setting("", "multi-host: host:port of process 0; empty: one host")
    num_processes: int = setting(0, "multi-host: number of processes")
    process_id: int = setting(-1, "multi-host: this process's index")

    def hosts(self) -> Hosts | None:
        """The processes to join (None: one host); ValueError naming a bad setting."""
        if not self.coordinator_address:
            return None
        return Hosts(
            coordinator_address=self.coordinator_address,
            num_processes=self.num_processes,
            process_id=self.process_id,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Devices:
    cpu_devices: int = setting(
        0,
        "CPU only: split the batch over this many host devices, one per core (0: as many "
        "cores as divide --batch_size, the count timed fastest with --strategy auto; 1: no "
        "split)",
    )
    strategy: StrategySetting = setting(
        "auto",
        "auto: time the training step's candidate strategies (and CPU device counts) on the "
        "first batch and cache the fastest; default, or a name such as ynn=on,wgrad=96,unroll=auto "
        "(bf16=on: bfloat16 convolutions, which change values)",
        parse=parse_setting,
    )


SETTINGS = (
    *specs(ModelFlags),
    *specs(TrainConfig, HELP, exclude=("model", "sampling"), switches=("resume",)),
    *specs(SamplingConfig, HELP),
    *specs(MultiHost),
    *specs(Devices),
)


def train_config(values: dict[str, Any]) -> TrainConfig:
    """The typed training config from resolved settings; ConfigError naming the key."""
    if values["is_training"] and not values["train_data_paths"]:
        raise missing_error(["train_data_paths"], table="train", env_prefix=env_prefix("train"))
    model = ModelFlags(**{k: values[k] for k in MODEL_FLAGS}).model_config()
    sampling_keys = [f.name for f in dataclasses.fields(SamplingConfig)]
    train_keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name in values]
    try:
        sampling = SamplingConfig(**{k: values[k] for k in sampling_keys})
        return TrainConfig(model=model, sampling=sampling, **{k: values[k] for k in train_keys})
    except ValueError as e:
        raise build_error(e, TrainConfig, SamplingConfig) from e


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainCommand:
    """What `nowcastd train` runs: the run, the processes it joins (None: one host), how it
    uses the devices, and where measured strategies are cached."""

    config: TrainConfig
    hosts: Hosts | None
    devices: Devices
    strategy_cache: Path

    @property
    def batch_per_process(self) -> int:
        return self.config.batch_size // (1 if self.hosts is None else self.hosts.num_processes)


T = TypeVar("T")


def _of(cls: type[T], values: dict[str, Any]) -> T:
    """The dataclass `cls` built from its fields' resolved values."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def train_command(values: dict[str, Any]) -> TrainCommand:
    """The train command's typed values from resolved settings; ConfigError naming the key."""
    cfg = train_config(values)
    try:
        joined = _of(MultiHost, values).hosts()
        if joined is not None:
            per_process_batch(cfg.batch_size, joined.num_processes)
    except ValueError as e:
        raise build_error(e, MultiHost, TrainConfig) from e
    return TrainCommand(
        config=cfg,
        hosts=joined,
        devices=_of(Devices, values),
        strategy_cache=strategy_cache_dir(os.environ),
    )


def train(command: TrainCommand) -> None:
    """Train PredRNN on radar data with run.py's flags (see README: `nowcastd train`)."""
    from nowcastd.train import hosts
    from nowcastd.train.cpu_devices import cpu_devices_for_run
    from nowcastd.train.sharding import split_cpu

    cfg, devices = command.config, command.devices
    if command.hosts is not None:  # first: before anything starts a JAX backend
        hosts.start(command.hosts)
    cache = StrategyCache(command.strategy_cache)
    try:
        count = cpu_devices_for_run(
            cfg.model,
            command.batch_per_process,
            requested=devices.cpu_devices,
            measure=devices.strategy == "auto" and cfg.is_training and command.hosts is None,
            reverse_input=cfg.reverse_input,
            cache=cache,
            iterations=cfg.max_iterations,
        )
    except ValueError as e:
        raise build_error(e, Devices) from e
    split_cpu(count)
    from nowcastd.train import loop as training

    training.run(cfg, devices.strategy, cache)


def register(app: typer.Typer) -> None:
    app.command("train")(settings_command(train, SETTINGS, table="train", build=train_command))
