"""`nowcastd serve`: the daemon beside a radar feed (see `nowcastd.serve.service`)."""

import logging
from pathlib import Path
from typing import Any

import typer

from nowcastd.cli.common import verbose_enabled
from nowcastd.cli.options import Source, settings_command
from nowcastd.serve.config import SERVE_SETTINGS, ServeConfig, load_serve_config
from nowcastd.settings import Spec

HELP = {
    "watch_dir": "directory where scans appear",
    "output_dir": "directory for forecast files",
    "checkpoint": "checkpoint directory, or a run's save_dir (its newest); default: the bundled model",
    "metrics_addr": "address of the Prometheus endpoint",
    "metrics_port": "port of the Prometheus endpoint (0: any free)",
    "lead_frames": "frames forecast per scan; unset: the model's total_length - input_length",
    "timestep_seconds": "time between scans",
    "max_gap_seconds": "a longer gap between scans empties the buffer; unset: 1.5 timesteps",
    "poll": "poll the directory instead of inotify",
    "poll_interval_seconds": "polling period",
    "settle_seconds": "polling: how long a file's size must stay still",
    "debounce_seconds": "a file written in place is read after this long without events",
    "retention_keep_last": "forecast files kept (0: no limit)",
    "retention_max_age_hours": "maximum age of forecast files (0: no limit)",
    "compile_cache_dir": "persistent JAX compile cache (also NOWCASTD_COMPILE_CACHE)",
    "strategy": "auto: time the candidate strategies of each program at the first start and "
    "cache the fastest; default, or a name such as ynn=off,wgrad=96,unroll=auto (bf16=on: "
    "bfloat16 convolutions, which change values)",
    "log_level": "DEBUG, INFO, WARNING or ERROR (--verbose: DEBUG)",
    "events_file": "append one JSON line per scan outcome to this file (for programs)",
    "read_timeout_seconds": "a scan read taking longer is abandoned (its reader process killed)",
    "read_memory_limit_bytes": "address-space limit of the scan reader process",
    "max_scan_bytes": "larger scan files are refused unread",
    "follow_symlinks": "follow symlinks in watch_dir to files inside it (default: refuse them)",
    "allow_hdf5_external": "follow HDF5 external links/storage and virtual datasets",
    "max_future_seconds": "scans valid further ahead of the clock are refused",
    "refill_max_age_hours": "start-up ignores scans older than this (0: any age)",
    "cadence_tolerance_seconds": "off-timestep tolerance; unset: a tenth of the timestep",
    "max_rain_rate_mm_h": "rain rates above this are implausible (clipped, or refused if many)",
    "max_implausible_fraction": "a scan with more implausible pixels than this is refused",
    "max_saturated_fraction": "a scan with more pixels than this at or above the rate where "
    "the model's input saturates (205 mm/h for the dbz transform) is refused (1: never)",
    "extreme_rain_rate_mm_h": "a rain rate no rain reaches over a share of a composite",
    "max_extreme_fraction": "a scan with more pixels than this above extreme_rain_rate_mm_h "
    "is refused (1: never)",
    "refuse_constant_field": "refuse a scan of one constant non-zero value throughout",
    "max_abs_gain": "a larger calibration gain is refused",
    "max_abs_offset": "a larger calibration offset is refused",
    "stall_seconds": "a worker without progress this long stops the systemd watchdog pings",
}


def serve_options(names: tuple[str, ...] | None = None) -> tuple[Spec, ...]:
    """`[serve]` settings as flags with their help (all of them, or those in `names`)."""
    return tuple(
        Spec(
            name=s.name,
            hint=s.hint,
            default=s.default,
            help=HELP[s.name],
            switch=s.hint is bool,
            parse=s.parse,
        )
        for s in SERVE_SETTINGS
        if names is None or s.name in names
    )


def load(config: Path | None, flags: dict[str, Any], required: tuple[str, ...]) -> ServeConfig:
    """The `[serve]`, `[reader]` and `[domain]` settings; the log level unless --verbose."""
    cfg = load_serve_config(config, flags=flags, required=required)
    if not verbose_enabled():
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
    from nowcastd.serve.guards import check_directories
    from nowcastd.serve.service import Service

    # a mistake in the directories is said before seconds of loading and compiling
    cfg.require("watch_dir", "output_dir")
    check_directories(cfg.watch_dir, cfg.output_dir)
    if cfg.compile_cache_dir is not None:
        enable_compile_cache(cfg.compile_cache_dir)
    model = load_model(cfg.checkpoint)
    code = Service(cfg, model, config_path=source.config, flags=dict(source.flags)).run()
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
