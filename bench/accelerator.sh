#!/usr/bin/env bash
# The one prepared check for a GPU or TPU host (< 8 minutes including installs).
#
#   bash bench/accelerator.sh            # on the accelerator host, from the repo root
#   bash bench/accelerator.sh --dry-run  # CPU path: project venv, tiny sizes, no installs
#
# 1. Detects the platform (nvidia-smi -> gpu; /dev/accel* or /dev/vfio -> tpu; else cpu).
# 2. Creates a venv ($ACCEL_VENV, default /tmp/ssc_accel_venv) with the lock and the matching
#    jax extra of the lock's jax version (jax[cuda12] or jax[tpu]); on a GPU also torch for the
#    eager anchor ($TORCH_REQ, default the CUDA build of bench/train_step.py's torch pin).
# 3. Runs the device-agnostic tests (the loss against float64 NumPy, the models).
# 4. Runs bench/train_step.py on the device: float32 and bfloat16 (when config.model.dtype
#    exists), B = 64 and 256 items per device, paper model, augmentation on; then once more
#    with augmentation off against PyTorch eager on the same device (GPU only).
#    It prints views/s, MFU against $PEAK_TFLOPS (per device, bf16 dense; default by platform)
#    and the peak device memory.
# Output goes to stdout and $OUT_DIR (default ./accelerator_out).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
OUT_DIR="${OUT_DIR:-accelerator_out}"
mkdir -p "$OUT_DIR"
JAX_VERSION="$(sed -n 's/^jax==\([0-9.]*\).*/\1/p' requirements-lock.txt)"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  PLATFORM=gpu
elif compgen -G "/dev/accel*" >/dev/null || compgen -G "/dev/vfio/[0-9]*" >/dev/null; then
  PLATFORM=tpu
else
  PLATFORM=cpu
fi
if (( DRY_RUN )); then PLATFORM=cpu; fi
echo "[accelerator] platform=$PLATFORM jax==$JAX_VERSION dry_run=$DRY_RUN $(date -u +%FT%TZ)"

if [[ "$PLATFORM" == cpu ]]; then
  PY="${PYTHON:-python3}"
  PER_DEVICE=(1)
  STEPS=(--steps 1 --warmup 1 --inference-batch 1)
  TESTS=(tests/test_losses.py -k "loss_matches_reference or chunked_equals_dense")
  TORCH=(--no-torch)
  (( DRY_RUN )) || echo "[accelerator] no GPU or TPU found: running the CPU path only."
else
  VENV="${ACCEL_VENV:-/tmp/ssc_accel_venv}"
  python3 -m venv "$VENV"
  PY="$VENV/bin/python"
  "$PY" -m pip install -q -r requirements-lock.txt
  if [[ "$PLATFORM" == gpu ]]; then
    "$PY" -m pip install -q "jax[cuda12]==$JAX_VERSION"
    "$PY" -m pip install -q "${TORCH_REQ:-torch==2.13.0}" \
      && TORCH=(--torch-python "$PY" --torch-device cuda --torch-threads 4) \
      || { echo "[accelerator] torch with CUDA did not install: no PyTorch ratio."; TORCH=(--no-torch); }
    PEAK_TFLOPS="${PEAK_TFLOPS:-$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '
      /H100|H200|GH200/ {print 989; exit} /A100/ {print 312; exit} /L4/ {print 121; exit}
      {print 0}')}"
  else
    "$PY" -m pip install -q "jax[tpu]==$JAX_VERSION"
    TORCH=(--no-torch)
    PEAK_TFLOPS="${PEAK_TFLOPS:-0}"  # e.g. 197 (v5e), 275 (v4), 459 (v5p), 918 (v6e).
  fi
  PER_DEVICE=(64 256)
  STEPS=(--steps 5 --warmup 2 --inference-batch 256)
  TESTS=(tests/test_losses.py tests/test_models.py)
fi
"$PY" -c "import jax; print('[accelerator] devices:', jax.devices())"
NDEV="$("$PY" -c 'import jax; print(jax.device_count())')"
GLOBAL=()
for b in "${PER_DEVICE[@]}"; do GLOBAL+=($((b * NDEV))); done

echo "[accelerator] tests: ${TESTS[*]}"
PYTHONPATH="$PWD" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" 2>&1 | tail -3

DTYPES=(float32)
if [[ "$PLATFORM" != cpu ]] && PYTHONPATH="$PWD" "$PY" -c \
    "from configs.common import base_config; assert 'dtype' in base_config().model" 2>/dev/null; then
  DTYPES+=(bfloat16)  # The CPU path (dry run) keeps to float32: bf16 is slow on CPU.
fi
for dtype in "${DTYPES[@]}"; do
  echo "[accelerator] train step, dtype=$dtype, augmentation on, global batches ${GLOBAL[*]}"
  PYTHONPATH="$PWD" "$PY" bench/train_step.py --no-torch --augment --dtype "$dtype" \
    --batch-sizes "${GLOBAL[@]}" "${STEPS[@]}" --peak-tflops "${PEAK_TFLOPS:-0}" \
    | tee "$OUT_DIR/train_step_${dtype}_augment.txt"
done
if [[ "${TORCH[0]}" != --no-torch ]]; then
  echo "[accelerator] train step against PyTorch eager on the same device (augmentation off)"
  PYTHONPATH="$PWD" "$PY" bench/train_step.py "${TORCH[@]}" --batch-sizes "${GLOBAL[@]}" \
    "${STEPS[@]}" --peak-tflops "${PEAK_TFLOPS:-0}" | tee "$OUT_DIR/train_step_vs_torch.txt"
fi
echo "[accelerator] done $(date -u +%FT%TZ)"
