"""The tiny model the serve tests forecast with (16 x 16 grid, two 8-channel layers)."""

from pathlib import Path

import jax

from model.config import ModelConfig
from model.network import PredRNN
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.io.transform import DataTransform

DBZ = DataTransform(kind="dbz")


def tiny_network(input_length: int = 3, size: int = 16, *, predict_delta: bool = False) -> PredRNN:
    cfg = ModelConfig(
        model_name="predrnn_v2",
        num_hidden=(8, 8),
        filter_size=3,
        patch_size=4,
        img_height=size,
        img_width=size,
        input_length=input_length,
        total_length=input_length + 3,
        predict_delta=predict_delta,
    )
    return PredRNN(cfg, key=jax.random.key(0))


def tiny_model(input_length: int = 3, size: int = 16) -> LoadedModel:
    return LoadedModel(
        network=tiny_network(input_length, size),
        transform=DBZ,
        metadata={},
        digest="test",
        path=Path("ckpt"),
    )
