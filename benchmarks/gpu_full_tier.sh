#!/usr/bin/env bash
# The full tier of the leave-one-class-out benchmark on a GPU machine, as one prepared script for a
# short device window: it runs as many (seed, class) runs as fit in BUDGET_S seconds, several at
# once (small 32x32 models cannot fill a big GPU alone), and leaves one JSON per finished run under
# $OUT/loco/ (same layout as benchmarks/results/loco/). Unfinished runs are simply missing; the next
# window continues with the rest (finished JSONs copied back into benchmarks/results/loco/ are skipped).
#
#   DATASET=mnist BUDGET_S=480 JOBS=12 bash benchmarks/gpu_full_tier.sh
#
# Data: the device machine has no internet. Put the dataset files in a git-ignored folder and carry
# it (the device tool's `carry`), then point ADEGAN_DATASETS / DATASET_PATH at it:
#   mnist.npz (11 MB), cifar10_jpegbytes.npz (56 MB), or fashion-mnist's four idx .gz files (30 MB).
# Environment overrides: DATASET, TIER (full), SEEDS ("0 1 2"), CLASSES ("0 ... 9"), EPOCHS, JOBS,
# DEVICE (cuda), BUDGET_S, DATASET_PATH, VARIANT (default), OUT ($OUT or ./gpu-out).
set -u
cd "$(dirname "$0")/.."
DATASET=${DATASET:-mnist}
TIER=${TIER:-full}
SEEDS=${SEEDS:-"0 1 2"}
CLASSES=${CLASSES:-"0 1 2 3 4 5 6 7 8 9"}
JOBS=${JOBS:-12}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-480}
VARIANT=${VARIANT:-default}
OUT=${OUT:-./gpu-out}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} | tee "$OUT/machine.txt"

extra=()
[ -n "${EPOCHS:-}" ] && extra+=(--epochs "$EPOCHS")
[ -n "${DATASET_PATH:-}" ] && extra+=(--train-option "dataset_path=\"$DATASET_PATH\"")
# shellcheck disable=SC2086
timeout --signal=INT "$BUDGET_S" $PYTHON benchmarks/leave_one_class_out.py "$DATASET" --tier "$TIER" \
  --variant "$VARIANT" --seeds $SEEDS --classes $CLASSES --device "$DEVICE" --jobs "$JOBS" \
  --runs "$OUT/runs" --results "$OUT/loco" "${extra[@]}" 2>&1 | tee "$OUT/log.txt"
echo "finished runs: $(find "$OUT/loco" -name '*.json' 2>/dev/null | wc -l)" | tee -a "$OUT/log.txt"
rm -rf "$OUT/runs"  # checkpoints are large; the JSONs hold the results
