"""`nowcastd dataset build`: radar scans or an HDF5 movie -> a .npy clip file at the model size."""

import dataclasses
import logging
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from nowcastd.cli import dataset_archive
from nowcastd.cli.options import settings_command
from nowcastd.errors import ConfigError, DataError
from nowcastd.settings import setting, specs

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (or 'N' for N×N) -> (height, width); ValueError otherwise."""
    parts = text.strip().lower().replace("×", "x").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError("expected HxW with positive integers, e.g. 64x64")
    return hw


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetSettings:
    total_length: int = setting(20, "frames per clip T")
    stride: int = setting(1, "frames between clip starts")
    crop: tuple[int, int, int, int] | None = setting(
        None, "row0,col0,height,width in source pixels, before block averaging"
    )
    block: int = setting(0, "block-average factor; 0: 1, or chosen by --size")
    size: tuple[int, int] | None = setting(
        None, "output frame size HxW: picks a centred crop and block", parse=parse_size
    )
    img_width: int = setting(0, "output width, as --size; 0: not set")
    img_height: int = setting(0, "output height with --img_width; 0: --img_width")
    transform: Literal["dbz", "identity"] | None = setting(
        None, "dbz or identity; unset: dbz for mm/h input, identity for a dimensionless movie"
    )
    zr_a: float = setting(200.0, "Z = a·R^b: a, for reflectivity scans (ODIM DBZH)")
    zr_b: float = setting(1.6, "Z = a·R^b: b, for reflectivity scans")

    def __post_init__(self) -> None:
        for name in ("zr_a", "zr_b"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)}")

    def target(self) -> tuple[int, int] | None:
        """The output frame size asked for, by --size or --img_width/--img_height."""
        if self.size is not None and (self.img_width or self.img_height):
            raise ConfigError("--size: expected --size or --img_width/--img_height, got both")
        if self.size is None and self.img_height and not self.img_width:
            raise ConfigError("--img_height: expected --img_width too (or --size HxW), got none")
        target = self.size
        if target is None and self.img_width:
            target = (self.img_height or self.img_width, self.img_width)
        if target is not None and self.block:
            raise ConfigError(
                f"--block: expected no block with a target size {target[0]}x{target[1]} "
                f"(the size picks the block), got {self.block}"
            )
        return target


SIZE_RULE = (
    "Size rule (--size HxW, or --img_width/--img_height): the region is --crop or else the whole "
    "field (R_h×R_w); the block is the largest integer b with b·H <= R_h and b·W <= R_w, and the "
    "crop is the b·H × b·W window centred in the region. So a 256×256 movie at --size 40x40 is "
    "cropped to its central 240×240 (offset 8) and averaged over 6×6 blocks, and a native KNMI "
    "765×700 grid at 64x64 becomes its central 640×640 at block 10. Blocks only average down: a "
    "size larger than the region is an error."
)


def size_geometry(
    field_shape: tuple[int, int],
    size: tuple[int, int],
    crop: tuple[int, int, int, int] | None = None,
) -> tuple[tuple[int, int, int, int], int]:
    """The centred crop and integer block that turn `field_shape` (or `crop` of it) into `size`.

    See `SIZE_RULE`. Raises ConfigError when the region is smaller than `size`.
    """
    r0, c0, rh, rw = (0, 0, *field_shape) if crop is None else crop
    h, w = size
    block = min(rh // h, rw // w)
    if block < 1:
        raise ConfigError(
            f"--size {h}x{w}: larger than the {rh}×{rw} region; blocks only average down, "
            "choose a smaller size or a larger --crop"
        )
    ch, cw = h * block, w * block
    return (r0 + (rh - ch) // 2, c0 + (rw - cw) // 2, ch, cw), block


def _read_scans(
    directory: Path, skip: frozenset[Path], zr_a: float, zr_b: float
) -> "tuple[tuple[int, int], list[tuple[datetime, np.ndarray]]]":
    """The field shape most scans of `directory` share and (valid_time, field) of each scan of
    that shape (`ScanDirectory`: detected by content, the rest skipped). A scan of another
    shape, or valid at the time of a scan before it (by name), is skipped and named: one file
    does not end the build."""
    from nowcastd.io.readers import printable
    from nowcastd.io.scan_directory import ScanDirectory
    from nowcastd.io.scan_settings import ReaderConfig

    scans = list(
        ScanDirectory(
            directory=directory, reader=ReaderConfig(zr_a=zr_a, zr_b=zr_b), skip=skip
        ).scans()
    )
    if not scans:
        raise DataError(
            f"{directory}: no radar scans (KNMI HDF5, ODIM_H5 or single-frame .npy) found"
        )
    shape = Counter(scan.field.shape for scan in scans).most_common(1)[0][0]
    pairs: list[tuple[datetime, np.ndarray]] = []
    seen: set[datetime] = set()
    for scan in scans:
        why = None
        if scan.field.shape != shape:
            why = f"expected the grid {shape} of the other scans, got {scan.field.shape}"
        elif scan.valid_time in seen:
            why = (
                f"expected one scan per valid time, got {scan.valid_time:%Y-%m-%dT%H:%M:%SZ} again"
            )
        if why is not None:
            logger.warning("skipping %s: %s", printable(scan.path.name), why)
            continue
        seen.add(scan.valid_time)
        pairs.append((scan.valid_time, scan.field))
    return shape, pairs


def _movie_shape(path: Path) -> tuple[int, int]:
    import h5py

    try:
        if not h5py.is_hdf5(path):
            raise DataError(
                f"{path.name}: expected a directory of radar scans or an HDF5 movie with a "
                "'precip' dataset (T, H, W)"
            )
        with h5py.File(path, "r") as h:
            ds = h.get("precip")
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                raise DataError(
                    f"{path.name}: an HDF5 file without a 'precip' dataset (T, H, W); for "
                    "single radar scans pass their directory"
                )
            return int(ds.shape[1]), int(ds.shape[2])
    except OSError as e:
        raise DataError(f"{path.name}: cannot read as HDF5: {e}") from e


def build(
    s: DatasetSettings,
    source: Annotated[
        Path,
        typer.Argument(
            help="a directory of radar scans (KNMI HDF5, ODIM_H5, single-frame .npy; detected by "
            "content, sorted by valid time) or an HDF5 movie with 'precip' (T, H, W)"
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="the .npy clip file to write (sidecar <stem>.json too)")
    ],
) -> None:
    """Cut radar scans or a movie into a .npy clip file (N, T, H, W, 1) in model units."""
    from nowcastd.data.build import build_clips
    from nowcastd.io.transform import DataTransform

    target = s.target()
    crop_t, block_n = s.crop, s.block
    tf = DataTransform(kind=s.transform) if s.transform else None
    if out.suffix != ".npy":
        raise ConfigError(f"--out: expected a path ending in .npy, got {str(out)!r}")

    src: Path | list[tuple[datetime, np.ndarray]]
    if source.is_dir():
        skip = frozenset({out.resolve(), out.with_name(f"{out.stem}_valid_mask.npy").resolve()})
        shape, src = _read_scans(source, skip, s.zr_a, s.zr_b)
    elif source.is_file():
        shape, src = _movie_shape(source), source
    else:
        raise DataError(f"{source}: no such file or directory")

    if target is not None:
        crop_t, block_n = size_geometry(shape, target, crop_t)
        logger.info("size %dx%d from %dx%d: crop %s, block %d", *target, *shape, crop_t, block_n)
    path = build_clips(
        src,
        out,
        total_length=s.total_length,
        stride=s.stride,
        crop=crop_t,
        block=block_n or 1,
        transform=tf,
    )
    _report(path)


def _report(path: Path) -> None:
    import json

    side = json.loads(path.with_suffix(".json").read_text())
    n, t, h, w, c = side["shape"]
    mb = path.stat().st_size / 1e6
    crop = side.get("crop")
    geometry = f"crop {','.join(map(str, crop))}, " if crop else ""
    typer.echo(
        f"wrote {path}: {n} clips of {t} frames, shape ({n}, {t}, {h}, {w}, {c}), {mb:.3g} MB; "
        f"{geometry}block {side['block']}, transform {side['transform']['kind']}, "
        f"time step {side.get('timestep_seconds')} s"
    )
    if side.get("valid_mask"):
        typer.echo(
            f"  {side['missing_fraction']:.1%} of pixels missing (0 in the clips): "
            f"mask {side['valid_mask']}"
        )


def register(app: typer.Typer) -> None:
    dataset = typer.Typer(
        name="dataset",
        help="Prepare training and evaluation data: `nowcastd dataset build`, `nowcastd dataset archive`.",
        no_args_is_help=True,
        add_completion=False,
    )
    command = settings_command(
        build, specs(DatasetSettings), table="dataset", build=lambda v: DatasetSettings(**v)
    )
    dataset.command("build", help=f"{build.__doc__}\n\n{SIZE_RULE}")(command)
    dataset.command("archive")(dataset_archive.command())
    app.add_typer(dataset, name="dataset")
