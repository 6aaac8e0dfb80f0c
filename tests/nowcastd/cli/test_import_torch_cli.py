"""`nowcastd import-torch` on a real .npz state dict of the official code (parity fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from model.torch_compat import export_state_dict
from nowcastd.cli import app
from nowcastd.io.model_checkpoint import load_model
from tests.paths import FIXTURES

FIXTURE = FIXTURES / "parity" / "mini_v2_rss_ln.npz"


def _flags(cfg: dict) -> list[str]:
    names = (
        "model_name",
        "num_hidden",
        "filter_size",
        "patch_size",
        "img_channel",
        "img_width",
        "layer_norm",
        "input_length",
        "total_length",
        "reverse_scheduled_sampling",
    )
    return [arg for n in names for arg in (f"--{n}", str(cfg[n]))]


def import_torch(checkpoint: Path, out: Path, cfg: dict):
    """Run `nowcastd import-torch CHECKPOINT --out OUT` with the run.py flags of `cfg`."""
    args = ["import-torch", str(checkpoint), "--out", str(out), *_flags(cfg)]
    return CliRunner().invoke(app, args)


def test_import_torch_round_trips_an_npz_state_dict(tmp_path: Path) -> None:
    data = np.load(FIXTURE)
    sd = {k.removeprefix("param/"): data[k] for k in data.files if k.startswith("param/")}
    np.savez(tmp_path / "official.npz", **sd)
    cfg = json.loads(str(data["config"]))
    result = import_torch(tmp_path / "official.npz", tmp_path / "imp", cfg)
    assert result.exit_code == 0, result.output
    loaded = load_model(tmp_path / "imp")
    assert loaded.cfg.layer_norm and loaded.cfg.reverse_scheduled_sampling
    back = export_state_dict(loaded.network)
    assert back.keys() == sd.keys()
    for name, value in sd.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_import_torch_names_mismatched_keys(tmp_path: Path) -> None:
    data = np.load(FIXTURE)
    sd = {k.removeprefix("param/"): data[k] for k in data.files if k.startswith("param/")}
    np.savez(tmp_path / "official.npz", **sd)
    cfg = json.loads(str(data["config"]))
    cfg["layer_norm"] = 0  # the file holds LayerNorm weights the model would not have
    result = import_torch(tmp_path / "official.npz", tmp_path / "imp", cfg)
    assert result.exit_code == 1
    assert "unexpected keys" in result.output and "conv_x.1.weight" in result.output
    assert not (tmp_path / "imp").exists()


def test_import_torch_reads_an_official_checkpoint_file(tmp_path: Path) -> None:
    """Needs the torch extra; the file is written as the official `Model.save` writes it."""
    import pytest

    torch = pytest.importorskip("torch")
    data = np.load(FIXTURE)
    sd = {
        k.removeprefix("param/"): torch.from_numpy(data[k])
        for k in data.files
        if k.startswith("param/")
    }
    torch.save({"net_param": sd}, tmp_path / "model.ckpt-100")
    cfg = json.loads(str(data["config"]))
    result = import_torch(tmp_path / "model.ckpt-100", tmp_path / "imp", cfg)
    assert result.exit_code == 0, result.output
    back = export_state_dict(load_model(tmp_path / "imp").network)
    for name, value in sd.items():
        np.testing.assert_array_equal(back[name], value.numpy(), err_msg=name)
