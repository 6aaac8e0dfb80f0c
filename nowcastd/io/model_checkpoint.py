"""Loading and writing nowcastd checkpoints on the service side (network + data transform)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import jax

from model.checkpoint import (
    config_from_json,
    load_metadata,
    load_network,
    network_digest,
    save_checkpoint,
)
from model.network import PredRNN
from nowcastd.errors import CheckpointError
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadedModel:
    network: PredRNN
    transform: DataTransform
    metadata: dict[str, Any]
    digest: str
    path: Path

    @property
    def cfg(self):
        return self.network.cfg


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or the newest `ckpt-*` inside a run's save_dir."""
    path = Path(path)
    if (path / "meta.json").exists():
        return path
    candidates = sorted(p for p in path.glob("ckpt-*") if (p / "meta.json").exists())
    if not candidates:
        raise CheckpointError(f"{path}: no nowcastd checkpoint (expected meta.json or ckpt-*/)")
    return candidates[-1]


def load_model(path: Path) -> LoadedModel:
    """Load a checkpoint's network and data transform for inference."""
    path = resolve_checkpoint(path)
    try:
        meta = load_metadata(path)
        cfg = config_from_json(meta["model_config"])
        network = load_network(path, PredRNN(cfg, key=jax.random.key(0)))
        transform = DataTransform.from_json(meta.get("transform", {"kind": "identity"}))
        digest = network_digest(path)
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot load checkpoint: {e}") from e
    logger.info("loaded %s (%s, sha256 %s)", path, cfg.model_name, digest[:12])
    return LoadedModel(
        network=network, transform=transform, metadata=meta, digest=digest, path=path
    )


def save_inference_checkpoint(
    path: Path, network: PredRNN, transform: DataTransform, **metadata: Any
) -> Path:
    """Write a network-only checkpoint (e.g. from `import-torch`)."""
    return save_checkpoint(
        Path(path), network=network, metadata={"transform": transform.to_json(), **metadata}
    )
