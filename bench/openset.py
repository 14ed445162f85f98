"""How well a retrain model tells photos of its classes from photos of none of them.

Trains models with `retrain train`, runs them in Python's onnxruntime on in-distribution
validation photos (ID) and on photos of other classes (OOD), and prints, for each score, the
AUROC of telling the two apart and the false-positive rate at 95% ID acceptance. The scores are
the baselines of the open-set issue, computed from the model's own outputs on the same photos:

- msp: the largest softmax probability;
- energy: logsumexp of the logits;
- mahalanobis: distance to the nearest class mean under one shared covariance of the training
  features;
- knn: cosine similarity to the nearest training feature;
- model: the model's own `ood_score` output, when it has one (higher = less like its classes).

Cases: far (a hymenoptera model against flowers photos, and the reverse) and near (flowers, each
class held out of training in turn and shown as OOD).

For the model's own score it also prints the share of ID photos accepted at the threshold stored
in the model (`acc@thr`), the expected calibration error of its probabilities on the ID photos
without and with its temperature (`ece`), and what the score costs: the bank's bytes in the file
and the time of a batch of 32 with and without the `ood_score` output (ONNX Runtime computes only
what the outputs asked for need, so this is the same graph with the score's part left out).

usage: bench/.venv/bin/python bench/openset.py [--models mobilenet_v2,efficientnet_lite0]
       [--strategy linear|finetune] [--epochs N] [--cases far,near] [--ood-limit 200]
(any Python with numpy, onnxruntime and Pillow will do: the checkout's .venv has them)
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
BIN = os.path.join(ROOT, "target", "release", "retrain")
WEIGHTS = {
    "mobilenet_v2": os.path.join(SHARED, "weights", "mobilenet_v2-b0353104.pth"),
    "efficientnet_lite0": os.path.join(SHARED, "weights", "efficientnet-lite0-57934424.pth"),
}
EXTS = (".jpg", ".jpeg", ".png")


def photos(folder):
    return sorted(
        os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.lower().endswith(EXTS)
    )


def prepare(path, resize, crop):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    nw, nh = (resize, round(resize * h / w)) if w <= h else (round(resize * w / h), resize)
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - crop) / 2.0)), int(round((nh - crop) / 2.0))
    return np.asarray(im.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def session(model, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_model(model, files, threads):
    s = session(model, threads)
    pre = json.loads(s.get_modelmeta().custom_metadata_map["retrain.preprocess"])
    names = [o.name for o in s.get_outputs()]
    want = [n for n in ("logits", "probabilities", "features", "ood_score") if n in names]
    out = {n: [] for n in want}
    for i in range(0, len(files), 32):
        x = np.stack([prepare(f, pre["resize"], pre["crop"]) for f in files[i : i + 32]])
        for n, v in zip(want, s.run(want, {"image": x})):
            out[n].append(v)
    return {n: np.concatenate(v) for n, v in out.items()}


def auroc(id_scores, ood_scores):
    """P(an OOD photo scores above an ID photo): scores are 'higher = more unknown'."""
    s = np.concatenate([id_scores, ood_scores])
    ranks = s.argsort().argsort().astype(np.float64) + 1
    n_id, n_ood = len(id_scores), len(ood_scores)
    return (ranks[n_id:].sum() - n_ood * (n_ood + 1) / 2) / (n_id * n_ood)


def fpr_at_95(id_scores, ood_scores):
    threshold = np.quantile(id_scores, 0.95)
    return float((ood_scores <= threshold).mean())


def ece(probs, labels, bins=15):
    conf, right = probs.max(1), probs.argmax(1) == labels
    at = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(abs(conf[at == b].mean() - right[at == b].mean()) * (at == b).mean() for b in range(bins) if (at == b).any())


def softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def cost(model, threads, repeats=10):
    """The bank's bytes, and seconds per batch of 32 without and with the ood_score output."""
    import time

    s = session(model, threads)
    meta = json.loads(s.get_modelmeta().custom_metadata_map["retrain.openset"])
    dim = s.get_outputs()[[o.name for o in s.get_outputs()].index("features")].shape[1]
    crop = json.loads(s.get_modelmeta().custom_metadata_map["retrain.preprocess"])["crop"]
    x = np.random.default_rng(0).integers(0, 255, (32, crop, crop, 3), dtype=np.uint8)
    timed = {}
    for _ in range(2):  # alternate, twice, so drift on a busy machine falls on both
        for outs in (["probabilities"], ["probabilities", "ood_score"]):
            s.run(outs, {"image": x})
            t = time.perf_counter()
            for _ in range(repeats):
                s.run(outs, {"image": x})
            timed[len(outs)] = min(timed.get(len(outs), 1e9), (time.perf_counter() - t) / repeats)
    return meta["bank"] * dim * 2, timed[1], timed[2]


