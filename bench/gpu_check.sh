#!/usr/bin/env bash
# The GPU check of issue 13 as one prepared script for one H200 (about 9 minutes, each step time-boxed):
#   1. kernel_cases.py (`deepfim bench gpu`'s kernels) at V4-Flash shapes: % of HBM bandwidth of decode attention and decode MoE,
#      % of the bf16 peak of the prefill grouped GEMM (and the FP8 GEMM), each against its torch reference;
#   2. bench_flash_layers.py: decode ms/token of V4-Flash-shaped layers (256 FP4 experts, FP8 attention),
#      eager and with CUDA graphs, host ms per step, extrapolated to 43 layers, against the bandwidth limit;
#   3. gpu_engine.py (`deepfim bench gpu`'s engine part): the embedded model on the GPU against the CPU (fp32, --device cuda, CUDA graphs);
#   4. `deepfim complete --device cuda` on the embedded model, and `deepfim plan` of V4-Flash on this GPU.
#
# How (a session whose task has a device machine):
#   bench/gpu_wheels.sh                   # here, once: the wheels the GPU image lacks, into .whl/ (21 MB)
#   device run: bench/gpu_check.sh        # carry [".whl"], timeout_s 600; the log also lands in $OUT
#   bench/gpu_check.sh --dry-run          # here, on the CPU: every step at tiny shapes (checks the script)
# On the GPU machine the image's python3 (its torch and triton) runs the code, with this checkout and the
# carried wheels installed into /tmp (nothing can be downloaded there).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; fi
log="${OUT:-/tmp}/gpu_check.log"
exec > >(tee "$log") 2>&1
export PYTHONUNBUFFERED=1 DEEPFIM_CACHE_DIR=/tmp/deepfim-gpu-check-cache

step() {  # step LIMIT_S COMMAND...: runs it time-boxed, says how it ended, never stops the script
  local limit=$1 t0=$SECONDS rc
  shift
  echo "== $* (limit ${limit} s)"
  timeout "$limit" "$@"
  rc=$?
  echo "== rc=$rc after $((SECONDS - t0)) s"
}

if [[ $dry == 1 ]]; then
  py=.venv/bin/python
  step 300 env OMP_NUM_THREADS=1 "$py" -m deepfim.bench.kernel_cases --smoke --ops sparse_attn,fp8_gemm,moe_gemm
  step 120 env OMP_NUM_THREADS=1 "$py" bench/bench_flash_layers.py --dry-run --layers 2 --tokens 4
  step 60 "$py" -m deepfim.bench.gpu_engine
  step 120 "$py" -m deepfim.cli complete examples/shop/shop/cart.py:23:1 --workspace examples/shop --device cpu
  step 60 "$py" -m deepfim.cli plan --model v4-flash --device cuda --memory-gib 139
  exit 0
fi

py=python3
site=/tmp/deepfim-site
if [[ -d .whl ]]; then
  step 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
else
  echo "gpu_check: no .whl/ carried: step 4 needs pygls and tree-sitter (bench/gpu_wheels.sh fetches them)"
fi
step 120 "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" .
export PYTHONPATH="$site"
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem --format=csv
"$py" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
step 170 "$py" -m deepfim.bench.kernel_cases --ops sparse_attn,fp8_gemm,moe_gemm --rep-ms 100
step 150 "$py" bench/bench_flash_layers.py --layers 4 --context 4096 --tokens 32
step 80 "$py" -m deepfim.bench.gpu_engine --prompt 600 --decode 32
step 60 "$py" -m deepfim.cli complete examples/shop/shop/cart.py:23:1 --workspace examples/shop --device cuda --json
step 20 "$py" -m deepfim.cli plan --model v4-flash --device cuda --context 65536
