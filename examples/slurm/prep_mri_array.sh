#!/usr/bin/env bash
# prep-mri as a Slurm job array: task K of N conforms the K-th of N contiguous parts of the scan
# list (gimtool prep-mri --shard K/N, written to $OUT.shardKofN); a merge job, started only when
# every task has succeeded, joins the parts into the image store $OUT (gimtool merge): byte for
# byte the store that one prep-mri run writes.
#
#   IMAGES=scans.tsv OUT=cohort.img N=40 bash examples/slurm/prep_mri_array.sh
#   DRY_RUN=1 IMAGES=scans.tsv OUT=cohort.img N=4 bash examples/slurm/prep_mri_array.sh
#
# DRY_RUN=1 prints the sbatch commands and the gimtool command of every task and of the merge,
# and runs nothing. Inside the allocation the script runs itself as `task` (SLURM_ARRAY_TASK_ID
# is K) or `merge`. A task killed at the time limit (SIGTERM) keeps its finished volumes: rerun
# it (`sbatch --array=K ...`) and --resume continues that part. A scan that fails is listed in
# the part's failed.tsv and kept out of the store (--allow-failures), as in one run.
#
# Settings (environment):
#   IMAGES      scan list (FID IID PATH [MAT]), as `prep-mri --images`   (required)
#   OUT         the image store to make                                    (required)
#   N           number of array tasks (parts)                              (default 10)
#   PREP_ARGS   more prep-mri options, the same for every task, e.g. "--voxel 2 --dtype uint8"
#   THREADS     CPUs per task (prep-mri --threads)                         (default 4)
#   TIME        time limit per task                                        (default 04:00:00)
#   MAX_PARALLEL  tasks running at once                                    (default 50)
#   GIMTOOL     the gimtool executable                                     (default gimtool)
#   SBATCH_ARGS more sbatch options (partition, account), e.g. "--partition=cpu --account=ukb"
set -euo pipefail

: "${IMAGES:?set IMAGES to the scan list}" "${OUT:?set OUT to the image store to make}"
N=${N:-10}
THREADS=${THREADS:-4}
TIME=${TIME:-04:00:00}
MAX_PARALLEL=${MAX_PARALLEL:-50}
GIMTOOL=${GIMTOOL:-gimtool}
read -r -a PREP <<< "${PREP_ARGS:-}"
read -r -a EXTRA <<< "${SBATCH_ARGS:-}"
SCRIPT=$(realpath "$0")

dry() { [ "${DRY_RUN:-0}" = 1 ]; }

# run CMD...: run it, or under DRY_RUN=1 print it (shell-quoted: the printed line can be pasted)
run() {
  if dry; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}

# submit VAR SBATCH-ARGS...: sbatch --parsable, the job id into VAR (DRY_RUN=1: printed, id JOB_<VAR>)
submit() {
  local var=$1; shift
  if dry; then run sbatch --parsable "$@"; printf -v "$var" 'JOB_%s' "$var"
  else printf -v "$var" '%s' "$(sbatch --parsable "$@")"; fi
}

# the merge redoes the cohort QC: it takes the tasks' --qc-threshold
MERGE=()
for ((i = 0; i < ${#PREP[@]}; i++)); do
  case "${PREP[i]}" in
    --qc-threshold) MERGE+=(--qc-threshold "${PREP[i + 1]}") ;;
    --qc-threshold=*) MERGE+=("${PREP[i]}") ;;
  esac
done

task() {  # task K: the K-th part
  run "$GIMTOOL" prep-mri --images "$IMAGES" --out "$OUT" --shard "$1/$N" --resume --allow-failures \
    --threads "$THREADS" "${PREP[@]}"
}

merge() {
  run "$GIMTOOL" merge --out "$OUT" "${MERGE[@]}"
}

submit_all() {
  local logs
  logs="$(dirname "$OUT")/slurm-logs"
  dry || mkdir -p "$logs"
  submit array --job-name=prep-mri --array="1-$N%$MAX_PARALLEL" --cpus-per-task="$THREADS" --time="$TIME" \
    --output="$logs/prep-mri_%A_%a.out" --export=ALL "${EXTRA[@]}" "$SCRIPT" task
  submit joined --job-name=prep-mri-merge --dependency="afterok:$array" --cpus-per-task=1 --time="$TIME" \
    --output="$logs/prep-mri-merge_%j.out" --export=ALL "${EXTRA[@]}" "$SCRIPT" merge
  if dry; then
    echo "# array task K of $N runs:"
    for k in $(seq 1 "$N"); do task "$k"; done
    echo "# then the merge job ($joined, after $array) runs:"
    merge
  else
    echo "submitted: array $array ($N tasks), merge $joined (after the array succeeds)"
  fi
}

case "${1:-submit}" in
  submit) submit_all ;;
  task) task "${SLURM_ARRAY_TASK_ID:?task mode runs inside a Slurm array}" ;;
  merge) merge ;;
  *) echo "usage: $0 [submit|task|merge]" >&2; exit 2 ;;
esac
