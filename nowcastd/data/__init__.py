"""Training and evaluation data: clip sets in model units, read lazily from disk.

`clips` holds the core types (`ClipSet`, `WindowedClips`) and the one train/validation split
rule; the sources are `npy_clips`, `movie` and `official_npz`; `loader.open_dataset` picks one
by content and `loader.BatchIterator` draws batches; `build.build_clips` writes ``.npy`` clip
files.
"""
