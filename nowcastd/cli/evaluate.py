"""`nowcastd evaluate`: score a checkpoint on a data file, next to the persistence baseline."""

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from nowcastd.cli.options import settings_command
from nowcastd.errors import ConfigError
from nowcastd.settings import setting, specs


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateSettings:
    checkpoint: Path | None = setting(
        None, "checkpoint directory, or a run's save_dir (its newest)"
    )
    data: Path | None = setting(None, ".npy clips, an HDF5 radar movie or an official .npz")
    batch_size: int = setting(8, "sequences per batch")
    split: Literal["valid", "train", "all"] = setting(
        "valid", "valid, train (the time split of training) or all"
    )
    valid_fraction: float = setting(0.2, "share of the time range held out for validation")
    visual: bool = setting(False, "1: PNG sample figures (and v2 decoupling) into --out")
    num_save_samples: int = setting(10, "sequences drawn with --visual 1")
    baseline: bool = setting(
        True, "also score persistence (the last context frame repeated)", switch=True
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {self.batch_size}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(
                f"valid_fraction: expected a number in [0, 1), got {self.valid_fraction}"
            )


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
    s: EvaluateSettings,
    *,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of tables")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="directory for evaluation.json and the --visual figures"),
    ] = None,
) -> None:
    """Score a checkpoint on a data file: per-lead MSE, PSNR, SSIM (and CSI, FSS in mm/h)."""
    if s.visual and out is None:
        raise ConfigError("--visual: expected --out DIR for the figures with --visual 1, got none")

    from nowcastd.data.loader import open_dataset
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.verification.evaluation import evaluate as run_evaluation
    from nowcastd.verification.evaluation import persistence_scores
    from nowcastd.verification.scores import format_table

    loaded = load_model(s.checkpoint)
    cfg = loaded.cfg
    split_name = "train" if s.split == "all" else s.split
    clipset = open_dataset(
        s.data,
        total_length=cfg.total_length,
        img_height=cfg.img_height,
        img_width=cfg.img_width,
        img_channel=cfg.img_channel + (cfg.num_action_ch if cfg.is_action else 0),
        split=split_name,
        valid_fraction=0.0 if s.split == "all" else s.valid_fraction,
        transform=loaded.transform,
    )
    result = run_evaluation(
        loaded.network,
        clipset,
        batch_size=s.batch_size,
        transform=loaded.transform,
        figures_dir=out if s.visual else None,
        num_save_samples=s.num_save_samples if s.visual else 0,
    )
    report: dict[str, Any] = {
        "checkpoint": str(loaded.path),
        "digest": loaded.digest,
        "data": str(s.data),
        "split": s.split,
        "valid_fraction": None if s.split == "all" else s.valid_fraction,
        "timestep_seconds": clipset.timestep_seconds,
        "model": result,
    }
    if s.baseline:
        report["persistence"] = persistence_scores(
            clipset,
            input_length=cfg.input_length,
            img_channel=cfg.img_channel,
            batch_size=s.batch_size,
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
    if s.baseline:
        typer.echo("\npersistence (last context frame repeated)")
        typer.echo(format_table(report["persistence"], timestep_seconds=clipset.timestep_seconds))
        skill = ", ".join(f"{x:.3f}" for x in report["mse_skill_vs_persistence"])
        typer.echo(f"\nMSE skill vs persistence per lead (1 - mse/mse_persistence): {skill}")


def register(app: typer.Typer) -> None:
    command = settings_command(
        evaluate,
        specs(EvaluateSettings),
        table="evaluate",
        required=("checkpoint", "data"),
        build=lambda v: EvaluateSettings(**v),
    )
    app.command("evaluate")(command)
