"""`nowcastd import-torch`: an official checkpoint or .npz state dict -> a nowcastd checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nowcastd.cli import model_flags as mf
from nowcastd.cli.common import user_errors
from nowcastd.cli.options import Resolver
from nowcastd.io.transform import DataTransform


def import_torch(
    checkpoint: Annotated[
        Path, typer.Argument(help="official model.ckpt-N, or an .npz of state_dict arrays")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="directory of the nowcastd checkpoint to write")
    ],
    transform: Annotated[
        str,
        typer.Option("--transform", help="data transform of the training data: identity or dbz"),
    ] = "identity",
    model_name: mf.ModelName = None,
    num_hidden: mf.NumHidden = None,
    num_layers: mf.NumLayers = None,
    filter_size: mf.FilterSize = None,
    stride: mf.Stride = None,
    patch_size: mf.PatchSize = None,
    img_channel: mf.ImgChannel = None,
    img_width: mf.ImgWidth = None,
    img_height: mf.ImgHeight = None,
    layer_norm: mf.LayerNorm = None,
    decouple_beta: mf.DecoupleBeta = None,
    input_length: mf.InputLength = None,
    total_length: mf.TotalLength = None,
    reverse_scheduled_sampling: mf.ReverseSS = None,
    num_action_ch: mf.NumActionCh = None,
    conv_on_input: mf.ConvOnInput = None,
    res_on_conv: mf.ResOnConv = None,
) -> None:
    """Import official predrnn-pytorch weights, given the run.py flags they were trained with."""
    from nowcastd.io.model_checkpoint import save_inference_checkpoint
    from nowcastd.io.torch_import import load_official_checkpoint

    given = {k: v for k, v in locals().items() if k in mf.MODEL_DEFAULTS}
    r = Resolver(given, {}, mf.MODEL_DEFAULTS)
    cfg = mf.model_config({k: r[k] for k in mf.MODEL_DEFAULTS})
    network = load_official_checkpoint(checkpoint, cfg)
    path = save_inference_checkpoint(
        out, network, DataTransform(kind=transform), source=str(checkpoint.name)
    )
    typer.echo(f"wrote {path} ({cfg.model_name}, {len(cfg.num_hidden)}x{cfg.hidden} hidden)")


def register(app: typer.Typer) -> None:
    app.command("import-torch")(user_errors(import_torch))
