"""`nowcastd import-torch`: an official checkpoint or .npz state dict -> a nowcastd checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nowcastd.commands import user_errors
from nowcastd.commands.model_flags import (
    MODEL_DEFAULTS,
    ConvOnInput,
    DecoupleBeta,
    FilterSize,
    ImgChannel,
    ImgHeight,
    ImgWidth,
    InputLength,
    LayerNorm,
    ModelName,
    NumActionCh,
    NumHidden,
    NumLayers,
    PatchSize,
    ResOnConv,
    ReverseSS,
    Stride,
    TotalLength,
    model_config,
)
from nowcastd.commands.options import Resolver
from nowcastd.transform import DataTransform


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
    model_name: ModelName = None,
    num_hidden: NumHidden = None,
    num_layers: NumLayers = None,
    filter_size: FilterSize = None,
    stride: Stride = None,
    patch_size: PatchSize = None,
    img_channel: ImgChannel = None,
    img_width: ImgWidth = None,
    img_height: ImgHeight = None,
    layer_norm: LayerNorm = None,
    decouple_beta: DecoupleBeta = None,
    input_length: InputLength = None,
    total_length: TotalLength = None,
    reverse_scheduled_sampling: ReverseSS = None,
    num_action_ch: NumActionCh = None,
    conv_on_input: ConvOnInput = None,
    res_on_conv: ResOnConv = None,
) -> None:
    """Import official predrnn-pytorch weights, given the run.py flags they were trained with."""
    from nowcastd.modelio import save_inference_checkpoint
    from nowcastd.torch_import import load_official_checkpoint

    given = {k: v for k, v in locals().items() if k in MODEL_DEFAULTS}
    r = Resolver(given, {}, MODEL_DEFAULTS)
    cfg = model_config({k: r[k] for k in MODEL_DEFAULTS})
    network = load_official_checkpoint(checkpoint, cfg)
    path = save_inference_checkpoint(
        out, network, DataTransform(kind=transform), source=str(checkpoint.name)
    )
    typer.echo(f"wrote {path} ({cfg.model_name}, {len(cfg.num_hidden)}x{cfg.hidden} hidden)")


def register(app: typer.Typer) -> None:
    app.command("import-torch")(user_errors(import_torch))
