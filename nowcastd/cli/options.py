"""One way to declare a command's settings: flags generated from `nowcastd.settings.Spec`s.

`settings_command(func, specs, table=...)` gives `func` a Typer signature with, for every
setting, one option spelled `--name` and `--name-with-dashes` (run.py's snake_case and the
kebab-case alias), `--config FILE` and `-v/--verbose`. Before `func` runs, the flags are
resolved against `NOWCASTD_<TABLE>_<NAME>`, the file's `[table]` and the defaults into typed
values; `func` receives them, built into one object by `build`, as its first argument. Whether
`--verbose` was given, before the command (the app's own option) or after it, is decided here
once and handed down in `Source.verbose`.
"""

import dataclasses
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from nowcastd.cli.common import user_errors
from nowcastd.errors import ConfigError
from nowcastd.settings import Spec, metavar, read_config, resolve


@dataclasses.dataclass(frozen=True, kw_only=True)
class Source:
    """Where a command's settings came from: the config file and the flags given; and whether
    `--verbose` was given (before or after the command)."""

    config: Path | None
    flags: Mapping[str, Any]
    verbose: bool = False


def env_prefix(table: str) -> str:
    return f"NOWCASTD_{table.upper()}_"


def build_error(e: ValueError, *classes: type) -> ConfigError:
    """A config's own validation error as a ConfigError, without the class's name."""
    message = str(e)
    for cls in classes:
        message = message.removeprefix(f"{cls.__name__}.")
    return ConfigError(message)


def load_settings(
    specs: Iterable[Spec],
    *,
    table: str,
    config: Path | None,
    flags: Mapping[str, Any],
    required: Iterable[str] = (),
) -> dict[str, Any]:
    """flag > NOWCASTD_<TABLE>_<NAME> > the file's [table] > default, as typed values."""
    doc = read_config(config, table)
    return resolve(
        specs,
        table=table,
        flags=flags,
        file=doc.get(table, {}),
        environ=os.environ,
        env_prefix=env_prefix(table),
        required=required,
    )


def _option(spec: Spec, required: bool) -> inspect.Parameter:
    notes = []
    if required:
        notes.append("\\[required]")
    elif spec.default is not None and spec.default != ():
        shown = spec.default
        if isinstance(shown, bool):
            shown = ("on" if shown else "off") if spec.switch else int(shown)
        elif isinstance(shown, tuple):
            shown = ",".join(map(str, shown))
        notes.append(f"\\[default: {shown}]")
    text = " ".join([spec.help, *notes])
    kebab = spec.name.replace("_", "-")
    if spec.switch:
        decls = [f"--{spec.name}/--no-{spec.name}"]
        if kebab != spec.name:
            decls.append(f"--{kebab}/--no-{kebab}")
        option = typer.Option(*decls, help=text, show_default=False)
        hint: Any = bool | None
    else:
        decls = [spec.flag] + ([f"--{kebab}"] if kebab != spec.name else [])
        option = typer.Option(*decls, help=text, metavar=metavar(spec), show_default=False)
        hint = str | None
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[hint, option]
    )


_VERBOSE = inspect.Parameter(
    "verbose",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[bool, typer.Option("--verbose", "-v", help="DEBUG logging")],
)


def _verbose(ctx: typer.Context, after_command: bool) -> bool:
    """`--verbose` after the command, or before it (the app's option, in the root context)."""
    return after_command or bool(ctx.find_root().params.get("verbose"))


#: Typer fills a parameter annotated `typer.Context` with the command's context.
_CONTEXT = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)


def settings_command(
    func: Callable[..., Any],
    specs: Iterable[Spec],
    *,
    table: str,
    required: Iterable[str] = (),
    build: Callable[[dict[str, Any]], Any] = dict,
    load: Callable[[Source, tuple[str, ...]], Any] | None = None,
) -> Callable[..., Any]:
    """`func(settings, **its own parameters)` as a Typer command callback (see module doc).

    `load(source, required)` replaces the default resolution (serve's own loader);
    `func` gets a `Source` in each keyword it annotates with that type.
    """
    specs = tuple(specs)
    required = tuple(required)
    names = {s.name for s in specs}
    own = list(inspect.signature(func).parameters.values())[1:]
    wants_source = [p.name for p in own if p.annotation is Source]
    own = [p for p in own if p.annotation is not Source]
    config = inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config", help=f"TOML file whose \\[{table}] table sets any option below"
            ),
        ],
    )
    params = [*own, config, *(_option(s, s.name in required) for s in specs), _VERBOSE, _CONTEXT]

    @functools.wraps(func)
    @user_errors
    def callback(**kwargs: Any) -> Any:
        verbose = _verbose(kwargs.pop("ctx"), kwargs.pop("verbose"))
        if verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        path = kwargs.pop("config")
        flags = {name: kwargs.pop(name) for name in names}
        source = Source(config=path, flags=flags, verbose=verbose)
        if load is not None:
            settings = load(source, required)
        else:
            values = load_settings(specs, table=table, config=path, flags=flags, required=required)
            try:
                settings = build(values)
            except ValueError as e:
                raise ConfigError(str(e)) from e
        for name in wants_source:
            kwargs[name] = source
        return func(settings, **kwargs)

    del callback.__wrapped__
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = {p.name: p.annotation for p in params}
    return callback
