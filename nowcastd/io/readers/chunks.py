"""Bounded decompression: what a chunked HDF5 dataset may inflate to, checked before HDF5
decompresses any of it.

HDF5's deflate filter inflates a stored chunk until its stream ends, however far past the
declared chunk that is: a 1 MB chunk can hold a stream of 1 GiB of zeros. So before a scan's
dataset is read, `check_inflation` refuses it (`ScanRefused("too_large")`) unless

- its filter pipeline is made of filters whose output this module bounds: shuffle, deflate
  (gzip) and fletcher32, in the order h5py writes them (any other filter, whose output
  nothing here bounds, or another order is refused as `too_large` too);
- each declared chunk lies within the grid (so all of them, inflated, hold less than 4 frames:
  an edge chunk overhangs by less than a chunk), and there are at most `MAX_CHUNKS` of them;
- every stored chunk of a filtered dataset is no larger than a deflate stream of the chunk
  can be (HDF5 reads what is stored before it filters it), and its deflate stream, inflated
  here with a budget of the chunk's bytes (`zlib`'s `max_length`), ends within that budget.

The work per dataset is thus a bounded multiple of the frame's bytes, whatever the file holds:
one chunk at most is inflated here at a time (at most one frame's bytes), then HDF5 inflates
the same streams once more as it reads them.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import h5py
from h5py import h5d, h5z

from nowcastd.io.readers.guard import ReadPolicy, ScanRefused, check_array, printable

__all__ = ["MAX_CHUNKS", "check_inflation", "checked_dataset"]

#: Most chunks a dataset may have: each costs HDF5 an index lookup and a filter call.
MAX_CHUNKS = 4096
#: Filter pipelines whose output is bounded by the chunk, as h5py writes them.
_ORDER = (h5z.FILTER_SHUFFLE, h5z.FILTER_DEFLATE, h5z.FILTER_FLETCHER32)


def _filters(name: str, plist: h5py.h5p.PropDCID) -> list[int]:
    pipeline = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    found = [int(f[0]) for f in pipeline]
    allowed = [f for f in _ORDER if f in found]
    if found != allowed:
        shown = [printable(f[3]) or f"filter {f[0]}" for f in pipeline]
        raise ScanRefused(
            "too_large",
            f"{name}: expected compression of bounded output, by shuffle, gzip and fletcher32 "
            f"(in that order), got {shown}",
        )
    return found


def _check_stream(name: str, stored: bytes, budget: int, where: tuple[int, ...]) -> None:
    """Refuse the deflate stream `stored` unless it inflates to at most `budget` bytes
    (inflating at most `budget` + 1 of them)."""
    inflater = zlib.decompressobj()
    try:
        size = len(inflater.decompress(stored, budget + 1))
    except zlib.error as e:
        raise ScanRefused(
            "corrupt", f"{name}: expected a gzip stream in the chunk at {where}, got {e}"
        ) from e
    if size > budget:
        raise ScanRefused(
            "too_large",
            f"{name}: expected the chunk at {where} to inflate to {budget} bytes, got more",
        )


def check_inflation(name: str, dataset: h5py.Dataset) -> None:
    """Refuse `dataset` (of the file `name`) before any of its data is decompressed unless
    what it inflates to is bounded (module docstring)."""
    name = printable(name)
    plist = dataset.id.get_create_plist()
    if plist.get_layout() != h5d.CHUNKED:
        return  # contiguous or compact: stored as declared, never filtered
    filters = _filters(name, plist)
    chunks, shape = dataset.chunks, dataset.shape
    chunk_bytes = math.prod(chunks) * dataset.dtype.itemsize
    count = math.prod(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))
    if any(c > n for c, n in zip(chunks, shape, strict=True)):
        raise ScanRefused(
            "too_large", f"{name}: expected chunks within the grid {shape}, got {chunks}"
        )
    if count > MAX_CHUNKS:
        raise ScanRefused(
            "too_large", f"{name}: expected at most {MAX_CHUNKS} chunks, got {count} of {chunks}"
        )
    if not filters:
        return  # HDF5 reads a chunk's declared bytes, whatever its index says is stored
    deflate = h5z.FILTER_DEFLATE
    deflate_bit = 1 << filters.index(deflate) if deflate in filters else 0
    fletcher = h5z.FILTER_FLETCHER32
    fletcher_bit = 1 << filters.index(fletcher) if fletcher in filters else 0
    largest = chunk_bytes + (chunk_bytes >> 10) + 68  # a deflate stream of a chunk, checksummed
    stored_chunks = dataset.id.get_num_chunks()
    if stored_chunks > count:
        raise ScanRefused(
            "corrupt", f"{name}: expected at most {count} stored chunks, got {stored_chunks}"
        )
    for i in range(stored_chunks):
        info = dataset.id.get_chunk_info(i)
        if info.size > largest:
            raise ScanRefused(
                "too_large",
                f"{name}: expected stored chunks of at most {largest} bytes, got {info.size}",
            )
        if not deflate_bit or info.filter_mask & deflate_bit:
            continue  # this chunk is stored uncompressed
        _mask, stored = dataset.id.read_direct_chunk(info.chunk_offset)
        checksum = 4 if fletcher_bit and not info.filter_mask & fletcher_bit else 0
        _check_stream(name, stored[: len(stored) - checksum], chunk_bytes, info.chunk_offset)


def checked_dataset(path: Path, dataset: object, allowed: str, policy: ReadPolicy) -> h5py.Dataset:
    """An HDF5 image `dataset` of the file at `path`, refused before any of its data is read
    unless it is a dataset (not a group or named type), a 2-D grid of an `allowed` type in
    bounded chunks (`check_array`) that inflates to a bounded size (`check_inflation`)."""
    if not isinstance(dataset, h5py.Dataset):
        kind = "a group" if isinstance(dataset, h5py.Group) else type(dataset).__name__
        raise ScanRefused("corrupt", f"{printable(path.name)}: expected a dataset, got {kind}")
    check_array(
        path.name, dataset.name, dataset.shape, dataset.dtype, allowed, policy,
        dataset.chunks,
    )  # fmt: skip
    check_inflation(path.name, dataset)
    return dataset
