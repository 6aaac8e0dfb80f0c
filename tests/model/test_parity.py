"""Golden numbers from the official PyTorch code (tests/fixtures/parity/README.md)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from model.compile import compile_program
from model.patch import reshape_patch_back
from model.rollout import rollout
from model.strategy import DEFAULT, Strategy
from model.torch_compat import _loss_and_grad, export_state_dict, official_step, official_test
from model.train import adam, optimizer_step
from tests.model.strategies import candidates
from tests.paths import SHARED

from .conftest import MINI, PARITY, Fixture

SEED = SHARED / "parity" / "v2_seed.npz"


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


_STEPS: dict[tuple[str, Strategy], tuple] = {}


def _official(fx: Fixture, strategy: Strategy = DEFAULT) -> tuple:
    """One compiled official step per fixture and strategy, shared by the tests that read it."""
    if (fx.name, strategy) not in _STEPS:
        network = fx.network()
        (loss, parts), grads = _loss_and_grad(
            network, jnp.asarray(fx["frames"]), jnp.asarray(fx["mask_true"]), strategy
        )
        _STEPS[fx.name, strategy] = (float(loss), parts, export_state_dict(grads))
    return _STEPS[fx.name, strategy]


def check_forward_and_grads(fx: Fixture, strategy: Strategy = DEFAULT) -> None:
    loss, next_frames, grads = official_step(
        fx.network(), fx["frames"], fx["mask_true"], fx.cfg, strategy
    )
    cached_loss, parts, _ = _official(fx, strategy)
    assert cached_loss == loss and np.array_equal(parts.next_frames, next_frames)
    np.testing.assert_allclose(next_frames, fx["next_frames"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss, fx["loss"], rtol=1e-4, atol=1e-5)
    assert set(grads) == {k.removeprefix("grad/") for k in fx.data.files if k.startswith("grad/")}
    rel = 1e-4 if fx.cfg.layer_norm else 1e-5
    for name, g in grads.items():
        want = fx[f"grad/{name}"]
        assert g.shape == want.shape, name
        assert _rel_l2(g, want) < rel or np.abs(g - want).max() < 5e-6, name


def check_parts(fx: Fixture, strategy: Strategy = DEFAULT) -> None:
    _, parts, _ = _official(fx, strategy)
    np.testing.assert_allclose(parts.mse, fx["mse"], rtol=1e-4, atol=1e-6)
    if fx.has("decouple_loss"):
        np.testing.assert_allclose(parts.decouple, fx["decouple_loss"], rtol=1e-4, atol=1e-6)


def check_test_output(fx: Fixture, strategy: Strategy = DEFAULT) -> None:
    out = official_test(fx.network(), fx["frames"], fx["test/mask_true"], fx.cfg, strategy)
    np.testing.assert_allclose(out, fx["test/next_frames"], rtol=1e-4, atol=1e-5)


def check_rollout(fx: Fixture, strategy: Strategy = DEFAULT) -> None:
    """Our inference rollout, compiled as the daemon's is, from the fixture's input frames:
    the official test output's predictions of the frames after them."""
    cfg, i = fx.cfg, fx.cfg.input_length
    frames = reshape_patch_back(jnp.asarray(fx["frames"]), cfg.patch_size)
    jitted = compile_program(rollout, strategy, inference=True)
    got = jitted(fx.network(), frames[:, :i], cfg.output_length)
    want = reshape_patch_back(jnp.asarray(fx["test/next_frames"][:, i - 1 :]), cfg.patch_size)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def check_adam(fx: Fixture, strategy: Strategy = DEFAULT) -> None:
    opt = adam(float(fx.flags["lr"]))
    net = fx.network()
    state = opt.init(eqx.filter(net, eqx.is_inexact_array))
    step = compile_program(optimizer_step, strategy, inference=False)
    net1, state, _, _ = step(net, state, opt, fx["frames"], fx["mask_true"])
    after = export_state_dict(net1)
    grads = {k: fx[f"grad/{k}"] for k in after}
    for name, w in after.items():
        want = fx[f"after_step/{name}"]
        np.testing.assert_allclose(w, want, atol=2e-3, err_msg=name)
        big = np.abs(grads[name]) > 1e-6
        np.testing.assert_allclose(w[big], want[big], atol=1e-6, err_msg=name)
    reverse = np.ascontiguousarray(fx["frames"][:, ::-1])
    net2, _, loss_r, _ = step(net1, state, opt, reverse, fx["mask_true"])
    np.testing.assert_allclose(loss_r, fx["loss_reverse"], rtol=1e-4, atol=1e-5)
    for name, w in export_state_dict(net2).items():
        np.testing.assert_allclose(w, fx[f"after_iter/{name}"], atol=2e-3, err_msg=name)


def test_forward_loss_and_gradients_match_official(parity: Fixture) -> None:
    check_forward_and_grads(parity)


