"""Training sequences read on demand from archives and movies: no window crosses a time gap,
an archive built from scans trains, batches drawn ahead on a thread are the same draws."""

from pathlib import Path

import h5py
import numpy as np

from nowcastd.data.archive import build_archive
from nowcastd.data.sequences import SamplerConfig, SequenceSampler, load_movie
from nowcastd.io.transform import DBZ, IDENTITY
from tests.nowcastd.data.test_archive import DOMAIN, SAMPLE

PLAIN = dict(rotations=False, flips=False, time_reversal=False, synthetic_fraction=0.0)


def _numbered_movie(path: Path, times: np.ndarray, size: int = 16) -> Path:
    """Frame i is rain of (i + 1) mm/h everywhere, at time times[i]."""
    frames = np.broadcast_to((np.arange(len(times)) + 1.0)[:, None, None], (len(times), size, size))
    with h5py.File(path, "w") as h:
        d = h.create_dataset("precip", data=frames.astype(np.float32), chunks=(1, 8, 8))
        d.attrs["units"] = "mm/h"
        h.create_dataset("time_unix", data=times.astype(np.int64))
        h.attrs["timestep_seconds"] = 300
    return path


def test_no_window_crosses_a_gap_in_time(tmp_path) -> None:
    times = 300 * np.concatenate([np.arange(0, 6), np.arange(8, 15), [16, 17, 18, 19], [40]])
    movie = load_movie(_numbered_movie(tmp_path / "gaps.h5", times))
    assert isinstance(movie.precip, h5py.Dataset)  # read on demand, not loaded
    cfg = SamplerConfig(total_length=4, height=8, width=8, input_length=2, blocks=(1,), **PLAIN)
    starts = movie.starts(4, 1)
    assert starts.tolist() == [0, 1, 2, 6, 7, 8, 9, 13]  # 3 + 4 + 1 contiguous windows
    clips, _ = next(SequenceSampler([movie], cfg, IDENTITY, 64, np.random.default_rng(1)))
    index = np.rint(clips[:, :, 0, 0, 0]).astype(int) - 1  # the frame each step came from
    assert set(index[:, 0]) == set(starts.tolist())  # every contiguous start is drawn
    for row in index:
        assert np.all(np.diff(times[row]) == 300), times[row]


def test_two_minute_archive_windows_are_contiguous_at_the_stride(tmp_path) -> None:
    times = 120 * np.concatenate([np.arange(0, 12), np.arange(13, 20)])
    with h5py.File(path := tmp_path / "mrms.h5", "w") as h:
        h.create_dataset("precip", data=np.ones((len(times), 16, 16), np.float32))
        h["precip"].attrs["units"] = "mm/h"
        h["time_unix"] = times
        h.attrs["timestep_seconds"] = 120
    movie = load_movie(path)
    assert movie.strides == (2, 3)
    for stride in movie.strides:
        for t0 in movie.starts(3, stride):
            window = times[t0 : t0 + 2 * stride + 1 : stride]
            assert np.all(np.diff(window) == 120 * stride)
    assert movie.starts(3, 3).tolist() == [0, 1, 2, 3, 4, 5, 12]


def test_an_archive_of_scans_trains_and_mixes_with_a_movie(tmp_path) -> None:
    archive = tmp_path / "archive.h5"
    build_archive(SAMPLE[0].parent, archive, domain=DOMAIN)
    movies = [
        load_movie(archive),
        load_movie(_numbered_movie(tmp_path / "m.h5", 300 * np.arange(8))),
    ]
    cfg = SamplerConfig(total_length=4, height=16, width=16, input_length=2, blocks=(1, 2, 4))
    sampler = SequenceSampler(movies, cfg, DBZ, 8, np.random.default_rng(0))
    clips, valid = next(sampler)
    assert clips.shape == valid.shape == (8, 4, 16, 16, 1) and clips.dtype == np.float32
    assert clips.min() >= 0.0 and clips.max() <= 1.0 and np.isfinite(clips).all()
    # the 64 x 64 archive at blocks 1, 2 and 4, the 16 x 16 movie at block 1
    assert [len(c) for c in sampler._choices] == [3, 1]


def test_batches_drawn_ahead_are_the_same_draws_and_resume_after_the_last_one_taken(
    tmp_path,
) -> None:
    path = _numbered_movie(tmp_path / "m.h5", 300 * np.arange(30), size=48)
    cfg = SamplerConfig(total_length=4, height=8, width=8, input_length=2, blocks=(1, 2))

    def sampler(seed: int, prefetch: int) -> SequenceSampler:
        return SequenceSampler(
            [load_movie(path)], cfg, DBZ, 3, np.random.default_rng(seed), prefetch=prefetch
        )

    plain = sampler(4, 0)
    want = [next(plain) for _ in range(5)]
    ahead = sampler(4, 3)
    got = [next(ahead) for _ in range(3)]
    state = ahead.state_dict()  # the thread has drawn further; the state is after batch 3
    resumed = sampler(99, 2)
    resumed.load_state_dict(state)
    got += [next(resumed) for _ in range(2)]
    ahead.close()
    resumed.close()
    for (a, av), (b, bv) in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(av, bv)
