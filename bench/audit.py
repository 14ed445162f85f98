"""`retrain audit` measured side by side with its peers, on ../shared/data/flowers.

Parts (`--parts`, all by default):

- noise: label noise injected into flowers (seeded; symmetric: a flipped photo gets any other
  class; class-conditional: class c always becomes class c+1), 5%, 10% and 20% of every class.
  retrain's flagged photos against cleanlab's `find_label_issues` (defaults) on the same
  out-of-fold probabilities (`retrain audit --out-of-fold`) and against fastai-style "top
  losses" (the photos with the lowest probability of their label) at the same count: precision,
  recall and F1 of the flipped photos. Flowers' own label errors count against every method.
- dups: copies of 200 photos (seeded), 50 of each: resized to 40-90%, recompressed at JPEG quality
  30-95, cropped by 5-15%, brightness changed by up to 15%, put beside their originals. For each
  threshold: the share of copies grouped with their original (recall), copies grouped with another
  photo (false pairs), and the pairs flagged on the clean folder.
- e2e: flowers dealt (seeded) into 5 folds; each in turn is a clean test set and the other four a
  pool with 10% symmetric noise; `retrain train` on the noisy pool, `retrain audit --suggested`,
  `retrain audit apply`, `retrain train` again, `retrain audit undo`; each model's accuracy on the
  clean test set, against the model trained on the pool's true labels. Recovered = (fixed - noisy)
  / (clean - noisy), from the photos right summed over the 5 folds (every photo tested once);
  `--seeds N` runs N such rotations.
- cost: `retrain audit` of flowers with its features cached: seconds and peak memory.

usage: .venv/bin/python bench/audit.py [--parts noise,dups,e2e,cost] [--model mobilenet_v2]
       [--seeds 1] [--out DIR]
(cleanlab from PyPI: .venv/bin/python -m pip install cleanlab)
"""
import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageEnhance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
FLOWERS = os.path.join(SHARED, "data", "flowers")
BIN = os.path.join(ROOT, "target", "release", "retrain")
WEIGHTS = {
    "mobilenet_v2": os.path.join(SHARED, "weights", "mobilenet_v2-b0353104.pth"),
    "efficientnet_lite0": os.path.join(SHARED, "weights", "efficientnet-lite0-57934424.pth"),
}


def classes_of(folder):
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))


def photos_of(folder):
    out = []
    for c in classes_of(folder):
        for f in sorted(os.listdir(os.path.join(folder, c))):
            if not f.startswith("."):
                out.append((os.path.join(folder, c, f), c))
    return out


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout


def audit(folder, model, extra=()):
    out = run([BIN, "audit", folder, "--model", model, "--weights", WEIGHTS[model], "--format", "json", "-q",
               "--out", os.path.join(os.path.dirname(folder), "audit.html"), *extra])
    return json.loads(out)


def link_folder(dst, items):
    """A folder of class folders holding links to the photos: items are (source, class, name)."""
    for src, c, name in items:
        os.makedirs(os.path.join(dst, c), exist_ok=True)
        os.symlink(os.path.abspath(src), os.path.join(dst, c, name))


def inject(photos, classes, rate, kind, rng):
    """The noisy label of each photo: `rate` of every class flipped."""
    labels = [c for _, c in photos]
    flipped = set()
    for c in classes:
        idx = [i for i, (_, l) in enumerate(photos) if l == c]
        for i in rng.sample(idx, round(rate * len(idx))):
            others = [o for o in classes if o != c]
            labels[i] = rng.choice(others) if kind == "symmetric" else classes[(classes.index(c) + 1) % len(classes)]
            flipped.add(i)
    return labels, flipped


