"""The `nowcastd train` loop: data, jitted steps, logging, evaluation, checkpoints, resume."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax

from model.config import WEIGHTLESS_OPTIONS, ModelConfig
from model.loss import LossConfig
from model.network import PredRNN
from model.strategy import DEFAULT
from model.train import TrainState, adam, init_train_state, make_train_step
from nowcastd.data.clips import ClipSet
from nowcastd.data.loader import BatchIterator, open_dataset
from nowcastd.data.motion import MotionEstimator
from nowcastd.data.motion_batches import MotionBatch, MotionBatches
from nowcastd.data.sequences import SamplerConfig, SequenceSampler, load_movie
from nowcastd.data.validation import movie_held_out_range
from nowcastd.errors import CheckpointError, NowcastdError
from nowcastd.io.model_checkpoint import checkpoint_dirs
from nowcastd.io.run_checkpoints import restore_run_checkpoint, save_run_checkpoint, to_jsonable
from nowcastd.io.transform import DBZ, DataTransform
from nowcastd.strategy.cache import StrategyCache
from nowcastd.strategy.search import StrategySetting
from nowcastd.train import hosts
from nowcastd.train.config import TrainConfig
from nowcastd.train.departures import with_departures
from nowcastd.train.progress import Progress
from nowcastd.train.sharding import DataParallel
from nowcastd.train.step_strategy import choose_step_strategy
from nowcastd.verification.evaluation import evaluate_clips
from nowcastd.verification.scores import format_table

logger = logging.getLogger(__name__)


class TrainingDiverged(NowcastdError):
    """The loss became NaN or infinite."""


def open_split(cfg: TrainConfig, split: str) -> ClipSet:
    """The `train` or `valid` clips a run with `cfg` uses, cut to fit the model."""
    paths = (
        cfg.train_data_paths if split == "train" else (cfg.valid_data_paths or cfg.train_data_paths)
    )
    m = cfg.model
    if len(paths) != 1:
        raise NowcastdError(f"expected one {split} data path, got {len(paths)}: {paths}")
    time_range = cfg.valid_range_unix if split == "valid" else None
    if not cfg.shared_split:  # separate files: each is used whole
        split, fraction = "train", 0.0
    else:
        fraction = cfg.valid_fraction
    return open_dataset(
        paths[0],
        total_length=m.total_length,
        img_height=m.img_height,
        img_width=m.img_width,
        img_channel=m.img_channel + (m.num_action_ch if m.is_action else 0),
        split=split,
        valid_fraction=fraction,
        stride=cfg.data_stride,
        crop=cfg.data_crop,
        block=cfg.data_block,
        time_range=time_range,
    )


class JsonLog:
    """Append-only JSON-lines metrics log in save_dir, written by process 0 alone (`main`)."""

    def __init__(self, path: Path, *, main: bool = True) -> None:
        self.path = path
        self.main = main

    def write(self, **record: Any) -> None:
        if not self.main:
            return
        record = {"time": time.time(), **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _with_model_flags(
    state: TrainState, model: ModelConfig, optimizer: optax.GradientTransformation, where: Path
) -> TrainState:
    """The resumed state under the run's model flags: they must match the checkpoint's, except
    inference options (e.g. --match_intensity), which a resumed run may switch."""
    try:
        network = state.network.with_inference_options(model)
    except ValueError:
        have = state.network.cfg
        diff = [
            f"--{f.name} {getattr(have, f.name)!r} (flags: {getattr(model, f.name)!r})"
            for f in dataclasses.fields(ModelConfig)
            if getattr(have, f.name) != getattr(model, f.name)
        ]
        raise CheckpointError(
            f"{where}: the model flags differ from the checkpoint's: {', '.join(diff)}"
        ) from None
    # the optimizer state mirrors the network's tree, config included: same leaves, new tree
    structure = jax.tree_util.tree_structure(
        optimizer.init(eqx.filter(network, eqx.is_inexact_array))
    )
    opt_state = jax.tree_util.tree_unflatten(structure, jax.tree_util.tree_leaves(state.opt_state))
    return TrainState(network, opt_state, state.step, state.key)


def _pretrained(cfg: TrainConfig, path: Path) -> PredRNN:
    """`path` (`--pretrained_model`): an official PyTorch checkpoint or a nowcastd one, whose
    network must be the flags'; the flags set the options that change no weight."""
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.io.torch_import import load_official_checkpoint

    if path.is_file():  # an official model.ckpt-N
        return load_official_checkpoint(path, cfg.model)
    loaded = load_model(path)
    try:  # the options that change no parameter (--match_extrapolation) follow the flags
        return loaded.network.with_inference_options(cfg.model, WEIGHTLESS_OPTIONS)
    except ValueError:
        raise CheckpointError(
            f"{path}: model config {loaded.cfg} differs from the flags {cfg.model}"
        ) from None


