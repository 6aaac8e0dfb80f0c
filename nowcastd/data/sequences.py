"""Random training sequences drawn on the fly from several radar movies, and synthetic ones.

Each draw picks a movie (weighted by its number of start times), a block-average factor (rain
then moves at 1/b of its native pixel speed), a start time, and a crop of the native frames;
then flips, rotates by a multiple of 90° and, at random, reverses time. Movies whose time step
is a fraction of the target step are subsampled (2-min MRMS: every 2nd or 3rd frame). Crops
that are nearly dry are redrawn a few times, since they teach nothing about motion. A share of
the draws are synthetic (`nowcastd.data.synthetic_flow`): a real frame carried along a random
smooth flow. Its source must exceed the model grid by the farthest distance rain travels; where
no movie is that large (a 64 × 64 archive for a 64 × 64 grid), the largest square a movie holds
is padded with no data, so rain leaves the grid and what flows in is masked in the loss, as
beyond a radar's range.

Movies are read lazily (`load_movie` keeps the HDF5 dataset open): each draw reads its crop
through h5py's chunk cache (`CACHE_BYTES` per movie), so memory does not grow with a movie's
length, and an archive of years (`nowcastd.data.archive`) trains like a small movie. A start
time is drawn only where the whole window is contiguous: every step of the window, at the
chosen stride, is the movie's time step in `time_unix` (no window crosses a gap).

With a halo (`SamplerConfig.halo` > 0, for a Lagrangian network), every sequence is that many
model pixels wider on every side than the model grid: the crop's surroundings, which the motion
and the advection read as serve's halo does (`model.loss.lagrangian_loss`).

Values go to model units through the run's `DataTransform`; NaN (no data) becomes 0 with a
validity mask (the fraction of valid native pixels of each block), which the loss uses.
`SequenceSampler` is an endless batch iterator with `state_dict`/`load_state_dict`, so a run
resumes with the exact draws it would have made; with `prefetch` > 0 its batches are drawn
ahead on a background thread, while the accelerator runs the step.
"""

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from nowcastd.data.movie import RATE_UNITS, open_precip
from nowcastd.data.prefetch import Prefetch
from nowcastd.data.synthetic_flow import MotionConfig, advect_sequence, random_flow
from nowcastd.errors import DataError
from nowcastd.io.domain import block_average
from nowcastd.io.transform import DataTransform

logger = logging.getLogger(__name__)

# What `SequenceSampler._wettest` picks among: a crop, a source, ...
_Candidate = TypeVar("_Candidate")

__all__ = ["Movie", "SamplerConfig", "SequenceSampler", "load_movie"]


#: h5py's chunk cache per movie: the tiles of recent crops (an archive's are 64 KiB each).
CACHE_BYTES = 32 << 20


@dataclass(frozen=True)
class Movie:
    """One movie, read on demand: `precip` (T, H, W) float32 mm/h (NaN = no data), an open
    h5py dataset or an array; its time step, the frame strides that give the target step,
    `time_unix` (T,) when the file has it (None: the frames are taken as contiguous) and a
    time range (first, last Unix seconds) that no window may touch (held out to validate)."""

    name: str
    precip: Any
    timestep_seconds: int
    strides: tuple[int, ...]
    time_unix: np.ndarray | None = None
    exclude: tuple[int, int] | None = None

    def starts(self, length: int, stride: int) -> np.ndarray:
        """The first frames of the windows of `length` frames every `stride` frames that are
        contiguous: each step of the window is `stride` time steps."""
        n = self.precip.shape[0] - (length - 1) * stride
        if n <= 0:
            return np.zeros(0, np.int64)
        if self.time_unix is None:
            return np.arange(n, dtype=np.int64)
        t = self.time_unix
        ok = (t[stride:] - t[:-stride]) == stride * self.timestep_seconds
        whole = np.ones(n, dtype=bool)
        for k in range(length - 1):
            whole &= ok[k * stride : k * stride + n]
        if self.exclude is not None:
            first, last = self.exclude
            whole &= (t[(length - 1) * stride :][:n] < first) | (t[:n] > last)
        return np.flatnonzero(whole)


