"""The PyTorch fine-tuning recipe retrain's `--strategy finetune|full` is measured against:
torchvision ImageFolder + DataLoader (2 workers), the pretrained backbone with a new linear head,
the last N blocks + head trainable (their BatchNorm in training mode, frozen BatchNorm
elsewhere), RandomResizedCrop(scale 0.25-1) + horizontal flip + ColorJitter(0.2, 0.2, 0.2),
AdamW (head lr, blocks lr/10, weight decay 0.01), linear warm-up for half an epoch then cosine
decay, batch 32 — retrain's defaults. `--full`: every layer trainable, BatchNorm in training mode.

usage: torch_finetune.py DATA_DIR WEIGHTS.pth --model mobilenet_v2 [--unfreeze 4] [--epochs 5]
       [--full] [--threads 2] [--val-fraction 0.2 --seed 0]
Prints one JSON line: val accuracy per epoch, best, seconds.
"""
import argparse
import json
import math
import time

T0 = time.perf_counter()
import torch  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import transforms  # noqa: E402

from torch_linear_probe import backbone, datasets  # noqa: E402


def blocks(name, model):
    """The trainable units, input to output, as retrain's zoo lists them."""
    if name == "mobilenet_v2":
        return [[f"features.{i}."] for i in range(19)]
    if name == "efficientnet_lite0":
        return [["_conv_stem.", "_bn0."]] + [[f"_blocks.{i}."] for i in range(len(model._blocks))] + \
            [["_conv_head.", "_bn1."]]
    raise SystemExit(f"no block list for {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("weights")
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--unfreeze", type=int, default=4)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--body-lr", type=float, default=None, help="the unfrozen blocks' (default: lr / 10)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, norm = backbone(a.model, a.weights)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(224, scale=(0.25, 1.0)),
                                   transforms.RandomHorizontalFlip(), transforms.ColorJitter(0.2, 0.2, 0.2),
                                   transforms.ToTensor(), norm])
    eval_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm])
    train, val = datasets(a.data, train_tf, eval_tf, a.val_fraction, a.seed)
    classes = len((train.dataset if isinstance(train, Subset) else train).classes)

    head = torch.nn.Linear(1280, classes)
    units = blocks(a.model, model)
    trainable = [p for u in (units if a.full else units[-a.unfreeze:]) for p in u]
    body_params = []
    for n, p in model.named_parameters():
        p.requires_grad = a.full or any(n.startswith(t) for t in trainable)
        if p.requires_grad:
            body_params.append(p)

    def set_modes():
        model.train(a.full)
        if not a.full:
            for n, m in model.named_modules():
                if any((n + ".").startswith(t) for t in trainable):
                    m.train()
        head.train()

    opt = torch.optim.AdamW([{"params": body_params, "lr": a.body_lr or a.lr / 10}, {"params": head.parameters(), "lr": a.lr}],
                            weight_decay=0.01)
    loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=a.workers, drop_last=False)
    steps = a.epochs * len(loader)
    warm = math.ceil(0.5 * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm)))))
    val_loader = DataLoader(val, batch_size=64, num_workers=a.workers)
    curve = []
    t_train = time.perf_counter()
    for epoch in range(a.epochs):
        set_modes()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(head(model(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        head.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (head(model(x)).argmax(1) == y).sum().item()
                total += len(y)
        curve.append(correct / total)
    print(json.dumps({"val_accuracy_per_epoch": curve, "val_accuracy": curve[-1],
                      "train_images": len(train), "seconds": {"train": time.perf_counter() - t_train,
                                                              "total_in_process": time.perf_counter() - T0}}))


if __name__ == "__main__":
    main()
