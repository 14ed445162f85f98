"""Photos with several labels (issue 31), measured side by side on mosaics of real photos.

For each seed, `bench/mosaics.py` builds two sets of 2x2 mosaics of ../shared/data/flowers
photos labelled with the species they show (1-3), split train/val by its `split` column:
`balanced` (850 mosaics, every species as likely) and `rare` (450 mosaics, species drawn with
weights 8,4,2,1,0.5, so the rarest label is on about one mosaic in eight). Then:

- linear: `retrain train --labels` (a linear head, one sigmoid per class, thresholds tuned on the
  training split) against scikit-learn's one-vs-rest logistic regression on the same features
  (the model file's own `features` output, run in onnxruntime on the same pixels): with its
  default C=1, and with C chosen per class by 5-fold cross-validation on the training split
  (LogisticRegressionCV, scoring average precision). mAP, macro and micro F1 and subset accuracy
  on the validation mosaics; scikit-learn's labels at 0.5, retrain's at its thresholds (the
  graph's `labels` output) and at 0.5, so the thresholds' worth shows.

- finetune (the balanced set of seed 0): `retrain train --strategy finetune` against the PyTorch
  recipe with BCEWithLogitsLoss (bench/torch_multilabel.py) with the same backbone, unfrozen
  blocks, learning rates, batch and epochs, on 2 threads: wall seconds of each whole process,
  validation mAP and macro F1 (retrain's at its thresholds, PyTorch's at 0.5).

usage: bench/.venv/bin/python bench/multilabel.py [--parts linear,finetune] [--seeds 3]
       [--sets balanced,rare] [--epochs 3] [--model mobilenet_v2] [--out DIR]
(bench/setup.sh makes bench/.venv with torch, scikit-learn and onnxruntime)
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from PIL import Image
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import average_precision_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
BIN = os.path.join(ROOT, "target", "release", "retrain")
WEIGHTS = {
    "mobilenet_v2": os.path.join(SHARED, "weights", "mobilenet_v2-b0353104.pth"),
    "efficientnet_lite0": os.path.join(SHARED, "weights", "efficientnet-lite0-57934424.pth"),
}


SETS = {
    "balanced": ["--count", "850"],
    "rare": ["--count", "450", "--species-weights", "8,4,2,1,0.5"],
}


def rows_of(d):
    with open(os.path.join(d, "labels.csv")) as f:
        return list(csv.DictReader(f))


def pixels(path, resize, crop):
    """retrain's preprocessing: shorter side to `resize` (bilinear, antialiased, as PIL), centre crop."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = resize / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = im.size
    left, top = (w - crop) // 2, (h - crop) // 2
    return np.asarray(im.crop((left, top, left + crop, top + crop)))


def run_model(model, d, rows):
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = s.get_modelmeta().custom_metadata_map
    pre = json.loads(meta["retrain.preprocess"])
    out = {"features": [], "probabilities": [], "labels": []}
    for i in range(0, len(rows), 32):
        batch = np.stack([pixels(os.path.join(d, r["path"]), pre["resize"], pre["crop"]) for r in rows[i:i + 32]])
        for k, v in zip(out, s.run(list(out), {"image": batch})):
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}, json.loads(meta["retrain.multi_label"])["thresholds"]


def scores(y, p, on):
    return {
        "mAP": round(float(average_precision_score(y, p, average="macro")), 4),
        "macro_f1": round(float(f1_score(y, on, average="macro", zero_division=0)), 4),
        "micro_f1": round(float(f1_score(y, on, average="micro", zero_division=0)), 4),
        "subset_accuracy": round(float((on == y).all(axis=1).mean()), 4),
    }


