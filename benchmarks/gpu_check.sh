#!/usr/bin/env bash
# One short GPU check (run on a machine with a CUDA GPU, from the repository root):
#   1. fine-tune EfficientNet-Lite0 (packaged ImageNet weights) on SynthLoc at 224 px, bf16 mixed precision;
#   2. `camexp validate` of its checkpoint on the GPU and on the CPU (fp32 both): the same metrics expected;
#   3. per-image GT-known agreement GPU vs CPU, with images/s (benchmarks/device_agreement.py).
# Results land in ${OUT:-gpu_check_out}. STEPS (default 300) sets the fine-tuning length; ACCEL=cpu dry-runs it.
set -uo pipefail
OUT=${OUT:-gpu_check_out}
STEPS=${STEPS:-300}
ACCEL=${ACCEL:-gpu}
PY=${PY:-python3}
LOGS=/tmp/camexp_gpu_logs
mkdir -p "$OUT"
export WANDB_MODE=offline PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)"
} | tee "$OUT/gpu.txt"

start=$($PY -c "import time; print(time.time())")
$PY -m camexp train experiments/efficientnet_lite0_synthloc.yaml name=gpu_check logger.save_dir=$LOGS \
  trainer.accelerator=$ACCEL trainer.precision=bf16-mixed trainer.max_epochs=-1 trainer.max_steps=$STEPS \
  data.input_size=224 data.train_resize=256 data.batch_size=64 data.num_workers=8 \
  trainer.enable_progress_bar=false --run-dir-file /tmp/gpu_run > "$OUT/train.log" 2>&1 || { tail -40 "$OUT/train.log"; exit 1; }
$PY -c "import time; print(f'train: $STEPS steps x 64 images in {time.time() - $start:.1f} s, startup and validations included')" \
  | tee "$OUT/train_time.txt"
tail -22 "$OUT/train.log"
ckpt=$(cat /tmp/gpu_run)/checkpoints/last.ckpt
for dev in $ACCEL cpu; do
  $PY -m camexp validate "$ckpt" trainer.accelerator=$dev trainer.precision=32-true trainer.enable_progress_bar=false \
    data.num_workers=8 --out "$OUT/validate_$dev.json" > "$OUT/validate_$dev.log" 2>&1 || { tail -30 "$OUT/validate_$dev.log"; exit 1; }
  echo "== validate on $dev"; grep -E "val/(acc|loc|num)" "$OUT/validate_$dev.log"
done
$PY benchmarks/device_agreement.py "$ckpt" --devices $([ "$ACCEL" = gpu ] && echo cuda || echo cpu) cpu \
  --out "$OUT/agreement.json" 2>&1 | grep -v "^Seed"
