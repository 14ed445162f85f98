"""Feature extraction speed per backbone: retrain's graph in ONNX Runtime against the same
torchvision model in PyTorch, batch 32, 2 threads, side by side in one run.

usage: bench/.venv/bin/python bench/backbones.py [--batches 3] [NAME ...]
Needs `cargo build --release --workspace --examples` and `bash bench/setup.sh`. Prints a Markdown table.
Weights are the synthetic ones of the parity fixtures on both sides (speed does not depend on
the values). Decoding is not included: this is the network alone; see train_vs_pytorch.py for
the whole pipeline.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "backbone_speed")
NAMES = ["alexnet", "vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "inception_v3",
         "densenet121", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0",
         "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "convnext_tiny", "vit_b_16"]
CROP = {"inception_v3": 299, "efficientnet_b1": 240, "efficientnet_b2": 288, "efficientnet_b3": 300}


def torch_speed(name, batches, batch, threads):
    torch.set_num_threads(threads)
    kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
    m = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    crop = CROP.get(name, 224)
    x = torch.rand(batch, 3, crop, crop)
    with torch.inference_mode():
        m(x)
        t = time.perf_counter()
        for _ in range(batches):
            m(x)
    return batches * batch / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    rows = []
    for name in a.names or NAMES:
        out = subprocess.run([EXAMPLE, name, str(a.batches), str(a.batch), str(a.threads)], check=True,
                             capture_output=True, text=True).stdout
        ours = json.loads(out)["images_per_s"]
        theirs = torch_speed(name, a.batches, a.batch, a.threads)
        rows.append((name, ours, theirs))
        print(f"{name}: retrain/ORT {ours:.1f} img/s, PyTorch {theirs:.1f} img/s", file=sys.stderr)
    print(f"\nbatch {a.batch}, {a.threads} threads, {a.batches} timed batches after one warm-up, images/s\n")
    print("| backbone | retrain (ONNX Runtime) | PyTorch | ratio |")
    print("|---|---|---|---|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}× |")


if __name__ == "__main__":
    main()
