"""What every command shares: logging set-up and one-line user errors."""

import functools
import logging
import sys
import warnings
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


def setup_logging(verbose: bool = False) -> None:
    """stderr logging, one line per record, journald-friendly (no timestamps under systemd).
    pysteps' expected outlier warning (`data.motion.OUTLIER_WARNING`) is ignored here, once
    for the process, rather than by the library."""
    from nowcastd.data.motion import OUTLIER_WARNING

    warnings.filterwarnings("ignore", message=OUTLIER_WARNING, category=UserWarning)
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt, force=True)
    logging.getLogger("jax").setLevel(logging.WARNING)
