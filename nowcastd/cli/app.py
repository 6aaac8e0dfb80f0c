"""The `nowcastd` Typer app: every command module under `nowcastd.cli` registers itself here."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="nowcastd",
    help="Radar precipitation nowcasting with PredRNN-v2: train, serve, predict, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each of these modules under nowcastd.cli defines `register(app)`.
COMMANDS = ("demo", "import_torch", "train", "dataset", "evaluate", "serve", "predict")

for _name in COMMANDS:
    importlib.import_module(f"nowcastd.cli.{_name}").register(app)


def main() -> None:
    app()
