"""The `nowcastd` command line: thin Typer commands over the library."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

app = typer.Typer(
    name="nowcastd",
    help="Radar precipitation nowcasting with PredRNN-v2: train, serve, predict, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module under nowcastd.commands defines `register(app)`.
COMMANDS = ("demo", "import_torch", "train", "dataset", "evaluate", "serve", "predict")


def setup_logging(verbose: bool = False) -> None:
    """stderr logging, one line per record, journald-friendly (no timestamps under systemd)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt, force=True)
    logging.getLogger("jax").setLevel(logging.WARNING)


for _name in COMMANDS:
    importlib.import_module(f"nowcastd.commands.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
