"""The PyTorch fine-tuning recipe for photos with several labels that retrain's
`--strategy finetune` on a label file is measured against: bench/torch_finetune.py's recipe
(pretrained backbone, a new linear head, the last N blocks + head trainable with their BatchNorm
in training mode, RandomResizedCrop(scale 0.25-1) + flip + ColorJitter(0.2), AdamW with the
blocks at lr/10 and weight decay 0.01, half an epoch of warm-up then cosine, batch 32) with
`BCEWithLogitsLoss(pos_weight=negatives/positives per class, at least 1)`, reading a
`path,labels,split` CSV (labels joined by `|`).

usage: torch_multilabel.py LABELS.csv WEIGHTS.pth --model mobilenet_v2 [--unfreeze 12] [--epochs 3]
       [--lr 1e-3] [--body-lr 1e-4] [--threads 2]
Prints one JSON line: validation mAP and macro F1 at 0.5 per epoch, seconds.
"""
import argparse
import csv
import json
import math
import os
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import average_precision_score, f1_score  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from torch_finetune import blocks  # noqa: E402
from torch_linear_probe import backbone  # noqa: E402


class Rows(Dataset):
    def __init__(self, root, rows, names, tf):
        self.root, self.rows, self.names, self.tf = root, rows, names, tf

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r = self.rows[i]
        img = Image.open(os.path.join(self.root, r["path"])).convert("RGB")
        on = set(r["labels"].split("|"))
        return self.tf(img), torch.tensor([float(n in on) for n in self.names])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("labels")
    ap.add_argument("weights")
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--unfreeze", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--body-lr", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    root = os.path.dirname(os.path.abspath(a.labels))
    with open(a.labels) as f:
        rows = list(csv.DictReader(f))
    names = sorted({n for r in rows for n in r["labels"].split("|")})
    model, norm = backbone(a.model, a.weights)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(224, scale=(0.25, 1.0)),
                                   transforms.RandomHorizontalFlip(), transforms.ColorJitter(0.2, 0.2, 0.2),
                                   transforms.ToTensor(), norm])
    eval_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm])
    train = Rows(root, [r for r in rows if r["split"] == "train"], names, train_tf)
    val = Rows(root, [r for r in rows if r["split"] == "val"], names, eval_tf)
    y = np.array([[float(n in r["labels"].split("|")) for n in names] for r in train.rows])
    pos = y.sum(0)
    pos_weight = torch.tensor(np.maximum((len(y) - pos) / np.maximum(pos, 1), 1.0), dtype=torch.float32)

    head = torch.nn.Linear(1280, len(names))
    units = blocks(a.model, model)
    trainable = [p for u in units[-a.unfreeze:] for p in u]
    body_params = []
    for n, p in model.named_parameters():
        p.requires_grad = any(n.startswith(t) for t in trainable)
        if p.requires_grad:
            body_params.append(p)

    def set_modes():
        model.eval()
        for n, m in model.named_modules():
            if any((n + ".").startswith(t) for t in trainable):
                m.train()
        head.train()

    opt = torch.optim.AdamW([{"params": body_params, "lr": a.body_lr or a.lr / 10}, {"params": head.parameters(), "lr": a.lr}],
                            weight_decay=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=a.workers, drop_last=False)
    steps = a.epochs * len(loader)
    warm = math.ceil(0.5 * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm)))))
    val_loader = DataLoader(val, batch_size=64, num_workers=a.workers)
    curve = []
    t_train = time.perf_counter()
    for _ in range(a.epochs):
        set_modes()
        for x, t in loader:
            loss = loss_fn(head(model(x)), t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        head.eval()
        ps, ts = [], []
        with torch.no_grad():
            for x, t in val_loader:
                ps.append(torch.sigmoid(head(model(x))).numpy())
                ts.append(t.numpy())
        p, t = np.concatenate(ps), np.concatenate(ts)
        curve.append({"mAP": round(float(average_precision_score(t, p, average="macro")), 4),
                      "macro_f1": round(float(f1_score(t, p >= 0.5, average="macro", zero_division=0)), 4)})
    print(json.dumps({"per_epoch": curve, **curve[-1], "train_images": len(train),
                      "seconds": {"train": round(time.perf_counter() - t_train, 1),
                                  "total_in_process": round(time.perf_counter() - T0, 1)}}))


if __name__ == "__main__":
    main()
