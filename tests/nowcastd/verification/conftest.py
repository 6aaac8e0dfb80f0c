"""A tiny real checkpoint (3 inputs, 2 leads, 64 x 64, no layer norm) and HDF5 movie writing."""

from __future__ import annotations

from pathlib import Path

import h5py
import jax
import numpy as np
import pytest

from model.config import ModelConfig
from model.network import PredRNN
from nowcastd.io.model_checkpoint import load_model, save_inference_checkpoint
from nowcastd.io.transform import DataTransform

INPUT, TOTAL = 3, 5


def tiny_config(**changes) -> ModelConfig:
    base = dict(
        model_name="predrnn_v2",
        num_hidden=(8, 8),
        filter_size=3,
        patch_size=4,
        img_height=64,
        img_width=64,
        input_length=INPUT,
        total_length=TOTAL,
        layer_norm=False,
    )
    return ModelConfig(**{**base, **changes})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_inference_checkpoint(
        path, PredRNN(tiny_config(), key=jax.random.key(0)), DataTransform(kind="dbz")
    )
    return load_model(path)


def write_movie(path: Path, precip: np.ndarray, *, step: int = 300, times=None) -> Path:
    """An HDF5 movie in the development set's layout: precip (T, H, W) mm/h, time, step."""
    t0 = 1_431_704_700
    unix = np.asarray(times if times is not None else t0 + step * np.arange(len(precip)))
    iso = [np.datetime_as_string(np.datetime64(int(u), "s"), unit="s") + "Z" for u in unix]
    with h5py.File(path, "w") as h:
        h.create_dataset("precip", data=precip.astype(np.float32)).attrs["units"] = "mm/h"
        h["time"] = np.array(iso, dtype="S20")
        h["time_unix"] = unix.astype(np.int64)
        h.attrs["timestep_seconds"] = step
    return path
