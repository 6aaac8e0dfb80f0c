#!/usr/bin/env bash
# Check nowcastd on an NVIDIA GPU: the device is seen, the parity tests pass on it, and how fast
# the radar rollout and the serve daemon are there.
#
#   bash bench/gpu_check.sh                      # makes .venv-gpu with pip install -e '.[cuda,test]'
#   VENV=/path/to/venv bash bench/gpu_check.sh   # a venv that already has the [cuda] extra (no network)
#
# Run from the repository root. Everything printed also goes to $LOG (default out/gpu_check.log).
set -euo pipefail

log="${LOG:-out/gpu_check.log}"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1

# The venv: the one given, else a fresh one with CUDA jax (needs a package registry).
if [[ -n "${VENV:-}" ]]; then
    venv="$VENV"
else
    venv=.venv-gpu
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q -e '.[cuda,test]'
fi
py="$venv/bin/python"
export PYTHONPATH="$PWD"  # this checkout's model/ and nowcastd/, whatever the venv has installed

echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?'), venv $venv"

# (a) The GPU, as the driver and as jax see it; jax on the CPU alone fails the check.
nvidia-smi -L || echo "gpu_check: nvidia-smi failed or is missing (no NVIDIA driver?)"
"$py" - <<'EOF'
import sys

import jax

devices = jax.devices()  # jax falls back to the CPU, with a warning, when CUDA cannot start
print(f"jax {jax.__version__}: {devices}")
if not any(d.platform == "gpu" for d in devices):
    sys.exit("gpu_check: jax sees no GPU; it needs an NVIDIA driver and the [cuda] extra "
             "(pip install -e '.[cuda,test]', or VENV= a venv that has it)")
EOF

# (b) Parity with the official code's golden numbers, on the GPU. Full float32 matmuls and convs:
# the GPU's default TF32 would miss the tests' 1e-5 tolerances by design, not by a bug.
JAX_PLATFORMS=cuda JAX_DEFAULT_MATMUL_PRECISION=highest "$py" -m pytest -q tests/model/test_parity.py

# (c) The radar rollout (4x64 hidden, 128x128, 10 -> 10 frames, batch 1), ours only.
JAX_PLATFORMS=cuda "$py" bench/bench_model.py --scenario radar_rollout --no-official \
    --rounds 5 --reps 20

# (d) The serve daemon end to end on the same radar-sized model (the daemon inherits JAX_PLATFORMS).
JAX_PLATFORMS=cuda "$py" bench/bench_serve.py --scans 100 --grid 128 --hidden 64,64,64,64

echo "== gpu_check passed; log in $log"
