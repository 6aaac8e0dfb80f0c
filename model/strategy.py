"""`Strategy`: how a compiled program runs on its machine, as opposed to what it computes.

Every field but one changes speed, not values (beyond float rounding): which of XLA's CPU
fusions the compiler may use, how the convolutions' weight gradients are split, and whether time
loops are unrolled. Which one is fastest depends on the CPU (and the shapes), so
`nowcastd.strategy` times them on the machine itself, one setting of `axes` at a time;
`DEFAULT` is the rule that holds when nothing was measured. The exception is `bf16`, which the
user opts into: the convolutions multiply in bfloat16, which changes values by more than
float32 rounding, so no search turns it on.

A strategy is a static value with two parts: its trace-time part (the weight-gradient chunk,
the unrolling, bfloat16) is an argument of every program, and its compile-time part
(`compiler_options`: the YNN fusions) goes to XLA. `model.compile.compile_program` applies both,
so each strategy traces and compiles its own program; the network carries none.
"""

import dataclasses

from model.config import ModelConfig
from model.layers import WGRAD_CHUNK

#: XLA's CPU option that routes convolutions (with their neighbours) through YNN fusions; an
#: empty value turns them off. Other backends ignore it.
YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"

#: Weight-gradient chunk sizes the search tries (0: one convolution over all outputs).
WGRAD_CHUNKS = (0, 64, 96, 128)

_WORDS = {True: "on", False: "off", None: "auto"}
_VALUES = {word: value for value, word in _WORDS.items()}
_EXPECTED = (
    "expected 'default' or comma-separated settings among ynn=on|off|auto, wgrad=N (output "
    "channels per weight-gradient convolution, 0: all at once), unroll=on|off|auto and "
    "bf16=on|off (bfloat16 convolutions), such as 'ynn=off,wgrad=96'"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Strategy:
    """How one program is compiled; `None` means the program's own rule.

    `ynn`: XLA's YNN fusions on the CPU (None: off for float32 inference programs, where the
    radar rollout ran 1.3x faster without them, and XLA's default, on, for the training step and
    for bfloat16).
    `wgrad_chunk`: output channels per weight-gradient convolution (`model.layers`; 0: one
    convolution over all of them). `unroll`: unroll the time loops (None: inference unrolls,
    the training step unrolls when its per-step states are small, `unroll_training`).
    `bf16`: the k x k convolutions multiply in bfloat16 with float32 sums (`model.layers`),
    which changes values; off unless the user sets it.
    """

    ynn: bool | None = None
    wgrad_chunk: int = WGRAD_CHUNK
    unroll: bool | None = None
    bf16: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.wgrad_chunk, int) or self.wgrad_chunk < 0:
            raise ValueError(
                f"Strategy.wgrad_chunk={self.wgrad_chunk!r}: must be an integer >= 0 "
                "(0: one convolution over all outputs)"
            )

    @property
    def name(self) -> str:
        """`ynn=off,wgrad=96,unroll=auto` (`,bf16=on` when set): what `parse_strategy` reads."""
        name = f"ynn={_WORDS[self.ynn]},wgrad={self.wgrad_chunk},unroll={_WORDS[self.unroll]}"
        return name + (",bf16=on" if self.bf16 else "")

    def ynn_on(self, *, inference: bool) -> bool:
        """Whether XLA's YNN fusions are on: as set, else off for float32 inference only (the
        bfloat16 matmuls reach the CPU's bfloat16 units through them: 2-6x slower without)."""
        if self.ynn is not None:
            return self.ynn
        return self.bf16 or not inference

    def compiler_options(self, *, inference: bool) -> dict[str, str]:
        """XLA options of a program compiled with this strategy (`inference`: no gradients)."""
        return {} if self.ynn_on(inference=inference) else {YNN_OPTION: ""}

    def resolved(self, cfg: ModelConfig, batch: int, *, inference: bool) -> "Strategy":
        """The same program with every rule decided for `cfg` at `batch`: strategies with
        equal `resolved` values compile to the same program. Inference takes no weight
        gradient, nor does bfloat16 split one; a chunk as wide as the widest convolution is no
        chunk."""
        ynn = self.ynn_on(inference=inference)
        if inference or self.bf16:
            chunk = 0
        else:
            chunk = 0 if self.wgrad_chunk >= max_conv_outputs(cfg) else self.wgrad_chunk
        steps = cfg.total_length - 1
        unroll = self.unrolls(cfg, batch, cfg.patch_shape, steps, inference=inference)
        return Strategy(ynn=ynn, wgrad_chunk=chunk, unroll=unroll, bf16=self.bf16)

    def unrolls(
        self, cfg: ModelConfig, batch: int, hw: tuple[int, int], steps: int, *, inference: bool
    ) -> bool:
        """Whether a time loop over `steps` steps of `hw` patched frames is unrolled: as set,
        else always for inference (no step keeps anything for a backward pass, so the unrolled
        program reuses its buffers) and for small training loops (`unroll_training`)."""
        if self.unroll is not None:
            return self.unroll
        return inference or unroll_training(cfg, batch, hw, steps)


DEFAULT = Strategy()


def parse_strategy(text: str) -> Strategy:
    """A strategy from its name (`Strategy.name`, any subset of its settings, or 'default')."""
    words = text.strip()
    if words == "default":
        return DEFAULT
    fields: dict[str, bool | int | None] = {}
    for item in words.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key in fields or (key == "wgrad" and "wgrad_chunk" in fields):
            raise ValueError(f"strategy {text!r}: {_EXPECTED}")
        if key == "bf16" and value in ("on", "off"):
            fields[key] = value == "on"
        elif key in ("ynn", "unroll") and value in _VALUES:
            fields[key] = _VALUES[value]
        elif key == "wgrad" and value.isdigit():
            fields["wgrad_chunk"] = int(value)
        else:
            raise ValueError(f"strategy {text!r}: {_EXPECTED}")
    return Strategy(**fields)  # type: ignore[arg-type]


def max_conv_outputs(cfg: ModelConfig) -> int:
    """Output channels of the widest convolution with a chunked weight gradient (a cell's
    gates: 4 x hidden fused, 7 x hidden with layer norm or actions)."""
    fused = not cfg.layer_norm and not cfg.is_action
    return (4 if fused else 7) * cfg.hidden


# Training time loops whose per-step states total at most this many values are unrolled: XLA
# then schedules and fuses across steps and stacks no per-step buffers (the seed configuration's
# training step ran about 8 % faster). Larger ones stay a loop: the radar configuration's
# unrolled training step took twice as long, its buffers no longer reused between steps.
UNROLL_MAX_VALUES = 1 << 21


def unroll_training(cfg: ModelConfig, batch: int, hw: tuple[int, int], steps: int) -> bool:
    """The default rule of the training step's time loop over `steps` steps of `hw` patched
    frames: unroll small ones."""
    values = batch * hw[0] * hw[1] * cfg.hidden * cfg.num_layers * steps
    return values <= UNROLL_MAX_VALUES


Axis = tuple[str, tuple[bool | int | None, ...]]


def axes(*, inference: bool, wgrad_chunks: tuple[int, ...] = WGRAD_CHUNKS) -> tuple[Axis, ...]:
    """The settings a search varies and their values, in the order it tries them."""
    ynn: tuple[bool | int | None, ...] = (None, False, True)
    unroll: tuple[bool | int | None, ...] = (None, True, False)
    if inference:  # no weight gradient to split
        return (("ynn", ynn), ("unroll", unroll))
    return (("ynn", ynn), ("wgrad_chunk", wgrad_chunks), ("unroll", unroll))
