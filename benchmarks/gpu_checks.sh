#!/usr/bin/env bash
# The GPU checks, in one run on a GPU machine (see README, "GPU"): results land in $OUT.
#   1. the packed association kernel on CUDA equals the CPU kernels (pytest);
#   2. gwas --device cuda vs the CPU scan at 30,000 x 650,000 x 10 (benchmarks/bench_gwas_gpu.py);
#   3. training throughput on CUDA (bf16 autocast), 1 mm grid, 650k SNPs (benchmarks/bench_train.py);
#   4. a short gim run on CUDA with gimtool's defaults (standardized critic, linear genetic encoder,
#      the voxel teacher fit on the CPU first, co-training) on a small simulated cohort, logging
#      training JSE, the teacher's MSE and validation MI per epoch (and the teacher's fit in train.log);
#   5. train under torchrun with NCCL, one process per GPU (a one-rank group on a one-GPU machine).
# Packages the GPU image lacks can be installed from wheels in .whl/ first (WHEELS=1).
set -uo pipefail
OUT=${OUT:-/tmp/gimtool_gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ "${WHEELS:-0}" = 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
T=$(nproc)
step() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit}s)"; local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1; local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"; tail -25 "$OUT/$name.txt"; }
step pytest_kernels 120 python3 -m pytest -q -p no:cacheprovider tests/pipelines/test_gwas.py -k "packed_kernels"
step gwas_gpu "${GWAS_LIMIT:-260}" python3 benchmarks/bench_gwas_gpu.py --n "${GWAS_N:-30000}" --snps "${GWAS_SNPS:-650000}" \
  --threads "$T" --results "$OUT/gwas_gpu.md"
rm -rf /tmp/gimtool_bench_gwas_gpu
step train_gpu "${TRAIN_LIMIT:-200}" python3 benchmarks/bench_train.py --device cuda --voxel "${VOXEL:-1}" --snps "${TRAIN_SNPS:-650000}" \
  --people 24 --batch-size 12 --epochs 1 --threads "$T" --out "$OUT/train_gpu.md"
# 4. a short gim run: train JSE and validation MI per epoch land in $OUT/gim_short_history.tsv
G=/tmp/gimtool_gim_short
GIM_SHORT="set -e
python3 -m gimtool simulate --out $G/cohort --preset tiny --n 600 --voxel 4 --threads $T
python3 -m gimtool prep-geno --bfile $G/cohort/geno --genetic-map $G/cohort/genetic_map.txt --out $G/geno --threads $T
python3 -m gimtool prep-mri --images $G/cohort/images.tsv --voxel 4 --out $G/mri --threads $T
python3 -m gimtool train --images $G/mri --geno $G/geno.geno --keep $G/cohort/train.ids --val-keep $G/cohort/val.ids \
  --method gim --epochs ${GIM_EPOCHS:-10} --device cuda --out $G/run --no-progress
cp $G/run/history.tsv $OUT/gim_short_history.tsv
cp $G/run/train.log $OUT/gim_short_train.log
cut -f1,2,5,7,8 $G/run/history.tsv"
step gim_short "${GIM_LIMIT:-240}" bash -c "$GIM_SHORT"
# 5. train under torchrun with NCCL (DDP), one process per GPU (at most 4), on the cohort of step 4,
#    launched as examples/slurm/train_torchrun.sh launches it on each node; with one GPU this is a
#    one-rank NCCL group (DDP's collectives between GPUs are then not exercised: it says so).
NGPU=$(nvidia-smi --list-gpus | wc -l)
NP=$(( NGPU < 4 ? NGPU : 4 ))
echo "== ddp_nccl: $NGPU GPU(s), $NP process(es)$([ "$NP" -lt 2 ] && echo ': a one-rank group, NCCL between GPUs NOT exercised')" \
  | tee "$OUT/ddp_nccl_note.txt"
step ddp_nccl "${DDP_LIMIT:-180}" python3 -m torch.distributed.run --standalone --nproc_per_node "$NP" -m gimtool train \
  --images $G/mri --geno $G/geno.geno --keep $G/cohort/train.ids --val-keep $G/cohort/val.ids --method gim --epochs 2 \
  --batch-size $((4 * NP)) --device cuda --out $G/run_ddp --no-progress
rm -rf $G
