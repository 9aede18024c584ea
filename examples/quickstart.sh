#!/usr/bin/env bash
# The whole gimtool pipeline on the built-in synthetic cohort (about 2.5 minutes on 2 CPU cores).
#
#   bash examples/quickstart.sh [DIR]        (make quickstart runs it after setting up)
#
# Every step's outputs stay under DIR (default: quickstart/) with a .log beside them.
# Rerun after an interrupt or a failure, it picks up where the last complete step ended: a step
# is skipped only when its log ends with `status: ok` and no step before it was redone.
set -euo pipefail
D=${1:-quickstart}
T=${THREADS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$D"
step() { printf '\n== %s\n' "$*" >&2; }
REDO=0  # 1 once a step has run: every later step runs too (its inputs may have changed)
completed() { [ "$REDO" = 0 ] && [ -f "$1" ] && grep -qx 'status: ok' "$1"; }
# run LOG COMMAND...: run COMMAND unless LOG says it completed
run() {
  local log=$1; shift
  if completed "$log"; then printf '   done before (%s)\n' "$log" >&2; return; fi
  REDO=1
  "$@"
}

step "1/10 simulate: 800 people, 15k SNPs on 3 chromosomes, 4 genetic image factors with known causal loci"
run "$D/cohort/simulate.log" gimtool simulate --out "$D/cohort" --threads "$T"

step "2/10 prep-geno: QC, cM positions from the genetic map, genotype store"
run "$D/geno.log" gimtool prep-geno --bfile "$D/cohort/geno" --genetic-map "$D/cohort/genetic_map.txt" --out "$D/geno" --threads "$T"

step "3/10 prep-mri: conform the NIfTIs to a 6 mm MNI grid, z-score, QC, image store"
# the volumes an interrupted run stored are kept (--resume) when the scans are the same as then
MRI_RESUME=()
[ "$REDO" = 0 ] && [ -f "$D/mri.log" ] && MRI_RESUME=(--resume)
run "$D/mri.log" gimtool prep-mri --images "$D/cohort/images.tsv" --voxel 6 --threads "$T" --out "$D/mri" \
    ${MRI_RESUME[@]+"${MRI_RESUME[@]}"}

step "4/10 train --method gim: 3 epochs of the small model (best.pt: the epoch of best validation MI)"
# a training run stopped by a signal saved last.pt: --resume continues it
RESUME=()
if [ "$REDO" = 0 ] && [ -f "$D/gim/last.pt" ] && grep -qx 'status: interrupted' "$D/gim/train.log" 2>/dev/null; then
  RESUME=(--resume)
fi
run "$D/gim/train.log" gimtool train --images "$D/mri" --geno "$D/geno.geno" \
    --keep "$D/cohort/train.ids" --val-keep "$D/cohort/val.ids" --method gim --epochs 3 \
    --config "$HERE/quickstart.toml" --threads "$T" --out "$D/gim" ${RESUME[@]+"${RESUME[@]}"}

step "5/10 embed: 128-d representations of every person (from the run folder: its best.pt)"
run "$D/gim/embeddings.log" gimtool embed --checkpoint "$D/gim" --images "$D/mri" --out "$D/gim/embeddings"

step "6/10 pcs: two readouts of 10 dimensions, fit on the training people and applied to everyone:"
step "     the paper's top 10 PCs, and the 10 directions most associated with the training people's genotypes;"
step "     ancestry PCs of the test people from their genotypes"
run "$D/gim/emb.log" gimtool pcs --pheno "$D/gim/embeddings.tsv" --fit-keep "$D/cohort/train.ids" --n-pcs 10 --out "$D/gim/emb"
run "$D/gim/guided.log" gimtool pcs --pheno "$D/gim/embeddings.tsv" --fit-keep "$D/cohort/train.ids" --n-pcs 10 \
    --guided-by "$D/geno.geno" --out "$D/gim/guided"
run "$D/ancestry.log" gimtool pcs --bfile "$D/geno" --keep "$D/cohort/test.ids" --n-pcs 10 --out "$D/ancestry" --threads "$T"

step "7/10 gwas on the test people: both readouts, and the true factors (the ceiling); covariates age, sex, 10 ancestry PCs"
for name in gim guided truth; do
  pheno="$D/gim/emb.pcs.tsv"; [ $name = truth ] && pheno="$D/cohort/truth/factors.tsv"
  [ $name = guided ] && pheno="$D/gim/guided.pcs.tsv"
  run "$D/gwas/$name.log" gimtool gwas --bfile "$D/geno" --pheno "$pheno" --keep "$D/cohort/test.ids" \
      --covar "$D/cohort/covariates.tsv" --covar "$D/ancestry.covar.tsv" \
      --covar-name age,sex,PC1,PC2,PC3,PC4,PC5,PC6,PC7,PC8,PC9,PC10 \
      --out "$D/gwas/$name" --threads "$T"
done

step "8/10 clump --loci: independent loci at P < 5e-9 merged within 250 kb, union over phenotypes"
for name in gim guided truth; do
  run "$D/clump/$name.log" gimtool clump --bfile "$D/geno" --loci --out "$D/clump/$name" "$D"/gwas/$name.*.sumstats.gz
done

step "9/10 h2: GREML heritability of each PC on the test people"
run "$D/h2/gim.log" gimtool h2 --method greml --bfile "$D/geno" --pheno "$D/gim/emb.pcs.tsv" --keep "$D/cohort/test.ids" \
    --covar "$D/cohort/covariates.tsv" --covar-name age,sex --out "$D/h2/gim" --threads "$T"

step "10/10 mi: held-out JSE mutual information between the PCs and the genotypes (test people)"
run "$D/mi/gim.log" gimtool mi --pheno "$D/gim/emb.pcs.tsv" --pheno "$D/gim/guided.pcs.tsv" --pheno "$D/cohort/truth/factors.tsv" --geno "$D/geno.geno" \
    --keep "$D/cohort/test.ids" --genetic-encoder mlp --weight-decay 0.01 --select-snps 16 --out "$D/mi/gim" --threads "$T"

python "$HERE/summarize.py" "$D"
