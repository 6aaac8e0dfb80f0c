"""`nowcastd demo`: the whole job on the bundled radar sample, in a few minutes on a laptop CPU.

Trains a small PredRNN-v2 on the first three quarters of the bundled KNMI movie with the real
training loop, scores it against persistence on the held-out last quarter, then issues one
forecast HDF5 from the newest frames through the pipeline `serve` uses (domain, NaN rule,
writer), and prints the timings.
"""

import dataclasses
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import typer

from nowcastd.cli.options import settings_command
from nowcastd.settings import setting, specs


def sample_movie() -> Path:
    return Path(str(resources.files("nowcastd") / "sample" / "knmi_20100826_64px.h5"))


def newest_scans(movie: Path, count: int) -> tuple[list, int]:
    """The movie's newest `count` frames as `Scan`s on the movie's grid, and its time step."""
    import h5py

    from nowcastd.io.readers import GridInfo, Scan

    with h5py.File(movie) as h:
        a = h.attrs
        total = h["precip"].shape[0]
        precip = h["precip"][total - count :].astype("float32")
        times = h["time_unix"][total - count :]
        step = int(a["timestep_seconds"])
        lengths = ("xpixelsize", "ypixelsize", "x1", "y1", "x2", "y2")
        grid = GridInfo(
            shape=precip.shape[1:],
            projection=str(a["projection"]),
            **{key: float(a[key]) for key in lengths},
        )
    scans = [
        Scan(
            field=field,
            valid_time=datetime.fromtimestamp(int(t), UTC),
            grid=grid,
            path=movie.with_name(f"{movie.name}[{total - count + i}]"),
            source_format="movie",
        )
        for i, (field, t) in enumerate(zip(precip, times, strict=True))
    ]
    return scans, step


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSettings:
    out: Path = setting(
        Path("nowcastd-demo"), "directory for checkpoints, figures and the forecast"
    )
    iterations: int = setting(200, "training iterations")


def demo(s: DemoSettings) -> None:
    """Train, evaluate and forecast on the bundled KNMI sample (64x64, 5-min steps)."""
    out, iterations = s.out, s.iterations
    import numpy as np

    from model.config import ModelConfig
    from nowcastd.io.domain import Domain
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.serve.config import ServeConfig
    from nowcastd.serve.pipeline import Pipeline
    from nowcastd.train import loop as training
    from nowcastd.train.config import TrainConfig
    from nowcastd.verification.evaluation import persistence_scores

    movie = sample_movie()
    model = ModelConfig(
        model_name="predrnn_v2",
        num_hidden=(32, 32, 32),
        filter_size=5,
        patch_size=4,
        img_height=64,
        img_width=64,
        layer_norm=False,
        decouple_beta=0.1,
        input_length=4,
        total_length=10,
        reverse_scheduled_sampling=True,
    )
    cfg = TrainConfig(
        model=model,
        train_data_paths=(movie,),
        save_dir=out / "checkpoints",
        max_iterations=iterations,
        display_interval=50,
        test_interval=iterations,
        snapshot_interval=iterations,
        num_save_samples=2,
        lr=1e-3,
        batch_size=4,
        reverse_input=False,
        visual=True,
        valid_fraction=0.25,
        seed=0,
    )
    t0 = time.perf_counter()
    result = training.run(cfg)
    train_s = time.perf_counter() - t0

    loaded = load_model(cfg.save_dir)
    scans, step = newest_scans(movie, model.input_length)
    leads = model.total_length - model.input_length
    serve_cfg = ServeConfig(
        timestep_seconds=step, lead_frames=leads, domain=Domain.full(scans[-1].grid.shape)
    )
    pipe = Pipeline(serve_cfg, loaded)
    pipe.compile(pre_encoding=False)
    for scan in scans:
        pipe.push(pipe.frame(scan))
    forecasts = [pipe.forecast() for _ in range(5)]
    latencies = [f.timings["rollout"] for f in forecasts]
    forecast = forecasts[-1]
    path = pipe.write(forecast, out / "forecasts")
    ev = result.get("eval", {}).get("mean", {})
    valid = training.open_split(cfg, "valid")
    base = persistence_scores(
        valid,
        input_length=model.input_length,
        img_channel=1,
        batch_size=4,
        transform=loaded.transform,
    )["mean"]
    typer.echo("")
    typer.echo(
        f"trained {iterations} iterations in {train_s:.1f} s; last loss {result.get('loss', float('nan')):.5f}"
    )
    if ev:
        typer.echo(
            f"held-out mean over {leads} leads: MAE {ev.get('mae_mm_h', float('nan')):.3f} mm/h, "
            f"CSI(1 mm/h) {ev.get('csi_1_mm_h', float('nan')):.3f}, SSIM {ev.get('ssim', float('nan')):.3f}"
        )
        typer.echo(
            f"persistence on the same frames: MAE {base['mae_mm_h']:.3f} mm/h, "
            f"CSI(1 mm/h) {base['csi_1_mm_h']:.3f}, SSIM {base['ssim']:.3f}"
        )
    typer.echo(
        f"forecast {forecast.valid_times[0]:%H:%M}–{forecast.valid_times[-1]:%H:%M} UTC "
        f"written to {path}"
    )
    typer.echo(
        f"rollout ({model.input_length} in -> {leads} out, 64x64): median {1e3 * float(np.median(latencies)):.1f} ms"
    )
    typer.echo(f"figures in {cfg.save_dir / 'figures'}")


def register(app: typer.Typer) -> None:
    command = settings_command(
        demo, specs(DemoSettings), table="demo", build=lambda v: DemoSettings(**v)
    )
    app.command("demo")(command)
