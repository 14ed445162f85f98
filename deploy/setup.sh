#!/usr/bin/env bash
# Python tools of the scale-out adapters (Ray; Kubernetes schemas for the manifests' test) into
# ./.venv-deploy. When they cannot be installed (no PyPI, no venv module), says so and writes the
# reason to .venv-deploy/UNAVAILABLE: the tests that need these tools then print it and skip
# instead of failing; they fail if this script was never run. Safe to run again.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=.venv-deploy
mkdir -p "$venv"
rm -f "$venv/UNAVAILABLE"
if log=$( { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } 2>&1 &&
    "$venv/bin/python" -m pip install -q -r deploy/requirements.txt 2>&1); then
    echo "deploy tools installed: $("$venv/bin/python" -c 'import ray; print("ray", ray.__version__)')"
else
    printf 'installing deploy/requirements.txt into %s failed:\n%s\n' "$venv" "$log" | tail -n 20 > "$venv/UNAVAILABLE"
    echo "warning: deploy tools not installed; the tests that need them will skip, saying:" >&2
    cat "$venv/UNAVAILABLE" >&2
fi
