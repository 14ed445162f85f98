"""retrain train against the PyTorch linear-probe peer, side by side in one run on this machine.

usage: python3 bench/train_vs_pytorch.py [--threads 2] [--datasets hymenoptera flowers]
Needs: `bash setup.sh` (retrain) and `bash bench/setup.sh` (the peer), ../shared beside the
checkout. Each configuration runs --repeat times; the median wall time counts.
Prints a Markdown table: wall seconds (process start to exit), val accuracy, ratios.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
RETRAIN = os.path.join(ROOT, "target", "release", "retrain")
PEER_PY = os.path.join(ROOT, "bench", ".venv", "bin", "python")
WEIGHTS = os.path.join(SHARED, "weights", "mobilenet_v2-b0353104.pth")


def wall(cmd, env=None):
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t, out.stdout


def retrain(data, threads, cache, report, extra):
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    cmd = [RETRAIN, "--quiet", "--threads", str(threads), "train", data, "--model", "mobilenet_v2",
           "--weights", WEIGHTS, "--out", os.path.join(cache, "m.onnx"), "--report", report] + extra
    secs, _ = wall(cmd, env)
    with open(report) as f:
        return secs, json.load(f)["val_accuracy"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"])
    a = ap.parse_args()
    rows = []
    for name in a.datasets:
        data = os.path.join(SHARED, "data", name)
        extra = [] if name == "hymenoptera" else ["--val-fraction", "0.2"]
        cold, warm, peer = [], [], []
        for _ in range(a.repeat):
            cache = tempfile.mkdtemp(prefix="retrain-bench-")
            report = os.path.join(cache, "r.json")
            s, acc = retrain(data, a.threads, cache, report, extra)
            cold.append(s)
            s, _ = retrain(data, a.threads, cache, report, extra)
            warm.append(s)
            shutil.rmtree(cache)
            s, out = wall([PEER_PY, os.path.join(ROOT, "bench", "torch_linear_probe.py"), data, WEIGHTS,
                           "--threads", str(a.threads)])
            peer.append(s)
            peer_acc = json.loads(out)["val_accuracy"]
        c, w, p = statistics.median(cold), statistics.median(warm), statistics.median(peer)
        rows.append((name, c, w, acc, p, peer_acc))
        print(f"{name}: retrain cold {c:.2f}s warm {w:.2f}s acc {acc:.4f} | pytorch {p:.2f}s acc {peer_acc:.4f}",
              file=sys.stderr)
    print(f"\nmobilenet_v2 linear probe, {a.threads} threads, median of {a.repeat}, wall seconds incl. process start\n")
    print("| dataset | retrain cold | retrain warm (cached features) | PyTorch + sklearn | speed-up cold | speed-up warm | val acc retrain | val acc PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for name, c, w, acc, p, pacc in rows:
        print(f"| {name} | {c:.2f} s | {w:.2f} s | {p:.2f} s | {p / c:.1f}× | {p / w:.0f}× | {acc:.4f} | {pacc:.4f} |")


if __name__ == "__main__":
    main()
