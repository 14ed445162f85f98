#!/usr/bin/env bash
# Python tools of the scale-out adapters (Ray; Kubernetes schemas for the manifests' test) into
# ./.venv-deploy. When PyPI cannot be reached, says so and writes the reason to
# .venv-deploy/UNAVAILABLE: the tests that need these tools then print it and skip, instead of
# failing; they fail if this script was never run. Safe to run again.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=.venv-deploy
rm -f "$venv/UNAVAILABLE"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "deploy/setup.sh: python3 -m venv failed"; exit 1; }
fi
if log=$("$venv/bin/python" -m pip install -q -r deploy/requirements.txt 2>&1); then
    echo "deploy tools installed: $("$venv/bin/python" -c 'import ray; print("ray", ray.__version__)')"
else
    printf 'pip install -r deploy/requirements.txt failed:\n%s\n' "$log" | tail -n 20 > "$venv/UNAVAILABLE"
    echo "warning: deploy tools not installed; the tests that need them will skip:" >&2
    cat "$venv/UNAVAILABLE" >&2
fi
