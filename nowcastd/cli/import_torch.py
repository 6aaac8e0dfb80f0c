"""`nowcastd import-torch`: an official checkpoint or .npz state dict -> a nowcastd checkpoint."""

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import typer

from nowcastd.cli.model_flags import ModelFlags
from nowcastd.cli.options import settings_command
from nowcastd.settings import setting, specs


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportFlags(ModelFlags):
    transform: Literal["identity", "dbz"] = setting(
        "identity", "data transform of the training data"
    )


def import_torch(
    flags: ImportFlags,
    checkpoint: Annotated[
        Path, typer.Argument(help="official model.ckpt-N, or an .npz of state_dict arrays")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="directory of the nowcastd checkpoint to write")
    ],
) -> None:
    """Import official predrnn-pytorch weights, given the run.py flags they were trained with."""
    from nowcastd.io.model_checkpoint import save_inference_checkpoint
    from nowcastd.io.torch_import import load_official_checkpoint
    from nowcastd.io.transform import DataTransform

    cfg = flags.model_config()
    network = load_official_checkpoint(checkpoint, cfg)
    path = save_inference_checkpoint(
        out, network, DataTransform(kind=flags.transform), source=str(checkpoint.name)
    )
    typer.echo(f"wrote {path} ({cfg.model_name}, {len(cfg.num_hidden)}x{cfg.hidden} hidden)")


def register(app: typer.Typer) -> None:
    command = settings_command(
        import_torch, specs(ImportFlags), table="import_torch", build=lambda v: ImportFlags(**v)
    )
    app.command("import-torch")(command)
