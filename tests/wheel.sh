#!/usr/bin/env bash
# The Python wheel, end to end: built from this checkout the way `pip wheel .` builds it (maturin
# as the PEP 517 backend, here with zig for manylinux_2_28), checked with auditwheel, installed
# into a fresh virtual environment in a temporary folder and run there with no Rust on PATH, no
# .venv of the checkout, no ORT_DYLIB_PATH or VIRTUAL_ENV, from another working directory: its
# `train` + `predict` answers must equal the source build's. Then `uv tool run` and `pipx run` of
# the same wheel, and the environment without its onnxruntime package: the clear error, exit code 2.
# Needs `bash setup.sh` (the source build) and `bash tests/setup.sh` (maturin, ziglang,
# auditwheel, uv and pipx in .venv-wheel). The wheel build reuses target/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=$root/.venv-wheel/bin
for t in maturin auditwheel uv pipx; do
    [ -x "$tools/$t" ] || { echo "tests/wheel.sh: no $tools/$t; run bash tests/setup.sh" >&2; exit 1; }
done
src_bin=$root/target/release/retrain
[ -x "$src_bin" ] || { echo "tests/wheel.sh: no $src_bin; run bash setup.sh" >&2; exit 1; }
ort_version=$(sed -n 's/^ORT_VERSION=//p' setup.sh)
weights=$root/../shared/weights/mobilenet_v2-b0353104.pth
[ -f "$weights" ] || { echo "tests/wheel.sh: no $weights (../shared beside the checkout)" >&2; exit 1; }

fail() { echo "tests/wheel.sh: FAIL: $*" >&2; exit 1; }
step() { echo "== wheel: $*"; }

# 1. Build, as pip's PEP 517 front end does, without build isolation so the pinned tools are used.
step "build (pip wheel . with maturin --zig, manylinux_2_28)"
rm -rf target/wheels
start=$SECONDS
PATH=$tools:$PATH MATURIN_PEP517_ARGS="--zig --compatibility manylinux_2_28" \
    "$tools/pip" wheel . --no-deps --no-build-isolation -q -w target/wheels
wheels=(target/wheels/retrain_cli-*.whl)
[ ${#wheels[@]} = 1 ] && [ -f "${wheels[0]}" ] || fail "expected one retrain_cli wheel in target/wheels, found: ${wheels[*]}"
wheel=$root/${wheels[0]}
bytes=$(stat -c %s "$wheel")
echo "wheel: $(basename "$wheel"), $((bytes / 1024 / 1024)) MiB ($bytes bytes), built in $((SECONDS - start)) s"
case "$(basename "$wheel")" in *manylinux_2_28_x86_64*) ;; *) fail "$(basename "$wheel") is not tagged manylinux_2_28_x86_64" ;; esac
[ "$bytes" -lt $((30 * 1024 * 1024)) ] || fail "the wheel is $bytes bytes, over the 30 MiB goal"
show=$("$tools/auditwheel" show "$wheel" 2>&1) || fail "auditwheel show: $show"
echo "$show" | tr '\n' ' ' | grep -q 'manylinux_2_28_x86_64' || fail "auditwheel does not find it manylinux_2_28: $show"
echo "auditwheel: $(echo "$show" | tr '\n' ' ' | sed 's/  */ /g' | cut -c1-300)"

