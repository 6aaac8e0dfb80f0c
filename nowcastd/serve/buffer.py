"""The rolling input buffer: the last `input_length` frames, kept on the accelerator.

One fixed-shape device array `(1, I, H, W, C)` in model units is updated by a jitted function
that donates it: the oldest frame shifts out and the new one is written at the end, in the
array's own memory, so no buffer is rebuilt per scan. The host keeps only the frames' valid
times and names.

Ordering rules, by valid time, all in `check`: a frame with the time of the newest one is
refused (`duplicate`), and so is one older than the newest (`out_of_order`); one more than
`max_gap_seconds` after the newest empties the buffer first (it becomes the first frame of a
new sequence). The buffer is `full` (a forecast can be made) once it holds `input_length`
consecutive frames.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from nowcastd.io.readers import ScanRefused
from nowcastd.serve.labels import RejectReason

__all__ = ["FrameBuffer", "FrameInfo", "Push"]

logger = logging.getLogger(__name__)


class Push(enum.Enum):
    """How `FrameBuffer.push` took a frame in."""

    APPENDED = "appended"
    RESET = "reset"  # a gap emptied the buffer; the frame starts a new sequence


#: What the caller keeps with each buffered frame (the pipeline: its `Frame`).
R = TypeVar("R")


@dataclass(frozen=True)
class FrameInfo(Generic[R]):
    """Host-side record of one buffered frame; compared by valid time and name only.

    `record` is what the caller keeps with the frame (the pipeline: its `Frame`, with the NaN
    mask and grid the forecast from this frame needs).
    """

    valid_time: datetime
    name: str
    record: R = field(compare=False, repr=False)


@partial(jax.jit, donate_argnums=0)
def _shift_in(
    frames: Float[Array, "1 inputs height width channels"],
    frame: Float[Array, "height width channels"],
) -> Float[Array, "1 inputs height width channels"]:
    """Drop the oldest frame and append `frame` (in place: `frames` is donated)."""
    i = frames.shape[1]
    shifted = jax.lax.dynamic_update_slice_in_dim(frames, frames[:, 1:], 0, axis=1)
    return jax.lax.dynamic_update_slice_in_dim(shifted, frame[None, None], i - 1, axis=1)


class FrameBuffer(Generic[R]):
    """The last `input_length` frames on the device, with time-ordering rules; each with a
    record of type `R`."""

    def __init__(
        self,
        *,
        input_length: int,
        frame_shape: tuple[int, int, int],
        max_gap_seconds: float,
        device: jax.Device | None = None,
    ) -> None:
        if input_length < 1:
            raise ValueError(f"input_length: expected >= 1, got {input_length}")
        if not max_gap_seconds > 0:
            raise ValueError(f"max_gap_seconds: expected > 0, got {max_gap_seconds}")
        self.input_length = input_length
        self.frame_shape = tuple(frame_shape)
        self.max_gap_seconds = max_gap_seconds
        self.device = device or jax.devices()[0]
        shape = (1, input_length, *self.frame_shape)
        # device_put of host zeros: no XLA computation, so nothing to compile.
        self._frames: jax.Array = jax.device_put(np.zeros(shape, np.float32), self.device)
        self._update: Callable[[jax.Array, jax.Array], jax.Array] | None = None
        self._infos: list[FrameInfo[R]] = []

    def compile(self) -> None:
        """Compile the in-place update for this buffer's shapes (the pipeline's start-up
        `compile`); `push` compiles it on first use if this was not called. Idempotent."""
        if self._update is not None:
            return
        # jax leaves ShapeDtypeStruct's constructor unannotated
        self._update = _shift_in.lower(
            jax.ShapeDtypeStruct(self._frames.shape, jnp.float32),  # type: ignore[no-untyped-call]
            jax.ShapeDtypeStruct(self.frame_shape, jnp.float32),  # type: ignore[no-untyped-call]
        ).compile()

    # -- state -------------------------------------------------------------------------------

    @property
    def infos(self) -> tuple[FrameInfo[R], ...]:
        """The buffered frames, oldest first (at most `input_length`)."""
        return tuple(self._infos)

    @property
    def count(self) -> int:
        return len(self._infos)

    @property
    def full(self) -> bool:
        return len(self._infos) == self.input_length

    @property
    def newest_time(self) -> datetime | None:
        return self._infos[-1].valid_time if self._infos else None

    @property
    def frames(self) -> Float[Array, "1 inputs height width channels"]:
        """The device array; meaningful where it holds frames (the last `count` slots)."""
        return self._frames

    def clear(self) -> None:
        """Forget every frame (the device array is reused; stale slots are never read)."""
        self._infos.clear()

    # -- update ------------------------------------------------------------------------------

    def check(self, valid_time: datetime, *, name: str) -> Push:
        """What `push` would do with the frame `name` of this valid time (without pushing);
        ScanRefused ("duplicate", "out_of_order") for a frame it would refuse."""
        newest = self.newest_time
        if newest is None:
            return Push.APPENDED
        t = f"{valid_time:%Y-%m-%dT%H:%M:%SZ}"
        if valid_time == newest:
            raise ScanRefused(RejectReason.DUPLICATE, f"{name}: valid time {t} already buffered")
        if valid_time < newest:
            raise ScanRefused(
                RejectReason.OUT_OF_ORDER,
                f"{name}: expected a valid time after the newest buffered "
                f"({newest:%Y-%m-%dT%H:%M:%SZ}), got {t}",
            )
        if (valid_time - newest).total_seconds() > self.max_gap_seconds:
            return Push.RESET
        return Push.APPENDED

    def push(
        self,
        frame: Float[Array, "height width channels"],
        *,
        valid_time: datetime,
        name: str,
        record: R,
    ) -> Push:
        """Apply the ordering rules (`check`: ScanRefused for a frame they refuse), then shift
        `frame` (a device array) in."""
        outcome = self.check(valid_time, name=name)
        if outcome is Push.RESET:
            gap = (valid_time - self._infos[-1].valid_time).total_seconds()
            logger.warning(
                "scan %s: %.0f s after the newest scan (more than %.0f s): buffer emptied",
                name,
                gap,
                self.max_gap_seconds,
            )
            self.clear()
        if tuple(frame.shape) != self.frame_shape:
            raise ValueError(f"frame {name}: expected shape {self.frame_shape}, got {frame.shape}")
        self.compile()
        assert self._update is not None
        self._frames = self._update(self._frames, frame)
        self._infos.append(FrameInfo(valid_time=valid_time, name=name, record=record))
        del self._infos[: -self.input_length]
        return outcome
