#!/usr/bin/env python3
"""`retrain export web` in headless Chromium against `retrain predict` on the same photos.

Trains a hymenoptera model (MobileNetV2) in fp32 and int8, exports each as a page, and for
each page: its weight (bytes a first visit downloads, and gzip-compressed as a server that
compresses sends them), then in a fresh headless Chromium (bench/web.cjs) the time from
navigation to the first answer and the milliseconds per photo through `retrain.classify`, once
served by `retrain serve --static` (cross-origin isolated: WebAssembly threads) and once by
`python3 -m http.server` (not isolated: one thread). Every answer is compared with `retrain
predict` on the same photos: top-1 agreement, the largest probability and ood_score
differences, and agreement on "unknown".

    python3 bench/web.py [--photos N]

Needs the release build (bash setup.sh) and Chromium + playwright-core + onnxruntime-web in
.browser/ (bash tests/setup.sh).
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/retrain")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
ORT_WEB = os.path.join(ROOT, ".browser/onnxruntime-web")


def photos(n):
    out = []
    for c in ["ants", "bees"]:
        d = os.path.join(SHARED, "data/hymenoptera/val", c)
        out += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    return out[:n] if n else out


def weight(d):
    raw = packed = 0
    for base, _, files in os.walk(d):
        for f in files:
            b = open(os.path.join(base, f), "rb").read()
            raw += len(b)
            packed += len(gzip.compress(b, 6))
    return raw, packed


def serve(cmd, cwd=None):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    return p


def browser(url, files):
    chromium = open(os.path.join(ROOT, ".browser/chromium")).read().strip()
    out = subprocess.run(["node", os.path.join(ROOT, "bench/web.cjs"), chromium, url] + files, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def compare(web, want):
    by = {os.path.basename(p["path"]): p for p in want["predictions"]}
    agree, known_agree, dp, dood = 0, 0, 0.0, 0.0
    for a in web["answers"]:
        w = by[a["name"]]
        agree += a["top"][0]["class"] == w["top"][0]["class"]
        pw = {t["class"]: t["probability"] for t in w["top"]}
        dp = max(dp, max(abs(t["probability"] - pw[t["class"]]) for t in a["top"]))
        if "ood_score" in w:
            dood = max(dood, abs(a["ood_score"] - w["ood_score"]))
        known_agree += a.get("known") == w.get("known")
    n = len(web["answers"])
    return agree, known_agree, n, dp, dood


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=0, help="how many validation photos (default: all 153)")
    args = ap.parse_args()
    files = photos(args.photos)
    t = tempfile.mkdtemp(prefix="retrain-web-bench-")
    print(f"photos: {len(files)} from ../shared/data/hymenoptera/val; {os.cpu_count()} cores; mobilenet_v2")
    for precision in ["fp32", "int8"]:
        model = os.path.join(t, f"hym-{precision}.onnx")
        subprocess.run([BIN, "train", os.path.join(SHARED, "data/hymenoptera"), "--out", model, "--precision", precision, "-q"], check=True)
        site = os.path.join(t, f"site-{precision}")
        subprocess.run([BIN, "export", "web", model, site, "--ort-web", ORT_WEB, "-q"], check=True)
        raw, packed = weight(site)
        mb = os.path.getsize(model) / 2**20
        print(f"\n{precision}: page {raw / 2**20:.1f} MB ({packed / 2**20:.1f} MB gzip), of which the model {mb:.1f} MB")
        for threads in ["1", "2"]:
            t0 = time.time()
            out = subprocess.run([BIN, "predict", model, *files, "--format", "json", "--top", "2", "--threads", threads], capture_output=True, text=True, check=True)
            predict_s = time.time() - t0
            want = json.loads(out.stdout)
            print(f"  retrain predict --threads {threads}: {1000 * predict_s / len(files):.1f} ms a photo ({predict_s:.2f} s for {len(files)} in batches of 32, start-up included)")
        for how in ["isolated", "plain"]:
            if how == "isolated":
                p = serve([BIN, "serve", "--static", site, "--port", "0"])
                url = p.stdout.readline().strip().removeprefix("listening on ")
            else:
                p = serve([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"], cwd=site)
                line = p.stdout.readline()
                port = line.split("port ")[1].split(" ")[0]
                url = f"http://127.0.0.1:{port}/"
            try:
                web = browser(url, files)
            finally:
                p.terminate()
                p.wait()
            ms = sorted(a["ms"] for a in web["answers"][1:])
            agree, known, n, dp, dood = compare(web, want)
            b = web["backend"]
            server = "retrain serve --static" if how == "isolated" else "python3 -m http.server"
            print(f"  Chromium via {server} ({b['threads']} thread{'s' if b['threads'] > 1 else ''}, isolated {str(b['crossOriginIsolated']).lower()}):")
            print(f"    model ready {web['readyMs']} ms, first answer {web['firstAnswerMs']} ms after navigation")
            print(f"    {sum(ms) / len(ms):.1f} ms a photo (median {ms[len(ms) // 2]:.1f}, p90 {ms[int(len(ms) * 0.9)]:.1f}), one at a time; of which the model and preprocessing about {web['modelMs']:.1f} ms (median, a decoded 256×256 image)")
            print(f"    agreement with predict: top-1 {agree}/{n}, unknown {known}/{n}; largest difference: probability {dp:.4f}, ood_score {dood:.4f}")
            if web["problems"]:
                print(f"    browser console: {web['problems']}")


if __name__ == "__main__":
    main()
