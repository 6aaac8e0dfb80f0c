"""run.py's network flags, spelled as in run.py, and their translation into a ModelConfig."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from model.config import ModelConfig
from model.torch_compat import RUN_MODEL_DEFAULTS, config_from_run_flags
from nowcastd.errors import ConfigError

# run.py's defaults (its layer_norm default is 1; its shipped scripts pass 0), plus
# --num_layers (checked against --num_hidden) and --img_height (0: square, as run.py).
MODEL_DEFAULTS: dict[str, Any] = {**RUN_MODEL_DEFAULTS, "num_layers": 0, "img_height": 0}

ModelName = Annotated[
    str | None,
    typer.Option(
        "--model_name",
        help="predrnn, predrnn_v2, action_cond_predrnn or action_cond_predrnn_v2 \\[default: predrnn]",
    ),
]
NumHidden = Annotated[
    str | None,
    typer.Option(
        "--num_hidden",
        help="hidden channels per layer, comma-separated, all equal \\[default: 64,64,64,64]",
    ),
]
NumLayers = Annotated[
    int | None, typer.Option("--num_layers", help="number of layers; checked against --num_hidden")
]
FilterSize = Annotated[
    int | None, typer.Option("--filter_size", help="odd convolution size \\[default: 5]")
]
Stride = Annotated[
    int | None, typer.Option("--stride", help="cell convolution stride; must be 1 \\[default: 1]")
]
PatchSize = Annotated[
    int | None, typer.Option("--patch_size", help="space-to-depth patch size \\[default: 4]")
]
ImgChannel = Annotated[
    int | None, typer.Option("--img_channel", help="image channels \\[default: 1]")
]
ImgWidth = Annotated[
    int | None, typer.Option("--img_width", help="frame width in pixels \\[default: 64]")
]
ImgHeight = Annotated[
    int | None,
    typer.Option(
        "--img_height", help="frame height in pixels, for non-square grids \\[default: --img_width]"
    ),
]
LayerNorm = Annotated[
    int | None,
    typer.Option(
        "--layer_norm",
        help="1: LayerNorm after each cell conv (as run.py's default); 0: none, fully convolutional \\[default: 1]",
    ),
]
DecoupleBeta = Annotated[
    float | None,
    typer.Option("--decouple_beta", help="weight of the v2 decoupling loss \\[default: 0.1]"),
]
InputLength = Annotated[
    int | None, typer.Option("--input_length", help="context frames I \\[default: 10]")
]
TotalLength = Annotated[
    int | None,
    typer.Option(
        "--total_length", help="frames per clip T (I context + T-I future) \\[default: 20]"
    ),
]
ReverseSS = Annotated[
    int | None,
    typer.Option(
        "--reverse_scheduled_sampling",
        help="1: reverse scheduled sampling; 0: scheduled sampling \\[default: 0]",
    ),
]
NumActionCh = Annotated[
    int | None,
    typer.Option("--num_action_ch", help="action channels of action models \\[default: 4]"),
]
ConvOnInput = Annotated[
    int | None,
    typer.Option(
        "--conv_on_input",
        help="action models: stride-2 conv encoder/decoder (must be 1 for them) \\[default: 0]",
    ),
]
ResOnConv = Annotated[
    int | None,
    typer.Option("--res_on_conv", help="action models: encoder-decoder skips \\[default: 0]"),
]


def model_config(values: dict[str, Any]) -> ModelConfig:
    """Typed config from resolved flag values; ConfigError with the flag's name on a bad one."""
    flags = dict(values)
    hidden = [h for h in str(flags["num_hidden"]).split(",") if h.strip()]
    try:
        hidden = [int(h) for h in hidden]
    except ValueError as e:
        raise ConfigError(
            f"--num_hidden {flags['num_hidden']!r}: expected comma-separated ints"
        ) from e
    layers = int(flags.pop("num_layers") or 0)
    if layers and layers != len(hidden):
        raise ConfigError(
            f"--num_layers {layers} but --num_hidden lists {len(hidden)} sizes: {hidden}"
        )
    flags["num_hidden"] = ",".join(map(str, hidden))
    if not flags.get("img_height"):
        flags["img_height"] = flags["img_width"]
    if str(flags["model_name"]).startswith("action_cond") and not int(flags["conv_on_input"]):
        flags["conv_on_input"] = 1  # the only working mode of the official action models
    try:
        return config_from_run_flags(flags)
    except ValueError as e:
        raise ConfigError(str(e)) from e