def prf(flagged, truth):
    tp = len(flagged & truth)
    p = tp / len(flagged) if flagged else 0.0
    r = tp / len(truth) if truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def part_noise(args, tmp):
    from cleanlab.filter import find_label_issues

    photos = photos_of(FLOWERS)
    classes = classes_of(FLOWERS)
    rows = []
    for seed in range(args.seeds):
        for kind in ("symmetric", "class-conditional"):
            for rate in (0.05, 0.10, 0.20):
                rng = random.Random(seed * 1000 + int(rate * 100) + (0 if kind == "symmetric" else 500))
                labels, flipped = inject(photos, classes, rate, kind, rng)
                folder = os.path.join(tmp, f"noise-{kind}-{rate}-{seed}", "data")
                names = [f"{i:05d}_{os.path.basename(p)}" for i, (p, _) in enumerate(photos)]
                link_folder(folder, [(p, labels[i], names[i]) for i, (p, _) in enumerate(photos)])
                with open(os.path.join(os.path.dirname(folder), "flipped.json"), "w") as f:
                    json.dump({"seed": seed, "kind": kind, "rate": rate,
                               "flipped": {names[i]: [photos[i][1], labels[i]] for i in sorted(flipped)}}, f)
                oof = os.path.join(os.path.dirname(folder), "oof.csv")
                a = audit(folder, args.model, ["--out-of-fold", oof])
                index = {n: i for i, n in enumerate(names)}
                ours = {index[os.path.basename(m["path"])] for m in a["mislabelled"]}
                with open(oof) as f:
                    r = list(csv.reader(f))
                head, body = r[0], r[1:]
                order = [index[os.path.basename(row[0])] for row in body]
                given = np.array([classes.index(row[2]) for row in body])
                probs = np.array([[float(v) for v in row[3:]] for row in body])
                cl_mask = find_label_issues(given, probs)
                theirs = {order[j] for j in np.flatnonzero(cl_mask)}
                self_conf = probs[np.arange(len(given)), given]
                top = {order[j] for j in np.argsort(self_conf)[: len(ours)]}
                row = {"seed": seed, "kind": kind, "rate": rate, "flipped": len(flipped),
                       "oof_accuracy": round(a["out_of_fold_accuracy"], 4)}
                for name, s in (("retrain", ours), ("cleanlab", theirs), ("top_losses", top)):
                    p, rc, f1 = prf(s, flipped)
                    row[name] = {"flagged": len(s), "precision": round(p, 3), "recall": round(rc, 3), "f1": round(f1, 3)}
                row["same_as_cleanlab"] = ours == theirs
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def copy_of(src, kind, rng):
    im = Image.open(src).convert("RGB")
    w, h = im.size
    if kind == "resize":
        s = rng.uniform(0.4, 0.9)
        return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC), 95, round(s, 2)
    if kind == "jpeg":
        return im, rng.randint(30, 95), None
    if kind == "crop":
        s = rng.uniform(0.05, 0.15)
        cw, ch = round(w * (1 - s)), round(h * (1 - s))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return im.crop((x, y, x + cw, y + ch)), 95, round(s, 2)
    s = rng.uniform(-0.15, 0.15)
    return ImageEnhance.Brightness(im).enhance(1 + s), 95, round(s, 2)


def pairs_of(groups):
    out = set()
    for g in groups:
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                out.add(tuple(sorted((g[i], g[j]))))
    return out


