#!/usr/bin/env bash
# gwas as a Slurm job array: task K of N scans the K-th of N contiguous parts of the SNPs
# (gimtool gwas --chunk K/N, written to $OUT.chunkKofN.*); a merge job, started only when every
# task has succeeded, joins them into $OUT.<PHENO>.sumstats.gz, the Manhattan and QQ plots and
# $OUT.summary.tsv (gimtool merge --gwas): the sumstats byte for byte those of one gwas run.
#
#   BFILE=ukb PHENO=pcs.tsv OUT=gwas/pcs N=20 GWAS_ARGS="--covar covars.tsv" bash examples/slurm/gwas_array.sh
#   DRY_RUN=1 BFILE=ukb PHENO=pcs.tsv OUT=gwas/pcs N=4 bash examples/slurm/gwas_array.sh
#
# DRY_RUN=1 prints the sbatch commands and the gimtool command of every task and of the merge,
# and runs nothing. Inside the allocation the script runs itself as `task` (SLURM_ARRAY_TASK_ID
# is K) or `merge`. The tasks draw no plots; the merge draws them for the whole genome.
#
# Settings (environment):
#   BFILE       PLINK 1 fileset prefix (prep-geno output)                  (required)
#   PHENO       phenotype table (FID IID name...)                           (required)
#   OUT         output prefix of the merged results                         (required)
#   N           number of array tasks (parts of the genome)                 (default 10)
#   GWAS_ARGS   more gwas options, the same for every task, e.g.
#               "--covar covars.tsv --covar-name age,sex --maf 0.01"
#   THREADS     CPUs per task (gwas --threads)                              (default 8)
#   TIME        time limit per task                                         (default 02:00:00)
#   MEM         memory per task                                             (default 16G)
#   GIMTOOL     the gimtool executable                                      (default gimtool)
#   SBATCH_ARGS more sbatch options (partition, account)
set -euo pipefail

: "${BFILE:?set BFILE to the PLINK fileset prefix}" "${PHENO:?set PHENO to the phenotype table}" "${OUT:?set OUT to the output prefix}"
N=${N:-10}
THREADS=${THREADS:-8}
TIME=${TIME:-02:00:00}
MEM=${MEM:-16G}
GIMTOOL=${GIMTOOL:-gimtool}
read -r -a GWAS <<< "${GWAS_ARGS:-}"
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

chunk() { echo "$OUT.chunk${1}of$N"; }

task() {  # task K: the K-th part of the SNPs
  run "$GIMTOOL" gwas --bfile "$BFILE" --pheno "$PHENO" --chunk "$1/$N" --out "$(chunk "$1")" --no-plots \
    --threads "$THREADS" "${GWAS[@]}"
}

merge() {
  local parts=() k
  for k in $(seq 1 "$N"); do parts+=("$(chunk "$k")"); done
  local plots=()
  [[ " ${GWAS[*]} " == *" --no-plots "* ]] && plots=(--no-plots)
  run "$GIMTOOL" merge --out "$OUT" --gwas "$(IFS=,; echo "${parts[*]}")" "${plots[@]}"
}

submit_all() {
  local logs
  logs="$(dirname "$OUT")/slurm-logs"
  dry || mkdir -p "$logs"
  submit array --job-name=gwas --array="1-$N" --cpus-per-task="$THREADS" --mem="$MEM" --time="$TIME" \
    --output="$logs/gwas_%A_%a.out" --export=ALL "${EXTRA[@]}" "$SCRIPT" task
  submit joined --job-name=gwas-merge --dependency="afterok:$array" --cpus-per-task=1 --mem="$MEM" --time="$TIME" \
    --output="$logs/gwas-merge_%j.out" --export=ALL "${EXTRA[@]}" "$SCRIPT" merge
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