def test_mse_and_decouple_parts_match_official(parity: Fixture) -> None:
    check_parts(parity)


def test_inference_matches_official_model_test(parity: Fixture) -> None:
    check_test_output(parity)


def test_adam_step_and_reverse_iteration_match_official(mini_v2_ss: Fixture) -> None:
    check_adam(mini_v2_ss)


@pytest.mark.parametrize("name", [n for n in MINI if not n.startswith("mini_action")])
def test_rollout_matches_official_model_test(name: str) -> None:
    check_rollout(Fixture(PARITY / f"{name}.npz"))


def _strategies(name: str, *, inference: bool) -> list[Strategy]:
    """Every program the strategy search can pick for a fixture (its candidates, with a
    weight-gradient chunk narrow enough to split the fixture's 24- and 32-output gates)."""
    fx = Fixture(PARITY / f"{name}.npz")
    batch = fx["frames"].shape[0]
    found = candidates(fx.cfg, batch, inference=inference, wgrad_chunks=(0, 16, 96))
    return [s for s in found if s != DEFAULT]


@pytest.mark.parametrize(
    "strategy", _strategies("mini_v2_ss", inference=False), ids=lambda s: s.name
)
def test_training_parity_holds_under_every_candidate_strategy(strategy: Strategy) -> None:
    # the forward, loss and gradients, compiled with the strategy's XLA options and trace-time
    # choices; Adam's update of equal gradients is the same arithmetic under every strategy
    fx = Fixture(PARITY / "mini_v2_ss.npz")
    check_forward_and_grads(fx, strategy)
    check_parts(fx, strategy)


@pytest.mark.parametrize(
    "strategy", _strategies("mini_v2_rss_ln", inference=True), ids=lambda s: s.name
)
@pytest.mark.parametrize("name", ["mini_v2_ss", "mini_v2_rss_ln"])
def test_rollout_parity_holds_under_every_candidate_strategy(name: str, strategy: Strategy) -> None:
    check_rollout(Fixture(PARITY / f"{name}.npz"), strategy)


BF16 = Strategy(bf16=True)


def _global_rel(got: dict[str, np.ndarray], fx: Fixture) -> float:
    names = sorted(got)
    ours = np.concatenate([got[n].ravel() for n in names])
    want = np.concatenate([fx[f"grad/{n}"].ravel() for n in names])
    return _rel_l2(ours, want)


@pytest.mark.parametrize(
    ("name", "grad_rel"),
    # v2's decoupling loss is the mean |cosine| of two increments that start near orthogonal:
    # bfloat16 rounding flips the sign of some cosines, and with it their gradients (6-8 % of
    # the whole gradient at this fixture's initial weights; 0.2 % with decouple_beta 0). The
    # layer-norm and action cells' convolutions (`STLSTMCell._conv`) are the same custom VJP:
    # the rollout test below runs that path, tests/model/test_layers.py its gradients.
    [("mini_v1", 0.01), ("mini_v2_ss", 0.1)],
)
def test_bf16_training_step_stays_close_to_official(name: str, grad_rel: float) -> None:
    """bfloat16 convolutions change values: the forward within 2 %, the loss within 0.1 %,
    the gradient as a whole within `grad_rel` of the official float32 numbers (rel. L2)."""
    fx = Fixture(PARITY / f"{name}.npz")
    loss, next_frames, grads = official_step(
        fx.network(), fx["frames"], fx["mask_true"], fx.cfg, BF16
    )
    assert _rel_l2(next_frames, fx["next_frames"]) < 0.02
    np.testing.assert_allclose(loss, fx["loss"], rtol=1e-3)
    assert _global_rel(grads, fx) < grad_rel
    # the rounding is real: not the float32 numbers to float32 precision
    assert _rel_l2(next_frames, fx["next_frames"]) > 1e-5


@pytest.mark.parametrize("name", ["mini_v2_ss", "mini_v2_rss_ln"])
def test_bf16_rollout_stays_close_to_official(name: str) -> None:
    fx = Fixture(PARITY / f"{name}.npz")
    cfg, i = fx.cfg, fx.cfg.input_length
    frames = reshape_patch_back(jnp.asarray(fx["frames"]), cfg.patch_size)
    jitted = compile_program(rollout, BF16, inference=True)
    got = np.asarray(jitted(fx.network(), frames[:, :i], cfg.output_length))
    want = reshape_patch_back(jnp.asarray(fx["test/next_frames"][:, i - 1 :]), cfg.patch_size)
    assert 1e-5 < _rel_l2(got, np.asarray(want)) < 0.02


@pytest.mark.skipif(not SEED.exists(), reason="shared/parity/v2_seed.npz is a local-only file")
def test_seed_configuration_matches_official() -> None:
    fx = Fixture(SEED)
    check_forward_and_grads(fx)
    check_parts(fx)
    check_test_output(fx)
    check_adam(fx)
