"""`ModelConfig`: the frozen, hashable description of one PredRNN network."""

import dataclasses
from collections.abc import Callable
from typing import Any


def invalid(config: object, field: str, allowed: str) -> ValueError:
    """The error for a config field: `ModelConfig.stride=2: must be 1 (...)`."""
    value = getattr(config, field)
    return ValueError(f"{type(config).__name__}.{field}={value!r}: {allowed}")


Rule = tuple[str, Callable[[Any], bool]]
"""What a field's value must be, in words, and the test of it."""


def checked(default: Any, *rules: Rule, help: str = "") -> Any:  # noqa: A002
    """A config field whose value must pass each of `rules` (checked by `check_fields`);
    `help`, if given, is the help of the flag that sets it."""
    meta: dict[str, Any] = {"rules": rules}
    if help:
        meta["help"] = help
    return dataclasses.field(default=default, metadata=meta)


def check_fields(config: Any) -> None:
    """Raise `invalid` for the first rule of a `checked` field, in declaration order, that the
    config's value fails. Rules between fields stay in the config's `__post_init__`."""
    for field in dataclasses.fields(config):
        for allowed, ok in field.metadata.get("rules", ()):
            if not ok(getattr(config, field.name)):
                raise invalid(config, field.name, allowed)


#: Config fields that change only what inference does with the network's output.
INFERENCE_OPTIONS = ("match_intensity",)
#: Config fields that change no parameter: a network's weights may start a run under other
#: values of them (`--pretrained_model`). `match_extrapolation` also changes what training
#: scores, so a resumed run keeps it.
WEIGHTLESS_OPTIONS = ("match_intensity", "match_extrapolation")

