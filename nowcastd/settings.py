"""Typed settings for every command: command-line flag, then environment, then TOML, then default.

A command's settings are the fields of frozen dataclasses. Each field is one `Spec`: its name is
the TOML key in the command's table, the flag (`--batch_size`, also `--batch-size`) and, with the
command's prefix, the environment variable (`NOWCASTD_EVALUATE_BATCH_SIZE`). Values are coerced
by the field's type hint:

- flags and environment are text: `1`/`0`/`true`/`false`/`yes`/`no`/`on`/`off` for booleans,
  comma-separated items for tuples (`--num_hidden 16,16,16`), an empty string for "unset" of an
  optional field;
- TOML values must already have the field's type: `batch_size = "8"` is refused, as is
  `poll = 1`; tuples are arrays (`num_hidden = [16, 16, 16]`).

Every error is one `ConfigError` line naming the key where the value came from, what was
expected and what arrived; unknown keys and tables are refused by name; missing required
settings are listed together.
"""

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from nowcastd.errors import ConfigError

__all__ = [
    "TABLES",
    "Spec",
    "check_table",
    "coerce",
    "missing_error",
    "read_config",
    "resolve",
    "setting",
    "specs",
    "strategy_cache_dir",
]

#: Every table a nowcastd config file may hold; one file can serve several commands.
TABLES = ("train", "dataset", "evaluate", "import_torch", "demo", "serve", "reader", "domain")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec:
    """One setting: name, type hint, default and the help its flag shows."""

    name: str
    hint: Any
    default: Any
    help: str
    #: a bool given as `--name/--no-name` on the command line instead of `--name 1`
    switch: bool = False
    #: text -> value for a type with its own spelling (e.g. `64x64`); raises ValueError
    parse: Callable[[str], Any] | None = None

    @property
    def flag(self) -> str:
        return f"--{self.name}"


def setting(
    default: Any = None,
    help: str = "",  # noqa: A002
    *,
    switch: bool = False,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A dataclass field that carries its flag's help (read by `specs`)."""
    meta = {"help": help, "switch": switch, "parse": parse}
    return dataclasses.field(default=default, metadata=meta)


def specs(cls: type, *, exclude: Iterable[str] = ()) -> tuple[Spec, ...]:
    """The settings of dataclass `cls`, each field's help, switch and parse from its metadata
    (`setting`, or a `dataclasses.field` whose metadata has the same keys)."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = None if f.default is dataclasses.MISSING else f.default
        out.append(
            Spec(
                name=f.name,
                hint=hints[f.name],
                default=default,
                help=f.metadata.get("help", ""),
                switch=f.metadata.get("switch", False),
                parse=f.metadata.get("parse"),
            )
        )
    return tuple(out)


def read_config(path: Path | None, table: str) -> dict[str, dict[str, Any]]:
    """The tables of a TOML config file ({} without one); unknown tables refused by name.

    `table` is the reading command's own table, suggested for a key outside any table.
    """
    if path is None:
        return {}
    try:
        with Path(path).open("rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    for name, value in doc.items():
        if not isinstance(value, dict):
            raise ConfigError(
                f"{path}: {name}: expected a key inside a table such as [{table}], "
                "got it outside any table"
            )
        if name not in TABLES:
            raise ConfigError(
                f"{path}: [{name}]: unknown table{_did_you_mean(name, TABLES, '[{}]')}; "
                f"expected one of {', '.join(f'[{t}]' for t in TABLES)}"
            )
    return doc


def check_table(table: str, values: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse keys of `[table]` that are not settings, by name."""
    names = tuple(known)
    for key in values:
        if key not in names:
            raise ConfigError(
                f"[{table}] {key}: unknown key{_did_you_mean(key, names, '{}')}; "
                f"expected one of {', '.join(sorted(names))}"
            )


def resolve(
    settings: Iterable[Spec],
    *,
    table: str,
    flags: Mapping[str, Any] | None = None,
    file: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    env_prefix: str | None = None,
    env_names: Mapping[str, str] | None = None,
    required: Iterable[str] = (),
) -> dict[str, Any]:
    """Typed values of `settings`: flag (None: not given), then environment, then file, then
    default. `env_prefix` "NOWCASTD_TRAIN_" gives NOWCASTD_TRAIN_<NAME>; `env_names` overrides
    single names; no prefix and no override: no environment. Missing `required` ones, all
    listed in one ConfigError.
    """
    has_flags = flags is not None
    flags, file, environ = flags or {}, file or {}, environ or {}
    settings = tuple(settings)
    check_table(table, file, (s.name for s in settings))
    values: dict[str, Any] = {}
    for s in settings:
        env = env_name(s.name, env_prefix, env_names)
        if flags.get(s.name) is not None:
            values[s.name] = coerce(s, flags[s.name], where=s.flag, text=True)
        elif env is not None and env in environ:
            values[s.name] = coerce(s, environ[env], where=env, text=True)
        elif s.name in file:
            values[s.name] = coerce(s, file[s.name], where=f"[{table}] {s.name}", text=False)
        else:
            values[s.name] = s.default
    missing = [n for n in required if values.get(n) is None]
    if missing:
        raise missing_error(
            missing, table=table, env_prefix=env_prefix, env_names=env_names, flag=has_flags
        )
    return values


def env_name(
    name: str, env_prefix: str | None, env_names: Mapping[str, str] | None = None
) -> str | None:
    if env_names and name in env_names:
        return env_names[name]
    return None if env_prefix is None else f"{env_prefix}{name.upper()}"


def missing_error(
    names: Iterable[str],
    *,
    table: str,
    env_prefix: str | None = None,
    env_names: Mapping[str, str] | None = None,
    flag: bool = True,
) -> ConfigError:
    """One line listing every missing setting with the places it can be given."""
    parts = []
    for name in names:
        env = env_name(name, env_prefix, env_names)
        places = ([f"--{name}"] if flag else []) + [f"[{table}] {name}"] + ([env] if env else [])
        parts.append(" or ".join(places))
    return ConfigError(f"missing settings: {'; '.join(parts)}")


def coerce(spec: Spec, value: Any, *, where: str, text: bool) -> Any:
    """`value` as `spec.hint`: text (flags, environment) is parsed; TOML values are checked."""
    try:
        return _coerce(spec.hint, value, text=text, parse=spec.parse)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}, got {value!r}") from None


