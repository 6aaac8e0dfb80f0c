"""One evaluation pass over clips: the forecast function on each, scores, optional figures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from model.compile import compile_program
from model.network import PredRNN
from model.patch import reshape_patch
from model.strategy import DEFAULT, Strategy
from nowcastd.data.clips import ClipSet
from nowcastd.data.loader import BatchIterator
from nowcastd.data.motion import MotionEstimator
from nowcastd.io.transform import DataTransform
from nowcastd.nowcast import Window, forecast_rates, rollout_rates_jit
from nowcastd.verification.baselines import persistence
from nowcastd.verification.scores import Verifier
from nowcastd.verification.skill import Neighbourhood, Scorer

logger = logging.getLogger(__name__)


def _decoupling_cosines(
    network: PredRNN, context: jax.Array, strategy: Strategy = DEFAULT
) -> jax.Array:
    """Per-channel |cos| between adapter(delta_c) and adapter(delta_m) over space, all layers,
    for the first context step (the decoupling diagnostic of the official `--visual`): the
    network's own step (`PredRNN.cells_step`), compiled under `strategy`."""
    cosines: jax.Array = compile_program(_first_step_cosines, strategy, inference=True)(
        network, context
    )
    return cosines


def _first_step_cosines(network: PredRNN, context: jax.Array, *, strategy: Strategy) -> jax.Array:
    frames = reshape_patch(context, network.cfg.patch_size)
    carry = network.zero_carry(frames.shape[0], (frames.shape[2], frames.shape[3]))
    x = frames[:, 0, ..., : network.cfg.patch_channels]
    fused = network.fused_weights()
    _, deltas = network.cells_step(carry, x, None, fused=fused, strategy=strategy)
    return jnp.stack([jnp.abs(network.decouple_cosines(dc, dm)) for dc, dm in deltas])


