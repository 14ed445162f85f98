#!/usr/bin/env bash
# Extract on the cluster, wait for every shard, then train. kubectl's current context is used.
set -euo pipefail
cd "$(dirname "$0")"
kubectl apply -f extract-job.yaml
kubectl wait --for=condition=complete --timeout=24h job/retrain-features
kubectl apply -f train-job.yaml
kubectl wait --for=condition=complete --timeout=1h job/retrain-train
kubectl logs job/retrain-train
