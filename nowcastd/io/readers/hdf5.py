"""What the HDF5 readers (`knmi`, `odim`) check alike when they take values out of a file."""

from pathlib import Path

import h5py
import numpy as np

from nowcastd.errors import ScanError

__all__ = ["image_values"]


def image_values(path: Path, dataset: h5py.Dataset, kinds: str, what: str) -> np.ndarray:
    """The values of an image `dataset` in the file at `path`; ScanError unless it is 2-D with
    a dtype kind in `kinds` (`what` names them: "integer", "numeric")."""
    if dataset.ndim != 2 or dataset.dtype.kind not in kinds:
        raise ScanError(
            f"{path.name}: expected {dataset.name} as a 2-D {what} array, "
            f"got {dataset.dtype} with shape {dataset.shape}"
        )
    return dataset[...]
