"""The PyTorch way, as the tutorials write it: torchvision ImageFolder + DataLoader, a frozen
pretrained backbone, pooled features, scikit-learn logistic regression. The peer retrain is
measured against.

usage: torch_linear_probe.py DATA_DIR WEIGHTS.pth --model mobilenet_v2 [--threads 2]
       [--val-fraction 0.2 --seed 0]
Prints one JSON line: val_accuracy, images, seconds per stage.
"""
import argparse
import json
import os
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import transforms  # noqa: E402


def backbone(name, weights):
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    if name == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2()
        m.load_state_dict(sd)
        m.classifier = torch.nn.Identity()
        norm = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
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
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_import = time.perf_counter() - T0
    t = time.perf_counter()
    model, norm = backbone(a.model, a.weights)
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm])
    if os.path.isdir(os.path.join(a.data, "train")):
        train = torchvision.datasets.ImageFolder(os.path.join(a.data, "train"), tf)
        val = torchvision.datasets.ImageFolder(os.path.join(a.data, "val"), tf)
    else:
        full = torchvision.datasets.ImageFolder(a.data, tf)
        rng = np.random.default_rng(a.seed)
        targets = np.array(full.targets)
        tr_idx, va_idx = [], []
        for c in np.unique(targets):
            idx = np.flatnonzero(targets == c)
            rng.shuffle(idx)
            n_val = max(1, round(len(idx) * a.val_fraction))
            va_idx += idx[:n_val].tolist()
            tr_idx += idx[n_val:].tolist()
        train, val = Subset(full, tr_idx), Subset(full, va_idx)
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
