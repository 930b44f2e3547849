#!/usr/bin/env bash
# The GPU figures of issues 6 and 8 in one command, for a lent GPU machine (the `device` tool):
#   here, once:   bash benchmarks/gpu.sh wheels   # .whl/ (git-ignored): what the machine's image lacks or has at other versions
#   there:        device run: command "bash benchmarks/gpu.sh", carry [".whl"], timeout_s 600
# It runs (1) benchmarks/sd15_run.py: 20 bf16 DPO steps at SD 1.5's real shapes through
# `python -m prefopt.train`, and SFT on twice the images (images/s, peak memory; ~3 min), then
# (2) benchmarks/step_cost.py at SD 1.5's UNet size in bf16, batch 4 (the step-cost ratios; ~5 min; the
# LoRA mode's JSON is written before the full fine-tune's runs).
# Results and logs go to $OUT (benchmarks/results/ without it).
set -euo pipefail
# what the image lacks, at the versions used here; peft is installed there only if the image's is older than 0.17
WHEELS="diffusers==0.42.1 hydra-core==1.3.8 omegaconf==2.3.1 peft==0.21.2"
if [ "${1:-run}" = wheels ]; then
  mkdir -p .git/info && { grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude; }
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $WHEELS
  python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3  # an sdist only; pure Python
  exit 0
fi
out=${OUT:-benchmarks/results}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  wheels=$(ls .whl/*.whl | grep -v '/peft-')
  python3 -c "import peft, sys; v = tuple(int(x) for x in peft.__version__.split('.')[:2]); sys.exit(v < (0, 17))" \
    2>/dev/null || wheels="$wheels $(ls .whl/peft-*.whl)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 PREFOPT_CACHE=/tmp/prefopt_cache HF_HUB_OFFLINE=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True  # full fine-tuning at SD 1.5 size without checkpointing is large
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, diffusers, peft, transformers, accelerate; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'peft', peft.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)" 2>&1 | tee -a "$out/gpu.txt" || true
# each stage has its own time limit, so that the other's results come back within the 600 s of a device run
timeout 270 python3 benchmarks/sd15_run.py --work /tmp/prefopt_sd15 --out "$out/sd15_run.json" 2>&1 | tee "$out/sd15_run.log" ||
  echo "gpu.sh: sd15_run.py failed or ran out of time (its log: $out/sd15_run.log); the step cost runs anyway"
timeout 290 python3 benchmarks/step_cost.py --model sd15_unet --tokens 77 --device cuda --precision bf16 --batch 4 \
  --steps 10 --warmup 3 --out "$out/step_cost_sd15_bf16.json" 2>&1 | tee "$out/step_cost_sd15_bf16.log"
