#!/usr/bin/env bash
# train on GPU nodes under Slurm: one torchrun per node (srun), NODES x GPUS processes in one
# DistributedDataParallel job (NCCL between the GPUs and the nodes; each process takes GPU
# LOCAL_RANK, --batch-size is the global batch). Slurm sends SIGTERM 5 minutes before the time
# limit (--signal=TERM@300); train then saves last.pt at the next step and stops. Submitting the
# script again continues the run (--resume is added when $OUT/last.pt exists) to the weights an
# uninterrupted run would have reached.
#
# Not exercised on a cluster here: this repository's tests check the script with bash -n and its
# dry run, and DDP with gloo on 2 CPU processes; NCCL on several GPUs is what
# benchmarks/gpu_checks.sh runs where a multi-GPU machine is lent.
#
#   IMAGES=cohort.img GENO=geno.geno OUT=runs/gim NODES=2 GPUS=4 \
#     TRAIN_ARGS="--keep train.ids --val-keep val.ids --method gim --epochs 100 --patience 10" \
#     bash examples/slurm/train_torchrun.sh
#   DRY_RUN=1 IMAGES=cohort.img GENO=geno.geno OUT=runs/gim NODES=2 GPUS=4 bash examples/slurm/train_torchrun.sh
#
# DRY_RUN=1 prints the sbatch command and the srun/torchrun command the job runs, and runs
# nothing (outside Slurm the first node is shown as NODE0). Inside the allocation the script
# runs itself as `run`.
#
# Settings (environment):
#   IMAGES      image store (prep-mri output)                                  (required)
#   GENO        genotype store (prep-geno output, PREFIX.geno)                  (required)
#   OUT         run folder                                                      (required)
#   NODES       nodes                                                           (default 2)
#   GPUS        GPUs per node (processes per node)                              (default 4)
#   CPUS        CPUs per node (each process gets CPUS/GPUS threads)             (default 32)
#   TRAIN_ARGS  more train options, e.g. "--keep train.ids --val-keep val.ids --method gim --epochs 100"
#   TIME        time limit of the job                                           (default 24:00:00)
#   PORT        rendezvous port on the first node                               (default 29500)
#   SBATCH_ARGS more sbatch options (partition, account), e.g. "--partition=gpu"
set -euo pipefail

: "${IMAGES:?set IMAGES to the image store}" "${GENO:?set GENO to the genotype store}" "${OUT:?set OUT to the run folder}"
NODES=${NODES:-2}
GPUS=${GPUS:-4}
CPUS=${CPUS:-32}
TIME=${TIME:-24:00:00}
PORT=${PORT:-29500}
read -r -a TRAIN <<< "${TRAIN_ARGS:-}"
read -r -a EXTRA <<< "${SBATCH_ARGS:-}"
SCRIPT=$(realpath "$0")

dry() { [ "${DRY_RUN:-0}" = 1 ]; }

# run CMD...: run it, or under DRY_RUN=1 print it (shell-quoted: the printed line can be pasted)
run() {
  if dry; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}

train() {  # inside the allocation: one torchrun per node
  local first resume=()
  if [ -n "${SLURM_JOB_NODELIST:-}" ]; then
    first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  else
    first=NODE0
  fi
  [ -f "$OUT/last.pt" ] && resume=(--resume)
  export OMP_NUM_THREADS=$((CPUS / GPUS))
  run srun --nodes="$NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
    torchrun --nnodes="$NODES" --nproc_per_node="$GPUS" --rdzv_id="${SLURM_JOB_ID:-0}" --rdzv_backend=c10d \
    --rdzv_endpoint="$first:$PORT" -m gimtool train --images "$IMAGES" --geno "$GENO" --out "$OUT" --device cuda \
    --threads "$((CPUS / GPUS))" "${TRAIN[@]}" "${resume[@]}"
}

submit_all() {
  dry || mkdir -p "$OUT"
  run sbatch --job-name=gimtool-train --nodes="$NODES" --ntasks-per-node=1 --gpus-per-node="$GPUS" \
    --cpus-per-task="$CPUS" --time="$TIME" --signal=TERM@300 --output="$OUT.slurm_%j.out" --export=ALL \
    "${EXTRA[@]}" "$SCRIPT" run
  if dry; then
    echo "# the job runs:"
    train
  fi
}

case "${1:-submit}" in
  submit) submit_all ;;
  run) train ;;
  *) echo "usage: $0 [submit|run]" >&2; exit 2 ;;
esac
