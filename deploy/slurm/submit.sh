#!/usr/bin/env bash
# Sharded extraction on Slurm, then training:  deploy/slurm/submit.sh N DATA_DIR CACHE OUT.onnx
# RETRAIN_ARGS (--model, --weights, --precision ...) go to both steps, RETRAIN_TRAIN_ARGS to
# training only; sbatch passes the environment on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${1:?usage: submit.sh N DATA_DIR CACHE OUT.onnx}
DATA_DIR=${2:?usage: submit.sh N DATA_DIR CACHE OUT.onnx}
CACHE=${3:?usage: submit.sh N DATA_DIR CACHE OUT.onnx}
OUT=${4:?usage: submit.sh N DATA_DIR CACHE OUT.onnx}
jid=$(sbatch --parsable --array="0-$((N - 1))" "$here/extract.sbatch" "$DATA_DIR" "$CACHE")
jid=${jid%%;*} # "JOBID;CLUSTER" on federated clusters
tid=$(sbatch --parsable --dependency="afterok:$jid" "$here/train.sbatch" "$DATA_DIR" "$CACHE" "$OUT")
echo "features: job $jid (array of $N); train: job ${tid%%;*}, after it"
