"""Scheduled and reverse scheduled sampling: the official schedules, drawn with JAX keys."""

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from model.config import ModelConfig, check_fields, checked, invalid


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """run.py's schedule flags (REFERENCE §7), with its defaults; each field's metadata "help"
    is its `nowcastd train` flag's help."""

    scheduled_sampling: bool = dataclasses.field(
        default=True, metadata={"help": "0: always feed the model its own predictions"}
    )
    """Scheduled sampling on; when off, the future frames are always the model's own."""
    sampling_stop_iter: int = dataclasses.field(
        default=50000, metadata={"help": "scheduled sampling: eta is 0 from here"}
    )
    """The iteration from which the chance of feeding ground truth is 0."""
    sampling_start_value: float = dataclasses.field(
        default=1.0, metadata={"help": "scheduled sampling: starting eta"}
    )
    """The chance of feeding ground truth at iteration 0."""
    sampling_changing_rate: float = dataclasses.field(
        default=0.00002, metadata={"help": "scheduled sampling: eta decrement per iteration"}
    )
    """How much that chance falls per iteration."""
    r_sampling_step_1: float = dataclasses.field(
        default=25000.0, metadata={"help": "reverse scheduled sampling: s1"}
    )
    """Reverse scheduled sampling: both chances are 0.5 up to this iteration."""
    r_sampling_step_2: int = dataclasses.field(
        default=50000, metadata={"help": "reverse scheduled sampling: s2"}
    )
    """From here the context is all ground truth, the future none (the latter falls linearly)."""
    r_exp_alpha: int = checked(
        5000,
        ("must be > 0", lambda a: a > 0),
        help="reverse scheduled sampling: exponential time constant",
    )
    """The time constant, in iterations, of the context's exponential rise towards 1."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.r_sampling_step_2 <= self.r_sampling_step_1:
            raise invalid(
                self,
                "r_sampling_step_2",
                f"must exceed r_sampling_step_1={self.r_sampling_step_1!r}",
            )


def ss_eta(itr: Int[Array, ""] | int, s: SamplingConfig) -> Float[Array, ""]:
    """Scheduled-sampling probability of ground truth at 1-based iteration `itr`."""
    itr = jnp.asarray(itr, jnp.float32)
    eta = jnp.where(
        itr < s.sampling_stop_iter, s.sampling_start_value - s.sampling_changing_rate * itr, 0.0
    )
    return eta if s.scheduled_sampling else jnp.zeros_like(eta)


def rss_etas(
    itr: Int[Array, ""] | int, s: SamplingConfig
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Reverse scheduled sampling (r_eta for the context, eta for the future frames)."""
    itr = jnp.asarray(itr, jnp.float32)
    s1, s2 = float(s.r_sampling_step_1), float(s.r_sampling_step_2)
    r_eta = jnp.where(
        itr < s1,
        0.5,
        jnp.where(itr < s2, 1.0 - 0.5 * jnp.exp(-(itr - s1) / s.r_exp_alpha), 1.0),
    )
    eta = jnp.where(itr < s1, 0.5, jnp.where(itr < s2, 0.5 - 0.5 * (itr - s1) / (s2 - s1), 0.0))
    return r_eta, eta


def draw_mask(
    key: jax.Array, itr: Int[Array, ""], batch: int, cfg: ModelConfig, s: SamplingConfig
) -> Float[Array, "batch steps 1 1 1"]:
    """A training mask, constant over space and channels as every official mask is."""
    steps = cfg.mask_length
    u = jax.random.uniform(key, (batch, steps))
    if cfg.uses_rss_mask:
        r_eta, eta = rss_etas(itr, s)
        context = jnp.arange(steps) < cfg.input_length - 1
        mask = jnp.where(context, u < r_eta, u < eta)
    else:
        mask = u < ss_eta(itr, s)
    return mask.astype(jnp.float32)[:, :, None, None, None]


def inference_mask(batch: int, cfg: ModelConfig) -> Float[Array, "batch steps 1 1 1"]:
    """The official test-time mask: ground truth for the I context frames, then none."""
    steps = cfg.mask_length
    if cfg.uses_rss_mask:
        mask = (jnp.arange(steps) < cfg.input_length - 1).astype(jnp.float32)
    else:
        mask = jnp.zeros((steps,), jnp.float32)
    return jnp.broadcast_to(mask[None, :, None, None, None], (batch, steps, 1, 1, 1))
