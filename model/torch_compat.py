"""Migration path from predrnn-pytorch: state_dict layouts and the official steps."""

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from model.compile import compile_program
from model.config import ModelConfig
from model.loss import LossParts, predrnn_loss
from model.network import PredRNN
from model.strategy import DEFAULT, Strategy

# layout -> (torch -> nowcastd, nowcastd -> torch)
_LAYOUTS: dict[
    str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
] = {
    "conv": (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),
    "conv_t": (lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1)),
    "ln": (lambda a: a.transpose(1, 2, 0), lambda a: a.transpose(2, 0, 1)),
    "bias": (lambda a: a, lambda a: a),
}


Accessor = Callable[[PredRNN], Any]


def _at(*path: str | int) -> Accessor:
    """An accessor for `eqx.tree_at`: ints index tuples, strings key dicts or name attributes."""

    def get(tree: PredRNN) -> Any:
        node: Any = tree
        for step in path:
            if isinstance(step, int) or isinstance(node, dict):
                node = node[step]
            else:
                node = getattr(node, step)
        return node

    return get


def _entries(network: PredRNN) -> list[tuple[str, Accessor, str]]:
    """(state_dict key, accessor into a network-shaped tree, layout) in torch order."""
    cfg = network.cfg
    out: list[tuple[str, Accessor, str]] = []
    if cfg.is_action:
        for name, attr, layout in (
            ("conv_input1", "w_in1", "conv"),
            ("conv_input2", "w_in2", "conv"),
            ("action_conv_input1", "w_act1", "conv"),
            ("action_conv_input2", "w_act2", "conv"),
            ("deconv_output1", "w_out1", "conv_t"),
            ("deconv_output2", "w_out2", "conv_t"),
        ):
            out.append((f"{name}.weight", _at("coder", attr), layout))
    convs = ("x", "h", "a", "m", "o") if cfg.is_action else ("x", "h", "m", "o")
    for i in range(cfg.num_layers):
        pre = f"cell_list.{i}"
        for g in convs:
            out.append((f"{pre}.conv_{g}.0.weight", _at("cells", i, f"w_{g}"), "conv"))
            if cfg.is_action:
                out.append((f"{pre}.conv_{g}.0.bias", _at("cells", i, "biases", g), "bias"))
            if cfg.layer_norm:
                out.append((f"{pre}.conv_{g}.1.weight", _at("cells", i, "norms", g, 0), "ln"))
                out.append((f"{pre}.conv_{g}.1.bias", _at("cells", i, "norms", g, 1), "ln"))
        out.append((f"{pre}.conv_last.weight", _at("cells", i, "w_last"), "conv"))
        if cfg.is_action:
            out.append((f"{pre}.conv_last.bias", _at("cells", i, "biases", "last"), "bias"))
    if not cfg.is_action:
        out.append(("conv_last.weight", _at("conv_last"), "conv"))
    if cfg.is_v2:
        out.append(("adapter.weight", _at("adapter"), "conv"))
    return out


def import_state_dict(state_dict: Mapping[str, np.ndarray], cfg: ModelConfig) -> PredRNN:
    """A network holding the weights of an official `state_dict` (torch names and layouts)."""
    template = PredRNN(cfg, key=jax.random.key(0))
    entries = _entries(template)
    expected = {name for name, _, _ in entries}
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    misshaped = []
    values = []
    for name, where, layout in entries:
        if name not in state_dict:
            continue
        want = _LAYOUTS[layout][1](np.asarray(where(template))).shape
        got = np.shape(state_dict[name])
        if tuple(got) != tuple(want):
            misshaped.append(f"{name}: expected {tuple(want)}, got {tuple(got)}")
        values.append(jnp.asarray(_LAYOUTS[layout][0](np.asarray(state_dict[name], np.float32))))
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if misshaped:
            parts.append(f"mis-shaped {misshaped}")
        raise ValueError(f"state_dict does not match {cfg.model_name}: " + "; ".join(parts))
    getters = [where for _, where, _ in entries]
    network: PredRNN = eqx.tree_at(lambda t: [g(t) for g in getters], template, values)
    return network


def export_state_dict(tree: PredRNN) -> dict[str, np.ndarray]:
    """torch-named, torch-laid-out float32 arrays of a network (or a gradient tree like it)."""
    return {
        name: np.ascontiguousarray(_LAYOUTS[layout][1](np.asarray(where(tree), np.float32)))
        for name, where, layout in _entries(tree)
    }


def _loss_and_grad_fn(
    network: PredRNN, frames: jax.Array, mask: jax.Array, *, strategy: Strategy
) -> tuple[tuple[jax.Array, LossParts], PredRNN]:
    return eqx.filter_value_and_grad(predrnn_loss, has_aux=True)(
        network, frames, mask, strategy=strategy
    )


def _forward_fn(
    network: PredRNN, frames: jax.Array, mask: jax.Array, *, strategy: Strategy
) -> jax.Array:
    return network(frames, mask, with_decouple=False, strategy=strategy)[0]


def _loss_and_grad(
    network: PredRNN, frames: jax.Array, mask: jax.Array, strategy: Strategy = DEFAULT
) -> tuple[tuple[jax.Array, LossParts], PredRNN]:
    """The loss, its parts and the gradient, compiled under `strategy`."""
    out: tuple[tuple[jax.Array, LossParts], PredRNN] = compile_program(
        _loss_and_grad_fn, strategy, inference=False
    )(network, frames, mask)
    return out


def official_step(
    network: PredRNN,
    frames: np.ndarray,
    mask_true: np.ndarray,
    cfg: ModelConfig,
    strategy: Strategy = DEFAULT,
) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """What official `Model.train` computes before `optimizer.step()`.

    `frames` (B, T, H/p, W/p, p*p*C [+ A]) patched, `mask_true` (B, S, H/p, W/p, Cp).
    Returns the loss, `next_frames` (B, T-1, H/p, W/p, Cp) and torch-named gradients.
    `strategy`: how the step is compiled (`model.strategy`).
    """
    if network.cfg != cfg:
        raise ValueError(f"network was built for {network.cfg}, not {cfg}")
    (loss, parts), grads = _loss_and_grad(
        network, jnp.asarray(frames), jnp.asarray(mask_true), strategy
    )
    return float(loss), np.asarray(parts.next_frames), export_state_dict(grads)


def official_test(
    network: PredRNN,
    frames: np.ndarray,
    mask_true: np.ndarray,
    cfg: ModelConfig,
    strategy: Strategy = DEFAULT,
) -> np.ndarray:
    """What official `Model.test` returns: the T-1 predicted frames (no gradient tape)."""
    if network.cfg != cfg:
        raise ValueError(f"network was built for {network.cfg}, not {cfg}")
    forward = compile_program(_forward_fn, strategy, inference=False)
    return np.asarray(forward(network, jnp.asarray(frames), jnp.asarray(mask_true)))
