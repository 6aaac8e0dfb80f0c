"""`nowcastd train`: run.py's training flags, resolved into typed configs, then the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nowcastd.cli import model_flags as mf
from nowcastd.cli.common import user_errors
from nowcastd.cli.options import Resolver, load_toml
from nowcastd.errors import ConfigError
from nowcastd.io.domain import parse_crop

TRAIN_DEFAULTS: dict[str, Any] = {
    "is_training": 1,
    "train_data_paths": "",
    "valid_data_paths": "",
    "save_dir": "checkpoints/mnist_predrnn",
    "max_iterations": 80000,
    "display_interval": 100,
    "test_interval": 5000,
    "snapshot_interval": 5000,
    "num_save_samples": 10,
    "pretrained_model": "",
    "lr": 0.001,
    "batch_size": 8,
    "reverse_input": 1,
    "visual": 0,
    "scheduled_sampling": 1,
    "sampling_stop_iter": 50000,
    "sampling_start_value": 1.0,
    "sampling_changing_rate": 0.00002,
    "r_sampling_step_1": 25000.0,
    "r_sampling_step_2": 50000,
    "r_exp_alpha": 5000,
    "seed": 0,
    "resume": False,
    "keep_checkpoints": 3,
    "valid_fraction": 0.2,
    "data_stride": 1,
    "data_block": 1,
    "data_crop": "",
    "coordinator_address": "",
    "num_processes": 0,
    "process_id": -1,
}


def _opt(flag: str, help: str):  # noqa: A002
    return typer.Option(flag, help=f"{help} \\[default: {TRAIN_DEFAULTS[flag[2:]]!r}]")


def train(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML file whose \\[train] table sets any flag below (flags win)"
        ),
    ] = None,
    model_name: mf.ModelName = None,
    num_hidden: mf.NumHidden = None,
    num_layers: mf.NumLayers = None,
    filter_size: mf.FilterSize = None,
    stride: mf.Stride = None,
    patch_size: mf.PatchSize = None,
    img_channel: mf.ImgChannel = None,
    img_width: mf.ImgWidth = None,
    img_height: mf.ImgHeight = None,
    layer_norm: mf.LayerNorm = None,
    decouple_beta: mf.DecoupleBeta = None,
    input_length: mf.InputLength = None,
    total_length: mf.TotalLength = None,
    reverse_scheduled_sampling: mf.ReverseSS = None,
    num_action_ch: mf.NumActionCh = None,
    conv_on_input: mf.ConvOnInput = None,
    res_on_conv: mf.ResOnConv = None,
    is_training: Annotated[
        int | None, _opt("--is_training", "1: train; 0: evaluate --pretrained_model once")
    ] = None,
    train_data_paths: Annotated[
        str | None,
        _opt(
            "--train_data_paths", ".npy clips (N,T,H,W,C), an HDF5 radar movie, or an official .npz"
        ),
    ] = None,
    valid_data_paths: Annotated[
        str | None,
        _opt(
            "--valid_data_paths",
            "validation data; empty or equal to the training path: split it by time",
        ),
    ] = None,
    save_dir: Annotated[
        str | None, _opt("--save_dir", "checkpoints, metrics.jsonl and figures (never deleted)")
    ] = None,
    max_iterations: Annotated[int | None, _opt("--max_iterations", "iterations to run")] = None,
    display_interval: Annotated[
        int | None, _opt("--display_interval", "log the loss every this many iterations")
    ] = None,
    test_interval: Annotated[
        int | None, _opt("--test_interval", "evaluate every this many iterations")
    ] = None,
    snapshot_interval: Annotated[
        int | None, _opt("--snapshot_interval", "checkpoint every this many iterations")
    ] = None,
    num_save_samples: Annotated[
        int | None, _opt("--num_save_samples", "sequences drawn per evaluation with --visual 1")
    ] = None,
    pretrained_model: Annotated[
        str | None,
        _opt("--pretrained_model", "start from a nowcastd checkpoint or an official model.ckpt-N"),
    ] = None,
    lr: Annotated[float | None, _opt("--lr", "Adam learning rate")] = None,
    batch_size: Annotated[
        int | None, _opt("--batch_size", "sequences per batch (split over devices)")
    ] = None,
    reverse_input: Annotated[
        int | None,
        _opt("--reverse_input", "1: a second Adam step on the time-reversed clip each iteration"),
    ] = None,
    visual: Annotated[
        int | None,
        _opt("--visual", "1: PNG figures and the v2 decoupling histogram at each evaluation"),
    ] = None,
    scheduled_sampling: Annotated[
        int | None, _opt("--scheduled_sampling", "0: always feed the model its own predictions")
    ] = None,
    sampling_stop_iter: Annotated[
        int | None, _opt("--sampling_stop_iter", "scheduled sampling: eta is 0 from here")
    ] = None,
    sampling_start_value: Annotated[
        float | None, _opt("--sampling_start_value", "scheduled sampling: starting eta")
    ] = None,
    sampling_changing_rate: Annotated[
        float | None,
        _opt("--sampling_changing_rate", "scheduled sampling: eta decrement per iteration"),
    ] = None,
    r_sampling_step_1: Annotated[
        float | None, _opt("--r_sampling_step_1", "reverse scheduled sampling: s1")
    ] = None,
    r_sampling_step_2: Annotated[
        int | None, _opt("--r_sampling_step_2", "reverse scheduled sampling: s2")
    ] = None,
    r_exp_alpha: Annotated[
        int | None, _opt("--r_exp_alpha", "reverse scheduled sampling: exponential time constant")
    ] = None,
    seed: Annotated[int | None, _opt("--seed", "seed of weights, masks and data order")] = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume",
            help="continue from the newest checkpoint in --save_dir [default: no]",
        ),
    ] = None,
    keep_checkpoints: Annotated[
        int | None, _opt("--keep_checkpoints", "how many of this run's newest checkpoints to keep")
    ] = None,
    valid_fraction: Annotated[
        float | None, _opt("--valid_fraction", "share of the time range held out for validation")
    ] = None,
    data_stride: Annotated[
        int | None, _opt("--data_stride", "movie: frames between window starts")
    ] = None,
    data_block: Annotated[int | None, _opt("--data_block", "movie: block-average factor")] = None,
    data_crop: Annotated[
        str | None, _opt("--data_crop", "movie: crop 'row0,col0,height,width' before averaging")
    ] = None,
    coordinator_address: Annotated[
        str | None, _opt("--coordinator_address", "multi-host: host:port of process 0")
    ] = None,
    num_processes: Annotated[
        int | None, _opt("--num_processes", "multi-host: number of processes")
    ] = None,
    process_id: Annotated[
        int | None, _opt("--process_id", "multi-host: this process's index")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Train PredRNN on radar data with run.py's flags (see README: `nowcastd train`)."""
    from nowcastd.cli.common import setup_logging

    given = {k: v for k, v in locals().items() if k in mf.MODEL_DEFAULTS or k in TRAIN_DEFAULTS}
    setup_logging(verbose)
    defaults = {**mf.MODEL_DEFAULTS, **TRAIN_DEFAULTS}
    r = Resolver(given, load_toml(config, "train", defaults), defaults)
    values = {k: r[k] for k in defaults}
    cfg = build_train_config(values)
    if values["coordinator_address"]:
        import jax

        jax.distributed.initialize(
            values["coordinator_address"], int(values["num_processes"]), int(values["process_id"])
        )
    from nowcastd.train import loop as training

    training.run(cfg)


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(p) for p in str(text).split(",") if p.strip())


