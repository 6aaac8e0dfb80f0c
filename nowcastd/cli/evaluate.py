"""`nowcastd evaluate`: score a checkpoint next to persistence and pysteps' extrapolation.

A radar movie (.h5) or a directory of scans is scored on every start time, three ways
(`nowcastd.verification.comparison`); .npy clips and official .npz files get the clip scores
(official MSE, PSNR, SSIM) next to persistence (`nowcastd.verification.evaluation`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nowcastd.cli.common import user_errors
from nowcastd.cli.options import Resolver, load_toml
from nowcastd.errors import ConfigError

EVALUATE_DEFAULTS: dict[str, Any] = {
    "checkpoint": "",
    "data": "",
    "batch_size": 8,
    "split": "valid",
    "valid_fraction": 0.2,
    "visual": 0,
    "num_save_samples": 10,
    "baseline": True,
}
SPLITS = ("valid", "train", "all")


def _opt(flag: str, help: str):  # noqa: A002
    return typer.Option(flag, help=f"{help} \\[default: {EVALUATE_DEFAULTS[flag[2:]]!r}]")


def mse_skill(model: dict[str, Any], baseline: dict[str, Any]) -> list[float]:
    """Per-lead MSE skill score vs the baseline: 1 - mse_model / mse_baseline (NaN if 0)."""
    return [
        1.0 - m / b if b > 0 else float("nan")
        for m, b in zip(model["per_lead"]["mse"], baseline["per_lead"]["mse"], strict=True)
    ]


def evaluate(
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            help="checkpoint directory, or a run's save_dir (its newest) \\[required]",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="an HDF5 radar movie or a directory of scans (scored on every start time, "
            "three ways), or .npy clips / an official .npz (clip scores) \\[required]",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file whose \\[evaluate] table sets any flag; for a scan directory also "
            "serve's \\[reader] and \\[domain]",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch_size",
            "--batch-size",
            help=f"sequences per batch \\[default: {EVALUATE_DEFAULTS['batch_size']}]",
        ),
    ] = None,
    split: Annotated[
        str | None, _opt("--split", "valid, train (the time split of training) or all")
    ] = None,
    valid_fraction: Annotated[
        float | None, _opt("--valid_fraction", "share of the time range held out for validation")
    ] = None,
    visual: Annotated[
        int | None, _opt("--visual", "1: PNG sample figures (and v2 decoupling) into --out")
    ] = None,
    num_save_samples: Annotated[
        int | None, _opt("--num_save_samples", "sequences drawn with --visual 1")
    ] = None,
    baseline: Annotated[
        bool | None,
        typer.Option(
            "--baselines/--no-baselines",
            "--baseline/--no-baseline",
            help="also score persistence (the last input frame repeated) and, on a movie or "
            "scan directory, pysteps' Lucas-Kanade extrapolation (needs nowcastd\\[baselines]) "
            "\\[default: on]",
        ),
    ] = None,
    crop: Annotated[
        str | None,
        typer.Option(
            "--crop", help="movie or scans: ROW0,COL0,HEIGHT,WIDTH window in native pixels"
        ),
    ] = None,
    block: Annotated[
        int | None,
        typer.Option("--block", help="movie or scans: block-average factor \\[default: 1]"),
    ] = None,
    lead_frames: Annotated[
        int | None,
        typer.Option(
            "--lead-frames",
            help="movie or scans: leads to score \\[default: total_length - input_length]",
        ),
    ] = None,
    out_json: Annotated[
        Path | None, typer.Option("--out-json", help="movie or scans: write the scores here")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="movie or scans: PNG of CSI at 1 mm/h and MAE by lead"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of tables")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="directory for evaluation.json and the --visual figures"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Score a checkpoint against persistence and pysteps' extrapolation, per lead in mm/h."""
    from nowcastd.cli.common import setup_logging

    given = {k: v for k, v in locals().items() if k in EVALUATE_DEFAULTS}
    setup_logging(verbose)
    r = Resolver(given, load_toml(config, "evaluate", EVALUATE_DEFAULTS), EVALUATE_DEFAULTS)
    v = {k: r[k] for k in EVALUATE_DEFAULTS}
    for name in ("checkpoint", "data"):
        if not str(v[name]).strip():
            raise ConfigError(f"--{name} is required")
    sequence_flags = {
        "--crop": crop, "--block": block, "--lead-frames": lead_frames,
        "--out-json": out_json, "--plot": plot,
    }  # fmt: skip
    if is_sequence_source(Path(v["data"])):
        clip_flags = {
            "--split": split, "--valid_fraction": valid_fraction, "--visual": visual,
            "--num_save_samples": num_save_samples, "--out": out,
        }  # fmt: skip
        for flag, value in clip_flags.items():
            if value is not None:
                raise ConfigError(
                    f"{flag} applies to .npy clips and .npz files; a movie or a scan directory "
                    "is scored on every start time"
                )
        if int(v["batch_size"]) < 1:
            raise ConfigError(f"--batch_size {v['batch_size']}: expected >= 1")
        _evaluate_sequence(
            v,
            config,
            parse_crop(crop),
            1 if block is None else block,
            lead_frames,
            out_json,
            plot,
            as_json,
        )
        return
    for flag, value in sequence_flags.items():
        if value is not None:
            raise ConfigError(f"{flag} applies to a radar movie or a scan directory only")
    if v["split"] not in SPLITS:
        raise ConfigError(f"--split {v['split']!r}: expected one of {', '.join(SPLITS)}")
    batch, fraction = int(v["batch_size"]), float(v["valid_fraction"])
    if batch < 1:
        raise ConfigError(f"--batch_size {batch}: expected >= 1")
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"--valid_fraction {fraction}: expected 0 <= f < 1")
    visual = bool(int(v["visual"]))
    if visual and out is None:
        raise ConfigError("--visual 1 needs --out DIR for the figures")

    from nowcastd.data.loader import open_dataset
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.verification.comparison import finite_or_none
    from nowcastd.verification.evaluation import evaluate as run_evaluation
    from nowcastd.verification.evaluation import persistence_scores
    from nowcastd.verification.scores import format_table

    loaded = load_model(Path(v["checkpoint"]))
    cfg = loaded.cfg
    split_name = "train" if v["split"] == "all" else v["split"]
    clipset = open_dataset(
        Path(v["data"]),
        total_length=cfg.total_length,
        img_height=cfg.img_height,
        img_width=cfg.img_width,
        img_channel=cfg.img_channel + (cfg.num_action_ch if cfg.is_action else 0),
        split=split_name,
        valid_fraction=0.0 if v["split"] == "all" else fraction,
        transform=loaded.transform,
    )
    result = run_evaluation(
        loaded.network,
        clipset,
        batch_size=batch,
        transform=loaded.transform,
        figures_dir=out if visual else None,
        num_save_samples=int(v["num_save_samples"]) if visual else 0,
    )
    report: dict[str, Any] = {
        "checkpoint": str(loaded.path),
        "digest": loaded.digest,
        "data": str(v["data"]),
        "split": v["split"],
        "valid_fraction": None if v["split"] == "all" else fraction,
        "timestep_seconds": clipset.timestep_seconds,
        "model": result,
    }
    if v["baseline"]:
        report["persistence"] = persistence_scores(
            clipset,
            input_length=cfg.input_length,
            img_channel=cfg.img_channel,
            batch_size=batch,
            transform=loaded.transform,
        )
        report["mse_skill_vs_persistence"] = mse_skill(result, report["persistence"])
    strict = finite_or_none(report)
    if out is not None:
        from nowcastd.data.build import atomic_output

        out.mkdir(parents=True, exist_ok=True)
        with atomic_output(out / "evaluation.json") as f:
            f.write(json.dumps(strict, indent=1).encode())
    if as_json:
        typer.echo(json.dumps(strict, indent=1))
        return
    typer.echo(f"model {cfg.model_name} ({loaded.path.name}, sha256 {loaded.digest[:12]})")
    typer.echo(format_table(result, timestep_seconds=clipset.timestep_seconds))
    if v["baseline"]:
        typer.echo("\npersistence (last context frame repeated)")
        typer.echo(format_table(report["persistence"], timestep_seconds=clipset.timestep_seconds))
        skill = ", ".join(f"{s:.3f}" for s in report["mse_skill_vs_persistence"])
        typer.echo(f"\nMSE skill vs persistence per lead (1 - mse/mse_persistence): {skill}")


