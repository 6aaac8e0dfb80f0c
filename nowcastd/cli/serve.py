"""`nowcastd serve`: the daemon beside a radar feed (see `nowcastd.serve.service`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from nowcastd.cli.common import user_errors

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @user_errors
    def serve(
        config: Annotated[Path | None, Opt("--config", help="TOML config file.")] = None,
        watch_dir: Annotated[Path | None, Opt(help="Directory where scans appear.")] = None,
        output_dir: Annotated[Path | None, Opt(help="Directory for forecast files.")] = None,
        checkpoint: Annotated[Path | None, Opt(help="Checkpoint dir or run save_dir.")] = None,
        metrics_addr: Annotated[str | None, Opt(help="Metrics address.")] = None,
        metrics_port: Annotated[int | None, Opt(help="Metrics port (0: any free).")] = None,
        lead_frames: Annotated[int | None, Opt(help="Frames forecast per scan.")] = None,
        timestep_seconds: Annotated[float | None, Opt(help="Time between scans.")] = None,
        max_gap_seconds: Annotated[float | None, Opt(help="Gap that empties the buffer.")] = None,
        poll: Annotated[bool | None, Opt("--poll/--no-poll", help="Poll, not inotify.")] = None,
        poll_interval_seconds: Annotated[float | None, Opt(help="Polling period.")] = None,
        settle_seconds: Annotated[float | None, Opt(help="Quiet time of a moved-in file.")] = None,
        debounce_seconds: Annotated[float | None, Opt(help="Quiet time after close.")] = None,
        retention_keep_last: Annotated[int | None, Opt(help="Forecast files kept.")] = None,
        retention_max_age_hours: Annotated[float | None, Opt(help="Max forecast age.")] = None,
        compile_cache_dir: Annotated[Path | None, Opt(help="JAX compile cache dir.")] = None,
        log_level: Annotated[str | None, Opt(help="DEBUG, INFO, WARNING or ERROR.")] = None,
        verbose: Annotated[bool, Opt("--verbose", "-v", help="DEBUG logging.")] = False,
    ) -> None:
        """Watch a directory for radar scans and write a forecast for each one.

        Precedence: flag, then environment (NOWCASTD_<KEY>, NOWCASTD_COMPILE_CACHE), then the
        config file, then defaults. SIGTERM/SIGINT: finish the forecast and exit 0. SIGHUP:
        re-read the config (log level, retention, reader settings).
        """
        flags = {k: v for k, v in locals().items() if k not in ("config", "verbose")}
        _serve(config, flags, verbose)


def _serve(config: Path | None, flags: dict, verbose: bool) -> None:
    from nowcastd.cli.common import setup_logging
    from nowcastd.serve.config import load_serve_config

    cfg = load_serve_config(config, flags=flags)
    setup_logging(verbose)
    if not verbose:
        logging.getLogger().setLevel(cfg.log_level)
    cfg.require("watch_dir", "output_dir", "checkpoint")

    from nowcastd.serve.forecaster import enable_compile_cache

    if cfg.compile_cache_dir is not None:
        enable_compile_cache(cfg.compile_cache_dir)
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.serve.service import Service

    model = load_model(cfg.checkpoint)
    code = Service(cfg, model, config_path=config, flags=flags).run()
    raise typer.Exit(code=code)
