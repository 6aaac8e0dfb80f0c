"""`nowcastd demo`: the whole job on the bundled radar sample, in a few minutes on a laptop CPU.

Trains a small PredRNN-v2 on the first three quarters of the bundled KNMI movie with the real
training loop, scores it against persistence on the held-out last quarter, then issues one
forecast HDF5 from the newest frames exactly as `serve` would, and prints the timings.
"""

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import typer

from nowcastd.cli.options import settings_command
from nowcastd.settings import setting, specs


def sample_movie() -> Path:
    return Path(str(resources.files("nowcastd") / "sample" / "knmi_20100826_64px.h5"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSettings:
    out: Path = setting(
        Path("nowcastd-demo"), "directory for checkpoints, figures and the forecast"
    )
    iterations: int = setting(200, "training iterations")


def demo(s: DemoSettings) -> None:
    """Train, evaluate and forecast on the bundled KNMI sample (64x64, 5-min steps)."""
    out, iterations = s.out, s.iterations
    import h5py
    import jax.numpy as jnp
    import numpy as np

    from model.config import ModelConfig
    from model.rollout import rollout_jit
    from nowcastd.io.forecast_file import write_forecast
    from nowcastd.io.model_checkpoint import load_model
    from nowcastd.io.readers import GridInfo
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
    with h5py.File(movie) as h:
        precip = h["precip"][-model.input_length :]
        times = [datetime.fromtimestamp(int(t), UTC) for t in h["time_unix"][-model.input_length :]]
        step = int(h.attrs["timestep_seconds"])
        a = h.attrs
        grid = GridInfo(
            shape=precip.shape[1:],
            projection=str(a["projection"]),
            xpixelsize=float(a["xpixelsize"]),
            ypixelsize=float(a["ypixelsize"]),
            x1=float(a["x1"]),
            y1=float(a["y1"]),
            x2=float(a["x2"]),
            y2=float(a["y2"]),
        )
    context = jnp.asarray(loaded.transform.to_model(precip)[None, ..., None])
    leads = model.total_length - model.input_length
    rollout_jit(loaded.network, context, leads).block_until_ready()  # compile
    latencies = []
    for _ in range(5):
        t = time.perf_counter()
        forecast = rollout_jit(loaded.network, context, leads).block_until_ready()
        latencies.append(time.perf_counter() - t)
    rate = np.asarray(loaded.transform.to_physical(np.asarray(forecast[0, ..., 0])))
    path = write_forecast(
        out / "forecasts",
        issue_time=times[-1],
        precip=rate.astype(np.float32),
        lead_seconds=[step * (k + 1) for k in range(leads)],
        input_names=[f"{movie.name}[{i}]" for i in range(92 - model.input_length, 92)],
        input_times=times,
        model_name=model.model_name,
        checkpoint_digest=loaded.digest,
        grid=grid,
        nan_mask=None,
    )
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
        f"forecast {times[-1] + timedelta(seconds=step):%H:%M}–"
        f"{times[-1] + timedelta(seconds=step * leads):%H:%M} UTC written to {path}"
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
