import json
from pathlib import Path

import numpy as np
import pytest

from model.config import ModelConfig
from model.torch_compat import import_state_dict
from tests.paths import FIXTURES

PARITY = FIXTURES / "parity"
MINI = ("mini_v2_ss", "mini_v2_rss_ln", "mini_v1", "mini_action_v2")


def model_config(flags: dict) -> ModelConfig:
    """The network of a fixture, from the run.py flags it records (argparse's values)."""
    return ModelConfig(
        model_name=flags["model_name"],
        num_hidden=tuple(int(n) for n in flags["num_hidden"].split(",")),
        filter_size=flags["filter_size"],
        stride=flags["stride"],
        patch_size=flags["patch_size"],
        img_channel=flags["img_channel"],
        img_height=flags["img_width"],
        img_width=flags["img_width"],
        layer_norm=bool(flags["layer_norm"]),
        decouple_beta=flags["decouple_beta"],
        input_length=flags["input_length"],
        total_length=flags["total_length"],
        reverse_scheduled_sampling=bool(flags["reverse_scheduled_sampling"]),
        num_action_ch=flags["num_action_ch"],
        conv_on_input=bool(flags["conv_on_input"]),
        res_on_conv=bool(flags["res_on_conv"]),
    )


class Fixture:
    def __init__(self, path: Path) -> None:
        self.name = path.stem
        self.data = np.load(path, allow_pickle=False)
        self.flags = json.loads(str(self.data["config"]))
        self.cfg = model_config(self.flags)
        self.state_dict = {
            k.removeprefix("param/"): self.data[k]
            for k in self.data.files
            if k.startswith("param/")
        }

    def __getitem__(self, key: str) -> np.ndarray:
        return self.data[key]

    def has(self, key: str) -> bool:
        return key in self.data.files

    def network(self):
        return import_state_dict(self.state_dict, self.cfg)


@pytest.fixture(params=MINI)
def parity(request) -> Fixture:
    return Fixture(PARITY / f"{request.param}.npz")


@pytest.fixture
def mini_v2_ss() -> Fixture:
    return Fixture(PARITY / "mini_v2_ss.npz")
