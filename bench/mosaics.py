"""A multi-label image set made from real photos: 2x2 mosaics of ../shared/data/flowers photos,
each labelled with the set of species it shows (issue 31: no multi-label set ships here).

Each mosaic draws how many species it shows (1, 2 or 3; `--mix`), then that many species at
random, then fills its four quarters with photos of those species (every species at least once,
the rest at random among them, the quarters shuffled); a photo is used in one mosaic at most, so
no photo is shared between the training and validation splits. The photos are 128 px, so a
mosaic is 256 x 256. Written: DIR/mosaics/NNNNN.jpg (JPEG quality 95) and DIR/labels.csv
(`path,labels,split`, labels joined by `|`, `--val-fraction` of mosaics in `val`), and
DIR/recipe.json (the seed and every mosaic's source photos), all seeded.

With `--species-weights`, species are drawn with unequal chances (rare labels).

usage: python bench/mosaics.py DIR [--count 600] [--seed 0] [--mix 0.3,0.4,0.3] [--val-fraction 0.2]
       [--species-weights 8,4,2,1,0.5]
"""
import argparse
import csv
import json
import os
import random

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWERS = os.path.join(ROOT, "..", "shared", "data", "flowers")


def photos_by_class(folder):
    out = {}
    for c in sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))):
        out[c] = sorted(os.path.join(folder, c, f) for f in os.listdir(os.path.join(folder, c)) if not f.startswith("."))
    return out


def pick(rng, classes, weights, k):
    """k distinct classes, each drawn with chance proportional to its weight among those left."""
    left, w, out = list(classes), list(weights), []
    for _ in range(k):
        i = rng.choices(range(len(left)), weights=w)[0]
        out.append(left.pop(i))
        w.pop(i)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", default="0.3,0.4,0.3", help="shares of mosaics showing 1, 2 and 3 species")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--species-weights", default=None,
                    help="relative chance of each species (sorted by name) being shown, e.g. 8,4,2,1,0.5 for rare labels")
    ap.add_argument("--source", default=FLOWERS)
    args = ap.parse_args()
    mix = [float(v) for v in args.mix.split(",")]
    rng = random.Random(args.seed)
    pools = photos_by_class(args.source)
    for c in pools:
        rng.shuffle(pools[c])
    classes = sorted(pools)
    weights = [float(v) for v in args.species_weights.split(",")] if args.species_weights else [1.0] * len(classes)
    if len(weights) != len(classes):
        raise SystemExit(f"--species-weights needs {len(classes)} values")
    os.makedirs(os.path.join(args.dir, "mosaics"), exist_ok=True)
    rows, recipe = [], []
    for k in range(args.count):
        shown = rng.choices([1, 2, 3], weights=mix)[0]
        species = sorted(pick(rng, classes, weights, shown))
        quarters = species + [rng.choice(species) for _ in range(4 - shown)]
        rng.shuffle(quarters)
        if any(len(pools[c]) < quarters.count(c) for c in species):
            raise SystemExit(f"not enough photos left for {args.count} mosaics (stopped at {k})")
        sources = [pools[c].pop() for c in quarters]
        m = Image.new("RGB", (256, 256))
        for q, src in enumerate(sources):
            with Image.open(src) as im:
                m.paste(im.convert("RGB").resize((128, 128), Image.Resampling.BICUBIC), ((q % 2) * 128, (q // 2) * 128))
        name = f"mosaics/{k:05d}.jpg"
        m.save(os.path.join(args.dir, name), quality=95)
        split = "val" if rng.random() < args.val_fraction else "train"
        rows.append((name, "|".join(species), split))
        recipe.append({"path": name, "labels": species, "split": split,
                       "sources": [os.path.relpath(s, args.source) for s in sources]})
    with open(os.path.join(args.dir, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "labels", "split"])
        w.writerows(rows)
    with open(os.path.join(args.dir, "recipe.json"), "w") as f:
        json.dump({"seed": args.seed, "mix": mix, "source": os.path.abspath(args.source), "mosaics": recipe}, f, indent=1)
    counts = {c: sum(c in r[1].split("|") for r in rows) for c in classes}
    print(json.dumps({"mosaics": len(rows), "val": sum(r[2] == "val" for r in rows), "per_class": counts}))


if __name__ == "__main__":
    main()
