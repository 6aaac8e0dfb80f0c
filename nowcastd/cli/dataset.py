"""`nowcastd dataset build`: radar scans or an HDF5 movie -> a .npy clip file at the model size."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from nowcastd.cli.common import user_errors
from nowcastd.cli.options import Resolver, load_toml
from nowcastd.errors import ConfigError, DataError, ScanError
from nowcastd.io.domain import parse_crop

logger = logging.getLogger(__name__)

DATASET_DEFAULTS: dict[str, Any] = {
    "total_length": 20,
    "stride": 1,
    "crop": "",
    "block": 0,
    "size": "",
    "img_width": 0,
    "img_height": 0,
    "transform": "",
    "zr_a": 200.0,
    "zr_b": 1.6,
}

SIZE_RULE = (
    "Size rule (--size HxW, or --img_width/--img_height): the region is --crop or else the whole "
    "field (R_h×R_w); the block is the largest integer b with b·H <= R_h and b·W <= R_w, and the "
    "crop is the b·H × b·W window centred in the region. So a 256×256 movie at --size 40x40 is "
    "cropped to its central 240×240 (offset 8) and averaged over 6×6 blocks, and a native KNMI "
    "765×700 grid at 64x64 becomes its central 640×640 at block 10. Blocks only average down: a "
    "size larger than the region is an error."
)


def _opt(flag: str, help: str):  # noqa: A002
    return typer.Option(flag, help=f"{help} \\[default: {DATASET_DEFAULTS[flag[2:]]!r}]")


def parse_size(text: str) -> tuple[int, int] | None:
    """'HxW' (or 'N' for N×N) -> (height, width); '' -> None; ConfigError otherwise."""
    text = str(text).strip().lower()
    if not text:
        return None
    parts = text.replace("×", "x").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError as e:
        raise ConfigError(f"--size {text!r}: expected HxW, e.g. 64x64") from e
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 1:
        raise ConfigError(f"--size {text!r}: expected HxW with positive integers, e.g. 64x64")
    return hw  # type: ignore[return-value]


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


def _scan_files(directory: Path, skip: set[Path]) -> list[tuple[Path, str]]:
    """(path, format) of the radar files in `directory`, detected by content."""
    from nowcastd.io.atomic import is_ignored_name
    from nowcastd.io.readers import detect_format

    found, ignored = [], []
    for path in sorted(directory.iterdir()):
        if is_ignored_name(path.name) or not path.is_file() or path.resolve() in skip:
            continue
        try:
            found.append((path, detect_format(path)))
        except ScanError:
            ignored.append(path.name)
    if ignored:
        logger.warning(
            "%s: ignoring %d files that are not radar scans: %s",
            directory,
            len(ignored),
            ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else ""),
        )
    if not found:
        raise DataError(
            f"{directory}: no radar scans (KNMI HDF5, ODIM_H5 or single-frame .npy) found"
        )
    return found


def _read_scans(
    files: list[tuple[Path, str]], zr_a: float, zr_b: float
) -> tuple[tuple[int, int], Iterator[tuple[Any, Any]]]:
    """The field shape of the first scan and an iterator of (valid_time, field) over all."""
    from nowcastd.io.readers import read_scan

    def read(path: Path, fmt: str):
        scan = read_scan(path, fmt=fmt, zr_a=zr_a, zr_b=zr_b)
        return scan.valid_time, scan.field

    first = read(*files[0])

    def pairs() -> Iterator[tuple[Any, Any]]:
        yield first
        for path, fmt in files[1:]:
            yield read(path, fmt)

    return tuple(first[1].shape), pairs()  # type: ignore[return-value]


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
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file whose \\[dataset] table sets any flag below"),
    ] = None,
    total_length: Annotated[int | None, _opt("--total_length", "frames per clip T")] = None,
    stride: Annotated[int | None, _opt("--stride", "frames between clip starts")] = None,
    crop: Annotated[
        str | None,
        _opt("--crop", "'row0,col0,height,width' in source pixels, before block averaging"),
    ] = None,
    block: Annotated[
        int | None, _opt("--block", "block-average factor; 0: 1, or chosen by --size")
    ] = None,
    size: Annotated[
        str | None, _opt("--size", "output frame size HxW: picks a centred crop and block")
    ] = None,
    img_width: Annotated[
        int | None, _opt("--img_width", "output width, as --size; 0: not set")
    ] = None,
    img_height: Annotated[
        int | None, _opt("--img_height", "output height with --img_width; 0: --img_width")
    ] = None,
    transform: Annotated[
        str | None,
        _opt(
            "--transform",
            "dbz or identity; empty: dbz for mm/h input, identity for a dimensionless movie",
        ),
    ] = None,
    zr_a: Annotated[
        float | None, _opt("--zr_a", "Z = a·R^b: a, for reflectivity scans (ODIM DBZH)")
    ] = None,
    zr_b: Annotated[float | None, _opt("--zr_b", "Z = a·R^b: b, for reflectivity scans")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Cut radar scans or a movie into a .npy clip file (N, T, H, W, 1) in model units."""
    from nowcastd.cli.common import setup_logging
    from nowcastd.data.build import build_clips
    from nowcastd.io.transform import DataTransform

    given = {k: v for k, v in locals().items() if k in DATASET_DEFAULTS}
    setup_logging(verbose)
    r = Resolver(given, load_toml(config, "dataset", DATASET_DEFAULTS), DATASET_DEFAULTS)
    v = {k: r[k] for k in DATASET_DEFAULTS}

    crop_t = parse_crop(v["crop"], key="--crop")
    target = parse_size(v["size"])
    if target is not None and int(v["img_width"]) and given.get("img_width") is not None:
        raise ConfigError("give --size or --img_width/--img_height, not both")
    if target is None and int(v["img_width"]):
        target = (int(v["img_height"]) or int(v["img_width"]), int(v["img_width"]))
    elif target is None and int(v["img_height"]):
        raise ConfigError("--img_height needs --img_width (or use --size HxW)")
    block_n = int(v["block"])
    if target is not None and block_n:
        raise ConfigError(
            f"--block {block_n} and a target size {target[0]}x{target[1]}: give one of them "
            "(the size picks the block)"
        )
    kind = str(v["transform"]).strip()
    try:
        tf = DataTransform(kind=kind) if kind else None
    except ValueError as e:
        raise ConfigError(f"--transform {kind!r}: expected dbz or identity") from e
    zr_a_v, zr_b_v = float(v["zr_a"]), float(v["zr_b"])
    if not (zr_a_v > 0 and zr_b_v > 0):
        raise ConfigError(f"--zr_a {zr_a_v} --zr_b {zr_b_v}: expected positive numbers")
    if out.suffix != ".npy":
        raise ConfigError(f"--out {out}: expected a path ending in .npy")

    if source.is_dir():
        skip = {out.resolve(), out.with_name(f"{out.stem}_valid_mask.npy").resolve()}
        shape, src = _read_scans(_scan_files(source, skip), zr_a_v, zr_b_v)
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
        total_length=int(v["total_length"]),
        stride=int(v["stride"]),
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
        help="Prepare training and evaluation data: `nowcastd dataset build`.",
        no_args_is_help=True,
        add_completion=False,
    )
    dataset.command("build", help=f"{build.__doc__}\n\n{SIZE_RULE}")(user_errors(build))
    app.add_typer(dataset, name="dataset")
