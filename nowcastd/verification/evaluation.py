"""One evaluation pass: rollouts over the validation clips, scores, optional figures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from model.network import PredRNN
from model.patch import reshape_patch
from model.rollout import rollout_jit
from nowcastd.data import ClipSet
from nowcastd.data.loader import BatchIterator
from nowcastd.data.motion import MotionEstimator
from nowcastd.io.transform import DataTransform
from nowcastd.verification.baselines import persistence
from nowcastd.verification.scores import Verifier

logger = logging.getLogger(__name__)


@eqx.filter_jit
def _decoupling_cosines(network: PredRNN, context: jax.Array) -> jax.Array:
    """Per-channel |cos| between adapter(delta_c) and adapter(delta_m) over space, all layers,
    for the first context step (the decoupling diagnostic of the official `--visual`)."""
    frames = reshape_patch(context, network.cfg.patch_size)
    carry = network.zero_carry(frames.shape[0], frames.shape[2:4])
    x = frames[:, 0, ..., : network.cfg.patch_channels]
    fused = network.fused_weights()
    memory, net, out = carry.memory, x, []
    for cell, state, fw in zip(network.cells, carry.cells, fused, strict=True):
        state, memory, dc, dm = cell(net, state, memory, None, fw)
        cos = network.decouple_cosines(dc, dm)
        out.append(jnp.abs(cos))
        net = state.h
    return jnp.stack(out)


def evaluate(
    network: PredRNN,
    clipset: ClipSet,
    *,
    batch_size: int,
    transform: DataTransform | None = None,
    figures_dir: Path | None = None,
    num_save_samples: int = 0,
    motion: MotionEstimator | None = None,
) -> dict[str, Any]:
    """Forecast every validation clip from its first I frames and score the T-I future frames.

    The rollout is the official test-time computation (ground truth for the context, the
    model's own output after it). Scores are in `transform`'s units (None: the clip set's own).
    With `figures_dir`, PNGs of context | truth | forecast are written for the first
    `num_save_samples` sequences, plus the decoupling histogram for v2. A Lagrangian network
    needs `motion`; its forecasts' no-data pixels (rain from outside) are scored as 0 here.
    """
    if transform is None:
        transform = clipset.transform
    cfg = network.cfg
    i, k = cfg.input_length, cfg.total_length - cfg.input_length
    batch_size = min(batch_size, len(clipset))
    batches = BatchIterator(
        clipset, batch_size, np.random.default_rng(0), shuffle=False, drop_last=False, repeat=False
    )
    verifier = Verifier(transform)
    saved = 0
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
    for clips in batches:
        n = clips.shape[0]
        if n < batch_size:  # pad the last batch so the rollout keeps one compiled shape
            clips = np.concatenate([clips, np.repeat(clips[-1:], batch_size - n, 0)])
        context = clips[:, :i]
        flow = None
        if cfg.lagrangian:
            if motion is None:
                raise ValueError("evaluate: a Lagrangian network needs a motion estimator")
            flow = jnp.asarray(motion.batch(transform.to_physical(context[..., 0])))
        pred = np.asarray(rollout_jit(network, jnp.asarray(context), k, None, flow))[:n]
        pred = np.nan_to_num(pred, nan=0.0)
        clips = clips[:n]
        truth = clips[:, i:, ..., : cfg.img_channel]
        verifier.update(pred, truth)
        if figures_dir is not None and saved < num_save_samples:
            from nowcastd.verification.figures import save_sample_figure

            for j in range(min(n, num_save_samples - saved)):
                save_sample_figure(
                    figures_dir / f"sample_{saved:03d}.png",
                    clips[j, :i, ..., 0],
                    truth[j, ..., 0],
                    np.clip(pred[j, ..., 0], 0.0, 1.0),
                    transform,
                )
                saved += 1
    if figures_dir is not None and cfg.is_v2 and not cfg.is_action:
        from nowcastd.verification.figures import save_decoupling_histogram

        first = np.asarray(batches.clipset.clips[: min(batch_size, len(clipset))], np.float32)
        cos = _decoupling_cosines(network, jnp.asarray(first[:, :i]))
        save_decoupling_histogram(figures_dir / "decoupling_cosine.png", np.asarray(cos).ravel())
    return verifier.result()


def persistence_scores(clipset, *, input_length: int, img_channel: int, batch_size: int, transform):
    """Scores of persistence (the last context frame repeated for every lead) on `clipset`,
    with the same `Verifier` and batches as `nowcastd.verification.evaluation.evaluate`."""
    i = input_length
    batches = BatchIterator(
        clipset,
        min(batch_size, len(clipset)),
        np.random.default_rng(0),
        shuffle=False,
        drop_last=False,
        repeat=False,
    )
    verifier = Verifier(transform)
    for clips in batches:
        truth = clips[:, i:, ..., :img_channel]
        verifier.update(persistence(clips[:, :i, ..., :img_channel], truth.shape[1]), truth)
    return verifier.result()
