"""`nowcastd evaluate`: score a checkpoint next to persistence, pysteps' extrapolation and S-PROG.

Radar movies (.h5) or directories of scans are scored on every start time, four ways
(`nowcastd.verification.comparison`): a table per movie with the verdicts against persistence
and LK, and, for several, one pooled over them all. .npy clips and official .npz files get the
clip scores (official MSE, PSNR, SSIM and the same scores in mm/h) next to persistence
(`nowcastd.verification.evaluation`). Every forecast is the one forecast function's
(`nowcastd.nowcast.forecast_rates`), scored by the one scorer (`verification.skill`).
"""

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from nowcastd.cli.options import Source, settings_command
from nowcastd.errors import ConfigError
from nowcastd.settings import setting, specs

if TYPE_CHECKING:
    from nowcastd.data.clips import ClipSet
    from nowcastd.io.model_checkpoint import LoadedModel
    from nowcastd.verification.ensemble_comparison import EnsembleComparison
    from nowcastd.verification.sequence import RadarSequence
    from nowcastd.verification.skill import Neighbourhood

CLIP_ONLY = ("split", "valid_fraction", "visual", "num_save_samples")
SEQUENCE_ONLY = (
    "crop",
    "block",
    "lead_frames",
    "out_json",
    "plot",
    "pixel_km",
    "ensemble",
    "ensemble_seed",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateSettings:
    checkpoint: Path | None = setting(
        None, "checkpoint directory, or a run's save_dir (its newest); default: the bundled model"
    )
    data: tuple[Path, ...] | None = setting(
        None,
        "HDF5 radar movies or directories of scans, comma-separated (each scored on every "
        "start time, four ways, then pooled), or .npy clips / an official .npz (clip scores)",
    )
    batch_size: int = setting(8, "sequences per batch")
    baselines: bool = setting(
        True,
        "also score persistence (the last input frame repeated) and, on a movie or scan "
        "directory, pysteps' Lucas-Kanade extrapolation and S-PROG",
        switch=True,
    )
    split: Literal["valid", "train", "all"] = setting(
        "valid", "clips: valid, train (the time split of training) or all"
    )
    valid_fraction: float = setting(0.2, "clips: share of the time range held out")
    visual: bool = setting(False, "clips: 1: PNG sample figures (and v2 decoupling) into --out")
    num_save_samples: int = setting(10, "clips: sequences drawn with --visual 1")
    crop: tuple[int, int, int, int] | None = setting(
        None, "movie or scans: ROW0,COL0,HEIGHT,WIDTH window in native pixels"
    )
    block: int = setting(1, "movie or scans: block-average factor")
    lead_frames: int | None = setting(
        None, "movie or scans: leads to score [default: total_length - input_length]"
    )
    out_json: Path | None = setting(None, "movie or scans: write the scores here")
    plot: Path | None = setting(None, "movie or scans: PNG of CSI at 1 mm/h and MAE by lead")
    neighbourhood_km: float = setting(20.0, "width of the FSS neighbourhood in km")
    pixel_km: float | None = setting(
        None, "movie or scans: the model grid's pixel in km [default: as the data states]"
    )
    ensemble: int = setting(
        0,
        "movie or scans: also score the model's N-member ensemble against pysteps' STEPS with "
        "N members (CRPS, ROC area, reliability, rank histogram, spread-skill); with --plot, a "
        "reliability plot beside it (<plot>_reliability.png); 0: off",
    )
    ensemble_seed: int = setting(
        0, "movie or scans: the ensembles' base seed (each window adds its issue time, as serve)"
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {self.batch_size}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(
                f"valid_fraction: expected a number in [0, 1), got {self.valid_fraction}"
            )
        if not self.neighbourhood_km > 0 or (self.pixel_km is not None and not self.pixel_km > 0):
            raise ValueError(
                f"neighbourhood_km, pixel_km: expected numbers > 0, got {self.neighbourhood_km}, "
                f"{self.pixel_km}"
            )
        if self.ensemble < 0 or self.ensemble == 1:
            raise ValueError(
                f"ensemble: expected 0 (off) or at least 2 members, got {self.ensemble}"
            )
        if self.block < 1:
            raise ValueError(f"block: expected an integer >= 1, got {self.block}")
        if self.crop is not None and min(self.crop) < 0:
            raise ValueError(f"crop: expected ROW0,COL0,HEIGHT,WIDTH (ints >= 0), got {self.crop}")

    def changed(self, names: tuple[str, ...]) -> list[str]:
        """Which of `names` differ from their defaults."""
        defaults = EvaluateSettings()
        return [n for n in names if getattr(self, n) != getattr(defaults, n)]


def mse_skill(model: dict[str, Any], baseline: dict[str, Any]) -> list[float]:
    """Per-lead MSE skill score vs the baseline: 1 - mse_model / mse_baseline (NaN if 0)."""
    return [
        1.0 - m / b if b > 0 else float("nan")
        for m, b in zip(model["per_lead"]["mse"], baseline["per_lead"]["mse"], strict=True)
    ]


def is_sequence_source(path: Path) -> bool:
    """A directory of scans or an HDF5 movie (not .npy clips or an official .npz)."""
    import h5py

    return path.is_dir() or (path.is_file() and h5py.is_hdf5(path))


def evaluate(
    s: EvaluateSettings,
    *,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object instead of tables")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="clips: directory for evaluation.json and --visual figures"),
    ] = None,
    source: Source,
) -> None:
    """Score a checkpoint against persistence, pysteps' extrapolation and S-PROG, per lead in
    mm/h."""
    data = s.data or ()
    sequences = [is_sequence_source(p) for p in data]
    if any(sequences) and not all(sequences):
        raise ConfigError(
            "--data: expected movies and scan directories, or one clip file, not both: got "
            + ", ".join(str(p) for p in data)
        )
    if all(sequences):
        wrong = s.changed(CLIP_ONLY) + (["out"] if out is not None else [])
        if wrong:
            raise ConfigError(
                f"--{wrong[0]} applies to .npy clips and .npz files; a movie or a scan "
                "directory is scored on every start time"
            )
        _evaluate_sequence(s, source.config, as_json)
        return
    wrong = s.changed(SEQUENCE_ONLY)
    if wrong:
        raise ConfigError(f"--{wrong[0]} applies to a radar movie or a scan directory only")
    if len(data) != 1:
        raise ConfigError(f"--data: expected one clip file, got {len(data)}")
    _evaluate_clips(s, data[0], out, as_json)


def _evaluate_clips(s: EvaluateSettings, data: Path, out: Path | None, as_json: bool) -> None:
    """Clip scores (official MSE, PSNR, SSIM and mm/h scores) next to persistence."""
    if s.visual and out is None:
        raise ConfigError("--visual: expected --out DIR for the figures with --visual 1, got none")

    from nowcastd.io.atomic import atomic_file
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.verification.comparison import finite_or_none
    from nowcastd.verification.skill import Neighbourhood

    loaded = load_model(s.checkpoint)
    clipset = _open_clips(s, data, loaded)
    hood = Neighbourhood.from_km(s.neighbourhood_km, CLIP_PIXEL_KM)
    report = _score_clips(s, out, loaded, clipset, hood)
    report = {
        "checkpoint": str(loaded.path),
        "digest": loaded.digest,
        "data": str(data),
        "split": s.split,
        "valid_fraction": None if s.split == "all" else s.valid_fraction,
        "timestep_seconds": clipset.timestep_seconds,
        **report,
    }
    strict = finite_or_none(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_file(out / "evaluation.json") as f:
            f.write(json.dumps(strict, indent=1).encode())
    if as_json:
        typer.echo(json.dumps(strict, indent=1))
        return
    _print_clip_report(s, report, loaded, hood, clipset.timestep_seconds)


def _open_clips(s: EvaluateSettings, data: Path, loaded: "LoadedModel") -> "ClipSet":
    """The clips of `data` chosen by --split, fitting the checkpoint's model."""
    from nowcastd.data.loader import open_dataset

    cfg = loaded.cfg
    return open_dataset(
        data,
        total_length=cfg.total_length,
        img_height=cfg.img_height,
        img_width=cfg.img_width,
        img_channel=cfg.img_channel + (cfg.num_action_ch if cfg.is_action else 0),
        split="train" if s.split == "all" else s.split,
        valid_fraction=0.0 if s.split == "all" else s.valid_fraction,
        transform=loaded.transform,
    )


def _score_clips(
    s: EvaluateSettings,
    out: Path | None,
    loaded: "LoadedModel",
    clipset: "ClipSet",
    hood: "Neighbourhood",
) -> dict[str, Any]:
    """The model's scores on the clips (figures in `out` with --visual) and, with
    --baselines, persistence's and the model's MSE skill against it."""
    from nowcastd.data.motion import MotionEstimator
    from nowcastd.verification.evaluation import evaluate_clips, persistence_scores

    cfg = loaded.cfg
    result = evaluate_clips(
        loaded.network,
        clipset,
        batch_size=s.batch_size,
        transform=loaded.transform,
        figures_dir=out if s.visual else None,
        num_save_samples=s.num_save_samples if s.visual else 0,
        motion=MotionEstimator(loaded.motion_method) if cfg.lagrangian else None,
        neighbourhood=hood,
    )
    if not s.baselines:
        return {"model": result}
    persistence = persistence_scores(
        clipset,
        input_length=cfg.input_length,
        img_channel=cfg.img_channel,
        batch_size=s.batch_size,
        transform=loaded.transform,
        neighbourhood=hood,
    )
    return {
        "model": result,
        "persistence": persistence,
        "mse_skill_vs_persistence": mse_skill(result, persistence),
    }


def _print_clip_report(
    s: EvaluateSettings,
    report: dict[str, Any],
    loaded: "LoadedModel",
    hood: "Neighbourhood",
    step: int | None,
) -> None:
    """The clip scores as tables: the model's, persistence's, the MSE skill and the verdict."""
    from nowcastd.verification.scores import OFFICIAL, format_table

    typer.echo(f"model {loaded.cfg.model_name} ({loaded.path.name}, sha256 {loaded.digest[:12]})")
    typer.echo(format_table(report["model"], timestep_seconds=step, names=OFFICIAL))
    if s.baselines:
        typer.echo("\npersistence (last context frame repeated)")
        typer.echo(format_table(report["persistence"], timestep_seconds=step, names=OFFICIAL))
        skill = ", ".join(f"{x:.3f}" for x in report["mse_skill_vs_persistence"])
        typer.echo(f"\nMSE skill vs persistence per lead (1 - mse/mse_persistence): {skill}")
    if loaded.transform.is_physical:
        typer.echo("\n" + _clip_skill(report, hood, step))


def _clip_skill(report: dict[str, Any], hood: Any, step: int | None) -> str:
    """The verdict's table of the clips (model, persistence) and the verdict."""
    from nowcastd.verification.skill import Scores, scores_from_json
    from nowcastd.verification.tables import format_scores
    from nowcastd.verification.verdict import judge

    methods: dict[str, Scores] = {
        m: scores_from_json(report[m]["per_lead"], hood)
        for m in ("model", "persistence")
        if m in report
    }
    leads = report["model"]["leads"]
    minutes = [(k + 1) * (step or 300) / 60 for k in range(leads)]
    lines = [format_scores(methods, minutes)]
    if "persistence" in methods:
        verdict = judge(methods["model"], methods["persistence"], minutes, baseline="persistence")
        lines.append(verdict.describe())
    return "\n".join(lines)


#: Clips do not state their pixel size: the FSS neighbourhood takes the bundled model's 4 km.
CLIP_PIXEL_KM = 4.0


def _evaluate_sequence(s: EvaluateSettings, config: Path | None, as_json: bool) -> None:
    """The four-way evaluation of each movie or scan directory, then pooled
    (`verification.comparison`); with --ensemble, the ensembles' too."""
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.verification.comparison import compare, finite_or_none, format_comparison, pool
    from nowcastd.verification.comparison import write_json as write_report
    from nowcastd.verification.sequence import open_sequence

    loaded = load_model(s.checkpoint)
    reports, sequences = [], []
    for path in s.data or ():
        seq = open_sequence(path, crop=s.crop, block=s.block, config=config)
        sequences.append(seq)
        reports.append(
            compare(
                loaded,
                seq,
                lead_frames=s.lead_frames,
                batch_size=s.batch_size,
                baselines=s.baselines,
                neighbourhood_km=s.neighbourhood_km,
                pixel_km=s.pixel_km,
            )
        )
    shown = reports if len(reports) == 1 else [*reports, pool(reports)]
    ensembles = _ensembles(s, loaded, sequences) if s.ensemble else []
    bodies = [r.to_json() for r in shown]
    for body, ens in zip(bodies, ensembles, strict=False):
        body["ensemble"] = ens.to_json()
    out: dict[str, Any] = bodies[0] if len(bodies) == 1 else {"events": bodies}
    if s.out_json is not None:
        write_report(s.out_json, out)
    if s.plot is not None:
        _plots(s.plot, shown[-1], ensembles[-1] if ensembles else None)
    if as_json:
        typer.echo(json.dumps(finite_or_none(out), indent=1))
        for method, reason in reports[0].not_scored.items():
            typer.echo(f"{method} not scored: {reason}", err=True)
        return
    cfg = loaded.cfg
    typer.echo(f"model {cfg.model_name} ({loaded.path.name}, sha256 {loaded.digest[:12]})")
    typer.echo("\n\n".join(format_comparison(r) for r in shown))
    if ensembles:
        from nowcastd.verification.ensemble_comparison import format_ensemble_comparison

        typer.echo("\n\n" + "\n\n".join(format_ensemble_comparison(e) for e in ensembles))


def _ensembles(
    s: EvaluateSettings, loaded: "LoadedModel", sequences: list["RadarSequence"]
) -> list["EnsembleComparison"]:
    """The model's ensemble against STEPS on each sequence, and pooled if several."""
    from nowcastd.ensemble import EnsembleSettings
    from nowcastd.verification.ensemble_comparison import compare_ensembles, pool_ensembles

    settings = EnsembleSettings(members=s.ensemble, seed=s.ensemble_seed)
    reports = [
        compare_ensembles(
            loaded,
            seq,
            settings=settings,
            lead_frames=s.lead_frames,
            batch_size=s.batch_size,
            baselines=s.baselines,
            pixel_km=s.pixel_km,
        )
        for seq in sequences
    ]
    return reports if len(reports) == 1 else [*reports, pool_ensembles(reports)]


def _plots(path: Path, report: Any, ensemble: "EnsembleComparison | None") -> None:
    """The lead-time plot at `path` and, for an ensemble, its reliability plot beside it."""
    from nowcastd.verification.figures import save_lead_time_plot

    save_lead_time_plot(path, report)
    if ensemble is not None:
        from nowcastd.verification.ensemble_figures import save_reliability_plot

        save_reliability_plot(path.with_name(f"{path.stem}_reliability{path.suffix}"), ensemble)


def register(app: typer.Typer) -> None:
    command = settings_command(
        evaluate,
        specs(EvaluateSettings),
        table="evaluate",
        required=("data",),
        build=lambda v: EvaluateSettings(**v),
    )
    app.command("evaluate")(command)
