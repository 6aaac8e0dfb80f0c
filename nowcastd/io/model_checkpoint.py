"""nowcastd checkpoints on disk: atomic saving, finding the newest, loading for inference.

A checkpoint is a directory holding `meta.json` (see `model.checkpoint`); a training run's
`save_dir` holds numbered ones, `ckpt-NNNNNNNN/`. `checkpoint_dirs` is the one rule for which
of them exist and which is the newest: training resumes from it and serving loads it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jax

from model.checkpoint import (
    META,
    config_from_json,
    load_metadata,
    load_network,
    network_digest,
    write_checkpoint,
)
from model.config import ModelConfig
from model.network import PredRNN
from model.strategy import DEFAULT, Strategy
from nowcastd.errors import CheckpointError, ConfigError
from nowcastd.io.atomic import atomic_directory
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)

_RUN_NAME = re.compile(r"^ckpt-(\d{8})$")


def save_checkpoint(directory: Path, **contents: Any) -> Path:
    """`model.checkpoint.write_checkpoint(directory, **contents)`, atomically (`io.atomic`)."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        write_checkpoint(tmp, **contents)
    return directory


def checkpoint_name(step: int) -> str:
    """The name of a run's checkpoint at `step`: `ckpt-NNNNNNNN`."""
    return f"ckpt-{int(step):08d}"


def checkpoint_dirs(save_dir: Path) -> list[Path]:
    """A run's complete `ckpt-NNNNNNNN` checkpoints in `save_dir`, oldest (lowest step) first."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return []
    found = [p for p in save_dir.iterdir() if _RUN_NAME.match(p.name) and (p / META).exists()]
    return sorted(found, key=lambda p: p.name)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A checkpoint's network and what runs it; `strategy`: how its forecasts are compiled
    (`model.compile`; not saved: a checkpoint holds weights, not a machine's choice)."""

    network: PredRNN
    transform: DataTransform
    metadata: dict[str, Any]
    digest: str
    path: Path
    strategy: Strategy = DEFAULT

    @property
    def cfg(self) -> ModelConfig:
        return self.network.cfg

    @property
    def motion_method(self) -> str:
        """The optical flow a Lagrangian network was trained with (pysteps' name; `LK` for
        checkpoints that do not say)."""
        return str(self.metadata.get("motion_method", "LK"))

    def check_grid(self, grid: tuple[int, int], where: str) -> None:
        """ConfigError unless the network runs on `grid`: a one-channel radar model without
        actions, on its own grid or, when fully convolutional (no layer norm), on any grid
        that is a multiple of its patch size."""
        cfg = self.cfg
        if cfg.is_action or cfg.img_channel != 1:
            raise ConfigError(
                f"{where}: expected a one-channel radar model without actions, got "
                f"{cfg.model_name} with {cfg.img_channel} channel(s)"
            )
        own = (cfg.img_height, cfg.img_width)
        if cfg.layer_norm and tuple(grid) != own:
            raise ConfigError(
                f"{where}: expected the model grid {own[0]}x{own[1]} of {self.path.name} "
                f"(layer norm ties it to one grid), got {grid[0]}x{grid[1]}"
            )
        p = cfg.patch_size
        if grid[0] % p or grid[1] % p:
            raise ConfigError(
                f"{where}: expected a grid that is a multiple of the patch size {p}, got "
                f"{grid[0]}x{grid[1]}"
            )


def bundled_checkpoint() -> Path:
    """The model that ships inside the package (see its MODEL_CARD.md)."""
    return Path(str(resources.files("nowcastd") / "bundled" / "model"))


def resolve_checkpoint(path: Path | None) -> Path:
    """A checkpoint directory, the newest `ckpt-NNNNNNNN` inside a run's save_dir, or (None)
    the bundled model."""
    if path is None:
        path = bundled_checkpoint()
        if not (path / META).exists():
            raise CheckpointError(
                "no checkpoint given and this installation has no bundled model: "
                "give --checkpoint DIR"
            )
        return path
    path = Path(path)
    if (path / META).exists():
        return path
    candidates = checkpoint_dirs(path)
    if not candidates:
        raise CheckpointError(
            f"{path}: no nowcastd checkpoint (expected {META} or ckpt-NNNNNNNN/ inside)"
        )
    return candidates[-1]


def load_model(path: Path | None) -> LoadedModel:
    """Load a checkpoint's network and data transform for inference (None: the bundled one)."""
    path = resolve_checkpoint(path)
    try:
        meta = load_metadata(path)
        cfg = config_from_json(meta["model_config"])
        network = load_network(path, PredRNN(cfg, key=jax.random.key(0)))
        transform = DataTransform.from_json(meta.get("transform", {"kind": "identity"}))
        digest = network_digest(path, cfg)
    except (OSError, KeyError, ValueError, TypeError, EOFError, RuntimeError) as e:
        # RuntimeError: equinox's TreePathError for a truncated or mismatched weights file
        raise CheckpointError(
            f"{path}: cannot load checkpoint (damaged, truncated or of another model?): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
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
