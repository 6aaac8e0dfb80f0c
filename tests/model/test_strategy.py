"""`Strategy`: names, the rules it resolves to, and the candidates a search measures."""

import dataclasses

import pytest

from model.config import ModelConfig
from model.strategy import DEFAULT, YNN_OPTION, Strategy, parse_strategy
from tests.model.strategies import candidates


def test_name_reads_back_and_default_is_todays_rule() -> None:
    for strategy in (DEFAULT, Strategy(ynn=False, wgrad_chunk=0, unroll=True)):
        assert parse_strategy(strategy.name) == strategy
    assert parse_strategy("default") == DEFAULT
    assert parse_strategy(" wgrad=64 ") == Strategy(wgrad_chunk=64)
    assert DEFAULT.name == "ynn=auto,wgrad=96,unroll=auto"
    # today's programs: inference without YNN fusions, training with XLA's default
    assert DEFAULT.compiler_options(inference=True) == {YNN_OPTION: ""}
    assert DEFAULT.compiler_options(inference=False) == {}
    assert Strategy(ynn=True).compiler_options(inference=True) == {}


def test_bf16_is_named_only_when_set_keeps_ynn_fusions_and_no_search_tries_it(
    tiny_cfg: ModelConfig,
) -> None:
    bf16 = parse_strategy("bf16=on")
    assert bf16 == Strategy(bf16=True) and bf16.name == "ynn=auto,wgrad=96,unroll=auto,bf16=on"
    assert parse_strategy(bf16.name) == bf16 and parse_strategy("bf16=off") == DEFAULT
    # its matmuls need XLA's YNN fusions, for inference too, unless a name turns them off
    assert bf16.compiler_options(inference=True) == {}
    assert Strategy(bf16=True, ynn=False).compiler_options(inference=True) == {YNN_OPTION: ""}
    for inference in (True, False):
        assert not any(s.bf16 for s in candidates(tiny_cfg, 2, inference=inference))


@pytest.mark.parametrize(
    "text", ["fast", "ynn=maybe", "wgrad=-1", "ynn=on,ynn=off", "unroll", "bf16=auto"]
)
def test_a_bad_name_says_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected 'default' or comma-separated") as e:
        parse_strategy(text)
    assert repr(text) in str(e.value) and "\n" not in str(e.value)


def test_candidates_are_distinct_programs_default_first(tiny_cfg: ModelConfig) -> None:
    inference = candidates(tiny_cfg, 2, inference=True)
    assert inference[0] == DEFAULT and len(inference) == 4  # ynn x unroll
    # the tiny model's widest gate has 32 outputs: every chunk of 32 or more is one convolution
    training = candidates(tiny_cfg, 2, inference=False)
    assert training[0] == DEFAULT and len(training) == 4
    wide = dataclasses.replace(tiny_cfg, num_hidden=(64, 64))  # 256 outputs: 0, 64, 96, 128
    assert len(candidates(wide, 2, inference=False)) == 16
    resolved = {s.resolved(wide, 2, inference=False) for s in candidates(wide, 2, inference=False)}
    assert len(resolved) == 16
