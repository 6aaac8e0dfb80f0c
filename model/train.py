"""One jitted training step: masks, loss, gradients, Adam, apply — as one XLA program."""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import shard_map
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Float, Int

from model.compile import compile_program
from model.config import ModelConfig
from model.loss import OFFICIAL_LOSS, LossConfig, LossParts, lagrangian_loss, predrnn_loss
from model.network import PredRNN
from model.patch import reshape_patch
from model.sampling import SamplingConfig, draw_mask
from model.strategy import DEFAULT, Strategy


class TrainState(eqx.Module):
    """Everything a training run carries between steps (and checkpoints)."""

    network: PredRNN
    opt_state: optax.OptState
    step: Int[Array, ""]
    key: jax.Array  # raw uint32 key data, so it serialises like any array


class StepMetrics(NamedTuple):
    loss: Float[Array, ""]
    mse: Float[Array, ""]
    decouple: Float[Array, ""]


def adam(lr: float) -> optax.GradientTransformation:
    """torch.optim.Adam with its defaults (betas 0.9/0.999, eps 1e-8, no decay)."""
    return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)


def init_train_state(
    network: PredRNN, optimizer: optax.GradientTransformation, key: jax.Array
) -> TrainState:
    opt_state = optimizer.init(eqx.filter(network, eqx.is_inexact_array))
    return TrainState(network, opt_state, jnp.zeros((), jnp.int32), jax.random.key_data(key))


def optimizer_step(
    network: PredRNN,
    opt_state: optax.OptState,
    optimizer: optax.GradientTransformation,
    frames: Float[Array, "batch time hp wp cpin"],
    mask: Float[Array, "batch steps #hp #wp #cp"],
    valid: Float[Array, "batch time hp wp cp"] | None = None,
    objective: LossConfig = OFFICIAL_LOSS,
    mesh: Mesh | None = None,
    motion: Float[Array, "batch height width 2"] | None = None,
    strategy: Strategy = DEFAULT,
) -> tuple[PredRNN, optax.OptState, Float[Array, ""], LossParts]:
    """One loss+gradient+update on patched frames with a given mask (the official `Model.train`).

    A Lagrangian network takes image-space frames and `valid` instead, with their `motion`
    (`lagrangian_loss`). `strategy` traces the loss and gradient.

    With a `mesh` of more than one device whose one axis shards the batch, and no `valid`
    mask, each shard's loss and gradient are taken on their own and averaged in one
    all-reduce of a single flat buffer: left to itself, XLA all-reduced every parameter
    separately (the seed configuration's step on 2 CPU devices: 101 ms instead of 90 ms).
    A `valid` mask weighs shards unequally, so it keeps XLA's own reduction.
    """
    if motion is not None:
        (loss, parts), grads = eqx.filter_value_and_grad(lagrangian_loss, has_aux=True)(
            network, frames, mask, valid, objective, motion, strategy=strategy
        )
    elif mesh is None or mesh.size == 1 or valid is not None:
        (loss, parts), grads = eqx.filter_value_and_grad(predrnn_loss, has_aux=True)(
            network, frames, mask, valid, objective, strategy=strategy
        )
    else:
        loss, parts, grads = _sharded_value_and_grad(
            network, frames, mask, objective, mesh, strategy
        )
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(network, eqx.is_array))
    updated: PredRNN = eqx.apply_updates(network, updates)
    return updated, opt_state, loss, parts


