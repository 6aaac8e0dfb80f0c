"""`nowcastd demo`: the real daemon on real radar scans, in a few minutes on a laptop CPU.

A fake radar feed delivers the bundled KNMI sample scans (native 765 x 700 files) one by one,
by rename, into the watch directory of a real `nowcastd serve` process, faster than the
radar's five minutes. The daemon forecasts from each scan; the demo prints each forecast's
latency per stage from the daemon's log, scrapes the daemon's metrics once, scores the
forecast files written against the scans observed later and against persistence, and draws
the newest forecast that can be checked, observed against forecast.

The model is the bundled one (`nowcastd/bundled/model`) when the installation has it;
otherwise, or with `--train`, a small PredRNN-v2 is trained on the spot on the sample movie's
frames before the scans fed (a few minutes on CPU). `--scans DIR --checkpoint DIR` runs the
same on your own data, with the `[reader]` and `[domain]` of `--config` when it has them.
"""

import dataclasses
import logging
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from nowcastd.cli.common import verbose_enabled
from nowcastd.cli.options import Source, settings_command
from nowcastd.settings import setting, specs

#: Where the demo crops the native KNMI grid: the sample movie's 256 km window, 4 km blocks.
KNMI_NATIVE = (765, 700)
SAMPLE_CROP = {"row0": 268, "col0": 248, "height": 256, "width": 256, "block": 4}
ON_THE_SPOT = "trained on the spot (minutes on one night of rain: a toy)"


def sample_movie() -> Path:
    return Path(str(resources.files("nowcastd") / "sample" / "knmi_20100826_64px.h5"))


