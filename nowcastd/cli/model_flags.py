"""run.py's network flags, declared once (for `train` and `import-torch`), and their ModelConfig."""

import dataclasses
from typing import Literal

from model.config import ModelConfig
from nowcastd.cli.options import build_error
from nowcastd.errors import ConfigError
from nowcastd.settings import setting

ModelName = Literal["predrnn", "predrnn_v2", "action_cond_predrnn", "action_cond_predrnn_v2"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelFlags:
    """The 17 flags of run.py that shape the network, typed, with run.py's defaults (its
    layer_norm default is 1; its shipped scripts pass 0), plus --num_layers (checked against
    --num_hidden), --img_height (0: square, as run.py) and nowcastd's --predict_delta,
    --match_intensity, --lagrangian and --match_extrapolation."""

    model_name: ModelName = setting("predrnn", "the network")
    num_hidden: tuple[int, ...] = setting(
        (64, 64, 64, 64), "hidden channels per layer, comma-separated, all equal"
    )
    num_layers: int = setting(0, "number of layers, checked against --num_hidden; 0: not checked")
    filter_size: int = setting(5, "odd convolution size")
    stride: int = setting(1, "cell convolution stride; must be 1")
    patch_size: int = setting(4, "space-to-depth patch size")
    img_channel: int = setting(1, "image channels")
    img_width: int = setting(64, "frame width in pixels")
    img_height: int = setting(0, "frame height in pixels, for non-square grids; 0: --img_width")
    layer_norm: bool = setting(
        True, "1: LayerNorm after each cell conv (run.py's default); 0: none, fully convolutional"
    )
    decouple_beta: float = setting(0.1, "weight of the v2 decoupling loss")
    input_length: int = setting(10, "context frames I")
    total_length: int = setting(20, "frames per clip T (I context + T-I future)")
    reverse_scheduled_sampling: bool = setting(
        False, "1: reverse scheduled sampling; 0: scheduled sampling"
    )
    num_action_ch: int = setting(4, "action channels of action models")
    conv_on_input: bool = setting(
        False, "action models: stride-2 conv encoder/decoder (always on for them)"
    )
    res_on_conv: bool = setting(False, "action models: encoder-decoder skips")
    predict_delta: bool = setting(
        False,
        "1: each step predicts the change from the frame it was fed, starting from persistence "
        "(a departure from the official code)",
    )
    match_intensity: bool = setting(
        False,
        "1: inference forecasts take the value distribution of the newest input frame "
        "(probability matching; training unchanged, may be switched on when resuming)",
    )
    lagrangian: bool = setting(
        False,
        "1: the network corrects an optical-flow extrapolation in the frame moving with the "
        "rain (needs --predict_delta 1; a departure from the official code)",
    )
    match_extrapolation: bool = setting(
        False,
        "1: with --lagrangian 1, each lead takes the value distribution of the newest frame "
        "advected to its time (rank matching, as S-PROG; training scores the matched leads)",
    )

    def model_config(self) -> ModelConfig:
        """The typed network config; ConfigError naming the flag on a bad combination."""
        if self.num_layers and self.num_layers != len(self.num_hidden):
            raise ConfigError(
                f"--num_layers: expected {len(self.num_hidden)}, the number of --num_hidden "
                f"sizes {','.join(map(str, self.num_hidden))}, got {self.num_layers}"
            )
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig)}
        values["img_height"] = self.img_height or self.img_width
        # the only working mode of the official action models
        values["conv_on_input"] = self.conv_on_input or self.model_name.startswith("action_cond")
        try:
            return ModelConfig(**values)
        except ValueError as e:
            raise build_error(e, ModelConfig) from e


MODEL_FLAGS = tuple(f.name for f in dataclasses.fields(ModelFlags))