def _sharded_value_and_grad(
    network: PredRNN,
    frames: Float[Array, "batch time hp wp cpin"],
    mask: Float[Array, "batch steps #hp #wp #cp"],
    objective: LossConfig,
    mesh: Mesh,
    strategy: Strategy,
) -> tuple[Float[Array, ""], LossParts, PredRNN]:
    """The batch-mean loss and its gradient, per batch shard, averaged over the mesh's axis."""
    params, static = eqx.partition(network, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    (axis,) = mesh.axis_names
    shards = mesh.size

    def mean(x: Array) -> Array:
        total: Array = jax.lax.psum(x, axis)  # type: ignore[no-untyped-call]
        return total / shards

    def local(flat: Array, frames: Array, mask: Array) -> tuple[Array, LossParts, Array]:
        def loss(flat: Array) -> tuple[Array, LossParts]:
            network = eqx.combine(unravel(flat), static)
            return predrnn_loss(network, frames, mask, None, objective, strategy=strategy)

        (value, parts), grad = jax.value_and_grad(loss, has_aux=True)(flat)
        return mean(value), jax.tree_util.tree_map(mean, parts), mean(grad)

    replicated = PartitionSpec()  # type: ignore[no-untyped-call]
    sharded = PartitionSpec(axis)  # type: ignore[no-untyped-call]
    value, parts, grad = shard_map(
        local,
        mesh=mesh,
        in_specs=(replicated, sharded, sharded),
        out_specs=replicated,
        check_vma=False,  # the time loop's zero carry meets per-shard values
    )(flat, frames, mask)
    return value, parts, unravel(grad)


def make_train_step(
    optimizer: optax.GradientTransformation,
    sampling: SamplingConfig,
    *,
    reverse_input: bool,
    loss: LossConfig = OFFICIAL_LOSS,
    mesh: Mesh | None = None,
    strategy: Strategy = DEFAULT,
) -> Callable[..., tuple[TrainState, StepMetrics]]:
    """Build the jitted `step(state, clips, valid=None, motion=None) -> (state, metrics)`.

    `clips` are image-space (B, T, H, W, C[+A]) in model units; the step patches
    them, draws the sampling mask for iteration `state.step + 1` from the state's
    key, takes one Adam step, and with `reverse_input` a second one on the
    time-reversed clip with the same mask (the official iteration). The reported
    loss is the mean of the two, as run.py prints it. The state is donated. `loss`: the data
    term (the official MSE by default); `mesh`: the devices the batch is sharded over, if more
    than one (`optimizer_step`). A Lagrangian network needs each clip's `motion` (B, H, W, 2)
    and takes no `reverse_input`. `strategy`: how the step is traced and compiled.
    """

    def step(
        state: TrainState,
        clips: Float[Array, "batch time height width cin"],
        valid: Float[Array, "batch time height width 1"] | None = None,
        motion: Float[Array, "batch height width 2"] | None = None,
        *,
        strategy: Strategy,
    ) -> tuple[TrainState, StepMetrics]:
        network = state.network
        _check_step_inputs(network.cfg, motion, reverse_input)
        itr = state.step + 1
        key, sub = jax.random.split(jax.random.wrap_key_data(state.key))
        frames, pvalid = _network_frames(network.cfg, clips, valid)
        mask = draw_mask(sub, itr, clips.shape[0], network.cfg, sampling)
        network, opt_state, value, parts = optimizer_step(
            network, state.opt_state, optimizer, frames, mask, pvalid, loss, mesh, motion, strategy
        )
        metrics = StepMetrics(value, parts.mse, parts.decouple)
        if reverse_input:
            rvalid = None if pvalid is None else pvalid[:, ::-1]
            reversed_frames = frames[:, ::-1]
            network, opt_state, value_r, parts_r = optimizer_step(
                network,
                opt_state,
                optimizer,
                reversed_frames,
                mask,
                rvalid,
                loss,
                mesh,
                None,
                strategy,
            )
            reversed_metrics = StepMetrics(value_r, parts_r.mse, parts_r.decouple)
            metrics = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, metrics, reversed_metrics)
        state = TrainState(network, opt_state, itr, jax.random.key_data(key))
        return state, metrics

    return compile_program(step, strategy, inference=False, donate=True)


def _check_step_inputs(cfg: ModelConfig, motion: Array | None, reverse_input: bool) -> None:
    """ValueError unless a Lagrangian network gets motion (and no reversed clip), others none."""
    if cfg.lagrangian != (motion is not None):
        raise ValueError("a Lagrangian network's training step needs motion, others none")
    if cfg.lagrangian and reverse_input:
        raise ValueError("reverse_input is not available for Lagrangian networks")


def _network_frames(
    cfg: ModelConfig, clips: Array, valid: Array | None
) -> tuple[Array, Array | None]:
    """The frames the network trains on and their valid mask (per channel): image space for a
    Lagrangian network, patches for the others."""
    full_valid = (
        None if valid is None else jnp.broadcast_to(valid, (*clips.shape[:-1], cfg.img_channel))
    )
    if cfg.lagrangian:
        return clips, full_valid
    pvalid = None if full_valid is None else reshape_patch(full_valid, cfg.patch_size)
    return reshape_patch(clips, cfg.patch_size), pvalid
