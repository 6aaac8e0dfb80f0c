"""A training run's checkpoints in `save_dir`: numbered, atomic, the newest N kept, resumable."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import optax

from model.checkpoint import config_from_json, load_metadata, load_train_state
from model.network import PredRNN
from model.train import TrainState, init_train_state
from nowcastd.errors import CheckpointError
from nowcastd.io.model_checkpoint import checkpoint_dirs, checkpoint_name, save_checkpoint
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)


def save_run_checkpoint(
    save_dir: Path,
    state: TrainState,
    *,
    transform: DataTransform,
    extra: dict[str, Any],
    keep: int,
) -> Path:
    """Write `ckpt-<step>` atomically, then delete this run's checkpoints beyond the newest `keep`.

    Only `ckpt-NNNNNNNN` directories are ever removed; nothing else in `save_dir` is touched.
    """
    step = int(state.step)
    path = save_dir / checkpoint_name(step)
    save_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        path,
        network=state.network,
        train_state=state,
        metadata={"step": step, "transform": transform.to_json(), **extra},
    )
    for old in checkpoint_dirs(save_dir)[:-keep]:
        shutil.rmtree(old)
    logger.info("saved checkpoint %s", path)
    return path


def restore_run_checkpoint(
    path: Path, optimizer: optax.GradientTransformation
) -> tuple[TrainState, dict[str, Any]]:
    """The train state and metadata of a nowcastd training checkpoint."""
    try:
        meta = load_metadata(path)
        if not meta.get("has_train_state"):
            raise CheckpointError(f"{path}: holds no optimizer state (an inference checkpoint)")
        cfg = config_from_json(meta["model_config"])
        # shapes and types alone: building real weights would compile every initialiser
        template = eqx.filter_eval_shape(
            lambda: init_train_state(
                PredRNN(cfg, key=jax.random.key(0)), optimizer, jax.random.key(0)
            )
        )
        state = load_train_state(path, template)
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot resume: {e}") from e
    return state, meta


def to_jsonable(obj: Any) -> Any:
    """Dataclass configs as JSON-able dicts (paths as strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
