"""`nowcastd serve`: the daemon beside a radar feed (see `nowcastd.serve.service`)."""

import logging

import typer

from nowcastd.cli.options import Source, settings_command
from nowcastd.serve.config import SERVE_SETTINGS, ServeConfig, load_serve_config
from nowcastd.settings import Spec


def serve_options(names: tuple[str, ...] | None = None) -> tuple[Spec, ...]:
    """`[serve]` settings as flags, with the help each `ServeConfig` field carries (all of
    them, or those in `names`)."""
    return tuple(s for s in SERVE_SETTINGS if names is None or s.name in names)


def load(source: Source, required: tuple[str, ...]) -> ServeConfig:
    """The `[serve]`, `[reader]` and `[domain]` settings; the log level unless --verbose."""
    cfg = load_serve_config(source.config, flags=dict(source.flags), required=required)
    if not source.verbose:
        logging.getLogger().setLevel(cfg.log_level)
    return cfg


def serve(cfg: ServeConfig, *, source: Source) -> None:
    """Watch a directory for radar scans and write a forecast for each one.

    Precedence: flag, then environment (NOWCASTD_SERVE_<KEY>; NOWCASTD_COMPILE_CACHE), then the
    config file, then defaults. SIGTERM/SIGINT: finish the forecast and exit 0. SIGHUP:
    re-read the config (log level, retention, reader settings).
    """
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.serve.forecaster import enable_compile_cache
    from nowcastd.serve.guards import EscapeLogLines, check_directories
    from nowcastd.serve.service import Service

    # a mistake in the directories is said before seconds of loading and compiling
    check_directories(*cfg.served_dirs())
    if cfg.compile_cache_dir is not None:
        enable_compile_cache(cfg.compile_cache_dir)
    model = load_model(cfg.checkpoint)
    # Scan names reach the log: each record is one printable line on the handlers set up here.
    escape = EscapeLogLines()
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(escape)
    try:
        code = Service(cfg, model, config_path=source.config, flags=dict(source.flags)).run()
    finally:
        for handler in handlers:
            handler.removeFilter(escape)
    raise typer.Exit(code=code)


def register(app: typer.Typer) -> None:
    command = settings_command(
        serve,
        serve_options(),
        table="serve",
        required=("watch_dir", "output_dir"),
        load=load,
    )
    app.command("serve")(command)
