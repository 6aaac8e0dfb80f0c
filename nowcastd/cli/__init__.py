"""The `nowcastd` command line: one thin module per command over the library."""

from nowcastd.cli.app import app, main

__all__ = ["app", "main"]
