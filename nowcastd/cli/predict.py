"""`nowcastd predict`: the serve pipeline once, from scan files to one forecast file.

The scans go through `Pipeline.step` as a batch of queued scans does in `serve`, with the
same rules (reader policy, plausibility, `future`, cadence, ordering); only the start-up
refill's `stale` rule is not applied, so archived scans forecast. A refused scan, or one
whose handling failed, is named on stderr with its reason and left out: the forecast is made
from the others when they still hold `input_length` consecutive scans ending at the newest,
and it is an error (exit 1) when they do not.
"""

import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nowcastd.cli.options import Source, settings_command
from nowcastd.cli.serve import serve_options

if TYPE_CHECKING:
    from nowcastd.serve.outcome import Failed, Rejected

#: The `[serve]` settings predict takes as flags; the rest come from --config as for serve.
PREDICT_OPTIONS = (
    "checkpoint",
    "output_dir",
    "lead_frames",
    "timestep_seconds",
    "ensemble_members",
    "probability_thresholds_mm_h",
    "ensemble_write_members",
)


def predict(
    source: Source,
    scans: Annotated[list[Path], typer.Argument(help="scan files (any order)")],
) -> None:
    """Forecast from the newest input_length of SCANS (consecutive in time) and print
    the forecast file's path. Reader, domain and timing come from --config as for serve.
    """
    typer.echo(run_predict(scans, config=source.config, flags=source.flags, verbose=source.verbose))


def register(app: typer.Typer) -> None:
    command = settings_command(
        predict,
        serve_options(PREDICT_OPTIONS),
        table="serve",
        required=(),
        load=lambda source, required: source,
    )
    app.command("predict")(command)


def run_predict(
    scans: list[Path], *, config: Path | None, flags: Mapping[str, Any], verbose: bool = False
) -> Path:
    """The forecast file of `scans`; the config's log level unless `verbose`."""
    from nowcastd.errors import DataError
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.serve.config import load_serve_config
    from nowcastd.serve.outcome import Failed, Rejected, Written
    from nowcastd.serve.pipeline import Pipeline

    cfg = load_serve_config(config, flags=flags)
    cfg = dataclasses.replace(cfg, output_dir=cfg.output_dir or Path("."))
    missing = [str(path) for path in scans if not Path(path).is_file()]
    if missing:  # before the model loads and compiles
        raise DataError(f"no such scan file: {', '.join(missing)}")
    if not verbose:
        logging.getLogger().setLevel(cfg.log_level)
    pipe = Pipeline(cfg, load_model(cfg.checkpoint))
    try:
        pipe.compile(pre_encoding=False)
        outcomes = pipe.step(list(scans), datetime.now(UTC))
    finally:
        pipe.close()  # its compressor's threads
    refused = [_refusal(o) for o in outcomes if isinstance(o, Rejected | Failed)]
    for line in refused:
        typer.echo(line, err=True)
    written = [outcome for outcome in outcomes if isinstance(outcome, Written)]
    if not written:
        status = pipe.status()
        first = f"; first {refused[0]}" if refused else ""
        raise DataError(
            f"predict: expected {status.capacity} consecutive scans ending at the newest, "
            f"got {status.frames} ({len(refused)} of {len(scans)} refused){first}"
        )
    return written[0].file


def _refusal(outcome: "Rejected | Failed") -> str:
    """One line for a scan that did not enter the forecast, with its reason."""
    from nowcastd.serve.outcome import Rejected

    if isinstance(outcome, Rejected):
        return f"refused ({outcome.reason}): {outcome.detail}"
    return f"{outcome.stage} failed ({outcome.reason}) for {outcome.name}: {outcome.detail}"
