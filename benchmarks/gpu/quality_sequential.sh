#!/bin/bash
# The sequential default of the quality benchmark on one GPU, every (dataset, grid point, seed)
# its own process, all at once: the model is small, so one process leaves the GPU mostly idle.
# Each writes a report with per-target values; combine them with the baselines run elsewhere:
#   python benchmarks/quality.py --dataset D --models --sequential-config configs/sasrec_public.yaml \
#       --include <baselines report> <these reports>
#
#   bash benchmarks/gpu/quality_sequential.sh OUT_DIR DATA_DIR SECONDS DATASET[:POINT]...
# SECONDS bounds each training (trainer max_seconds: training steps only, validation excluded) and,
# with $MARGIN more (default 240), each process; DEVICE (default cuda) says where they train.
# DATASET:POINT runs one grid point of the config only (its three seeds); DATASET alone runs all.
set -u
out=$1 data=$2 seconds=$3
shift 3
cd "$(dirname "$0")/.."
mkdir -p "$out"
fallback=""
[ "${DEVICE:-cuda}" = cuda ] && fallback=--fbgemm-cpu-fallback  # a no-op beside the CUDA build of fbgemm
n_points=$(python3 -c "import yaml; print(len(yaml.safe_load(open('../configs/sasrec_public.yaml'))['grid']))")
for arg in "$@"; do
  ds=${arg%%:*}
  points=$(seq 0 $((n_points - 1)))
  [ "$arg" != "$ds" ] && points=${arg#*:}
  for point in $points; do
    for seed in 0 1 2; do
      tag="$ds-p$point-s$seed"
      timeout $((${seconds%.*} + ${MARGIN:-240})) python3 quality.py --threads 1 --dataset "$ds" --protocol full \
        --models sasrec --sequential-config ../configs/sasrec_public.yaml --grid-point "$point" \
        --seeds "$seed" --device "${DEVICE:-cuda}" --train-seconds "$seconds" --save-per-user $fallback \
        --data-dir "$data" --out-dir "$out/$tag" > "$out/$tag.log" 2>&1 &
    done
  done
done
wait
