"""`nowcastd demo`: the real daemon on real radar scans, in a few minutes on a laptop CPU.

A fake radar feed delivers the bundled KNMI sample scans (native 765 x 700 files) one by one,
by rename, into the watch directory of a real `nowcastd serve` process, faster than the
radar's five minutes (`demo.report.feed_and_report`: a line per forecast from the daemon's
events file, one scrape of its metrics), then scores the forecast files written against the
scans observed later and against persistence and draws the newest forecast that can be checked
(`verification.forecast_skill`).

The model is the bundled one (`nowcastd/bundled/model`) when the installation has it;
otherwise, or with `--train`, a small PredRNN-v2 is trained on the spot on the sample movie's
frames before the scans fed (`train.toy`, a few minutes on CPU). `--scans DIR --checkpoint
DIR` runs the same on your own data, with the `[reader]` and `[domain]` of `--config` when it
has them; without a `[domain]`, native KNMI scans get the sample's window
(`nowcastd/sample/knmi_domain.toml`, the numbers of `deploy/config.example.toml`) and other
scans their whole grid.
"""

import dataclasses
import logging
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from nowcastd.cli.options import Source, settings_command
from nowcastd.settings import setting, specs

ON_THE_SPOT = "trained on the spot (minutes on one night of rain: a toy)"


def sample_scans() -> Path:
    return Path(str(resources.files("nowcastd") / "sample" / "knmi"))