def _forecasts(
    network: PredRNN, transform: DataTransform, motion: MotionEstimator | None
) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """`(clips, valid) -> (n, K, H, W)` mm/h forecasts of their contexts, each through the one
    forecast function (`nowcast.forecast_rates`), as serve makes them."""
    cfg = network.cfg
    i, k = cfg.input_length, cfg.total_length - cfg.input_length
    if cfg.lagrangian and motion is None:
        raise ValueError("evaluate: a Lagrangian network needs a motion estimator")

    def run(context: jax.Array | np.ndarray, flow: np.ndarray | None) -> jax.Array:
        return rollout_rates_jit(network, transform, jnp.asarray(context), k, flow)

    def forecast(clips: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        no_data = None if valid is None else valid[:, :i, ..., 0] == 0
        window = Window.from_model(clips[:, :i, ..., 0], no_data, transform)
        return forecast_rates(window, run, motion=motion if cfg.lagrangian else None)

    return forecast


def _observed(truth: np.ndarray, valid: np.ndarray | None, transform: DataTransform) -> np.ndarray:
    """(n, K, H, W, 1) model units -> mm/h, NaN where the clip had no data."""
    rates = transform.to_physical(truth[..., 0])
    return rates if valid is None else np.where(valid[..., 0] == 0, np.nan, rates)


def _in_order(clipset: ClipSet, batch_size: int) -> BatchIterator[tuple[np.ndarray, np.ndarray]]:
    """Every clip of `clipset` once, in order, with its validity mask, `batch_size` at a time."""
    return BatchIterator(
        clipset,
        batch_size,
        np.random.default_rng(0),
        shuffle=False,
        drop_last=False,
        repeat=False,
        with_mask=True,
    )


def _padded(
    clips: np.ndarray, valid: np.ndarray | None, batch_size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """A short last batch padded with copies of its last clip, so the rollout keeps one
    compiled shape."""
    pad = batch_size - clips.shape[0]
    if pad <= 0:
        return clips, valid
    clips = np.concatenate([clips, np.repeat(clips[-1:], pad, 0)])
    if valid is not None:
        valid = np.concatenate([valid, np.repeat(valid[-1:], pad, 0)])
    return clips, valid


def _save_samples(
    figures_dir: Path,
    first: int,
    count: int,
    context: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    transform: DataTransform,
) -> int:
    """Figures ``sample_<first>.png`` on of the first `count` clips of a batch; how many."""
    from nowcastd.verification.figures import save_sample_figure

    count = min(count, context.shape[0])
    for j in range(count):
        save_sample_figure(
            figures_dir / f"sample_{first + j:03d}.png",
            context[j, ..., 0],
            truth[j, ..., 0],
            pred[j, ..., 0],
            transform,
        )
    return count


def _save_decoupling(
    network: PredRNN, clipset: ClipSet, batch_size: int, figures_dir: Path
) -> None:
    """The histogram of the decoupling cosines of the first batch's first context step."""
    from nowcastd.verification.figures import save_decoupling_histogram

    first = np.asarray(clipset.clips[: min(batch_size, len(clipset))], np.float32)
    cos = _decoupling_cosines(network, jnp.asarray(first[:, : network.cfg.input_length]))
    save_decoupling_histogram(figures_dir / "decoupling_cosine.png", np.asarray(cos).ravel())


def evaluate_clips(
    network: PredRNN,
    clipset: ClipSet,
    *,
    batch_size: int,
    transform: DataTransform | None = None,
    figures_dir: Path | None = None,
    num_save_samples: int = 0,
    motion: MotionEstimator | None = None,
    neighbourhood: Neighbourhood | None = None,
) -> dict[str, Any]:
    """Forecast every validation clip from its first I frames and score the T-I future frames.

    Every forecast is `nowcast.forecast_rates`'s (the network's rollout, clipped to its range,
    in mm/h, NaN where the newest input had no data or rain would come from outside the grid),
    from the window `Window.from_model` builds of the clip's context; a Lagrangian network needs
    `motion`. The official scores (MSE, PSNR, SSIM) are of that forecast back in model units
    (no data as 0); with a physical transform the one scorer (`skill.Scorer`) adds the mm/h
    scores, on the pixels where the clip and the forecast have data, with the FSS over
    `neighbourhood` (default 5 px of unknown size). With `figures_dir`, PNGs of context |
    truth | forecast for the first `num_save_samples` sequences, plus the decoupling histogram
    for v2.
    """
    if transform is None:
        transform = clipset.transform
    cfg = network.cfg
    i = cfg.input_length
    batch_size = min(batch_size, len(clipset))
    batches = _in_order(clipset, batch_size)
    masked = clipset.valid_mask is not None
    forecast = _forecasts(network, transform, motion)
    verifier = Verifier(transform)
    scorer = Scorer(neighbourhood or UNKNOWN_PIXELS)
    saved = 0
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
    for clips, mask in batches:
        n = clips.shape[0]
        rates = forecast(*_padded(clips, mask if masked else None, batch_size))[:n]
        valid = mask if masked else None
        truth = clips[:, i:, ..., : cfg.img_channel]
        pred = np.asarray(transform.to_model_input(rates), np.float32)[..., None]
        verifier.update(pred, truth)
        if transform.is_physical:
            scorer.update(
                rates, _observed(truth, None if valid is None else valid[:, i:], transform)
            )
        if figures_dir is not None and saved < num_save_samples:
            saved += _save_samples(
                figures_dir, saved, num_save_samples - saved, clips[:, :i], truth, pred, transform
            )
    if figures_dir is not None and cfg.is_v2 and not cfg.is_action:
        _save_decoupling(network, batches.clipset, batch_size, figures_dir)
    return with_skill(verifier.result(), scorer if transform.is_physical else None)


#: The FSS neighbourhood of clips, whose pixel size nowcastd cannot know: 5 pixels, taken as
#: 4 km each (the bundled model's grid).
UNKNOWN_PIXELS = Neighbourhood.from_km(20.0, 4.0)


def with_skill(result: dict[str, Any], scorer: Scorer | None) -> dict[str, Any]:
    """The official scores' `result` with the one scorer's mm/h scores added per lead (and
    their means), and the FSS neighbourhood named."""
    if scorer is None:
        return result
    scores = scorer.result()
    per_lead = scores.to_json()
    result["per_lead"].update(per_lead)
    with np.errstate(invalid="ignore"):
        result["mean"].update({k: float(np.mean(v)) for k, v in per_lead.items()})
    result["fss_neighbourhood"] = scores.neighbourhood.describe()
    return result


def persistence_scores(
    clipset: ClipSet,
    *,
    input_length: int,
    img_channel: int,
    batch_size: int,
    transform: DataTransform,
    neighbourhood: Neighbourhood | None = None,
) -> dict[str, Any]:
    """Scores of persistence (the last context frame repeated for every lead) on `clipset`,
    with the same scorers and batches as `nowcastd.verification.evaluation.evaluate_clips`."""
    i = input_length
    batches = _in_order(clipset, min(batch_size, len(clipset)))
    masked = clipset.valid_mask is not None
    verifier = Verifier(transform)
    scorer = Scorer(neighbourhood or UNKNOWN_PIXELS)
    for clips, valid in batches:
        truth = clips[:, i:, ..., :img_channel]
        pred = persistence(clips[:, :i, ..., :img_channel], truth.shape[1])
        verifier.update(pred, truth)
        if transform.is_physical:
            no_data = valid[:, i - 1 : i] if masked else None
            scorer.update(
                _observed(pred, no_data, transform),
                _observed(truth, valid[:, i:] if masked else None, transform),
            )
    return with_skill(verifier.result(), scorer if transform.is_physical else None)
