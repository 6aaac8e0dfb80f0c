"""evaluate's decoupling diagnostic: the cosines of the network's own first step."""

import jax
import numpy as np

from model.patch import reshape_patch
from model.strategy import DEFAULT, parse_strategy
from nowcastd.verification.evaluation import _decoupling_cosines
from tests.nowcastd.serve.tiny import tiny_network


def test_decoupling_cosines_are_the_first_steps_decoupling_terms_under_its_strategy():
    """Per layer, the mean |cos| over (batch, channel) is the decoupling term the network's
    step adds for that layer at the first step, under the same strategy; bf16=on changes
    both."""
    network = tiny_network()
    context = jax.random.uniform(jax.random.key(1), (2, 3, 16, 16, 1))
    frames = reshape_patch(context, network.cfg.patch_size)
    carry = network.zero_carry(2, (frames.shape[2], frames.shape[3]))
    fused = network.fused_weights()
    got = {}
    for strategy in (DEFAULT, parse_strategy("bf16=on")):
        cos = np.asarray(_decoupling_cosines(network, context, strategy))
        assert cos.shape == (2, 2, 8)  # (layers, batch, hidden)
        _, out = network.step(
            carry, frames[:, 0], fused=fused, with_decouple=True, strategy=strategy
        )
        np.testing.assert_allclose(cos.mean(axis=(1, 2)).sum(), out.decouple, rtol=1e-4)
        got[strategy] = cos
    assert not np.array_equal(*got.values())