def _strides(timestep: int, target: int, where: str) -> tuple[int, ...]:
    """Frame strides that give the target step, or the two nearest it (2 min -> 4 and 6 min)."""
    if timestep <= 0:
        raise DataError(f"{where}: timestep_seconds must be > 0, got {timestep}")
    if target % timestep == 0:
        return (target // timestep,)
    low = max(1, target // timestep)
    return (low, low + 1)


def load_movie(
    path: str | Path, *, target_step_seconds: int = 300, exclude: tuple[int, int] | None = None
) -> Movie:
    """Open a movie or archive (`precip` (T, H, W) in mm/h, root attribute `timestep_seconds`,
    optional `time_unix`) for reading on demand; the file stays open while the Movie lives.
    `exclude`: (first, last) Unix seconds that no window may touch."""
    path = Path(path)
    where = f"movie {path.name}"
    try:
        h = h5py.File(path, "r", rdcc_nbytes=CACHE_BYTES, rdcc_nslots=10007)
    except OSError as e:
        raise DataError(f"{where}: cannot read as HDF5: {e}") from e
    try:
        ds, units = open_precip(h, where)
        if units not in RATE_UNITS:
            raise DataError(f"{where}: expected precip in mm/h, got units {units!r}")
        step = h.attrs.get("timestep_seconds")
        if step is None:
            raise DataError(f"{where}: expected a root attribute 'timestep_seconds'")
        times = np.asarray(h["time_unix"][:], np.int64) if "time_unix" in h else None
        if times is not None and times.shape != ds.shape[:1]:
            raise DataError(
                f"{where}: expected time_unix of {ds.shape[0]} frames, got {times.shape}"
            )
        if exclude is not None and times is None:
            raise DataError(f"{where}: a held-out time range needs 'time_unix', found none")
        strides = _strides(int(step), target_step_seconds, where)
    except DataError:
        h.close()
        raise
    return Movie(path.name, ds, int(step), strides, times, exclude)


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """How training sequences are drawn.

    Attributes:
        total_length: frames per sequence; height, width: the model grid.
        blocks: block-average factors to draw from (those that fit a movie's frames).
        flips, rotations, time_reversal: the random symmetries.
        synthetic_fraction: the share of synthetic (advected) sequences.
        min_wet_fraction: a real crop whose input frames have less than this share of pixels
            at >= 0.5 mm/h is redrawn (up to `max_redraws` times).
        max_nan_fraction: a crop with more missing pixels than this is redrawn.
        motion: the ranges of the synthetic flows.
        halo: model pixels of each sequence's surroundings on every side (0: none).
    """

    total_length: int
    height: int
    width: int
    input_length: int = 4
    blocks: tuple[int, ...] = (1, 2, 4)
    flips: bool = True
    rotations: bool = True
    time_reversal: bool = True
    synthetic_fraction: float = 0.3
    min_wet_fraction: float = 0.05
    max_nan_fraction: float = 0.5
    max_redraws: int = 20
    motion: MotionConfig = MotionConfig()
    halo: int = 0

    @property
    def padded(self) -> tuple[int, int]:
        """The sequences' grid: the model grid and its halo."""
        return (self.height + 2 * self.halo, self.width + 2 * self.halo)

    def __post_init__(self) -> None:
        for name in ("total_length", "height", "width", "input_length", "max_redraws"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"SamplerConfig.{name}: expected an int >= 1, got {value!r}")
        if not self.blocks or any(not isinstance(b, int) or b < 1 for b in self.blocks):
            raise ValueError(f"SamplerConfig.blocks: expected ints >= 1, got {self.blocks!r}")
        if not (isinstance(self.halo, int) and self.halo >= 0):
            raise ValueError(f"SamplerConfig.halo: expected an int >= 0, got {self.halo!r}")
        for name in ("synthetic_fraction", "min_wet_fraction", "max_nan_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SamplerConfig.{name}: expected 0..1, got {value!r}")


class SequenceSampler:
    """Endless (clips, valid) batches in model units, (B, T, H, W, 1) float32 each."""

    def __init__(
        self,
        movies: Sequence[Movie],
        cfg: SamplerConfig,
        transform: DataTransform,
        batch_size: int,
        rng: np.random.Generator,
        *,
        prefetch: int = 0,
    ) -> None:
        if not movies:
            raise DataError("training sequences: expected at least one movie, got none")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch: expected >= 0 batches, got {prefetch}")
        self.movies, self.cfg, self.transform = tuple(movies), cfg, transform
        self.batch_size, self.rng, self.prefetch = batch_size, rng, prefetch
        self._ahead: Prefetch[tuple[np.ndarray, np.ndarray], dict[str, Any]] | None = None
        self._resume_state = self._rng_state()
        self._choices = [self._fits(m) for m in self.movies]
        weights = np.array(
            [
                sum(self._weight(m, c) for c in cs)
                for m, cs in zip(self.movies, self._choices, strict=True)
            ],
            dtype=np.float64,
        )
        if weights.sum() == 0:
            need = f"{cfg.total_length} frames of {cfg.padded[0]}×{cfg.padded[1]} pixels"
            raise DataError(f"training sequences: no movie holds {need} at any block factor")
        self._weights = weights / weights.sum()
        for movie, choices in zip(self.movies, self._choices, strict=True):
            usable = ", ".join(f"block {b} stride {s}: {len(n)} starts" for b, s, n in choices)
            logger.info("%s: %s", movie.name, usable or "too small, not used")
        self._whole_sources = any(self._full_sources(m) for m in self.movies)
        self._synthetic_source_warning()

    def _weight(self, movie: Movie, choice: tuple[int, int, np.ndarray]) -> float:
        """How often to draw from `movie` with `choice`: its start times times the square root
        of its crop positions, so a large domain counts for more than a small one, but less
        than in proportion (its crops overlap)."""
        block, _, starts = choice
        _, h, w = movie.precip.shape
        height, width = self.cfg.padded
        positions = (h - height * block + 1) * (w - width * block + 1)
        return len(starts) * math.sqrt(positions)

    def _fits(self, movie: Movie) -> list[tuple[int, int, np.ndarray]]:
        """(block, stride, contiguous start frames) for every way `movie` fits the model grid."""
        cfg = self.cfg
        _, h, w = movie.precip.shape
        side = max(cfg.padded)  # rotations swap height and width
        out = []
        for block in cfg.blocks:
            if side * block > min(h, w):
                continue
            for stride in movie.strides:
                starts = movie.starts(cfg.total_length, stride)
                if len(starts):
                    out.append((block, stride, starts))
        return out

    # -- drawing -------------------------------------------------------------------------------

    def _wettest(self, draw: Callable[[], tuple[_Candidate, np.ndarray]]) -> _Candidate:
        """The candidate of up to `max_redraws` calls of `draw` -> (candidate, the part judged):
        the first that is wet enough and not mostly missing, else the wettest that is not mostly
        missing, else the last drawn.

        Wet enough: at least `min_wet_fraction` of the judged pixels at >= 0.5 mm/h; mostly
        missing: more than `max_nan_fraction` of them NaN.
        """
        cfg = self.cfg
        best: _Candidate | None = None
        best_wet = -1.0
        for _ in range(cfg.max_redraws):
            candidate, judged = draw()
            nan_share = float(np.isnan(judged).mean())
            wet = float((np.nan_to_num(judged, nan=0.0) >= 0.5).mean())
            if nan_share <= cfg.max_nan_fraction and wet > best_wet:
                best, best_wet = candidate, wet
            if best is not None and best_wet >= cfg.min_wet_fraction:
                break
        if best is None:  # every draw was mostly missing: take the last one, masked
            best = candidate
        return best

    def _real(self) -> tuple[np.ndarray, np.ndarray]:
        """One real (T, h, w) sequence in mm/h (NaN = no data) at the model grid, and the
        valid fraction of each pixel's block."""
        cfg, rng = self.cfg, self.rng
        m = int(rng.choice(len(self.movies), p=self._weights))
        movie, choices = self.movies[m], self._choices[m]
        block, stride, starts = choices[int(rng.integers(len(choices)))]
        h, w = cfg.padded[0] * block, cfg.padded[1] * block
        _, big_h, big_w = movie.precip.shape

        def read(t0: int, r0: int, c0: int, frames: int) -> np.ndarray:
            end = t0 + (frames - 1) * stride + 1
            return np.asarray(movie.precip[t0:end:stride, r0 : r0 + h, c0 : c0 + w], np.float32)

        def draw_crop() -> tuple[tuple[int, int, int], np.ndarray]:
            t0 = int(starts[int(rng.integers(len(starts)))])
            r0 = int(rng.integers(big_h - h + 1))
            c0 = int(rng.integers(big_w - w + 1))
            # judged by its input frames, read alone: a crop redrawn costs no more reads
            return (t0, r0, c0), read(t0, r0, c0, min(cfg.input_length, cfg.total_length))

        return block_average(read(*self._wettest(draw_crop), cfg.total_length), block)

    def _synthetic_source_warning(self) -> None:
        """Warn once when no movie holds a whole synthetic source at any block factor."""
        cfg = self.cfg
        if cfg.synthetic_fraction == 0 or self._whole_sources:
            return
        side = self._source_side()
        logger.warning(
            "synthetic sequences: no movie holds the %d×%d source (at the model grid) that rain "
            "moving up to %.1f pixels per step for %d steps needs; each is drawn from the largest "
            "square its movie holds, padded with no data, which the loss masks like rain beyond "
            "the radar's range (--synthetic_fraction 0 turns them off)",
            side,
            side,
            cfg.motion.max_speed + cfg.motion.max_shear,
            cfg.total_length,
        )

    def _source_side(self) -> int:
        """The side of a synthetic source at the model grid: the grid plus the travel margin."""
        cfg = self.cfg
        return max(cfg.padded) + 2 * cfg.motion.margin(cfg.total_length)

    def _full_sources(self, movie: Movie) -> list[int]:
        """The block factors at which `movie` holds a whole synthetic source."""
        side = self._source_side()
        return [b for b in self.cfg.blocks if side * b <= min(movie.precip.shape[1:])]

    def _synthetic_movie(self) -> tuple[Movie, int, int]:
        """A movie for a synthetic source, its block factor and the source's side at the model
        grid: a movie that holds a whole source when one does, else (padded later with no data)
        the largest square of a movie that holds the model grid."""
        cfg, rng = self.cfg, self.rng
        side = self._source_side()
        for _ in range(cfg.max_redraws if self._whole_sources else 0):
            movie = self.movies[int(rng.choice(len(self.movies), p=self._weights))]
            if fits := self._full_sources(movie):
                return movie, fits[int(rng.integers(len(fits)))], side
        grid = max(cfg.padded)
        movie = self.movies[int(rng.choice(len(self.movies), p=self._weights))]
        smallest = min(movie.precip.shape[1:])
        fits = [b for b in cfg.blocks if grid * b <= smallest]  # a drawn movie holds the grid
        block = fits[int(rng.integers(len(fits)))]
        return movie, block, min(side, smallest // block)

    def _synthetic(self) -> tuple[np.ndarray, np.ndarray]:
        """One advected (T, h, w) sequence in mm/h from a random real frame, and its mask."""
        cfg, rng = self.cfg, self.rng
        margin = cfg.motion.margin(cfg.total_length)
        side = self._source_side()
        movie, block, held = self._synthetic_movie()
        _, big_h, big_w = movie.precip.shape
        n = held * block
        before = (side - held) // 2  # no data around a source smaller than `side`
        after = side - held - before

        def draw_source() -> tuple[np.ndarray, np.ndarray]:
            t0 = int(rng.integers(movie.precip.shape[0]))
            r0, c0 = int(rng.integers(big_h - n + 1)), int(rng.integers(big_w - n + 1))
            frame = np.asarray(movie.precip[t0 : t0 + 1, r0 : r0 + n, c0 : c0 + n], np.float32)
            source = np.pad(
                block_average(frame, block)[0][0], (before, after), constant_values=np.nan
            )
            return source, source[margin:-margin, margin:-margin]

        best = self._wettest(draw_source)
        size = (max(cfg.padded),) * 2
        flow = random_flow(best.shape, size, cfg.motion, rng)
        seq = advect_sequence(best, flow, steps=cfg.total_length)
        return seq, (~np.isnan(seq)).astype(np.float32)

    def _symmetries(self, pair: np.ndarray) -> np.ndarray:
        """The same random rotation, flip and time order for (2, T, h, w) field and mask."""
        cfg, rng = self.cfg, self.rng
        if cfg.rotations:
            pair = np.rot90(pair, k=int(rng.integers(4)), axes=(2, 3))
        if cfg.flips and rng.integers(2):
            pair = pair[:, :, :, ::-1]
        if cfg.time_reversal and rng.integers(2):
            pair = pair[:, ::-1]
        return pair[:, :, : cfg.padded[0], : cfg.padded[1]]

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """One (T, H, W, 1) sequence in model units and its validity mask."""
        synthetic = self.rng.uniform() < self.cfg.synthetic_fraction
        seq, valid = self._synthetic() if synthetic else self._real()
        seq, valid = self._symmetries(np.stack([seq, valid]))
        model = np.nan_to_num(self.transform.to_model(seq), nan=0.0)
        return model[..., None].astype(np.float32), np.ascontiguousarray(valid[..., None])

    def __iter__(self) -> "SequenceSampler":
        return self

    def _batch(self) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.draw() for _ in range(self.batch_size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def _rng_state(self) -> dict[str, Any]:
        return dict(copy.deepcopy(self.rng.bit_generator.state))

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.prefetch:
            return self._batch()
        if self._ahead is None:  # the thread owns the generator from here
            self._ahead = Prefetch(self._batch, self._rng_state, depth=self.prefetch)
        batch, self._resume_state = self._ahead.next()
        return batch

    def close(self) -> None:
        """Stop drawing ahead (the next batch starts the thread again)."""
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = None
            self.rng.bit_generator.state = self._resume_state

    # -- resume --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: the generator's state before the next batch this iterator returns
        (not the batches drawn ahead), and what the draws depend on."""
        state = self._rng_state() if self._ahead is None else copy.deepcopy(self._resume_state)
        return {
            "kind": "sequences",
            "movies": [m.name for m in self.movies],
            "batch_size": self.batch_size,
            "rng_state": state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state_dict` was taken; DataError if the movies changed."""
        expected = ([m.name for m in self.movies], self.batch_size)
        got = (state.get("movies"), state.get("batch_size"))
        if state.get("kind") != "sequences" or list(got) != list(expected):
            raise DataError(
                f"cannot resume the data draws: saved (movies, batch_size) = {got}, now {expected}"
            )
        self.close()
        self.rng.bit_generator.state = state["rng_state"]
        self._resume_state = self._rng_state()
