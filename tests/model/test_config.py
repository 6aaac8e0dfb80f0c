import re

import pytest

from model.config import ModelConfig
from model.sampling import SamplingConfig


def test_seed_configuration_is_valid_and_derives_shapes() -> None:
    cfg = ModelConfig(
        num_hidden=(16,) * 5,
        patch_size=4,
        img_height=40,
        img_width=40,
        input_length=4,
        total_length=5,
    )
    assert cfg.patch_channels == 16
    assert cfg.patch_shape == (10, 10)
    assert cfg.mask_length == 0


def test_non_square_grid_is_accepted() -> None:
    cfg = ModelConfig(img_height=96, img_width=128, patch_size=4)
    assert cfg.patch_shape == (24, 32)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_hidden": (16, 32)}, "num_hidden"),
        ({"filter_size": 4}, "filter_size"),
        ({"stride": 2}, "stride"),
        ({"img_width": 42}, "img_width"),
        ({"img_height": 30}, "img_height"),
        ({"input_length": 20, "total_length": 20}, "input_length"),
        ({"model_name": "convlstm"}, "model_name"),
        ({"model_name": "action_cond_predrnn_v2", "patch_size": 2}, "patch_size"),
        (
            {"model_name": "action_cond_predrnn_v2", "patch_size": 1, "conv_on_input": False},
            "conv_on_input",
        ),
    ],
)
def test_invalid_configs_raise_naming_the_field(kwargs, field) -> None:
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decouple_beta": -0.5}, "ModelConfig.decouple_beta=-0.5: must be >= 0"),
        ({"img_channel": 0}, "ModelConfig.img_channel=0: must be >= 1"),
        (
            {"num_hidden": (0, 0)},
            "ModelConfig.num_hidden=(0, 0): every hidden size must be positive",
        ),
    ],
)
def test_field_rules_name_the_field_the_value_and_what_is_allowed(kwargs, message) -> None:
    with pytest.raises(ValueError) as raised:
        ModelConfig(**kwargs)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"r_exp_alpha": 0}, "SamplingConfig.r_exp_alpha=0: must be > 0"),
        ({"r_sampling_step_2": 100}, "SamplingConfig.r_sampling_step_2=100: must exceed"),
    ],
)
def test_invalid_sampling_configs_raise_naming_the_field(kwargs, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SamplingConfig(**kwargs)
