"""What a run does differently on several hosts: the checkpoint's data state, one process's or
every process's, and which process resumes from which."""

import pytest

from model.strategy import DEFAULT
from nowcastd.errors import NowcastdError
from nowcastd.train.hosts import (
    EveryProcess,
    OneProcess,
    Processes,
    data_state_from_json,
    data_state_to_json,
)

ONE = {"epoch": 2, "position": 5}


def test_the_data_state_keeps_its_checkpoint_json_both_ways() -> None:
    assert data_state_to_json(OneProcess(ONE)) == ONE
    assert data_state_from_json(ONE) == OneProcess(ONE)
    every = {"kind": "processes", "states": [ONE, {"epoch": 0}]}
    assert data_state_from_json(every) == EveryProcess((ONE, {"epoch": 0}))
    assert data_state_to_json(data_state_from_json(every)) == every


def test_each_process_resumes_its_own_draws() -> None:
    saved = EveryProcess((ONE, {"epoch": 0}))
    assert Processes(count=2, index=1).local_data_state(saved) == {"epoch": 0}
    assert Processes(count=1, index=0).local_data_state(OneProcess(ONE)) == ONE
    assert Processes(count=1, index=0).checkpoint_data_state(ONE) == OneProcess(ONE)
    with pytest.raises(NowcastdError, match="holds one process's, expected 2"):
        Processes(count=2, index=0).local_data_state(OneProcess(ONE))
    with pytest.raises(NowcastdError, match="holds 2 processes', expected 3"):
        Processes(count=3, index=0).local_data_state(saved)


def test_several_processes_run_the_default_step_strategy() -> None:
    assert Processes(count=2, index=0).step_strategy("auto") == DEFAULT
    assert Processes(count=1, index=0).step_strategy("auto") == "auto"
    assert (
        Processes(count=2, index=1).rng(3).random() != Processes(count=2, index=0).rng(3).random()
    )
