"""`nowcastd predict`: the serve pipeline once, from scan files to one forecast file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from nowcastd.cli.common import user_errors

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("predict")
    @user_errors
    def predict(
        scans: Annotated[list[Path], typer.Argument(help="Scan files (any order).")],
        config: Annotated[Path | None, Opt("--config", help="TOML config file.")] = None,
        checkpoint: Annotated[Path | None, Opt(help="Checkpoint dir or run save_dir.")] = None,
        output_dir: Annotated[Path | None, Opt(help="Directory for the forecast file.")] = None,
        lead_frames: Annotated[int | None, Opt(help="Frames to forecast.")] = None,
        timestep_seconds: Annotated[float | None, Opt(help="Time between scans.")] = None,
        verbose: Annotated[bool, Opt("--verbose", "-v", help="DEBUG logging.")] = False,
    ) -> None:
        """Forecast from the newest input_length of SCANS (consecutive in time) and print
        the forecast file's path. Reader, domain and timing come from --config as for serve.
        """
        from nowcastd.cli.common import setup_logging

        setup_logging(verbose)
        flags = {
            "checkpoint": checkpoint,
            "output_dir": output_dir,
            "lead_frames": lead_frames,
            "timestep_seconds": timestep_seconds,
        }
        typer.echo(run_predict(scans, config=config, flags=flags))


def run_predict(scans: list[Path], *, config: Path | None, flags: dict) -> Path:
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.serve.config import load_serve_config
    from nowcastd.serve.pipeline import Pipeline

    cfg = load_serve_config(config, flags=flags)
    cfg.require("checkpoint")
    if not verbose_enabled():
        logging.getLogger().setLevel(cfg.log_level)
    pipe = Pipeline(cfg, load_model(cfg.checkpoint))
    pipe.compile(pre_encoding=False)
    frames = sorted((pipe.read(path) for path in scans), key=lambda f: f.valid_time)
    for frame in frames:
        pipe.push(frame)
    return pipe.write(pipe.forecast(), cfg.output_dir or Path("."))


def verbose_enabled() -> bool:
    return logging.getLogger().level == logging.DEBUG
