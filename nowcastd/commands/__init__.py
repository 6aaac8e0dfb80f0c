"""One module per CLI command; each defines `register(app)`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from nowcastd.errors import NowcastdError


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report the project's errors as one line and exit 1, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NowcastdError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper
