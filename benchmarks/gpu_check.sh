#!/usr/bin/env bash
# The checks that need a CUDA machine, in one run (about 5 minutes on one H100/H200):
#   1. benchmarks/bench_scale.py with its GPU measurements (train-step, forward and report
#      embedding rates; the loader / GPU ratio; the projection for all of MIMIC-CXR);
#   2. `train image|text|fusion` under torchrun on NCCL (one rank per GPU) on a phantom, beside
#      `train image` as one plain process on the same data.
# Needs torch with CUDA, transformers, pandas, scikit-learn, opencv and tqdm (not shap or ipywidgets).
#
#     bash benchmarks/gpu_check.sh [LOG_DIR]      # STUDIES=1000 EPOCHS=3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${1:-/tmp/gpu-check-logs}
WORK=$(mktemp -d /tmp/gpu-check-XXXXXX)
STUDIES=${STUDIES:-1000}
mkdir -p "$LOGS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export CXR_PROFILE=phantom CXR_EPOCHS=${EPOCHS:-3} CXR_FUSION_E2E_EPOCHS=1 \
  CXR_DATA_DIR=$WORK/phantom/mimic-cxr-jpg CXR_REPORTS_DIR=$WORK/phantom/mimic-cxr-reports
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "== $($PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"), $GPUS GPU(s), $(nproc) cores"

step() {  # step NAME COMMAND...: run, keep the log, print its tail and the seconds it took
  local name=$1; shift
  local began=$SECONDS
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    tail -40 "$LOGS/$name.log"; echo "== $name FAILED"; exit 1
  fi
  echo "== $name: $((SECONDS - began)) s"
}
torchrun() { $PY -m torch.distributed.run --standalone --nproc_per_node="$((GPUS > 0 ? GPUS : 1))" "$@"; }

step bench_scale $PY benchmarks/bench_scale.py --studies ${BENCH_STUDIES:-64} --loader-images ${LOADER_IMAGES:-8192} \
  --train-steps 2
sed -n '/^machine/,$p' "$LOGS/bench_scale.log"

step phantom $PY -m cxr_helpers phantom --out "$WORK/phantom" --studies "$STUDIES" --image-size 256
CXR_ARTIFACTS_DIR=$WORK/plain step prepare $PY -m cxr_helpers prepare
cp -r "$WORK/plain" "$WORK/ddp"
CXR_ARTIFACTS_DIR=$WORK/plain step image_plain $PY -m cxr_helpers train image
for model in image text fusion; do
  CXR_ARTIFACTS_DIR=$WORK/ddp step "${model}_torchrun" torchrun -m cxr_helpers train $model
done
grep -h "^torchrun:" "$LOGS"/*_torchrun.log
$PY - "$WORK" <<'EOF'
import json, sys
from pathlib import Path

import torch

work = Path(sys.argv[1])
for run in ("plain", "ddp"):
    best = torch.load(work / run / "checkpoints" / "image.pt", map_location="cpu", weights_only=True)["meta"]
    print(f"{run:>5} image: world_size {best['fingerprint'].get('world_size', 1)}, "
          f"epoch seconds {[round(s, 1) for s in best['history']['seconds']]}, "
          f"val macro AUROC {[round(a, 3) for a in best['history']['val_macro_auroc']]}")
for stage in ("image", "text", "fusion"):
    models = json.loads((work / "ddp" / "metrics" / f"{stage}.json").read_text())["models"]
    for name, splits in models.items():
        if not name.startswith("baseline"):
            print(f"  torchrun {stage:>6} {name:<45} test macro AUROC {splits['test']['macro_auroc']:.3f} n {splits['test']['n']}")
EOF
rm -rf "$WORK"