def _sample_domain_for(shape: tuple[int, int]) -> Any:
    """The sample's window for native KNMI scans, the whole grid for others."""
    from nowcastd.io.domain import Domain
    from nowcastd.io.scan_settings import read_scan_settings

    _, sample = read_scan_settings(
        Path(str(resources.files("nowcastd") / "sample" / "knmi_domain.toml"))
    )
    if sample is not None and tuple(shape) == sample.native_shape:
        return sample
    return Domain.full(shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSettings:
    out: Path = setting(Path("nowcastd-demo"), "directory for the figure (created)")
    keep: Path | None = setting(
        None,
        "keep the whole run here (scans delivered, forecasts, the daemon's config and log, a "
        "model trained on the spot); default: a temporary directory, removed at the end",
    )
    scans: Path | None = setting(None, "a directory of your own scans instead of the sample")
    checkpoint: Path | None = setting(
        None, "your own checkpoint instead of the bundled model (or one trained on the spot)"
    )
    train: bool = setting(
        False,
        "train a small model on the sample movie first, even with a bundled model",
        switch=True,
    )
    iterations: int = setting(300, "training iterations of a model trained on the spot")
    cadence_seconds: float = setting(
        1.5, "seconds between two scans delivered (the radar's 5 minutes, accelerated)"
    )
    ensemble_members: int = setting(
        20,
        "members of the daemon's ensemble (0: none); the figure beside the forecast shows the "
        "probability of at least 1 mm/h",
    )

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations: expected an integer >= 1, got {self.iterations}")
        if self.ensemble_members < 0:
            raise ValueError(f"ensemble_members: expected an int >= 0, got {self.ensemble_members}")
        if not self.cadence_seconds > 0:
            raise ValueError(f"cadence_seconds: expected a number > 0, got {self.cadence_seconds}")
        if self.train and self.checkpoint is not None:
            raise ValueError("train, checkpoint: expected one of them, got both")


def _say(text: str = "") -> None:
    typer.echo(text)


def demo(s: DemoSettings, *, source: Source) -> None:
    """Run the real daemon on the bundled KNMI sample scans (or yours) and report.

    Prints each forecast's latency per stage, the daemon's metrics, the forecasts' skill
    against persistence per lead, and the path of a figure of the newest checkable forecast.
    """
    if not source.verbose:
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("nowcastd.train.progress").setLevel(logging.INFO)
    work = s.keep or Path(tempfile.mkdtemp(prefix="nowcastd-demo-"))
    try:
        _run(s, source, work)
    finally:
        if s.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _model(s: DemoSettings, work: Path, grid: tuple[int, int]) -> tuple[Path | None, Any, str]:
    """(checkpoint for the config or None for the bundled one, its ModelConfig, a description)."""
    from model.checkpoint import config_from_json, load_metadata
    from nowcastd.errors import CheckpointError
    from nowcastd.io.model_checkpoint import resolve_checkpoint

    checkpoint, what = s.checkpoint, "your checkpoint"
    if checkpoint is None and not s.train:
        try:
            resolve_checkpoint(None)
            what = "the bundled model"
        except CheckpointError:
            _say("this installation has no bundled model: one is trained on the spot")
    if s.train or (checkpoint is None and what != "the bundled model"):
        from nowcastd.train.toy import train_toy_model

        _say(
            f"training a small PredRNN-v2 on the sample movie (00:00-04:30 UTC, {s.iterations} "
            "iterations; the first one compiles) ..."
        )
        checkpoint, line = train_toy_model(work / "checkpoints", iterations=s.iterations, grid=grid)
        _say(line)
        what = ON_THE_SPOT
    path = resolve_checkpoint(checkpoint)
    try:
        cfg = config_from_json(load_metadata(path)["model_config"])
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint's metadata: {e}") from e
    return checkpoint, cfg, f"{what}, {path}"


def _run(s: DemoSettings, source: Source, work: Path) -> None:
    from nowcastd.demo.driver import free_port, write_config
    from nowcastd.demo.report import feed_and_report
    from nowcastd.errors import DataError
    from nowcastd.io.scan_settings import read_scan_settings
    from nowcastd.verification.sequence import read_scan_sequence

    scans_dir = s.scans or sample_scans()
    reader, domain = read_scan_settings(source.config)
    observed = read_scan_sequence(
        scans_dir, reader=reader, domain=domain, domain_for=_sample_domain_for
    )
    scans, domain, step = observed.files, observed.domain, observed.timestep_seconds
    others = len([p for p in scans_dir.iterdir() if p.is_file()]) - len(scans)
    grid = domain.model_shape
    _say(
        f"scans: {len(scans)} from {scans_dir}, {scans[0].valid_time:%Y-%m-%d %H:%M} to "
        f"{scans[-1].valid_time:%H:%M} UTC, every {step / 60:g} min"
        + (f" ({others} other files left out)" if s.scans and others else "")
    )
    _say(
        f"domain: rows {domain.row0}..{domain.row0 + domain.height - 1}, columns "
        f"{domain.col0}..{domain.col0 + domain.width - 1} of the native "
        f"{domain.native_shape[0]}x{domain.native_shape[1]} grid, blocks of "
        f"{domain.block}x{domain.block}: a {grid[0]}x{grid[1]} model grid{_halo_text(domain)}"
    )
    checkpoint, model_cfg, what = _model(s, work, grid)
    n_in, leads = model_cfg.input_length, model_cfg.total_length - model_cfg.input_length
    _say(f"model: {what}; {n_in} scans in, {leads} leads out")
    if len(scans) < n_in + 1:
        raise DataError(
            f"{scans_dir}: expected at least {n_in + 1} scans for one forecast, got {len(scans)}"
        )
    watch, forecasts = work / "incoming", work / "forecasts"
    for directory in (watch, forecasts):
        directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    serve = _serve_settings(s, work, checkpoint, port=port, leads=leads, step=step)
    config = write_config(work / "serve.toml", serve=serve, reader=reader, domain=domain)
    feed_and_report(
        config=config,
        port=port,
        work=work,
        scans=scans,
        preloaded=n_in - 1,
        cadence_seconds=s.cadence_seconds,
        say=_say,
    )
    _skill_and_figure(s, forecasts, observed, what)


def _serve_settings(
    s: DemoSettings, work: Path, checkpoint: Any, *, port: int, leads: int, step: int
) -> dict[str, object]:
    """The daemon's [serve] settings: `work`'s directories, no retention, any scan's age."""
    return {
        "watch_dir": (work / "incoming").resolve(),
        "output_dir": (work / "forecasts").resolve(),
        "checkpoint": None if checkpoint is None else Path(checkpoint).resolve(),
        "metrics_port": port,
        "lead_frames": leads,
        "timestep_seconds": step,
        "retention_keep_last": 0,
        "retention_max_age_hours": 0,
        "refill_max_age_hours": 0,  # archived scans: the start-up refill takes them at any age
        "events_file": (work / "events.jsonl").resolve(),
        "ensemble_members": s.ensemble_members,
    }


def _halo_text(domain: Any) -> str:
    """How wide the halo is that a Lagrangian model's motion and advection read, if any."""
    if not domain.halo:
        return ""
    return (
        f"; the motion and advection read a halo of {domain.halo} model pixels "
        f"({domain.halo * domain.block} native) around it"
    )


def _skill_and_figure(s: DemoSettings, forecasts: Path, observed: Any, what: str) -> None:
    from nowcastd.errors import DataError
    from nowcastd.io.forecast_file import forecast_name
    from nowcastd.verification.baselines import LagrangianExtrapolation
    from nowcastd.verification.forecast_skill import (
        format_skill,
        save_checkable_figure,
        score_forecast_files,
    )

    files = sorted(forecasts.glob("forecast_*.h5"))
    if not files:
        raise DataError(f"{forecasts}: the daemon wrote no forecast; see its log")
    _say("")
    _say(format_skill(score_forecast_files(files, observed, LagrangianExtrapolation())))
    if what.startswith(ON_THE_SPOT):
        _say(
            "(the model was trained on the spot for minutes: the bundled model is the one to judge)"
        )
    elif what.startswith("the bundled model") and s.scans is None:
        _say(
            "(in-sample: the bundled model was trained on this KNMI event; its scores on an event "
            "it never saw are in nowcastd/bundled/MODEL_CARD.md)"
        )
    figure, issue = save_checkable_figure(files, observed, s.out)
    _say(f"\nfigure: {figure.resolve()}")
    _say(f"(observed against forecast, issued {issue:%H:%M} UTC)")
    _ensemble_figure(s, files, forecasts / forecast_name(issue), observed)


def _ensemble_figure(s: DemoSettings, files: list[Path], chosen: Path, observed: Any) -> None:
    """The probability of >= 1 mm/h beside the forecast and the observation, and how the
    probabilities of every file did (when the daemon made an ensemble)."""
    from nowcastd.demo.probability import probability_summary, save_probability_figure

    figure = save_probability_figure(chosen, observed, s.out)
    if figure is None:
        return
    summary = probability_summary(files, observed)
    if summary is not None:
        _say(summary)
    _say(f"figure: {figure.resolve()}")
    _say(f"(forecast, probability of >= 1 mm/h from {s.ensemble_members} members, observed)")


def register(app: typer.Typer) -> None:
    command = settings_command(
        demo, specs(DemoSettings), table="demo", build=lambda v: DemoSettings(**v)
    )
    app.command("demo")(command)
