"""The start-up refill counts the scans it reads in nowcastd_scans_received_total."""

import logging

import numpy as np

from nowcastd.io.model_checkpoint import load_model, save_inference_checkpoint
from nowcastd.serve.config import load_serve_config
from nowcastd.serve.service import Service
from tests.nowcastd.serve.tiny import DBZ, tiny_network


def test_refill_counts_its_scans_as_received(tmp_path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for minute in (0, 5):
        field = np.random.default_rng(minute).gamma(0.6, 3.0, (16, 16)).astype(np.float32)
        np.save(incoming / f"scan_20260101{minute:04d}.npy", field)
    (incoming / "notes.txt").write_text("not a scan")
    save_inference_checkpoint(tmp_path / "ckpt", tiny_network(), DBZ)
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[serve]\nwatch_dir = "{incoming}"\noutput_dir = "{tmp_path / "out"}"\n'
        f'checkpoint = "{tmp_path / "ckpt"}"\nrefill_max_age_hours = 0\n'
    )
    cfg = load_serve_config(config)
    service = Service(cfg, load_model(cfg.checkpoint))
    level = logging.getLogger().level
    try:
        assert service.refill() == 2
        registry = service.metrics.registry
        assert registry.get_sample_value("nowcastd_scans_received_total") == 3
    finally:
        service.compile_counter.close()
        service.pipeline.close()
        logging.getLogger().setLevel(level)
