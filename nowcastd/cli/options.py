"""Flag resolution shared by the commands: command line, then environment, then TOML, then defaults.

Options are declared with default None so that "not given" is visible; `Resolver` fills each
from `NOWCASTD_<NAME>` in the environment, then from the TOML file's table, then from the
command's defaults (run.py's, for the training flags).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nowcastd.errors import ConfigError
from nowcastd.serve.config import read_toml, toml_section


def load_toml(path: Path | None, table: str, keys: Iterable[str]) -> dict[str, Any]:
    """The `[table]` of a TOML file (empty without a file); ConfigError for unknown keys."""
    if path is None:
        return {}
    return toml_section(read_toml(path), table, tuple(keys), Path(path))


class Resolver:
    def __init__(
        self, given: Mapping[str, Any], file_values: Mapping[str, Any], defaults: Mapping[str, Any]
    ) -> None:
        self.given, self.file, self.defaults = given, file_values, defaults

    def __getitem__(self, name: str) -> Any:
        value = self.given.get(name)
        if value is not None:
            return value
        env = os.environ.get(f"NOWCASTD_{name.upper()}")
        default = self.defaults[name]
        if env is not None:
            return _coerce(env, default, name)
        if name in self.file:
            return self.file[name]
        return default


def _coerce(text: str, like: Any, name: str) -> Any:
    try:
        if isinstance(like, bool):
            return text.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError as e:
        raise ConfigError(
            f"NOWCASTD_{name.upper()}={text!r}: expected {type(like).__name__}"
        ) from e
    return text