# The HKO-7 benchmark's rain classes: weight w for targets at or above each rain rate.
WEIGHTED_CLASSES_MMH = ((2.0, 2.0), (5.0, 5.0), (10.0, 10.0), (30.0, 30.0))


def objective(kind: str, transform: DataTransform) -> LossConfig:
    """The loss's data term, with rain-rate thresholds converted to model units."""
    if kind == "mse":
        return LossConfig()
    rates = np.array([r for r, _ in WEIGHTED_CLASSES_MMH])
    thresholds = tuple(float(v) for v in transform.to_model(rates))
    return LossConfig(
        kind="weighted", thresholds=thresholds, weights=tuple(w for _, w in WEIGHTED_CLASSES_MMH)
    )


#: What yields (clips, valid) pairs: random sequences of radar movies, or clips.
PairBatches = SequenceSampler | BatchIterator[tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What the loop draws its batches from: `batches` yields (clips, valid) pairs of this
    process's share of the batch, in the units of `transform`; `masked`: whether the valid
    mask says anything (else the step runs without one)."""

    batches: PairBatches
    transform: DataTransform
    source: str
    masked: bool

    def close(self) -> None:
        """Stop the sequences' background reads (clips need none)."""
        if isinstance(self.batches, SequenceSampler):
            self.batches.close()


def _training_batches(cfg: TrainConfig, processes: hosts.Processes) -> TrainingData:
    """This process's training batches (its own generator and share of the batch)."""
    rng = processes.rng(cfg.seed)
    batch_size = processes.local_batch_size(cfg.batch_size)
    if cfg.sequences:
        m = cfg.model
        held_out = cfg.valid_range_unix  # validation frames of the same file stay out
        movies = [  # and so do the validation sets' (nowcastd.data.validation)
            load_movie(
                p,
                exclude=movie_held_out_range(p, held_out if p in cfg.valid_data_paths else None),
            )
            for p in cfg.train_data_paths
        ]
        sampler_cfg = SamplerConfig(
            total_length=m.total_length,
            height=m.img_height,
            width=m.img_width,
            input_length=m.input_length,
            blocks=cfg.block_choices,
            synthetic_fraction=cfg.synthetic_fraction,
            halo=cfg.halo,
        )
        # drawn ahead on a thread: the crops are read from disk while the step runs
        batches = SequenceSampler(movies, sampler_cfg, DBZ, batch_size, rng, prefetch=2)
        source = "random sequences from " + ", ".join(mv.name for mv in movies)
        return TrainingData(batches, DBZ, source, True)
    train_set = open_split(cfg, "train")
    iterator = BatchIterator(train_set, batch_size, rng, with_mask=True)
    return TrainingData(
        iterator, train_set.transform, train_set.source, train_set.valid_mask is not None
    )


def run(
    cfg: TrainConfig,
    strategy: StrategySetting = DEFAULT,
    strategy_cache: StrategyCache | None = None,
) -> dict[str, Any]:
    """Train (or, with is_training=False, evaluate once). Returns the last metrics.

    `strategy`: the training step's (`model.strategy`); "auto" times the candidates on the
    first batch (`train.step_strategy`) unless `strategy_cache` holds this machine's choice.
    With several processes, whose searches would have to agree step by step, "auto" is the
    default.
    """
    cfg.save_dir.mkdir(parents=True, exist_ok=True)
    processes = hosts.Processes.current()
    log = JsonLog(cfg.save_dir / "metrics.jsonl", main=processes.main)
    valid_set = _validation_set(cfg)
    if not cfg.is_training:
        return _evaluate_pretrained(cfg, valid_set, log)
    training = _set_up(cfg, processes)
    with contextlib.ExitStack() as stack:
        stack.callback(training.data.close)
        if isinstance(training.batches, MotionBatches):  # stopped first: it draws from `data`
            stack.callback(training.batches.close)
        if int(training.state.step) >= cfg.max_iterations:
            return {}
        batches = map(training.step_args, training.batches)
        first = next(batches)  # the strategy is timed on it, and it is the first step's
        setting = processes.step_strategy(strategy)
        step = _compile_step(training, first, setting, strategy_cache)
        return _train(training, step, itertools.chain([first], batches), valid_set, log)


def _validation_set(cfg: TrainConfig) -> ClipSet | None:
    """The clips validation scores, if any are held out."""
    valid_paths = cfg.valid_data_paths or cfg.train_data_paths
    held_out = not cfg.shared_split or cfg.valid_fraction > 0
    return open_split(cfg, "valid") if valid_paths and held_out else None


def _evaluate_pretrained(
    cfg: TrainConfig, valid_set: ClipSet | None, log: JsonLog
) -> dict[str, Any]:
    """`--is_training 0`: score `--pretrained_model` on the validation set once."""
    if cfg.pretrained_model is None:
        raise NowcastdError("--is_training 0 needs --pretrained_model")
    network = _pretrained(cfg, cfg.pretrained_model)
    motion = MotionEstimator(cfg.motion_method) if network.cfg.lagrangian else None
    return _evaluate(cfg, network, valid_set, step=0, log=log, motion=motion)


@dataclasses.dataclass(frozen=True)
class _Run:
    """A training run, set up: its processes and devices, this process's batches (with their
    motion for a Lagrangian model), the optimizer and the state it starts from (restored or
    new, on the devices)."""

    cfg: TrainConfig
    processes: hosts.Processes
    parallel: DataParallel
    data: TrainingData
    batches: PairBatches | MotionBatches
    estimator: MotionEstimator | None
    optimizer: optax.GradientTransformation
    state: TrainState

    @property
    def extra(self) -> dict[str, Any]:
        """What every checkpoint records beside the state and the data position."""
        extra = {"train_config": to_jsonable(self.cfg), "data_source": self.data.source}
        if self.estimator is not None:
            extra["motion_method"] = self.estimator.method
        return extra

    def step_args(self, batch: MotionBatch | tuple[np.ndarray, np.ndarray]) -> StepArgs:
        """(clips, valid, motion) of one batch, sharded over the devices."""
        if isinstance(batch, MotionBatch):
            clips, valid, motion = batch.clips, batch.valid, self.parallel.shard(batch.motion)
        else:
            (clips, valid), motion = batch, None
        shard_valid = self.parallel.shard(valid[..., :1]) if self.data.masked else None
        return self.parallel.shard(clips), shard_valid, motion


#: The training step's arguments after the state: clips, valid mask and motion (sharded).
StepArgs = tuple[jax.Array, jax.Array | None, jax.Array | None]


def _set_up(cfg: TrainConfig, processes: hosts.Processes) -> _Run:
    """The data, the devices and the state a run starts from (restored with `--resume`)."""
    parallel = DataParallel.create()
    data = _training_batches(cfg, processes)
    batches: PairBatches | MotionBatches = data.batches
    estimator = MotionEstimator(cfg.motion_method) if cfg.model.lagrangian else None
    if estimator is not None:
        batches = MotionBatches(data.batches, data.transform, cfg.model.input_length, estimator)
    optimizer = adam(cfg.lr)
    existing = checkpoint_dirs(cfg.save_dir)
    if cfg.resume and existing:
        state = _resumed_state(cfg, existing[-1], optimizer, batches, processes)
    else:
        if existing:
            logger.warning(
                "%s already holds checkpoints; new ones are added beside them", cfg.save_dir
            )
        state = _new_state(cfg, optimizer)
    state = parallel.replicate(state)
    return _Run(cfg, processes, parallel, data, batches, estimator, optimizer, state)


def _resumed_state(
    cfg: TrainConfig,
    checkpoint: Path,
    optimizer: optax.GradientTransformation,
    batches: PairBatches | MotionBatches,
    processes: hosts.Processes,
) -> TrainState:
    """The state of `checkpoint`, under the run's model flags; `batches` continue from its
    data position."""
    state, meta = restore_run_checkpoint(checkpoint, optimizer)
    state = _with_model_flags(state, cfg.model, optimizer, checkpoint)
    saved = hosts.data_state_from_json(meta["data_state"])
    batches.load_state_dict(processes.local_data_state(saved))
    logger.info("resumed from %s at iteration %d", checkpoint, int(state.step))
    return state


def _new_state(cfg: TrainConfig, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh run's state: `--pretrained_model`'s network, or new weights from the seed."""
    k_init, k_run = jax.random.split(jax.random.key(cfg.seed))
    # one compiled program for all the initialisers, not one per weight shape
    network = (
        _pretrained(cfg, cfg.pretrained_model)
        if cfg.pretrained_model
        else eqx.filter_jit(PredRNN)(cfg.model, key=k_init)
    )
    return init_train_state(network, optimizer, k_run)


def _compile_step(
    run: _Run, first: StepArgs, setting: StrategySetting, cache: StrategyCache | None
) -> Callable[..., tuple[TrainState, Any]]:
    """The training step under its strategy: `setting`, or with "auto" timed on `first`."""
    cfg, parallel = run.cfg, run.parallel
    make_step = functools.partial(
        make_train_step,
        run.optimizer,
        cfg.sampling,
        reverse_input=cfg.reverse_input,
        loss=with_departures(objective(cfg.loss, run.data.transform), cfg, run.data.transform),
        mesh=parallel.mesh,
    )
    sharded = parallel.size > 1 and first[1] is None and first[2] is None
    chosen = choose_step_strategy(
        lambda s: make_step(strategy=s),
        run.state,
        first,
        setting=setting,
        batch=first[0].shape[0] // (parallel.size if sharded else 1),
        devices=parallel.size,
        reverse_input=cfg.reverse_input,
        iterations=cfg.max_iterations - int(run.state.step),
        cache=cache,
    )
    return make_step(strategy=chosen.strategy)


def _train(
    run: _Run,
    step: Callable[..., tuple[TrainState, Any]],
    batches: Iterator[StepArgs],
    valid_set: ClipSet | None,
    log: JsonLog,
) -> dict[str, Any]:
    """Step from the run's state to `--max_iterations` on `batches`; log, checkpoint and
    evaluate at their intervals. Returns the last metrics logged."""
    cfg, state = run.cfg, run.state
    start = int(state.step)
    last: dict[str, Any] = {}
    t0 = time.perf_counter()
    with Progress(total=cfg.max_iterations, start=start) as progress:
        # the iterations end first: no batch is drawn past the last one
        steps = zip(range(start + 1, cfg.max_iterations + 1), batches, strict=False)
        for itr, args in steps:
            state, metrics = step(state, *args)
            progress.advance(itr)
            save = itr % cfg.snapshot_interval == 0 or itr == cfg.max_iterations
            if save or itr % cfg.display_interval == 0:
                last = _report(cfg, itr, metrics, time.perf_counter() - t0)
                log.write(kind="train", **last)
                progress.show(itr, last["loss"])
            if save:
                _save_checkpoint(run, state, itr, log)
            evaluate_now = itr % cfg.test_interval == 0 or itr == cfg.max_iterations
            if valid_set is not None and run.processes.main and evaluate_now:
                network = run.processes.local_copy(state.network)
                last["eval"] = _evaluate(
                    cfg, network, valid_set, step=itr, log=log, motion=run.estimator
                )
    return last


def _report(cfg: TrainConfig, itr: int, metrics: Any, elapsed: float) -> dict[str, Any]:
    """The metrics of iteration `itr`: the one host sync per display interval, and the
    finite-loss check that every checkpoint passes before it is written (the newest one is
    the one serve loads)."""
    loss = float(metrics.loss)
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"iteration {itr}: loss is {loss}; stopped, the last good checkpoint "
            f"in {cfg.save_dir} is kept"
        )
    return {
        "iteration": itr,
        "loss": loss,
        "mse": float(metrics.mse),
        "decouple": float(metrics.decouple),
        "elapsed_s": elapsed,
    }


def _save_checkpoint(run: _Run, state: TrainState, itr: int, log: JsonLog) -> None:
    """Checkpoint `state`: every process takes part (the gathers), process 0 alone writes."""
    processes = run.processes
    data_state = processes.checkpoint_data_state(run.batches.state_dict())
    digests = processes.check_parameters(state.network, itr)
    if digests is not None:
        log.write(kind="hosts", iteration=itr, param_digests=digests)
    if processes.main:
        save_run_checkpoint(
            run.cfg.save_dir,
            state,
            transform=run.data.transform,
            keep=run.cfg.keep_checkpoints,
            extra={**run.extra, "data_state": hosts.data_state_to_json(data_state)},
        )


def _evaluate(
    cfg: TrainConfig,
    network: PredRNN,
    valid_set: ClipSet | None,
    *,
    step: int,
    log: JsonLog,
    motion: MotionEstimator | None = None,
) -> dict[str, Any]:
    if valid_set is None:
        raise NowcastdError("no validation data: give --valid_data_paths or a movie to split")
    figures = cfg.save_dir / "figures" / f"{step:08d}" if cfg.visual else None
    result = evaluate_clips(
        network,
        valid_set,
        batch_size=cfg.batch_size,
        figures_dir=figures,
        num_save_samples=cfg.num_save_samples,
        motion=motion,
    )
    logger.info(
        "evaluation at iteration %d:\n%s",
        step,
        format_table(result, timestep_seconds=valid_set.timestep_seconds),
    )
    log.write(kind="eval", iteration=step, **result)
    return result