def part_dups(args, tmp):
    photos = photos_of(FLOWERS)
    rng = random.Random(7)
    picked = rng.sample(range(len(photos)), 200)
    kinds = ["resize", "jpeg", "crop", "brightness"]
    aug = os.path.join(tmp, "dups", "data")
    clean = os.path.join(tmp, "dups-clean", "data")
    names = [f"{i:05d}_{os.path.basename(p)}" for i, (p, _) in enumerate(photos)]
    link_folder(aug, [(p, c, names[i]) for i, (p, c) in enumerate(photos)])
    link_folder(clean, [(p, c, names[i]) for i, (p, c) in enumerate(photos)])
    source = {}
    for k, i in enumerate(picked):
        kind = kinds[k % 4]
        im, q, param = copy_of(photos[i][0], kind, rng)
        name = f"copy{k:03d}_{kind}.jpg"
        im.save(os.path.join(aug, photos[i][1], name), quality=q)
        source[name] = (names[i], kind, param if kind != "jpeg" else q)
    rows = []
    for t in args.thresholds:
        extra = ["--duplicate-threshold", str(t)]
        a = audit(aug, args.model, extra)
        c = audit(clean, args.model, extra)
        groups = [[os.path.basename(p) for p in d["paths"]] for d in a["duplicates"]]
        clean_pairs = pairs_of([[os.path.basename(p) for p in d["paths"]] for d in c["duplicates"]])
        group_of = {n: gi for gi, g in enumerate(groups) for n in g}
        found = {k: 0 for k in kinds}
        false = 0
        for name, (orig, kind, _) in source.items():
            gi = group_of.get(name)
            if gi is not None and orig in groups[gi]:
                found[kind] += 1
            if gi is not None:
                # Its group's other members: its original, the original's own duplicates in
                # the clean folder, or other copies of those; anything else is a false pair.
                allowed = {orig} | {p for pair in clean_pairs if orig in pair for p in pair}
                allowed |= {n for n, (o, _, _) in source.items() if o in allowed}
                false += sum(1 for m in groups[gi] if m != name and m not in allowed)
        copy_pairs = sum(1 for n in source if group_of.get(n) is not None)
        row = {"threshold": t, "recall": sum(found.values()) / len(source),
               "recall_by_kind": {k: found[k] / 50 for k in kinds},
               "false_pairs": false, "pairs_with_copies": copy_pairs + false,
               "false_share": false / max(1, copy_pairs + false),
               "clean_pairs": len(clean_pairs), "clean_groups": len(c["duplicates"]),
               "clean_kinds": {k: sum(1 for d in c["duplicates"] if d["kind"] == k) for k in ("copy", "conflict", "leak")},
               "missed": sorted(f"{n} ({source[n][1]} {source[n][2]})" for n in source
                                if not (group_of.get(n) is not None and source[n][0] in groups[group_of[n]]))[:12]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def correct(model, folder):
    """How many photos of `folder` the model gets right, and how many there are."""
    r = json.loads(run([BIN, "eval", model, folder, "--format", "json", "-q"]))
    return round(r["accuracy"] * r["images"]), r["images"]


def part_e2e(args, tmp):
    """Each rotation deals flowers into 5 folds (seeded); each fold in turn is the clean test set
    and the other four the pool, so every photo is tested once per rotation. A fold's test set
    (863 photos) alone measures accuracy to about +-1.5 points, the size of what the noise costs;
    the rotation's sums are what `recovered` is computed from."""
    photos = photos_of(FLOWERS)
    classes = classes_of(FLOWERS)
    names = [f"{i:05d}_{os.path.basename(p)}" for i, (p, _) in enumerate(photos)]
    w = ["--model", args.model, "--weights", WEIGHTS[args.model], "-q"]
    rows = []
    for rot in range(args.seeds):
        order = list(range(len(photos)))
        random.Random(7 + 1000 * rot).shuffle(order)
        fold = {i: r % 5 for r, i in enumerate(order)}
        total = {"clean": 0, "noisy": 0, "fixed": 0, "photos": 0}
        for f in range(5):
            rng = random.Random(100 + f + 10 * rot)
            test = [i for i in range(len(photos)) if fold[i] == f]
            pool = [i for i in range(len(photos)) if fold[i] != f]
            base = os.path.join(tmp, f"e2e-{rot}-{f}")
            link_folder(os.path.join(base, "test"), [(photos[i][0], photos[i][1], names[i]) for i in test])
            link_folder(os.path.join(base, "clean"), [(photos[i][0], photos[i][1], names[i]) for i in pool])
            pool_photos = [photos[i] for i in pool]
            labels, flipped = inject(pool_photos, classes, 0.10, "symmetric", rng)
            noisy = os.path.join(base, "noisy")
            link_folder(noisy, [(p, labels[j], names[pool[j]]) for j, (p, _) in enumerate(pool_photos)])
            test_dir = os.path.join(base, "test")
            run([BIN, "train", os.path.join(base, "clean"), "--out", os.path.join(base, "clean.onnx"), *w])
            run([BIN, "train", noisy, "--out", os.path.join(base, "noisy.onnx"), *w])
            dec = os.path.join(base, "suggested.json")
            audit(noisy, args.model, ["--suggested", dec])
            with open(dec) as fh:
                d = json.load(fh)
            moves = [x for x in d["decisions"] if x["action"] == "move"]
            aside = [x for x in d["decisions"] if x["action"] == "set_aside"]
            flipped_names = {names[pool[j]] for j in flipped}
            run([BIN, "audit", "apply", dec, "-q"])
            run([BIN, "train", noisy, "--out", os.path.join(base, "fixed.onnx"), *w])
            run([BIN, "audit", "undo", noisy, "-q"])
            got = {k: correct(os.path.join(base, f"{k}.onnx"), test_dir) for k in ("clean", "noisy", "fixed")}
            for k in ("clean", "noisy", "fixed"):
                total[k] += got[k][0]
            total["photos"] += got["clean"][1]
            row = {"rotation": rot, "fold": f, "flipped": len(flipped), "moved": len(moves),
                   "moves_to_true_class": sum(1 for x in moves if photos[int(os.path.basename(x["path"])[:5])][1] == x["to"]),
                   "set_aside": len(aside),
                   "flipped_set_aside": sum(1 for x in aside if os.path.basename(x["path"]) in flipped_names),
                   "accuracy": {k: round(v[0] / v[1], 4) for k, v in got.items()}}
            print(json.dumps(row), flush=True)
            rows.append(row)
        lost = total["clean"] - total["noisy"]
        row = {"rotation": rot, "test_photos": total["photos"],
               "accuracy": {k: round(total[k] / total["photos"], 4) for k in ("clean", "noisy", "fixed")},
               "recovered": round((total["fixed"] - total["noisy"]) / lost, 3) if lost > 0 else None}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def part_cost(args, tmp):
    out = os.path.join(tmp, "cost.html")
    cmd = ["/usr/bin/time", "-v", BIN, "audit", FLOWERS, "--model", args.model, "--weights", WEIGHTS[args.model],
           "--out", out, "--format", "json", "-q"]
    subprocess.run(cmd, capture_output=True)  # fills the feature cache
    r = subprocess.run(cmd, capture_output=True, text=True)
    a = json.loads(r.stdout)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", r.stderr).group(1)
    row = {"photos": a["images"], "audit_seconds": round(a["seconds"], 2), "wall": wall, "peak_rss_mb": rss // 1024,
           "threads": os.cpu_count()}
    print(json.dumps(row), flush=True)
    return [row]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="noise,dups,e2e,cost")
    ap.add_argument("--model", default="mobilenet_v2", choices=sorted(WEIGHTS))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--thresholds", type=lambda s: [float(v) for v in s.split(",")], default=[0.85, 0.88, 0.9, 0.92, 0.95])
    ap.add_argument("--out", help="keep the folders, audits and decisions here (default: a temporary folder)")
    args = ap.parse_args()
    tmp = args.out or tempfile.mkdtemp(prefix="retrain-audit-bench-")
    os.makedirs(tmp, exist_ok=True)
    results = {}
    try:
        for part in args.parts.split(","):
            print(f"# {part}", flush=True)
            results[part] = {"noise": part_noise, "dups": part_dups, "e2e": part_e2e, "cost": part_cost}[part](args, tmp)
    finally:
        if not args.out:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
