"""Reading official predrnn-pytorch checkpoints (`model.ckpt-N`) or `.npz` state dicts."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from model.config import ModelConfig
from model.network import PredRNN
from model.torch_compat import import_state_dict
from nowcastd.errors import CheckpointError
from nowcastd.io.readers.detect import sniff


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A torch-named state dict from an `.npz` of arrays or an official `{'net_param': ...}` file.

    `.npz` files are read with `allow_pickle=False`; torch files need the `torch` extra and are
    read with `weights_only=True`, which refuses anything but tensors and plain containers.
    """
    path = Path(path)
    try:
        container = sniff(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from e
    if container == "zip" and _is_npz(path):
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k], np.float32) for k in data.files}
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(
            f"{path}: reading an official torch checkpoint needs the torch extra "
            "(pip install 'nowcastd[torch]'), or convert it to .npz"
        ) from e
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: not a loadable torch checkpoint: {e}") from e
    sd = blob.get("net_param", blob) if isinstance(blob, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(
            f"{path}: expected {{'net_param': state_dict}}, got {type(blob).__name__}"
        )
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in sd.items()}


def _is_npz(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return all(n.endswith(".npy") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def load_official_checkpoint(path: Path, cfg: ModelConfig) -> PredRNN:
    try:
        return import_state_dict(read_state_dict(path), cfg)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
