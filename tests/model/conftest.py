import json
from pathlib import Path

import numpy as np
import pytest

from model.torch_compat import config_from_run_flags, import_state_dict
from tests.paths import FIXTURES

PARITY = FIXTURES / "parity"
MINI = ("mini_v2_ss", "mini_v2_rss_ln", "mini_v1", "mini_action_v2")


class Fixture:
    def __init__(self, path: Path) -> None:
        self.name = path.stem
        self.data = np.load(path, allow_pickle=False)
        self.flags = json.loads(str(self.data["config"]))
        self.cfg = config_from_run_flags(self.flags)
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