def build_train_config(values: dict[str, Any]):
    from model.sampling import SamplingConfig
    from nowcastd.train.config import TrainConfig

    model = mf.model_config({k: values[k] for k in mf.MODEL_DEFAULTS})
    crop = parse_crop(values["data_crop"], key="--data_crop")
    try:
        sampling = SamplingConfig(
            scheduled_sampling=bool(int(values["scheduled_sampling"])),
            sampling_stop_iter=int(values["sampling_stop_iter"]),
            sampling_start_value=float(values["sampling_start_value"]),
            sampling_changing_rate=float(values["sampling_changing_rate"]),
            r_sampling_step_1=float(values["r_sampling_step_1"]),
            r_sampling_step_2=int(values["r_sampling_step_2"]),
            r_exp_alpha=int(values["r_exp_alpha"]),
        )
        return TrainConfig(
            model=model,
            sampling=sampling,
            train_data_paths=_paths(values["train_data_paths"]),
            valid_data_paths=_paths(values["valid_data_paths"]),
            save_dir=Path(values["save_dir"]),
            max_iterations=int(values["max_iterations"]),
            display_interval=int(values["display_interval"]),
            test_interval=int(values["test_interval"]),
            snapshot_interval=int(values["snapshot_interval"]),
            num_save_samples=int(values["num_save_samples"]),
            pretrained_model=Path(values["pretrained_model"])
            if values["pretrained_model"]
            else None,
            lr=float(values["lr"]),
            batch_size=int(values["batch_size"]),
            reverse_input=bool(int(values["reverse_input"])),
            visual=bool(int(values["visual"])),
            is_training=bool(int(values["is_training"])),
            seed=int(values["seed"]),
            resume=bool(values["resume"]),
            keep_checkpoints=int(values["keep_checkpoints"]),
            valid_fraction=float(values["valid_fraction"]),
            data_stride=int(values["data_stride"]),
            data_block=int(values["data_block"]),
            data_crop=crop,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e


def register(app: typer.Typer) -> None:
    app.command("train")(user_errors(train))
