"""The pipeline's background pre-encoding: a scan that lands during it is served correctly."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jax
import numpy as np
import pytest

from model.network import PredRNN
from nowcastd.io.model_checkpoint import LoadedModel
from nowcastd.io.transform import DataTransform
from nowcastd.serve.config import ServeConfig
from nowcastd.serve.pipeline import Pipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pipeline(tiny_cfg) -> Pipeline:
    cfg = replace(tiny_cfg, patch_size=4, img_height=16, img_width=16)
    model = LoadedModel(
        network=PredRNN(cfg, key=jax.random.key(0)),
        transform=DataTransform(kind="dbz"),
        metadata={},
        digest="test",
        path=Path("ckpt"),
    )
    pipe = Pipeline(ServeConfig(timestep_seconds=300.0), model)
    pipe.compile()
    return pipe


def _scan(directory: Path, i: int) -> Path:
    path = directory / f"scan_{T0 + timedelta(minutes=5 * i):%Y%m%d%H%M}.npy"
    np.save(path, np.random.default_rng(i).gamma(0.6, 3.0, (16, 16)).astype(np.float32))
    return path


def test_scan_pushed_during_background_pre_encoding_uses_it_and_equals_full_rollout(
    pipeline, tmp_path
):
    for i in range(3):
        pipeline.push(pipeline.read(_scan(tmp_path, i)))
    pipeline.forecast()
    pipeline.start_pre_encode()
    frame = pipeline.read(_scan(tmp_path, 3))  # while the encode may still run
    pipeline.push(frame)  # waits for it before donating the buffer it reads
    assert "encode_wait" in pipeline.timings
    fast = pipeline.forecast()
    assert pipeline.used_pre_encoding
    full = pipeline.forecaster.full(pipeline.buffer.frames)
    np.testing.assert_allclose(fast, full, rtol=1e-5, atol=1e-5)


def test_wait_pre_encode_without_one_running_does_nothing(pipeline):
    pipeline.wait_pre_encode()
    pipeline.wait_pre_encode()
