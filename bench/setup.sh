#!/usr/bin/env bash
# The benchmarks' peers: torch, torchvision, scikit-learn, onnxruntime in bench/.venv (developers only;
# CI never needs torch).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q torch torchvision scikit-learn pillow numpy onnxruntime
