import jax
import numpy as np
import pytest

from model.checkpoint import (
    config_from_json,
    load_metadata,
    load_network,
    load_train_state,
    write_checkpoint,
)
from model.network import PredRNN
from model.torch_compat import export_state_dict, import_state_dict
from model.train import adam, init_train_state


def test_checkpoint_roundtrip_restores_network_and_optimizer_state(tmp_path, tiny_cfg) -> None:
    opt = adam(1e-3)
    state = init_train_state(PredRNN(tiny_cfg, key=jax.random.key(0)), opt, jax.random.key(5))
    path = write_checkpoint(
        tmp_path / "ckpt-1", network=state.network, metadata={"step": 1}, train_state=state
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1"]
    meta = load_metadata(path)
    cfg = config_from_json(meta["model_config"])
    assert cfg == tiny_cfg and meta["step"] == 1
    template = init_train_state(PredRNN(cfg, key=jax.random.key(9)), opt, jax.random.key(0))
    restored = load_train_state(path, template)
    np.testing.assert_array_equal(restored.key, state.key)
    a, b = export_state_dict(restored.network), export_state_dict(state.network)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    net = load_network(path, PredRNN(cfg, key=jax.random.key(9)))
    assert np.array_equal(export_state_dict(net)["conv_last.weight"], b["conv_last.weight"])


def test_import_state_dict_lists_missing_unexpected_and_misshaped_keys(tiny_cfg) -> None:
    sd = export_state_dict(PredRNN(tiny_cfg, key=jax.random.key(0)))
    sd.pop("adapter.weight")
    sd["extra.weight"] = np.zeros(3, np.float32)
    sd["conv_last.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError) as err:
        import_state_dict(sd, tiny_cfg)
    msg = str(err.value)
    assert "adapter.weight" in msg and "extra.weight" in msg and "conv_last.weight" in msg
