"""`nowcastd evaluate`: score a checkpoint on a data file, next to the persistence baseline."""

from __future__ import annotations

import json
import math
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


def _finite_or_none(obj: Any) -> Any:
    """NaN and ±inf -> None, so that the JSON is strict (jq, browsers)."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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
            "--data", help=".npy clips, an HDF5 radar movie or an official .npz \\[required]"
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file whose \\[evaluate] table sets any flag"),
    ] = None,
    batch_size: Annotated[int | None, _opt("--batch_size", "sequences per batch")] = None,
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
            "--baseline/--no-baseline",
            help="also score persistence (the last context frame repeated) \\[default: on]",
        ),
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
    """Score a checkpoint on a data file: per-lead MSE, PSNR, SSIM (and CSI, FSS in mm/h)."""
    from nowcastd.cli.common import setup_logging

    given = {k: v for k, v in locals().items() if k in EVALUATE_DEFAULTS}
    setup_logging(verbose)
    r = Resolver(given, load_toml(config, "evaluate", EVALUATE_DEFAULTS), EVALUATE_DEFAULTS)
    v = {k: r[k] for k in EVALUATE_DEFAULTS}
    for name in ("checkpoint", "data"):
        if not str(v[name]).strip():
            raise ConfigError(f"--{name} is required")
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
    strict = _finite_or_none(report)
    if out is not None:
        from nowcastd.io.atomic import atomic_file

        out.mkdir(parents=True, exist_ok=True)
        with atomic_file(out / "evaluation.json") as f:
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


def register(app: typer.Typer) -> None:
    app.command("evaluate")(user_errors(evaluate))
