"""The strategy cache: one small JSON file per measured program, written atomically.

A file holds the key it was measured under (CPU model, jax and jaxlib versions, the devices,
the program, its shapes and the candidates) and what was measured. Its name is a digest of
the key, so a new CPU, jax, shape or candidate set measures afresh; a file that cannot be read
or does not hold what it should is ignored with a warning, and measured again.

Where: the directory it is given, resolved with the other settings
(`nowcastd.settings.strategy_cache_dir`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nowcastd.io.atomic import atomic_file

logger = logging.getLogger(__name__)

FORMAT = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """What one search found: the strategy kept (its name), and each candidate's seconds per
    call (or why it has none)."""

    strategy: str
    seconds: Mapping[str, float]
    failed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    skipped: tuple[str, ...] = ()


class StrategyCache:
    """Records by key in `directory` (created when first written)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, key: Mapping[str, Any]) -> Path:
        text = json.dumps(key, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        slug = re.sub(r"[^a-z0-9]+", "-", str(key.get("program", "program")).lower()).strip("-")
        return self.directory / f"{slug}-{digest}.json"

    def load(self, key: Mapping[str, Any]) -> Record | None:
        """The record stored under `key`; None if there is none, or it is unreadable (warned)."""
        path = self.path(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            logger.warning("%s: cannot read the strategy cache (%s); measuring again", path, e)
            return None
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT or doc.get("key") != json.loads(json.dumps(key)):
                raise ValueError("another format or key")
            return Record(
                strategy=str(doc["strategy"]),
                seconds={str(k): float(v) for k, v in doc["seconds"].items()},
                failed={str(k): str(v) for k, v in doc.get("failed", {}).items()},
                skipped=tuple(str(s) for s in doc.get("skipped", ())),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            logger.warning(
                "%s: expected a nowcastd strategy record (format %d), got an unreadable file "
                "(%s); measuring again",
                path,
                FORMAT,
                e,
            )
            return None

    def store(self, key: Mapping[str, Any], record: Record) -> Path | None:
        """Write `record` under `key` atomically; None (and a warning) if it cannot be written."""
        path = self.path(key)
        doc = {
            "format": FORMAT,
            "key": key,
            "strategy": record.strategy,
            "seconds": dict(record.seconds),
            "failed": dict(record.failed),
            "skipped": list(record.skipped),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as f:
                f.write((json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
        except OSError as e:
            logger.warning("%s: cannot write the strategy cache (%s); not cached", path, e)
            return None
        return path
