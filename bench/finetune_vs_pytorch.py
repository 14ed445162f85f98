"""retrain's fine-tuning against the PyTorch recipe (bench/torch_finetune.py), side by side in
one run on this machine: same backbone, unfrozen blocks, batch, epochs, augmentation, optimiser.

usage: python3 bench/finetune_vs_pytorch.py [--models mobilenet_v2 efficientnet_lite0]
       [--dataset flowers] [--epochs 5] [--full-epochs 1] [--threads 2]
Needs `bash setup.sh` and `bash bench/setup.sh`, ../shared beside the checkout.
Wall time is process start to exit, retrain's including its linear warm-up and feature
extraction on a cold cache. Peak RSS of retrain from /usr/bin/time. Prints Markdown tables.
"""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
RETRAIN = os.path.join(ROOT, "target", "release", "retrain")
PEER_PY = os.path.join(ROOT, "bench", ".venv", "bin", "python")
WEIGHTS = {"mobilenet_v2": "mobilenet_v2-b0353104.pth", "efficientnet_lite0": "efficientnet-lite0-57934424.pth"}


def retrain(model, data, extra, threads):
    tmp = tempfile.mkdtemp(prefix="retrain-ft-")
    report = os.path.join(tmp, "r.json")
    cmd = ["/usr/bin/time", "-v", RETRAIN, "--quiet", "--threads", str(threads), "train", data, "--model", model,
           "--weights", os.path.join(SHARED, "weights", WEIGHTS[model]), "--out", os.path.join(tmp, "m.onnx"),
           "--report", report] + extra
    t = time.perf_counter()
    out = subprocess.run(cmd, env=dict(os.environ, XDG_CACHE_HOME=tmp), capture_output=True, text=True, check=True)
    secs = time.perf_counter() - t
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    with open(report) as f:
        r = json.load(f)
    return secs, r, rss


def peer(model, data, extra, threads):
    cmd = [PEER_PY, os.path.join(ROOT, "bench", "torch_finetune.py"), data,
           os.path.join(SHARED, "weights", WEIGHTS[model]), "--model", model, "--threads", str(threads)] + extra
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=os.path.join(ROOT, "bench"))
    return time.perf_counter() - t, json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_lite0"])
    ap.add_argument("--dataset", default="flowers")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--full-epochs", type=int, default=1, help="0 skips full fine-tuning")
    ap.add_argument("--full-dataset", default="hymenoptera")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print(f"## fine-tuning, {a.dataset}, {a.epochs} epochs, batch 32, {a.threads} threads\n")
    print("| backbone | strategy | retrain s | PyTorch s | speed-up | retrain val acc (linear → tuned) | PyTorch val acc | retrain peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    runs = [(m, "finetune", a.epochs, a.dataset) for m in a.models]
    if a.full_epochs:
        runs += [(m, "full", a.full_epochs, a.full_dataset) for m in a.models[:1]]
    for model, strategy, epochs, ds in runs:
        data = os.path.join(SHARED, "data", ds)
        split = [] if ds == "hymenoptera" else ["--val-fraction", "0.2"]
        extra = split + ["--strategy", strategy, "--epochs", str(epochs)]
        rs, r, rss = retrain(model, data, extra, a.threads)
        # The peer unfreezes as many blocks as retrain's default did, at its learning rates.
        unfrozen = str(r["finetune"]["unfrozen_blocks"])
        cfg = r["finetune"]["config"]
        peer_extra = split + ["--epochs", str(epochs), "--unfreeze", unfrozen, "--lr", str(cfg["lr"]),
                              "--body-lr", str(cfg["body_lr"])] + (["--full"] if strategy == "full" else [])
        ps, p = peer(model, data, peer_extra, a.threads)
        lin = r["finetune"]["curve"][0]["val_accuracy"]
        print(f"| {model} | {strategy} ({epochs} ep, {ds}) | {rs:.1f} | {ps:.1f} | {ps / rs:.2f}× | "
              f"{lin:.4f} → {r['val_accuracy']:.4f} | {p['val_accuracy']:.4f} | {rss:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