def is_sequence_source(path: Path) -> bool:
    """A directory of scans or an HDF5 movie (not .npy clips or an official .npz)."""
    import h5py

    return path.is_dir() or (path.is_file() and h5py.is_hdf5(path))


def parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    """'ROW0,COL0,HEIGHT,WIDTH' -> four ints; ConfigError otherwise."""
    if text is None:
        return None
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0:
        raise ConfigError(f"--crop {text!r}: expected ROW0,COL0,HEIGHT,WIDTH (ints >= 0)")
    return values  # type: ignore[return-value]


def _evaluate_sequence(
    v: dict[str, Any],
    config: Path | None,
    crop: tuple[int, int, int, int] | None,
    block: int,
    lead_frames: int | None,
    out_json: Path | None,
    plot: Path | None,
    as_json: bool,
) -> None:
    """The three-way evaluation of a movie or scan directory (`verification.comparison`)."""
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.verification.comparison import compare, finite_or_none, format_comparison
    from nowcastd.verification.comparison import write_json as write_report
    from nowcastd.verification.sequence import open_sequence

    loaded = load_model(Path(v["checkpoint"]))
    seq = open_sequence(Path(v["data"]), crop=crop, block=block, config=config)
    report = compare(
        loaded,
        seq,
        lead_frames=lead_frames,
        batch_size=int(v["batch_size"]),
        baselines=bool(v["baseline"]),
    )
    if out_json is not None:
        write_report(out_json, report)
    if plot is not None:
        from nowcastd.verification.figures import save_lead_time_plot

        save_lead_time_plot(plot, report)
    if as_json:
        typer.echo(json.dumps(finite_or_none(report), indent=1))
        for method, reason in report["not_scored"].items():
            typer.echo(f"{method} not scored: {reason}", err=True)
        return
    cfg = loaded.cfg
    typer.echo(f"model {cfg.model_name} ({loaded.path.name}, sha256 {loaded.digest[:12]})")
    typer.echo(format_comparison(report))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(user_errors(evaluate))
