"""The `nowcastd` Typer app: logging is set up once here; each command module registers itself."""

import importlib
from typing import Annotated

import typer

from nowcastd.cli.common import setup_logging

app = typer.Typer(
    name="nowcastd",
    help="Radar precipitation nowcasting with PredRNN-v2: train, serve, predict, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def logging_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="DEBUG logging (also accepted after a command)")
    ] = False,
) -> None:
    """Radar precipitation nowcasting with PredRNN-v2: train, serve, predict, evaluate."""
    setup_logging(verbose)


# Each of these modules under nowcastd.cli defines `register(app)`.
COMMANDS = ("demo", "import_torch", "train", "dataset", "evaluate", "serve", "predict")

for _name in COMMANDS:
    importlib.import_module(f"nowcastd.cli.{_name}").register(app)


def main() -> None:
    app()
