"""The device frame buffer: in-place shifts, time-ordering rules (refusals by reason), gap
resets."""

from datetime import UTC, datetime, timedelta

import jax
import numpy as np
import pytest

from nowcastd.io.readers import ScanRefused
from nowcastd.serve.buffer import FrameBuffer, Push
from nowcastd.serve.metrics import CompileCounter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _buffer(input_length: int = 3) -> FrameBuffer:
    return FrameBuffer(input_length=input_length, frame_shape=(4, 4, 1), max_gap_seconds=450)


def _push(buf: FrameBuffer, minutes: int, value: float | None = None) -> Push:
    frame = jax.device_put(np.full((4, 4, 1), minutes if value is None else value, np.float32))
    name = f"s{minutes}"
    return buf.push(frame, valid_time=T0 + timedelta(minutes=minutes), name=name, record=name)


def test_buffer_keeps_the_newest_frames_in_time_order():
    buf = _buffer()
    for m in (0, 5, 10, 15):
        assert _push(buf, m) is Push.APPENDED
    assert buf.full and buf.count == 3
    assert [i.name for i in buf.infos] == ["s5", "s10", "s15"]
    np.testing.assert_array_equal(np.asarray(buf.frames)[0, :, 0, 0, 0], [5, 10, 15])


def test_push_updates_the_device_array_in_place_without_recompiling():
    buf = _buffer()
    _push(buf, 0)
    before = buf.frames
    address = before.unsafe_buffer_pointer()
    with CompileCounter() as counter:
        _push(buf, 5)
    assert counter.count == 0
    assert before.is_deleted()  # donated to the update ...
    assert buf.frames.unsafe_buffer_pointer() == address  # ... which wrote into its memory
    assert buf.frames.shape == (1, 3, 4, 4, 1)


def test_the_constructor_compiles_nothing_and_compile_leaves_nothing_for_push():
    shape = (3, 5, 1)  # no other test builds this buffer, so jax has not compiled it yet
    with CompileCounter() as counter:
        buf = FrameBuffer(input_length=2, frame_shape=shape, max_gap_seconds=450)
    assert counter.count == 0
    with CompileCounter() as counter:
        buf.compile()
        buf.compile()  # idempotent
    assert counter.count == 1
    with CompileCounter() as counter:
        for m in (0, 5):
            frame = jax.device_put(np.full(shape, m, np.float32))
            buf.push(frame, valid_time=T0 + timedelta(minutes=m), name=f"s{m}", record=None)
    assert counter.count == 0
    np.testing.assert_array_equal(np.asarray(buf.frames)[0, :, 0, 0, 0], [0, 5])


def test_a_duplicate_and_an_older_scan_are_refused_by_reason_and_leave_the_buffer_alone():
    buf = _buffer()
    _push(buf, 0)
    _push(buf, 5)
    with pytest.raises(ScanRefused, match=r"^s5: valid time 2026-01-01T00:05:00Z already") as dup:
        _push(buf, 5, value=99)
    with pytest.raises(ScanRefused) as older:
        _push(buf, 0, value=99)
    assert (dup.value.reason, older.value.reason) == ("duplicate", "out_of_order")
    assert str(older.value) == (
        "s0: expected a valid time after the newest buffered (2026-01-01T00:05:00Z), "
        "got 2026-01-01T00:00:00Z"
    )
    with pytest.raises(ScanRefused):  # `check` is the rule `push` applies
        buf.check(T0 + timedelta(minutes=5), name="s5")
    assert [i.name for i in buf.infos] == ["s0", "s5"]
    assert 99 not in np.asarray(buf.frames)


def test_gap_over_the_limit_empties_the_buffer():
    buf = _buffer()
    for m in (0, 5, 10):
        _push(buf, m)
    assert buf.check(T0 + timedelta(minutes=17, seconds=30), name="s") is Push.APPENDED  # 450 s
    assert _push(buf, 20) is Push.RESET  # 600 s
    assert buf.count == 1 and not buf.full
    _push(buf, 25)
    _push(buf, 30)
    assert buf.full
    np.testing.assert_array_equal(np.asarray(buf.frames)[0, :, 0, 0, 0], [20, 25, 30])


def test_wrong_frame_shape_is_refused():
    buf = _buffer()
    with pytest.raises(ValueError, match="expected shape"):
        buf.push(jax.numpy.zeros((5, 4, 1)), valid_time=T0, name="bad", record="bad")
