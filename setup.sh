#!/usr/bin/env bash
# Sets retrain up on a fresh machine: ONNX Runtime from PyPI into ./.venv (where retrain finds
# it without ORT_DYLIB_PATH), then a release build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
ORT_VERSION=1.31.1
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# numpy and pillow serve the test that runs retrain's models from Python's onnxruntime.
.venv/bin/python -m pip install -q "onnxruntime==${ORT_VERSION}" numpy pillow
cargo build --release --quiet
echo "retrain is built: ./target/release/retrain (ONNX Runtime: $(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1))"