def linear(seed, d, model_name, work):
    rows = rows_of(d)
    names = sorted({l for r in rows for l in r["labels"].split("|")})
    y = np.array([[int(n in r["labels"].split("|")) for n in names] for r in rows])
    tr = np.array([r["split"] == "train" for r in rows])
    va = ~tr
    model, report = d + ".onnx", d + ".json"
    cmd = [BIN, "train", d, "--labels", os.path.join(d, "labels.csv"), "--model", model_name,
           "--weights", WEIGHTS[model_name], "--out", model, "--report", report, "--quiet", "--no-cache"]
    subprocess.run(cmd, check=True)
    rep = json.load(open(report))
    out, thresholds = run_model(model, d, rows)
    p = out["probabilities"]
    # The graph's own `labels` output is the probabilities at the stored thresholds.
    assert (out["labels"] == (p >= np.array(thresholds, dtype=np.float32))).all()
    res = {"seed": seed, "train": int(tr.sum()), "val": int(va.sum()),
           "retrain": scores(y[va], p[va], out["labels"][va].astype(int)),
           "retrain_at_0.5": scores(y[va], p[va], (p[va] >= 0.5).astype(int)),
           "retrain_head_seconds": round(rep["timings"]["head"], 2)}
    # The report's validation metrics are the model file's (decoded by retrain rather than PIL
    # here: a pixel's difference can move a rare label's AP a little).
    res["retrain_report_mAP"] = round(rep["multi_label"]["metrics"]["mean_average_precision"], 4)
    assert abs(res["retrain_report_mAP"] - res["retrain"]["mAP"]) < 0.01, res
    x = out["features"]
    sc = StandardScaler().fit(x[tr])
    xt, xv = sc.transform(x[tr]), sc.transform(x[va])
    for name, est in [("sklearn_C1", LogisticRegression(C=1.0, max_iter=3000)),
                      ("sklearn_cv", LogisticRegressionCV(Cs=10, cv=5, scoring="average_precision", max_iter=3000))]:
        t = time.perf_counter()
        m = OneVsRestClassifier(est).fit(xt, y[tr])
        secs = time.perf_counter() - t
        pv = m.predict_proba(xv)
        res[name] = scores(y[va], pv, (pv >= 0.5).astype(int))
        res[name + "_seconds"] = round(secs, 2)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--sets", default="balanced,rare")
    ap.add_argument("--parts", default="linear,finetune")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="where the mosaics and models go (default: a temporary folder)")
    a = ap.parse_args()
    work = a.out or tempfile.mkdtemp(prefix="multilabel-")
    keys = ["retrain", "retrain_at_0.5", "sklearn_C1", "sklearn_cv"]
    parts = a.parts.split(",")
    for kind in a.sets.split(",") if "linear" in parts else []:
        results = []
        for seed in range(a.seeds):
            d = mosaics(work, kind, seed)
            r = {"set": kind, **linear(seed, d, a.model, work)}
            print(json.dumps(r), flush=True)
            results.append(r)
        mean = {k: {m: round(float(np.mean([r[k][m] for r in results])), 4) for m in results[0][k]} for k in keys}
        print(json.dumps({"set": kind, "mean_over_seeds": mean}), flush=True)
    if "finetune" in parts:
        print(json.dumps(finetune(mosaics(work, "balanced", 0), a.model, a.epochs, a.threads)), flush=True)


def mosaics(work, kind, seed):
    d = os.path.join(work, f"{kind}{seed}")
    if not os.path.exists(os.path.join(d, "labels.csv")):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "mosaics.py"), d, "--seed", str(seed)]
                       + SETS[kind], check=True, stdout=subprocess.DEVNULL)
    return d


def finetune(d, model_name, epochs, threads):
    rows = rows_of(d)
    names = sorted({l for r in rows for l in r["labels"].split("|")})
    va = np.array([r["split"] == "val" for r in rows])
    y = np.array([[int(n in r["labels"].split("|")) for n in names] for r in rows])
    out, report = d + "-ft.onnx", d + "-ft.json"
    cmd = [BIN, "--quiet", "--threads", str(threads), "train", d, "--labels", os.path.join(d, "labels.csv"),
           "--model", model_name, "--weights", WEIGHTS[model_name], "--out", out, "--report", report, "--no-cache",
           "--strategy", "finetune", "--epochs", str(epochs)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    rs = time.perf_counter() - t
    rep = json.load(open(report))
    o, _ = run_model(out, d, rows)
    ours = scores(y[va], o["probabilities"][va], o["labels"][va].astype(int))
    cfg = rep["finetune"]["config"]
    peer = [os.path.join(ROOT, "bench", ".venv", "bin", "python"), os.path.join(ROOT, "bench", "torch_multilabel.py"),
            os.path.join(d, "labels.csv"), WEIGHTS[model_name], "--model", model_name, "--epochs", str(epochs),
            "--unfreeze", str(rep["finetune"]["unfrozen_blocks"]), "--lr", str(cfg["lr"]),
            "--body-lr", str(cfg["body_lr"]), "--threads", str(threads)]
    t = time.perf_counter()
    p = json.loads(subprocess.run(peer, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    ps = time.perf_counter() - t
    return {"part": "finetune", "epochs": epochs, "train": int((~va).sum()), "val": int(va.sum()),
            "retrain": {**ours, "seconds": round(rs, 1)},
            "retrain_at_0.5": scores(y[va], o["probabilities"][va], (o["probabilities"][va] >= 0.5).astype(int)),
            "pytorch": {"mAP": p["mAP"], "macro_f1": p["macro_f1"], "seconds": round(ps, 1)},
            "speedup": round(ps / rs, 2)}


if __name__ == "__main__":
    main()