MODEL_NAMES = ("predrnn", "predrnn_v2", "action_cond_predrnn", "action_cond_predrnn_v2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything that fixes a network's parameter shapes and its forward computation.

    Heights and widths are in image pixels; the recurrent core runs on the
    `patch_size`-patched grid (and a further 4x smaller one for action models).

    `predict_delta` departs from the official code (off by default): each step predicts the
    change from the frame it was fed, so an untrained network (whose frame decoder starts at
    zero) forecasts persistence and training learns the motion and growth on top of it.
    `match_intensity` (also off by default) post-processes inference forecasts only
    (`model.rollout`): every forecast frame takes the value distribution of the newest input
    frame (probability matching), so a forecast blurred by uncertainty keeps its rain area
    and intensities; training is unchanged.
    `lagrangian` (off by default; it needs `predict_delta`) runs the network in the frame of
    reference that moves with the rain (`model.lagrangian`): the context frames are advected
    to the newest one's time along a motion field given with them, the network forecasts the
    change from there, and each lead is advected forward again. With a zero frame decoder the
    forecast is the semi-Lagrangian extrapolation of the newest frame.
    `match_extrapolation` (off by default; it needs `lagrangian`, and replaces
    `match_intensity`) gives each lead the value distribution of that extrapolation at the same
    lead, the newest frame advected to its time (rank matching, as pysteps' S-PROG and STEPS
    match each lead), inside the jitted rollout: the network decides where rain is, the
    advected observation how much and how strong. Training scores the matched leads (the
    gradient passed straight through the sort), so it is not an inference-only option.
    """

    model_name: str = checked(
        "predrnn_v2", (f"must be one of {MODEL_NAMES}", MODEL_NAMES.__contains__)
    )
    num_hidden: tuple[int, ...] = checked(
        (64, 64, 64, 64),
        ("must be a non-empty tuple of ints", lambda v: isinstance(v, tuple) and bool(v)),
        ("every hidden size must be positive", lambda v: all(n > 0 for n in v)),
        (
            "all hidden sizes must be equal (the zigzag memory passes through every layer)",
            lambda v: len(set(v)) == 1,
        ),
    )
    filter_size: int = checked(
        5, ("must be a positive odd integer", lambda n: n >= 1 and n % 2 == 1)
    )
    stride: int = checked(1, ("must be 1 (other strides break the recurrence)", lambda n: n == 1))
    patch_size: int = checked(4, ("must be >= 1", lambda n: n >= 1))
    img_channel: int = checked(1, ("must be >= 1", lambda n: n >= 1))
    img_height: int = 64
    img_width: int = 64
    layer_norm: bool = False
    decouple_beta: float = checked(0.1, ("must be >= 0", lambda b: b >= 0))
    input_length: int = 10
    total_length: int = 20
    reverse_scheduled_sampling: bool = False
    num_action_ch: int = 4
    conv_on_input: bool = True
    res_on_conv: bool = False
    predict_delta: bool = False
    match_intensity: bool = False
    lagrangian: bool = False
    match_extrapolation: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("img_height", "img_width"):
            size = getattr(self, name)
            if size < 1 or size % self.patch_size:
                raise invalid(
                    self, name, f"must be a positive multiple of patch_size={self.patch_size}"
                )
        if not 1 <= self.input_length < self.total_length:
            raise invalid(
                self,
                "input_length",
                f"must satisfy 1 <= input_length < total_length={self.total_length}",
            )
        if self.lagrangian and not self.predict_delta:
            raise invalid(
                self,
                "lagrangian",
                "needs predict_delta=True (the network corrects an extrapolation)",
            )
        if self.match_extrapolation and not self.lagrangian:
            raise invalid(
                self, "match_extrapolation", "needs lagrangian=True (it matches the advection)"
            )
        if self.match_extrapolation and self.match_intensity:
            raise invalid(
                self,
                "match_extrapolation",
                "replaces match_intensity (both set the forecast's distribution): set one",
            )
        if self.predict_delta and self.is_action:
            raise invalid(self, "predict_delta", "is for models without actions")
        if self.is_action:
            if self.patch_size != 1:
                raise invalid(
                    self,
                    "patch_size",
                    "action models need patch_size=1 (patching interleaves image and action channels)",
                )
            if not self.conv_on_input:
                raise invalid(self, "conv_on_input", "action models need conv_on_input=True")
            if self.num_action_ch < 1:
                raise invalid(self, "num_action_ch", "must be >= 1")
            if self.num_hidden[0] % 2:
                raise invalid(self, "num_hidden", "action models need an even hidden size")
            for name in ("img_height", "img_width"):
                if getattr(self, name) % 4:
                    raise invalid(
                        self, name, "action models need a multiple of 4 (two stride-2 convs)"
                    )

    @property
    def is_action(self) -> bool:
        return self.model_name.startswith("action_cond")

    @property
    def is_v2(self) -> bool:
        return self.model_name.endswith("_v2")

    @property
    def num_layers(self) -> int:
        return len(self.num_hidden)

    @property
    def hidden(self) -> int:
        return self.num_hidden[0]

    @property
    def patch_channels(self) -> int:
        """Channels of one patched frame, p*p*C (image channels only)."""
        return self.patch_size * self.patch_size * self.img_channel

    @property
    def patch_shape(self) -> tuple[int, int]:
        return self.img_height // self.patch_size, self.img_width // self.patch_size

    @property
    def rnn_shape(self) -> tuple[int, int]:
        """The spatial size at which the recurrent cells run."""
        hp, wp = self.patch_shape
        return (hp // 4, wp // 4) if self.is_action else (hp, wp)

    @property
    def mask_length(self) -> int:
        """Time steps of the sampling mask: T-2 for RSS (and every action model), else T-I-1."""
        if self.uses_rss_mask:
            return self.total_length - 2
        return self.total_length - self.input_length - 1

    @property
    def uses_rss_mask(self) -> bool:
        return self.reverse_scheduled_sampling or self.is_action

    @property
    def output_length(self) -> int:
        return self.total_length - self.input_length
