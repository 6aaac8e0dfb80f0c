"""Training batches with the motion field of each clip's context, prepared ahead of the step.

A Lagrangian network (`ModelConfig.lagrangian`) trains on clips together with the motion that
`serve` would estimate from the same context frames: the clip's first `input_length` frames are
the motion input of `nowcastd.data.motion.motion_frames` (the one rule of serve, predict and
evaluate too: back to mm/h through the run's data transform, NaN where the validity mask says
no data) and go through the same `MotionEstimator`. A background thread draws and estimates up to
`depth` batches ahead, so the training step does not wait for the optical flow.

Resuming stays exact: `state_dict` is the wrapped iterator's state after the last batch handed
out, not after those drawn ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from nowcastd.data.motion import MotionEstimator, motion_frames
from nowcastd.io.transform import DataTransform

__all__ = ["MotionBatch", "MotionBatches"]


class ResumableBatches(Protocol):
    def __next__(self) -> tuple[np.ndarray, np.ndarray]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class MotionBatch:
    """(B, T, H, W, C) clips in model units, their (B, T, H, W, 1) validity, (B, H, W, 2) motion."""

    clips: np.ndarray
    valid: np.ndarray
    motion: np.ndarray


class MotionBatches(Iterator[MotionBatch]):
    """`MotionBatch`es from an iterator of (clips, valid) batches (module docstring)."""

    def __init__(
        self,
        batches: ResumableBatches,
        transform: DataTransform,
        input_length: int,
        estimator: MotionEstimator,
        *,
        depth: int = 2,
    ) -> None:
        if input_length < 2:
            raise ValueError(f"motion needs at least 2 context frames, got {input_length}")
        self._batches, self._transform = batches, transform
        self._input_length, self._estimator = input_length, estimator
        self._queue: queue.Queue[tuple[MotionBatch, dict[str, Any]] | BaseException] = queue.Queue(
            maxsize=depth
        )
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = batches.state_dict()

    def motion_of(self, clips: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """(B, H, W, 2) motion of the clips' contexts; `valid` (B, T, H, W, 1) or None."""
        i = self._input_length
        no_data = None if valid is None else valid[:, :i, ..., 0] == 0
        return self._estimator.batch(motion_frames(clips[:, :i, ..., 0], self._transform, no_data))

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                clips, valid = next(self._batches)
                item = MotionBatch(clips, valid, self.motion_of(clips, valid))
                state = self._batches.state_dict()
                while not self._stop.is_set():
                    try:
                        self._queue.put((item, state), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._queue.put(e)

    def __next__(self) -> MotionBatch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="motion", daemon=True)
            self._thread.start()
        got = self._queue.get()
        if isinstance(got, BaseException):
            raise got
        item, self._state = got
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def state_dict(self) -> dict[str, Any]:
        return self._state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._thread is not None:
            raise RuntimeError("load_state_dict: the batches are already being drawn")
        self._batches.load_state_dict(state)
        self._state = self._batches.state_dict()
