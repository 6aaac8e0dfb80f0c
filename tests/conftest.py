import pytest

from model.config import ModelConfig


@pytest.fixture(scope="session")
def tiny_cfg() -> ModelConfig:
    """A PredRNN-v2 that compiles and trains in seconds; vary it with `dataclasses.replace`."""
    return ModelConfig(
        model_name="predrnn_v2",
        num_hidden=(8, 8),
        filter_size=3,
        patch_size=2,
        img_height=8,
        img_width=8,
        input_length=3,
        total_length=6,
    )
