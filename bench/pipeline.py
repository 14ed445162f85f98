"""The whole feature-extraction pipeline (files on disk → features) at the machine's limit:
retrain against ONNX Runtime alone on pre-decoded tensors (the model's ceiling) and against the
PyTorch peer (torchvision ImageFolder + DataLoader + the same backbone), in one run, same files,
same threads.

usage: bench/.venv/bin/python bench/pipeline.py [--threads 2] [--models ...] [--datasets ...]
                                               [--precisions fp32 int8] [--no-peer]
A second table compares `--precision int8` with fp32: speed, and the linear head's val accuracy.
Needs `bash setup.sh`, `cargo build --release --workspace --examples`, `bash bench/setup.sh`, ../shared.
ResNet-50 runs on synthetic weights (the parity fixture's; speed does not depend on the values).
Prints a Markdown table of images/s and ratios.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
RETRAIN = os.path.join(ROOT, "target", "release", "retrain")
SPEED = os.path.join(ROOT, "target", "release", "examples", "backbone_speed")
WEIGHTS = {
    "mobilenet_v2": os.path.join(SHARED, "weights", "mobilenet_v2-b0353104.pth"),
    "efficientnet_lite0": os.path.join(SHARED, "weights", "efficientnet-lite0-57934424.pth"),
}
sys.path.insert(0, os.path.join(ROOT, "tools"))


def synthetic_weights(name, path):
    from make_parity_fixtures import synthetic

    fx = json.load(open(os.path.join(ROOT, "tests", "fixtures", "parity", f"{name}.json")))
    torch.save({k: torch.from_numpy(synthetic(k, s)) for k, s in fx["tensors"]}, path)
    return path


def run(cmd, env=None):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_lite0", "resnet50"])
    ap.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"],
                    help="retrain runs per precision; fp32 is compared with bare ORT and PyTorch, int8 with fp32 and PyTorch")
    ap.add_argument("--no-peer", action="store_true", help="skip PyTorch (and the first table): precisions only")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="retrain-pipeline-")
    rows, prec_rows = [], []
    for model in a.models:
        w = WEIGHTS.get(model) or synthetic_weights(model, os.path.join(tmp, f"{model}.pth"))
        bare = json.loads(run([SPEED, model, "4", "32", str(a.threads), w]))["images_per_s"]
        # retrain runs a batch on `threads` single-threaded sessions side by side: the same, bare.
        streams = json.loads(run([SPEED, model, "4", "32", str(a.threads), w, str(a.threads)]))["images_per_s"]
        for ds in a.datasets:
            data = os.path.join(SHARED, "data", ds)
            report = os.path.join(tmp, "r.json")
            env = dict(os.environ, XDG_CACHE_HOME=tmp)
            by_precision = {}
            for precision in a.precisions:
                run([RETRAIN, "--quiet", "--threads", str(a.threads), "train", data, "--model", model, "--weights", w,
                     "--no-cache", "--precision", precision, "--out", os.path.join(tmp, "m.onnx"),
                     "--report", report] + (["--val-fraction", "0.2"] if ds == "flowers" else []), env)
                r = json.load(open(report))
                n = r["train_images"] + r["val_images"] + len(r["skipped"])
                # int8 pays for its calibration (64 images in fp32) once per run: shown apart.
                t = r["timings"]
                by_precision[precision] = (n / t["features"], n / (t["features"] + t["calibration"]), r["val_accuracy"])
            ours = by_precision.get("fp32", next(iter(by_precision.values())))[0]
            if len(by_precision) > 1:
                prec_rows.append((model, ds, by_precision, model not in WEIGHTS))
            if a.no_peer:
                continue
            peer = json.loads(run([sys.executable, os.path.join(ROOT, "bench", "torch_linear_probe.py"), data, w,
                                   "--model", model, "--threads", str(a.threads), "--features-only"]))
            theirs = peer["images"] / peer["seconds"]["features"]
            # int8 beside PyTorch, with its calibration pass counted: what a cold run gets.
            int8 = by_precision["int8"][1] if "int8" in by_precision else None
            rows.append((model, ds, ours, bare, streams, theirs, int8))
            print(f"{model} {ds}: retrain {ours:.1f} img/s, ORT bare {bare:.1f} / {streams:.1f}, PyTorch {theirs:.1f}",
                  file=sys.stderr)
    if rows:
        print_pipeline(rows, a.threads)
    if prec_rows:
        print_precisions(prec_rows, a.precisions)


def print_pipeline(rows, threads):
    print(f"\nfiles on disk → features, {threads} threads, batch 32, images/s (fp32 unless marked int8)\n")
    with_int8 = any(r[6] is not None for r in rows)
    extra = " retrain int8 incl. calibration | int8 / PyTorch |" if with_int8 else ""
    print(f"| backbone | dataset | retrain end-to-end | ONNX Runtime bare, 1 session × {threads} threads |"
          f" ONNX Runtime bare, {threads} sessions × 1 thread | PyTorch peer end-to-end |"
          " retrain / faster bare | retrain / PyTorch |" + extra)
    print("|---" * (8 + 2 * with_int8) + "|")
    for model, ds, ours, bare, streams, theirs, int8 in rows:
        cells = f" {int8:.1f} | {int8 / theirs:.1f}× |" if int8 is not None else (" — | — |" if with_int8 else "")
        print(f"| {model} | {ds} | {ours:.1f} | {bare:.1f} | {streams:.1f} | {theirs:.1f} | {ours / max(bare, streams):.2f} |"
              f" {ours / theirs:.1f}× |" + cells)


def print_precisions(prec_rows, precisions):
    others = [p for p in precisions if p != "fp32"]
    print(f"\n`--precision`: files on disk → features, images/s (and with the one-off calibration included),"
          f" and the linear head's val accuracy\n")
    print("| backbone | dataset | fp32 | " + " | ".join(f"{p} | {p} / fp32 | {p} incl. calibration" for p in others)
          + " | fp32 accuracy | " + " | ".join(f"{p} accuracy (Δ points)" for p in others) + " |")
    print("|---" * (4 + 4 * len(others)) + "|")
    for model, ds, res, synthetic in prec_rows:
        f_speed, _, f_acc = res["fp32"]
        cells = [f"{res[p][0]:.1f} | {res[p][0] / f_speed:.2f}× | {res[p][1]:.1f} ({res[p][1] / f_speed:.2f}×)"
                 for p in others]
        if synthetic:
            accs = ["— (synthetic weights)"] + ["—"] * len(others)
        else:
            accs = [f"{f_acc:.4f}"] + [f"{res[p][2]:.4f} ({100 * (res[p][2] - f_acc):+.2f})" for p in others]
        print(f"| {model} | {ds} | {f_speed:.1f} | " + " | ".join(cells) + " | " + " | ".join(accs) + " |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
