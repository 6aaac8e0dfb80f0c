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
    *specs(TrainConfig, exclude=("model", "sampling")),
    *specs(SamplingConfig),
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