# 2. A fresh environment in a temporary folder, and a clean process environment to run it in.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step "pip install into a fresh venv in $work"
python3 -m venv "$work/env"
"$work/env/bin/pip" install -q --disable-pip-version-check "$wheel"
"$work/env/bin/pip" show -q onnxruntime >/dev/null || fail "installing the wheel did not install onnxruntime"
installed=$("$work/env/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)')
[ "$installed" = "$ort_version" ] || fail "the wheel pulled onnxruntime $installed, setup.sh pins $ort_version"
mkdir -p "$work/home" "$work/cache/retrain/weights" "$work/src-cache/retrain/weights" "$work/elsewhere"
# The weights the bundled default needs, as a first run would have downloaded them; a cache each,
# so neither build reads features the other computed.
cp "$weights" "$work/cache/retrain/weights/"
cp "$weights" "$work/src-cache/retrain/weights/"
clean() {
    (cd "$work/elsewhere" && env -i HOME="$work/home" XDG_CACHE_HOME="${cache:-$work/cache}" PATH="$work/env/bin" \
        LANG=C.UTF-8 "$@")
}
clean /bin/sh -c 'command -v cargo rustc' >/dev/null 2>&1 && fail "cargo or rustc is on the clean PATH"
[ "$(clean /bin/sh -c 'command -v retrain')" = "$work/env/bin/retrain" ] || fail "retrain on the clean PATH is not the installed one"

step "retrain --version"
version=$(clean retrain --version) || fail "retrain --version failed"
echo "$version"
echo "$version" | grep -q "^retrain " || fail "--version does not name retrain"
echo "$version" | grep -q "^ONNX Runtime $ort_version ($work/env/lib/python3[^/]*/site-packages/onnxruntime/capi/libonnxruntime" ||
    fail "--version does not name the runtime of the installed environment"

step "train + predict from the installed wheel, and from the source build"
data=$root/examples/flowers-mini
clean retrain train "$data" --out m.onnx --quiet || fail "train from the wheel failed"
clean retrain predict m.onnx "$data" --top 2 --format json > "$work/wheel.json" ||
    fail "predict from the wheel failed"
mkdir -p "$work/src"
(cd "$work/src" && XDG_CACHE_HOME="$work/src-cache" "$src_bin" train "$data" --out m.onnx --quiet &&
    XDG_CACHE_HOME="$work/src-cache" "$src_bin" predict m.onnx "$data" --top 2 --format json) \
    > "$work/src.json" || fail "the source build's train + predict failed"
cmp -s "$work/wheel.json" "$work/src.json" || {
    diff <(head -c 2000 "$work/wheel.json") <(head -c 2000 "$work/src.json") >&2 || true
    fail "the wheel's predictions differ from the source build's"
}
photos=$("$work/env/bin/python" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["predictions"]))' "$work/wheel.json")
[ "$photos" -gt 0 ] || fail "predict answered no photo"
cmp -s "$work/elsewhere/m.onnx" "$work/src/m.onnx" && same_model="byte-identical" || same_model="different bytes"
echo "same predictions for $photos photos; the two model files are $same_model"

step "uv tool run --from the wheel"
# The caller's environment otherwise (uv needs its certificates and proxies to reach the index).
uv_out=$(env -u VIRTUAL_ENV -u ORT_DYLIB_PATH HOME="$work/home" PATH="$tools:/usr/bin:/bin" UV_CACHE_DIR="$work/uv-cache" \
    UV_TOOL_DIR="$work/uv-tools" "$tools/uv" tool run --quiet --from "$wheel" retrain --version) ||
    fail "uv tool run --from the wheel retrain --version failed: $uv_out"
echo "$uv_out"
echo "$uv_out" | grep -q "^ONNX Runtime $ort_version ($work/uv-cache/" || fail "uv's retrain does not load the runtime of uv's environment"

step "pipx run --spec the wheel"
pipx_out=$(env -u VIRTUAL_ENV -u ORT_DYLIB_PATH HOME="$work/home" PATH="$tools:/usr/bin:/bin" PIPX_HOME="$work/pipx" \
    PIPX_BIN_DIR="$work/pipx-bin" "$tools/pipx" run --spec "$wheel" retrain --version) ||
    fail "pipx run --spec the wheel retrain --version failed: $pipx_out"
echo "$pipx_out"
echo "$pipx_out" | grep -q "^ONNX Runtime $ort_version ($work/" || fail "pipx's retrain does not load the runtime of pipx's environment"

step "the environment without onnxruntime: the clear error, exit code 2"
"$work/env/bin/pip" uninstall -y -q onnxruntime
# A cache without features, or train would not need the runtime.
mkdir -p "$work/cache2/retrain/weights"
cp "$weights" "$work/cache2/retrain/weights/"
set +e
cache=$work/cache2 clean retrain train "$data" --out m2.onnx --quiet 2> "$work/err.txt"
code=$?
set -e
cat "$work/err.txt"
[ "$code" = 2 ] || fail "exit code $code, not 2"
grep -q "ONNX Runtime not found" "$work/err.txt" || fail "the error does not say ONNX Runtime was not found"
grep -qF "$work/env/lib/python3" "$work/err.txt" || fail "the error does not name the environment's site-packages"
grep -qF "$work/env/bin/python -m pip install onnxruntime==$ort_version" "$work/err.txt" ||
    fail "the error does not give the pip install that fixes it"
[ ! -e "$work/elsewhere/m2.onnx" ] || fail "a model was written without a runtime"
set +e
clean retrain predict m.onnx "$data" > /dev/null 2>&1
code=$?
set -e
[ "$code" = 2 ] || fail "predict without a runtime: exit code $code, not 2"
set +e
clean retrain --version > /dev/null 2>&1
code=$?
set -e
[ "$code" = 2 ] || fail "--version without a runtime: exit code $code, not 2"
echo "wheel: all checks passed"