def scores(train, test):
    """Each baseline's 'higher = more unknown' score on `test`, fitted on `train` (features, labels)."""
    logits = test["logits"]
    m = logits.max(1, keepdims=True)
    p = np.exp(logits - m)
    p /= p.sum(1, keepdims=True)
    out = {"msp": -p.max(1), "energy": -(m[:, 0] + np.log(np.exp(logits - m).sum(1)))}
    f, y = train["features"], train["labels"]
    means = np.stack([f[y == c].mean(0) for c in np.unique(y)])
    centred = f - means[y]
    cov = centred.T @ centred / len(f) + 1e-6 * np.eye(f.shape[1])
    prec = np.linalg.pinv(cov)
    d = test["features"][:, None, :] - means[None]
    out["mahalanobis"] = np.einsum("nkd,de,nke->nk", d, prec, d).min(1)
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    out["knn"] = -(unit(test["features"]) @ unit(f).T).max(1)
    if "ood_score" in test:
        out["model"] = test["ood_score"]
    return out


def train_model(data, backbone, args, out, cache):
    cmd = [BIN, "train", data, "--quiet", "--model", backbone, "--weights", WEIGHTS[backbone]]
    cmd += ["--strategy", args.strategy, "--out", out, "--cache", cache, "--threads", str(args.threads)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    subprocess.run(cmd, check=True)


def case(name, data, ood_files, backbone, args, tmp):
    model = os.path.join(tmp, f"{name}-{backbone}.onnx")
    train_model(data, backbone, args, model, os.path.join(tmp, "cache"))
    classes = sorted(os.listdir(os.path.join(data, "train")))
    train_files, train_labels = [], []
    for c, cls in enumerate(classes):
        fs = photos(os.path.join(data, "train", cls))
        train_files += fs
        train_labels += [c] * len(fs)
    id_files, id_labels = [], []
    for c, cls in enumerate(classes):
        fs = photos(os.path.join(data, "val", cls))
        id_files += fs
        id_labels += [c] * len(fs)
    tr = run_model(model, train_files, args.threads)
    tr["labels"] = np.array(train_labels)
    idv, ood = run_model(model, id_files, args.threads), run_model(model, ood_files, args.threads)
    s_id, s_ood = scores(tr, idv), scores(tr, ood)
    row = {k: (auroc(s_id[k], s_ood[k]), fpr_at_95(s_id[k], s_ood[k])) for k in s_id}
    extra = ""
    if "ood_score" in idv:
        meta = json.loads(session(model, 1).get_modelmeta().custom_metadata_map["retrain.openset"])
        y = np.array(id_labels)
        accepted = (idv["ood_score"] <= meta["threshold"]).mean()
        before, after = ece(softmax(idv["logits"]), y), ece(idv["probabilities"], y)
        extra = f"  acc@thr {accepted:.3f}  ece {before:.3f}->{after:.3f} (T {meta['temperature']:.2f})"
        if args.cost:
            bank, without, with_ = cost(model, args.threads)
            extra += f"  bank {bank / 1e6:.1f} MB, batch of 32 {without * 1e3:.0f} -> {with_ * 1e3:.0f} ms ({with_ / without:.3f}x)"
    print(
        f"{name:<22} {backbone:<18} {len(id_files):>4} ID {len(ood_files):>4} OOD  "
        + "  ".join(f"{k} {a:.3f}/{f:.2f}" for k, (a, f) in row.items())
        + extra,
        flush=True,
    )
    return row


def split_folder(src, classes, dst, seed=0, val_fraction=0.2):
    """A train/val copy (symlinks) of `classes` of a class-folder set, 20% of each to val."""
    rng = random.Random(seed)
    for cls in classes:
        fs = photos(os.path.join(src, cls))
        rng.shuffle(fs)
        k = max(1, round(len(fs) * val_fraction))
        for part, chosen in (("val", fs[:k]), ("train", fs[k:])):
            d = os.path.join(dst, part, cls)
            os.makedirs(d, exist_ok=True)
            for f in chosen:
                os.symlink(os.path.abspath(f), os.path.join(d, os.path.basename(f)))
    return dst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    ap.add_argument("--strategy", default="linear")
    ap.add_argument("--epochs", type=int, default=0, help="for --strategy finetune (default: retrain's)")
    ap.add_argument("--cost", action="store_true", help="also time the score's share of a forward pass")
    ap.add_argument("--cases", default="far,near")
    ap.add_argument("--ood-limit", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    hym, flowers = os.path.join(SHARED, "data", "hymenoptera"), os.path.join(SHARED, "data", "flowers")
    flower_classes = sorted(os.listdir(flowers))
    rng = random.Random(0)
    print("score: AUROC / false-positive rate at 95% ID acceptance (higher = better / lower = better)")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.models.split(","):
            if "far" in args.cases.split(","):
                ood = rng.sample(photos(flowers), args.ood_limit)
                case("hymenoptera vs flowers", hym, ood, backbone, args, tmp)
                fl = split_folder(flowers, flower_classes, os.path.join(tmp, f"flowers-{backbone}"))
                ood = rng.sample(photos(hym), min(args.ood_limit, len(photos(hym))))
                case("flowers vs hymenoptera", fl, ood, backbone, args, tmp)
            if "near" in args.cases.split(","):
                for held in flower_classes:
                    kept = [c for c in flower_classes if c != held]
                    data = split_folder(flowers, kept, os.path.join(tmp, f"near-{held}-{backbone}"))
                    ood = rng.sample(photos(os.path.join(flowers, held)), args.ood_limit)
                    case(f"flowers without {held}", data, ood, backbone, args, tmp)


if __name__ == "__main__":
    sys.exit(main())
