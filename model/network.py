"""The stacked PredRNN network: cells, zigzag memory, frame decoder, action coder."""

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from model.cell import CellState, FusedWeights, STLSTMCell
from model.config import INFERENCE_OPTIONS, ModelConfig
from model.layers import conv2d, conv_transpose2d, torch_uniform
from model.strategy import DEFAULT, Strategy


class Carry(NamedTuple):
    """The recurrent state between time steps: per-layer (h, c) and the zigzag memory."""

    cells: tuple[CellState, ...]
    memory: Float[Array, "batch hr wr hidden"]


class Skips(NamedTuple):
    """The action coder's encoder outputs at 1/2 and 1/4 of the patched grid."""

    e1: Float[Array, "batch h2 w2 half"]
    e2: Float[Array, "batch hr wr hidden"]


class ActionCoder(eqx.Module):
    """The stride-2 encoders and transposed-conv decoder of the action-conditioned models."""

    w_in1: Array
    w_in2: Array
    w_act1: Array
    w_act2: Array
    w_out1: Array
    w_out2: Array

    def __init__(self, cfg: ModelConfig, *, key: jax.Array) -> None:
        n, k, cp, a = cfg.hidden, cfg.filter_size, cfg.patch_channels, cfg.num_action_ch
        keys = jax.random.split(key, 6)
        self.w_in1 = torch_uniform(keys[0], (k, k, cp, n // 2), cp * k * k)
        self.w_in2 = torch_uniform(keys[1], (k, k, n // 2, n), n // 2 * k * k)
        self.w_act1 = torch_uniform(keys[2], (k, k, a, n // 2), a * k * k)
        self.w_act2 = torch_uniform(keys[3], (k, k, n // 2, n), n // 2 * k * k)
        # torch takes a ConvTranspose2d's fan_in from weight dim 1 (its out channels).
        self.w_out1 = torch_uniform(keys[4], (k, k, n, n // 2), n // 2 * k * k)
        self.w_out2 = torch_uniform(keys[5], (k, k, n // 2, cp), cp * k * k)

    def encode(
        self, frame: Float[Array, "batch hp wp cp"], action: Float[Array, "batch hp wp ap"]
    ) -> tuple[Skips, Float[Array, "batch hr wr hidden"]]:
        """The frame at 1/2 and 1/4 size (the cells run on the latter) and the encoded action."""
        e1 = conv2d(frame, self.w_in1, stride=2)
        e2 = conv2d(e1, self.w_in2, stride=2)
        return Skips(e1, e2), conv2d(conv2d(action, self.w_act1, stride=2), self.w_act2, stride=2)

    def decode(
        self,
        h: Float[Array, "batch hr wr hidden"],
        skips: Skips,
        output_size: tuple[int, int],
        *,
        residual: bool,
    ) -> Float[Array, "batch hp wp cp"]:
        """The predicted frame from the top cell's output; `residual` adds the encoder skips."""
        if residual:
            h = h + skips.e2
        half = (skips.e1.shape[1], skips.e1.shape[2])
        x = conv_transpose2d(h, self.w_out1, stride=2, output_size=half)
        if residual:
            x = x + skips.e1
        return conv_transpose2d(x, self.w_out2, stride=2, output_size=output_size)


#: One layer's cell increments of a step: (delta_c, delta_m), the decoupling loss's inputs.
Deltas = tuple[Float[Array, "batch hr wr hidden"], Float[Array, "batch hr wr hidden"]]


class StepOut(NamedTuple):
    frame: Float[Array, "batch hp wp cp"]
    decouple: Float[Array, ""]


class PredRNN(eqx.Module):
    """PredRNN (v1), PredRNN-v2 and their action-conditioned variants, channels-last.

    `conv_last` is the 1x1 frame decoder (absent in action models), `adapter` the
    1x1 decoupling adapter shared by every layer and step (v2 only). The forward and `step`
    take the trace-time part of a `Strategy` (weight-gradient chunk, unrolling, bf16) as an
    argument; the network itself carries none (`model.compile`).
    """

    cells: tuple[STLSTMCell, ...]
    conv_last: Array | None
    adapter: Array | None
    coder: ActionCoder | None
    cfg: ModelConfig = eqx.field(static=True)

    def __init__(self, cfg: ModelConfig, *, key: jax.Array) -> None:
        kc, kl, ka, ke = jax.random.split(key, 4)
        n, cp = cfg.hidden, cfg.patch_channels
        ln_shape = cfg.rnn_shape if cfg.layer_norm else None
        in_channels = [n if cfg.is_action else cp] + [n] * (cfg.num_layers - 1)
        self.cells = tuple(
            STLSTMCell(
                c_in,
                n,
                cfg.filter_size,
                layer_norm_shape=ln_shape,
                action=cfg.is_action,
                key=k,
            )
            for c_in, k in zip(in_channels, jax.random.split(kc, cfg.num_layers), strict=True)
        )
        if cfg.is_action:
            self.conv_last = None
        elif cfg.predict_delta:  # start from persistence: the predicted change is zero
            self.conv_last = jnp.zeros((1, 1, n, cp), jnp.float32)
        else:
            self.conv_last = torch_uniform(kl, (1, 1, n, cp), n)
        self.adapter = torch_uniform(ka, (1, 1, n, n), n) if cfg.is_v2 else None
        self.coder = ActionCoder(cfg, key=ke) if cfg.is_action else None
        self.cfg = cfg

    def with_inference_options(
        self, cfg: ModelConfig, options: tuple[str, ...] = INFERENCE_OPTIONS
    ) -> "PredRNN":
        """The same weights under `cfg`, which may differ from this network's config only in
        `options` (by default `INFERENCE_OPTIONS`: they change no parameter and no training
        step; `WEIGHTLESS_OPTIONS` for a run that starts from these weights)."""
        changed = [
            f.name
            for f in dataclasses.fields(ModelConfig)
            if getattr(cfg, f.name) != getattr(self.cfg, f.name)
        ]
        others = [name for name in changed if name not in options]
        if others:
            raise ValueError(f"with_inference_options: only {options} may change, got {others}")
        # the same tree under another static config: its structure from a network built for
        # `cfg` (shapes only), its leaves these weights
        template = eqx.filter_eval_shape(PredRNN, cfg, key=jax.random.key(0))
        structure = jax.tree_util.tree_structure(template)
        network: PredRNN = jax.tree_util.tree_unflatten(structure, jax.tree_util.tree_leaves(self))
        return network

    def zero_carry(self, batch: int, patch_hw: tuple[int, int] | None = None) -> Carry:
        """All-zero state for frames of patched size `patch_hw` (default: the configured one)."""
        h, w = patch_hw or self.cfg.patch_shape
        if self.cfg.is_action:
            h, w = -(-h // 4), -(-w // 4)
        zeros = jnp.zeros((batch, h, w, self.cfg.hidden), jnp.float32)
        return Carry(tuple(CellState(zeros, zeros) for _ in self.cells), zeros)

    def fused_weights(self) -> tuple[FusedWeights | None, ...]:
        """Per-cell stacked weights for the fast path; build once, outside the time scan."""
        return tuple(cell.fused() if cell.fusable else None for cell in self.cells)

    def decouple_cosines(
        self,
        delta_c: Float[Array, "batch hr wr hidden"],
        delta_m: Float[Array, "batch hr wr hidden"],
    ) -> Float[Array, "batch hidden"]:
        """cos between adapter(delta_c) and adapter(delta_m) over space, per sample and channel,
        with the official double normalisation (normalize, then cosine_similarity)."""
        adapter = self.adapter
        if adapter is None:
            raise ValueError(f"{self.cfg.model_name} has no decoupling adapter (v2 models only)")

        def unit(d: Float[Array, "batch hr wr hidden"]) -> Float[Array, "batch space hidden"]:
            d = conv2d(d, adapter)
            d = d.reshape(d.shape[0], -1, d.shape[-1])  # (B, S, N)
            return d / _floored_norm(d, 1e-12, keepdims=True)

        uc, um = unit(delta_c), unit(delta_m)
        nc = _floored_norm(uc, 1e-8)
        nm = _floored_norm(um, 1e-8)
        return jnp.sum(uc * um, axis=1) / (nc * nm)

    def _decouple_term(
        self,
        delta_c: Float[Array, "batch hr wr hidden"],
        delta_m: Float[Array, "batch hr wr hidden"],
    ) -> Float[Array, ""]:
        """One (step, layer) term of the decoupling loss: mean |cos| over (batch, channel)."""
        return jnp.mean(jnp.abs(self.decouple_cosines(delta_c, delta_m)))

    def cells_step(
        self,
        carry: Carry,
        net: Float[Array, "batch hr wr cin"],
        action: Float[Array, "batch hr wr hidden"] | None,
        *,
        fused: tuple[FusedWeights | None, ...],
        strategy: Strategy = DEFAULT,
    ) -> tuple[Carry, tuple[Deltas, ...]]:
        """The cells' part of `step`: `net` (the frame, or the coder's encoding) up through
        every layer; the new carry and each layer's (delta_c, delta_m)."""
        memory = carry.memory
        states, deltas = [], []
        for cell, state, fw in zip(self.cells, carry.cells, fused, strict=True):
            state, memory, delta_c, delta_m = cell(
                net,
                state,
                memory,
                action,
                fw,
                wgrad_chunk=strategy.wgrad_chunk,
                bf16=strategy.bf16,
            )
            states.append(state)
            deltas.append((delta_c, delta_m))
            net = state.h
        return Carry(tuple(states), memory), tuple(deltas)

    def step(
        self,
        carry: Carry,
        frame: Float[Array, "batch hp wp cp"],
        action: Float[Array, "batch hp wp ap"] | None = None,
        *,
        fused: tuple[FusedWeights | None, ...],
        with_decouple: bool,
        strategy: Strategy = DEFAULT,
    ) -> tuple[Carry, StepOut]:
        """One time step through every layer, traced under `strategy`: consume a frame,
        predict the next one."""
        coder = self.coder
        net = frame
        skips = None
        if coder is not None:
            if action is None:
                raise ValueError(f"{self.cfg.model_name} needs the action maps of every step")
            skips, action = coder.encode(frame, action)
            net = skips.e2
        carry, deltas = self.cells_step(carry, net, action, fused=fused, strategy=strategy)
        net = carry.cells[-1].h
        decouple = jnp.zeros((), jnp.float32)
        if with_decouple and self.adapter is not None:
            for delta_c, delta_m in deltas:
                decouple = decouple + self._decouple_term(delta_c, delta_m)
        if coder is not None and skips is not None:
            hw = (frame.shape[1], frame.shape[2])
            x_gen = coder.decode(net, skips, hw, residual=self.cfg.res_on_conv)
        elif self.conv_last is not None:
            x_gen = conv2d(net, self.conv_last)
            if self.cfg.predict_delta:
                x_gen = frame + x_gen
        else:
            raise ValueError(f"{self.cfg.model_name} network has neither conv_last nor a coder")
        return carry, StepOut(x_gen, decouple)

    def __call__(
        self,
        frames: Float[Array, "batch time hp wp cpin"],
        mask: Float[Array, "batch steps #hp #wp #cp"],
        *,
        with_decouple: bool = True,
        strategy: Strategy = DEFAULT,
    ) -> tuple[Float[Array, "batch time-1 hp wp cp"], Float[Array, ""]]:
        """The official forward: T-1 steps with sampling-mask input mixing, traced under
        `strategy` (its time loop unrolled by the training rule, `Strategy.unrolls`).

        `frames` are patched (action maps appended after the image channels for
        action models); `mask` has `cfg.mask_length` steps and may broadcast over
        space and channels. Returns the T-1 predicted frames and the decoupling loss.
        """
        cfg = self.cfg
        cp = cfg.patch_channels
        images = frames[..., :cp]
        actions = frames[..., cp:] if cfg.is_action else None
        full_mask = _full_mask(mask, cfg)
        fused = self.fused_weights()
        steps = cfg.total_length - 1

        def body(
            carry_and_prev: tuple[Carry, Array], xs: tuple[Array, Array, Array | None]
        ) -> tuple[tuple[Carry, Array], StepOut]:
            carry, prev = carry_and_prev
            frame, m, act = xs
            x_in = m * frame + (1.0 - m) * prev
            carry, out = self.step(
                carry, x_in, act, fused=fused, with_decouple=with_decouple, strategy=strategy
            )
            return (carry, out.frame), out

        batch = frames.shape[0]
        hw = (images.shape[2], images.shape[3])
        init = (self.zero_carry(batch, hw), jnp.zeros_like(images[:, 0]))
        xs = (
            jnp.moveaxis(images[:, :steps], 1, 0),
            jnp.moveaxis(full_mask, 1, 0),
            None if actions is None else jnp.moveaxis(actions[:, :steps], 1, 0),
        )
        unroll = strategy.unrolls(cfg, batch, hw, steps, inference=False)
        _, outs = jax.lax.scan(body, init, xs, unroll=unroll)
        next_frames = jnp.moveaxis(outs.frame, 0, 1)
        decouple = jnp.sum(outs.decouple) / (steps * cfg.num_layers)
        return next_frames, decouple


def _floored_norm(x: Array, floor: float, *, keepdims: bool = False) -> Array:
    """max(||x||, floor) over axis 1, with a finite gradient where x is zero (an all-zero
    increment, e.g. a dry input at the first step): sqrt of the floored squared norm."""
    return jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=1, keepdims=keepdims), floor**2))


def _full_mask(
    mask: Float[Array, "batch steps #hp #wp #cp"], cfg: ModelConfig
) -> Float[Array, "batch fed #hp #wp #cp"]:
    """Extend a sampling mask to one weight per step t = 0..T-2 (1 = ground truth)."""
    ones_len = 1 if cfg.uses_rss_mask else cfg.input_length
    ones = jnp.ones((mask.shape[0], ones_len, *mask.shape[2:]), mask.dtype)
    return jnp.concatenate([ones, mask.astype(jnp.float32)], axis=1)
