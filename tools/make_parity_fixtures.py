"""Parity fixtures for the model zoo: torchvision's own models, filled with weights from a small
deterministic generator, run on fixed inputs. The Rust test (crates/retrain/tests/zoo_parity.rs)
regenerates the same weights and inputs, builds retrain's ONNX graph and compares logits.

Run by developers, not by CI (needs torch):
    bash bench/setup.sh && bench/.venv/bin/python tools/make_parity_fixtures.py [NAME ...]
Writes tests/fixtures/parity/NAME.json: tensor names and shapes, the inputs' seed, the logits.

The generator (mirrored by `retrain_weights::synthetic`):
  seed(name)  = FNV-1a 64 of the tensor name's UTF-8 bytes
  z_i         = splitmix64 output for state seed + (i + 1) * 0x9E3779B97F4A7C15, i = 0..n-1
  r_i         = (z_i >> 40) / 2^24 * 2 - 1            (uniform in [-1, 1), computed in f64)
  value       = scale(name, shape) * r_i + offset(name, shape), rounded to f32, where
    running_var: 0.5 * r + 1;  running_mean: 0.1 * r;  1-D `*.weight` (norms): 0.2 * r + 1;
    layer_scale: 0.5 * r;  other 1-D tensors (biases): 0.1 * r;  class_token, pos_embedding: 0.1 * r;
    anything else (conv / linear weights): r * sqrt(3 / fan_in), fan_in = numel / shape[0].
  Input pixels: uint8 = z_i >> 56 for the name "input:" + model, NHWC [2, crop, crop, 3].
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torchvision

MASK = (1 << 64) - 1
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "parity")

MODELS = {
    # name: (constructor kwargs, crop, mean, std) ; mean/std on 0..255 as retrain's registry has them
    "alexnet": ({}, 224), "vgg16": ({}, 224), "vgg16_bn": ({}, 224),
    "resnet18": ({}, 224), "resnet34": ({}, 224), "resnet50": ({}, 224), "resnet101": ({}, 224),
    "resnet152": ({}, 224), "inception_v3": ({"aux_logits": True, "transform_input": True, "init_weights": False}, 299),
    "densenet121": ({}, 224), "squeezenet1_1": ({}, 224), "mobilenet_v2": ({}, 224),
    "mobilenet_v3_large": ({}, 224), "mobilenet_v3_small": ({}, 224),
    "efficientnet_b0": ({}, 224), "efficientnet_b1": ({}, 240), "efficientnet_b2": ({}, 288),
    "efficientnet_b3": ({}, 300), "convnext_tiny": ({}, 224), "vit_b_16": ({}, 224),
    # No torchvision model: the efficientnet_pytorch-layout module of bench/torch_linear_probe.py.
    "efficientnet_lite0": ({"lite": (1.0, 1.0)}, 224), "efficientnet_lite1": ({"lite": (1.0, 1.1)}, 240),
    "efficientnet_lite2": ({"lite": (1.1, 1.2)}, 260),
}
LITE_MEAN, LITE_STD = np.array([127.0] * 3), np.array([128.0] * 3)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255


def fnv1a(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def splitmix(seed, n):
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def synthetic(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    r = (splitmix(fnv1a(name), n) >> np.uint64(40)).astype(np.float64) / float(1 << 24) * 2.0 - 1.0
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        v = 0.5 * r + 1.0
    elif leaf == "running_mean":
        v = 0.1 * r
    elif leaf == "layer_scale":
        v = 0.5 * r
    elif leaf in ("class_token", "pos_embedding"):
        v = 0.1 * r
    elif len(shape) == 1 and leaf == "weight":
        v = 0.2 * r + 1.0
    elif len(shape) <= 1:
        v = 0.1 * r
    else:
        v = r * math.sqrt(3.0 / (n // shape[0]))
    return v.astype(np.float32).reshape(shape)


def main():
    names = sys.argv[1:] or list(MODELS)
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        kwargs, crop = MODELS[name]
        if "lite" in kwargs:
            sys.path.insert(0, os.path.join(os.path.dirname(OUT), "..", "..", "bench"))
            from torch_linear_probe import Lite

            model = Lite(*kwargs["lite"]).eval()
            model.with_fc = True
            mean, std = LITE_MEAN, LITE_STD
        else:
            model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        sd = model.state_dict()
        tensors = []
        for k, t in sd.items():
            if not t.is_floating_point():
                continue
            shape = list(t.shape)
            sd[k] = torch.from_numpy(synthetic(k, shape))
            tensors.append([k, shape])
        model.load_state_dict(sd)
        px = (splitmix(fnv1a("input:" + name), 2 * crop * crop * 3) >> np.uint64(56)).astype(np.uint8)
        x = px.reshape(2, crop, crop, 3).astype(np.float32)
        x = (x - mean) / std
        x = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            out = model(x)
        logits = out.numpy().astype(np.float32)
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump({"model": name, "crop": crop, "torch": torch.__version__, "torchvision": torchvision.__version__,
                       "tensors": tensors, "imagenet_logits": [[float(v) for v in row] for row in logits]}, f)
        print(name, "max|logit|", float(np.abs(logits).max()), "tensors", len(tensors))


if __name__ == "__main__":
    main()
