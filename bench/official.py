"""The official PyTorch PredRNN-v2's side of bench_model.py: an external timer run as a subprocess.

Neither the official code nor its timer is part of this repository (README, "Benchmarks"). The
timer, `torch_time.py SCENARIO`, runs under a python with torch, loads the unmodified official
code from the checkout named by `$PREDRNN_REPO`, makes a few untimed warm-up calls, then times
`$REPS` calls and prints one JSON line: {"scenario", "median_s", "times_s"}.
"""

import dataclasses
import json
import os
import subprocess
from pathlib import Path

HOW_TO_ENABLE = (
    "give --torch-python (or TORCH_PY) a python with torch==2.13.0 and numpy, --predrnn-repo "
    "(or PREDRNN_REPO) a checkout of thuml/predrnn-pytorch, and --torch-bench the path of "
    "torch_time.py if it is not ../shared/bench/torch_time.py; README, Benchmarks"
)


class OfficialError(Exception):
    """The official timer could not be run, or printed something other than its JSON line."""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Official:
    """A runnable official timer: the torch python, the official checkout, the timer script."""

    python: str
    repo: Path
    script: Path
    torch_version: str

    def time(self, scenario: str, reps: int) -> list[float]:
        """Seconds per call of `reps` timed official calls, from one fresh subprocess."""
        env = dict(os.environ, PREDRNN_REPO=str(self.repo), REPS=str(reps))
        cmd = [self.python, str(self.script), scenario]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise OfficialError(
                f"{self.script.name} {scenario} exited {proc.returncode}: {_last_line(proc.stderr)}"
            )
        line = _last_line(proc.stdout)
        try:
            times = [float(t) for t in json.loads(line)["times_s"]]
        except (ValueError, KeyError, TypeError) as e:
            raise OfficialError(
                f"{self.script.name} {scenario}: expected a JSON line with times_s, got {line!r}"
            ) from e
        if len(times) != reps:
            raise OfficialError(
                f"{self.script.name} {scenario}: expected {reps} times, got {len(times)}"
            )
        return times


def find_official(python: str | None, repo: str | None, script: Path) -> Official | str:
    """The official timer if everything it needs is there, else why not (one clause)."""
    if not python:
        return "no torch python given"
    if not repo:
        return "no official checkout given"
    if not (Path(repo) / "run.py").is_file():
        return f"{repo} is not an official checkout (no run.py)"
    if not script.is_file():
        return f"no official timer at {script}"
    try:
        proc = subprocess.run(
            [python, "-c", "import torch; print(torch.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as e:
        return f"cannot run {python}: {e.strerror}"
    if proc.returncode:
        return f"{python} cannot import torch: {_last_line(proc.stderr)}"
    return Official(
        python=python, repo=Path(repo), script=script, torch_version=proc.stdout.strip()
    )
