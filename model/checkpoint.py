"""Checkpoints: a directory of JSON metadata plus `eqx.tree_serialise_leaves` files.

The only room of `model/` that touches files, and only the paths it is given. It writes the
files into a new directory; making that atomic (a temporary directory, fsync, rename) is the
caller's part (`nowcastd.io.model_checkpoint.save_checkpoint`).
"""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import equinox as eqx

from model.config import ModelConfig
from model.network import PredRNN

FORMAT_VERSION = 1
META = "meta.json"
NETWORK = "network.eqx"
TRAIN_STATE = "train_state.eqx"

_Module = TypeVar("_Module", bound=eqx.Module)


def config_to_json(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_json(data: dict[str, Any]) -> ModelConfig:
    data = dict(data)
    data["num_hidden"] = tuple(data["num_hidden"])
    return ModelConfig(**data)


def write_checkpoint(
    directory: Path,
    *,
    network: PredRNN,
    metadata: dict[str, Any],
    train_state: eqx.Module | None = None,
) -> Path:
    """Write meta.json, network.eqx and optionally train_state.eqx into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(directory / NETWORK, network)
    if train_state is not None:
        eqx.tree_serialise_leaves(directory / TRAIN_STATE, train_state)
    meta = {
        "format_version": FORMAT_VERSION,
        "model_config": config_to_json(network.cfg),
        "network_sha256": _sha256(directory / NETWORK),
        "has_train_state": train_state is not None,
        **metadata,
    }
    (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_metadata(directory: Path) -> dict[str, Any]:
    """The checkpoint's metadata; raises ValueError for an unknown format version."""
    meta: dict[str, Any] = json.loads((Path(directory) / META).read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{directory}: checkpoint format version {version!r}, expected {FORMAT_VERSION}"
        )
    return meta


def load_network(directory: Path, template: PredRNN) -> PredRNN:
    network: PredRNN = eqx.tree_deserialise_leaves(Path(directory) / NETWORK, template)
    return network


def load_train_state(directory: Path, template: _Module) -> _Module:
    """The saved training state, in the structure (and types) of `template`."""
    state: _Module = eqx.tree_deserialise_leaves(Path(directory) / TRAIN_STATE, template)
    return state


def network_digest(directory: Path, cfg: ModelConfig) -> str:
    """The sha256 of the network weights file and of the configuration that runs them, for
    forecast provenance: the same weights in another frame of reference (`lagrangian`) or
    with other inference options forecast otherwise, so they get another digest."""
    config = json.dumps(config_to_json(cfg), sort_keys=True).encode()
    return hashlib.sha256(_sha256(Path(directory) / NETWORK).encode() + config).hexdigest()
