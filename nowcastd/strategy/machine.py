"""What the strategy cache is keyed by: the CPU model, and the software that compiles."""

import functools
import platform
from pathlib import Path

import jax
import jaxlib.version

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (`model name` in /proc/cpuinfo), else what Python knows of it."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model Name", "cpu model") and value.strip():
            return " ".join(value.split())
    return platform.processor() or platform.machine() or "an unknown CPU"


def software() -> dict[str, str]:
    """The jax and jaxlib versions (a new XLA can change which strategy is fastest)."""
    return {"jax": jax.__version__, "jaxlib": jaxlib.version.__version__}