def sample_scans() -> Path:
    return Path(str(resources.files("nowcastd") / "sample" / "knmi"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSettings:
    out: Path = setting(Path("nowcastd-demo"), "directory for the figure (created)")
    keep: Path | None = setting(
        None,
        "keep the whole run here (scans delivered, forecasts, the daemon's config and log, a "
        "model trained on the spot); default: a temporary directory, removed at the end",
    )
    scans: Path | None = setting(None, "a directory of your own scans instead of the sample")
    checkpoint: Path | None = setting(
        None, "your own checkpoint instead of the bundled model (or one trained on the spot)"
    )
    train: bool = setting(
        False,
        "train a small model on the sample movie first, even with a bundled model",
        switch=True,
    )
    iterations: int = setting(300, "training iterations of a model trained on the spot")
    cadence_seconds: float = setting(
        1.5, "seconds between two scans delivered (the radar's 5 minutes, accelerated)"
    )

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations: expected an integer >= 1, got {self.iterations}")
        if not self.cadence_seconds > 0:
            raise ValueError(f"cadence_seconds: expected a number > 0, got {self.cadence_seconds}")
        if self.train and self.checkpoint is not None:
            raise ValueError("train, checkpoint: expected one of them, got both")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScanFile:
    path: Path
    valid_time: datetime


def _say(text: str = "") -> None:
    typer.echo(text)


def demo(s: DemoSettings, *, source: Source) -> None:
    """Run the real daemon on the bundled KNMI sample scans (or yours) and report.

    Prints each forecast's latency per stage, the daemon's metrics, the forecasts' skill
    against persistence per lead, and the path of a figure of the newest checkable forecast.
    """
    if not verbose_enabled():
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("nowcastd.train.progress").setLevel(logging.INFO)
    work = s.keep or Path(tempfile.mkdtemp(prefix="nowcastd-demo-"))
    try:
        _run(s, source, work)
    finally:
        if s.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _list_scans(scans_dir: Path, reader: Any, domain: Any):
    """The radar scans of `scans_dir` by valid time, the domain, and the observed sequence."""
    import numpy as np

    from nowcastd.errors import DataError, ScanError
    from nowcastd.io.domain import Domain
    from nowcastd.io.readers import read_scan
    from nowcastd.verification.sequence import RadarSequence

    if not scans_dir.is_dir():
        raise DataError(f"{scans_dir}: expected a directory of radar scans, found none")
    found: dict[int, tuple[ScanFile, np.ndarray]] = {}
    skipped = []
    for path in sorted(p for p in scans_dir.iterdir() if p.is_file()):
        try:
            scan = read_scan(
                path,
                fmt=reader.format,
                zr_a=reader.zr_a,
                zr_b=reader.zr_b,
                npy_time_pattern=reader.npy_time_pattern,
                npy_time_format=reader.npy_time_format,
            )
        except ScanError:
            skipped.append(path.name)
            continue
        if domain is None:
            if scan.field.shape == KNMI_NATIVE:
                domain = Domain(native_shape=KNMI_NATIVE, **SAMPLE_CROP)
            else:
                domain = Domain.full(scan.field.shape)
        stamp = int(scan.valid_time.timestamp())
        found[stamp] = (ScanFile(path=path, valid_time=scan.valid_time), domain.apply(scan))
    if len(found) < 2 or domain is None:
        raise DataError(
            f"{scans_dir}: expected at least 2 radar scans, got {len(found)} "
            f"({len(skipped)} other files)"
        )
    times = sorted(found)
    step = Counter(np.diff(times).tolist()).most_common(1)[0][0]
    observed = RadarSequence(
        precip=np.stack([found[t][1] for t in times]),
        time_unix=np.array(times, dtype=np.int64),
        timestep_seconds=int(step),
        source=str(scans_dir),
        domain=domain,
    )
    return [found[t][0] for t in times], domain, observed, skipped


def _train_on_the_spot(work: Path, iterations: int, grid: tuple[int, int]) -> Path:
    """A small PredRNN-v2 trained on the sample movie's frames before the sample scans."""
    from model.config import ModelConfig
    from model.sampling import SamplingConfig
    from nowcastd.train import loop as training
    from nowcastd.train.config import TrainConfig

    half = max(iterations // 2, 1)
    cfg = TrainConfig(
        model=ModelConfig(
            model_name="predrnn_v2",
            num_hidden=(32, 32),
            filter_size=3,
            patch_size=4,
            img_height=grid[0],
            img_width=grid[1],
            layer_norm=False,
            input_length=4,
            total_length=16,
            predict_delta=True,
        ),
        # teacher forcing fades out over the first half, so the model learns to roll out
        sampling=SamplingConfig(sampling_stop_iter=half, sampling_changing_rate=1.0 / half),
        train_data_paths=(sample_movie(),),
        save_dir=work / "checkpoints",
        max_iterations=iterations,
        display_interval=max(iterations // 10, 1),
        test_interval=iterations,
        snapshot_interval=iterations,
        keep_checkpoints=1,
        lr=1e-3,
        batch_size=4,
        reverse_input=False,
        # the last 37 of the movie's 92 frames (04:35 on) are held out: the sample scans
        valid_fraction=0.4,
        seed=0,
    )
    _say(
        f"training a small PredRNN-v2 on the sample movie (00:00-04:30 UTC, {iterations} "
        "iterations; the first one compiles) ..."
    )
    t0 = time.perf_counter()
    result = training.run(cfg)
    _say(
        f"trained in {time.perf_counter() - t0:.0f} s, last loss "
        f"{result.get('loss', float('nan')):.5f}; checkpoint {cfg.save_dir}"
    )
    return cfg.save_dir


def _model(s: DemoSettings, work: Path, grid: tuple[int, int]) -> tuple[Path | None, Any, str]:
    """(checkpoint for the config or None for the bundled one, its ModelConfig, a description)."""
    from model.checkpoint import config_from_json, load_metadata
    from nowcastd.errors import CheckpointError
    from nowcastd.io.model_checkpoint import resolve_checkpoint

    checkpoint, what = s.checkpoint, "your checkpoint"
    if checkpoint is None and not s.train:
        try:
            resolve_checkpoint(None)
            what = "the bundled model"
        except CheckpointError:
            _say("this installation has no bundled model: one is trained on the spot")
            checkpoint = _train_on_the_spot(work, s.iterations, grid)
            what = ON_THE_SPOT
    elif s.train:
        checkpoint = _train_on_the_spot(work, s.iterations, grid)
        what = ON_THE_SPOT
    path = resolve_checkpoint(checkpoint)
    try:
        cfg = config_from_json(load_metadata(path)["model_config"])
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint's metadata: {e}") from e
    return checkpoint, cfg, f"{what}, {path}"


def _run(s: DemoSettings, source: Source, work: Path) -> None:
    from nowcastd.serve.demo import free_port, write_config
    from nowcastd.verification.sequence import read_scan_settings

    scans_dir = s.scans or sample_scans()
    reader, domain = read_scan_settings(source.config)
    scans, domain, observed, skipped = _list_scans(scans_dir, reader, domain)
    step = observed.timestep_seconds
    grid = domain.model_shape
    _say(
        f"scans: {len(scans)} from {scans_dir}, {scans[0].valid_time:%Y-%m-%d %H:%M} to "
        f"{scans[-1].valid_time:%H:%M} UTC, every {step / 60:g} min"
        + (f" ({len(skipped)} other files left out)" if s.scans and skipped else "")
    )
    _say(
        f"domain: rows {domain.row0}..{domain.row0 + domain.height - 1}, columns "
        f"{domain.col0}..{domain.col0 + domain.width - 1} of the native "
        f"{domain.native_shape[0]}x{domain.native_shape[1]} grid, blocks of "
        f"{domain.block}x{domain.block}: a {grid[0]}x{grid[1]} model grid"
    )
    checkpoint, model_cfg, what = _model(s, work, grid)
    n_in, leads = model_cfg.input_length, model_cfg.total_length - model_cfg.input_length
    _say(f"model: {what}; {n_in} scans in, {leads} leads out")
    if len(scans) < n_in + 1:
        from nowcastd.errors import DataError

        raise DataError(
            f"{scans_dir}: expected at least {n_in + 1} scans for one forecast, got {len(scans)}"
        )
    watch, forecasts = work / "incoming", work / "forecasts"
    for directory in (watch, forecasts):
        directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    serve: dict[str, object] = {
        "watch_dir": watch.resolve(),
        "output_dir": forecasts.resolve(),
        "checkpoint": None if checkpoint is None else Path(checkpoint).resolve(),
        "metrics_port": port,
        "lead_frames": leads,
        "timestep_seconds": step,
        "retention_keep_last": 0,
        "retention_max_age_hours": 0,
        "refill_max_age_hours": 0,  # archived scans: the start-up refill takes them at any age
        "events_file": (work / "events.jsonl").resolve(),
    }
    config = write_config(work / "serve.toml", serve=serve, reader=reader, domain=domain)
    _feed_and_report(s, work, config, port, scans, n_in)
    _skill_and_figure(s, forecasts, observed, what)


def _feed_and_report(
    s: DemoSettings, work: Path, config: Path, port: int, scans: list[ScanFile], n_in: int
) -> None:
    from nowcastd.errors import NowcastdError
    from nowcastd.serve.demo import Daemon, deliver, metrics_summary, ready_compilations, scrape

    watch = work / "incoming"
    for scan in scans[: n_in - 1]:  # already there at start-up: the refill reads them
        deliver(scan.path, watch)
    _say(
        f"starting `nowcastd serve --config {config}` (log: {work / 'daemon.log'}); "
        f"{n_in - 1} scans already in its watch directory"
    )
    t0 = time.perf_counter()
    daemon = Daemon(
        config,
        metrics_port=port,
        log_path=work / "daemon.log",
        events_path=work / "events.jsonl",
    )
    try:
        ready = daemon.wait_ready(timeout_seconds=600)
        _say(f"ready after {time.perf_counter() - t0:.1f} s (model loaded and compiled)")
        _say(
            f"delivering {len(scans) - n_in + 1} scans, one every {s.cadence_seconds:g} s; "
            "latency: from the scan's arrival to the forecast file in place; queued: until "
            "the daemon's worker took it (a renamed file is read at once)"
        )
        _say(
            f"{'scan (UTC)':>16} {'latency':>8} {'queued':>7} {'read':>6} {'rollout':>8} "
            f"{'write':>6}  forecast file"
        )
        times = {scan.path.name: scan.valid_time for scan in scans}
        seen = 0
        for scan in scans[n_in - 1 :]:
            deliver(scan.path, watch)
            deadline = time.monotonic() + s.cadence_seconds
            while (event := daemon.next_forecast(deadline - time.monotonic())) is not None:
                seen += 1
                _say(_forecast_row(event, times))
        last = scans[-1].path.name
        while (event := daemon.next_forecast(60.0)) is not None:
            seen += 1
            _say(_forecast_row(event, times))
            if event.scan == last:
                break
        families = scrape(daemon.url)
        _say(f"\nmetrics, one scrape of {daemon.url}:")
        for text in metrics_summary(families, compilations_at_ready=ready_compilations(ready)):
            _say(f"  {text}")
    finally:
        code = daemon.stop()
    if code != 0:
        raise NowcastdError(
            f"the daemon exited with status {code} after SIGTERM; the end of its log:\n"
            f"{daemon.log_tail()}"
        )
    _say(f"SIGTERM: the daemon finished and exited 0 ({seen} forecasts)")


def _forecast_row(event: Any, times: dict[str, datetime]) -> str:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{1e3 * value:.0f}"

    stages = event.seconds
    valid = times.get(event.scan)
    when = f"{valid:%Y-%m-%d %H:%M}" if valid else event.scan
    note = "" if event.pre_encoded else " (not pre-encoded)"
    return (
        f"{when:>16} {ms(event.latency):>5} ms {ms(event.queued):>4} ms "
        f"{ms(stages.get('read')):>3} ms {ms(stages.get('rollout')):>5} ms "
        f"{ms(stages.get('write')):>3} ms  {event.file}{note}"
    )


def _skill_and_figure(s: DemoSettings, forecasts: Path, observed: Any, what: str) -> None:
    import numpy as np

    from nowcastd.errors import DataError
    from nowcastd.io.forecast_file import read_forecast
    from nowcastd.verification.figures import save_forecast_strip
    from nowcastd.verification.forecast_skill import format_skill, score_forecast_files

    files = sorted(forecasts.glob("forecast_*.h5"))
    if not files:
        raise DataError(f"{forecasts}: the daemon wrote no forecast; see its log")
    _say("")
    _say(format_skill(score_forecast_files(files, observed)))
    if what.startswith(ON_THE_SPOT):
        _say(
            "(the model was trained on the spot for minutes: the bundled model is the one to judge)"
        )
    elif what.startswith("the bundled model") and s.scans is None:
        _say(
            "(in-sample: the bundled model was trained on this KNMI event; its scores on an event "
            "it never saw are in nowcastd/bundled/MODEL_CARD.md)"
        )
    index = {int(t): i for i, t in enumerate(observed.time_unix)}
    chosen = files[-1]
    for path in reversed(files):
        f = read_forecast(path)
        if all(int(t.timestamp()) in index for t in f.valid_times):
            chosen = path
            break
    f = read_forecast(chosen)
    nan = np.full(f.precip.shape[1:], np.nan, np.float32)

    def at(t: datetime) -> np.ndarray:
        i = index.get(int(t.timestamp()))
        return nan if i is None else observed.precip[i]

    s.out.mkdir(parents=True, exist_ok=True)
    issue = f.issue_time
    figure = save_forecast_strip(
        s.out / f"forecast_{issue:%Y%m%dT%H%MZ}.png",
        last_input=at(issue),
        observed=np.stack([at(t) for t in f.valid_times]),
        forecast=f.precip,
        issue_time=issue,
        valid_times=f.valid_times,
        title=(
            f"{chosen.name}: observed (top) and forecast (bottom), issued "
            f"{issue:%Y-%m-%d %H:%M} UTC"
        ),
    )
    _say(f"\nfigure: {figure.resolve()}")
    _say(f"(observed against forecast, issued {issue.astimezone(UTC):%H:%M} UTC)")


def register(app: typer.Typer) -> None:
    command = settings_command(
        demo, specs(DemoSettings), table="demo", build=lambda v: DemoSettings(**v)
    )
    app.command("demo")(command)
