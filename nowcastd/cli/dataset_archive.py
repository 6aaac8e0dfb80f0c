"""`nowcastd dataset archive`: a directory tree of radar scans -> one chunked HDF5 archive."""

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nowcastd.cli.options import settings_command
from nowcastd.settings import read_config

SHOWN = 5


def _utc(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class _Bar:
    """Files done, scans per second and the time left: a rich bar on a terminal, a line per
    10 % of the files otherwise."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._t0 = time.perf_counter()
        self._tenths = 0

    def __enter__(self) -> "_Bar":
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("archive"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} scans/s, {task.fields[left]} left"),
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f"{(total - done) / rate:.0f} s" if rate > 0 else "-"
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task("archive", total=total, rate="-", left="-")
            self._bar.update(self._task, completed=done, rate=f"{rate:.1f}", left=left)
        elif done * 10 // total > self._tenths:
            self._tenths = done * 10 // total
            typer.echo(f"{done}/{total} files, {rate:.1f} scans/s, {left} left", err=True)


def archive(
    doc: dict[str, Any],
    scan_dir: Annotated[
        Path,
        typer.Argument(
            help="a directory tree of radar scans (KNMI HDF5, ODIM_H5, single-frame .npy; "
            "detected by content unless [reader] says otherwise)"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="the archive to write (.h5)")],
    append: Annotated[
        bool,
        typer.Option(
            "--append/--no-append",
            help="add the scans newer than the archive's newest frame to the existing --out",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="processes that read and compress the scans (default: the cores this "
            "process may use, one per 64 files at most; 1 reads in this process)",
        ),
    ] = None,
) -> None:
    """Write every scan under SCAN_DIR, in time order, into one chunked, compressed HDF5
    archive (precip (T, H, W) mm/h, time_unix, grid), read with --config's [reader] and
    [domain] as serve reads them; gaps are kept, unreadable and duplicate files skipped.
    --workers processes read and compress the scans, so every core works."""
    from nowcastd.data.archive import build_archive
    from nowcastd.io.scan_settings import scan_settings

    reader, domain = scan_settings(doc)
    with _Bar() as bar:
        s = build_archive(
            scan_dir,
            out,
            reader=reader,
            domain=domain,
            append=append,
            progress=bar,
            workers=workers,
        )
    typer.echo(
        f"{'appended to' if append else 'wrote'} {s.path}: {s.added} scans added, {s.frames} "
        f"frames {_utc(s.first_unix)} to {_utc(s.last_unix)}, step {s.timestep_seconds} s, "
        f"{s.gaps} gaps; {s.path.stat().st_size / 1e6:.3g} MB"
    )
    for label, names in (("duplicates", s.duplicates), ("older than the archive", s.older)):
        if names:  # an append over the whole tree skips every file stored before: name a few
            more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            typer.echo(f"  skipped {len(names)} {label}: {', '.join(names[:SHOWN])}{more}")
    if s.unreadable:
        typer.echo(f"  skipped {len(s.unreadable)} unreadable:")
        for name, reason in s.unreadable:
            typer.echo(f"    {name}: {reason.removeprefix(Path(name).name + ': ')}")


def command() -> Any:
    return settings_command(
        archive,
        (),
        table="dataset",
        load=lambda source, required: read_config(source.config, "dataset"),
    )
