#!/usr/bin/env bash
# GPU check of issue 19 (benchmarks/gpu_check.py): train step bound vs train() vs naive, predict, the input
# pipeline and the frozen-E feature cache on one CUDA GPU, in under 8 minutes.  Results go to $OUT (the device
# machine's output folder) or benchmarks/results/.
#
#   benchmarks/gpu_check.sh          # on a machine with one CUDA GPU
#   benchmarks/gpu_check.sh --dry    # CPU smoke run of the same code with tiny sizes (no GPU needed)
#
# Python: $PYTHON, else the first of .venv/bin/python, ../main/.venv/bin/python, python3 that imports torch,
# lightning and timm; medcolor is imported from this checkout's src/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in .venv/bin/python ../main/.venv/bin/python python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch, lightning, timm" >/dev/null 2>&1; then
      PY="$c"
      break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "gpu_check.sh: no Python with torch, lightning and timm found; set PYTHON=/path/to/python" >&2
  exit 2
fi
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi >"$OUT_DIR/gpu_check-nvidia-smi.txt" 2>&1 || true
fi
case " $* " in
  *" --dry "*) exec "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" "$@" ;;  # no time limit on a (shared) CPU
esac
# the python side keeps to its own 450 s budget between parts; this is the hard stop
exec timeout --signal=INT --kill-after=10 470 "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" "$@"
