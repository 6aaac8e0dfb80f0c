import os

import pytest

from model.config import ModelConfig

# Commands the tests start (in process or as daemons, which inherit the environment) run the
# default strategy of each program, timing nothing, unless a test asks for `--strategy auto`;
# what a test measures is cached in the session's temporary directory, not the user's.
_STRATEGY_ENV = {"NOWCASTD_SERVE_STRATEGY": "default", "NOWCASTD_TRAIN_STRATEGY": "default"}


@pytest.fixture(scope="session", autouse=True)
def _strategy_settings(tmp_path_factory):
    env = _STRATEGY_ENV | {"NOWCASTD_STRATEGY_CACHE": str(tmp_path_factory.mktemp("strategy"))}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


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