def _coerce(hint: Any, value: Any, *, text: bool, parse: Callable[[str], Any] | None) -> Any:
    kind, optional = _unwrap_optional(hint)
    if text and isinstance(value, str) and optional and not value.strip():
        return None
    if parse is not None:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, {_expected(kind)}")
        return parse(value)
    origin = typing.get_origin(kind)
    if origin is tuple:
        return _coerce_tuple(kind, value, text=text)
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ValueError(f"expected {_expected(kind)}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
        raise ValueError(f"expected {_expected(kind)}")
    if isinstance(value, bool):  # a TOML boolean is no number, path or string
        raise ValueError(f"expected {_expected(kind)}")
    if kind is int or kind is float:
        if isinstance(value, int) or (kind is float and isinstance(value, float)):
            return kind(value)
        if text and isinstance(value, str):
            try:
                return kind(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected {_expected(kind)}")
    if kind is Path:
        if isinstance(value, str | Path) and str(value).strip():
            return Path(value)
        raise ValueError(f"expected {_expected(kind)}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected {_expected(kind)}")
    raise TypeError(f"settings of type {hint!r} are not supported")


def _coerce_tuple(kind: Any, value: Any, *, text: bool) -> tuple[Any, ...]:
    args = typing.get_args(kind)
    item = args[0]
    if text and isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple) and not text:
        items = list(value)
    else:
        raise ValueError(f"expected {_expected(kind)}")
    fixed = not (len(args) == 2 and args[1] is Ellipsis)
    if fixed and len(items) != len(args):
        raise ValueError(f"expected {_expected(kind)}")
    try:
        return tuple(_coerce(item, v, text=text, parse=None) for v in items)
    except ValueError:
        raise ValueError(f"expected {_expected(kind)}") from None


def _expected(hint: Any) -> str:
    """'an integer', 'a list of 4 integers', "one of 'a', 'b'": what a setting accepts."""
    kind, optional = _unwrap_optional(hint)
    origin = typing.get_origin(kind)
    if origin is Literal:
        text = "one of " + ", ".join(repr(c) for c in typing.get_args(kind))
    elif origin is tuple:
        args = typing.get_args(kind)
        word = {int: "integers", float: "numbers", Path: "paths", str: "strings"}[args[0]]
        count = "" if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} "
        text = f"a list of {count}{word} (comma-separated on the command line)"
    else:
        text = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            Path: "a path",
            str: "a string",
        }.get(kind, kind.__name__ if isinstance(kind, type) else str(kind))
    return text


def metavar(spec: Spec) -> str:
    kind, _ = _unwrap_optional(spec.hint)
    origin = typing.get_origin(kind)
    if spec.parse is not None:
        return "<text>"
    if origin is Literal:
        return "<" + "|".join(typing.get_args(kind)) + ">"
    if origin is tuple:
        return (
            "<"
            + {int: "int", float: "float", Path: "path", str: "text"}[typing.get_args(kind)[0]]
            + ",...>"
        )
    return {bool: "<0|1>", int: "<int>", float: "<float>", Path: "<path>"}.get(kind, "<text>")


#: The environment variable naming the strategy cache's directory (`strategy_cache_dir`).
STRATEGY_CACHE_ENV = "NOWCASTD_STRATEGY_CACHE"


def strategy_cache_dir(environ: Mapping[str, str], compile_cache: Path | None = None) -> Path:
    """Where measured strategies are cached (`nowcastd.strategy.cache`): `NOWCASTD_STRATEGY_CACHE`
    if set; else `strategy/` in the JAX compilation cache directory (`compile_cache`, serve's
    `compile_cache_dir`, else JAX's own `JAX_COMPILATION_CACHE_DIR`); else
    `$XDG_CACHE_HOME/nowcastd/strategy` (`~/.cache/nowcastd/strategy`)."""
    if environ.get(STRATEGY_CACHE_ENV):
        return Path(environ[STRATEGY_CACHE_ENV])
    jax_cache = compile_cache or environ.get("JAX_COMPILATION_CACHE_DIR")
    if jax_cache:
        return Path(jax_cache) / "strategy"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    base = environ.get("XDG_CACHE_HOME") or home / ".cache"
    return Path(base) / "nowcastd" / "strategy"


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed) of an annotation like `int | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _did_you_mean(name: str, names: Iterable[str], fmt: str) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {fmt.format(close[0])}?)" if close else ""
