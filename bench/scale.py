#!/usr/bin/env python3
"""Scale-out simulated on one machine: N `retrain features --shard K/N` processes at once on one
cache, for N = 1, 2, 4, over the flowers set copied ×k (each copy made distinct by bytes after
the image's end, so every file is new to the cache while decoding the same). The peer is the
one-process run (N = 1): ratios are against it.

Reports: total images/s, per-shard skew (files and seconds, max / mean), the cache's size per
image on disk, and each shard's peak memory, also for a dataset 1/k the size (flat memory).

    python3 bench/scale.py [--copies 4] [--shards 1,2,4] [--data ../shared/data/flowers]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_copies(src, dst, k):
    n = 0
    for c in range(k):
        for cls in sorted(os.listdir(src)):
            d = os.path.join(src, cls)
            if not os.path.isdir(d):
                continue
            os.makedirs(os.path.join(dst, cls), exist_ok=True)
            for f in sorted(os.listdir(d)):
                with open(os.path.join(d, f), "rb") as fh:
                    data = fh.read()
                stem, ext = os.path.splitext(f)
                with open(os.path.join(dst, cls, f"{stem}-copy{c}{ext}"), "wb") as fh:
                    # Trailing bytes after the image: a new file to the cache, the same pixels.
                    fh.write(data + (b"" if c == 0 else b"\0retrain-copy-%d" % c))
                n += 1
    return n


def run_shards(retrain, data, cache, n, weights, cores):
    threads = max(1, cores // n)
    cmd = lambda k: [retrain, "features", data, "--shard", f"{k}/{n}", "--cache", cache, "--threads", str(threads),
                     "--quiet", "--format", "json"] + (["--weights", weights] if weights else [])
    t = time.time()
    procs = [subprocess.Popen(cmd(k), stdout=subprocess.PIPE) for k in range(n)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.time() - t
    if any(p.returncode for p in procs):
        sys.exit("a shard failed")
    return wall, [json.loads(o) for o in outs]


def cache_size(cache):
    entries = disk = apparent = 0
    for d, _, files in os.walk(cache):
        for f in files:
            if f.endswith(".feat"):
                st = os.stat(os.path.join(d, f))
                entries += 1
                apparent += st.st_size
                disk += st.st_blocks * 512
    return entries, apparent, disk


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "../shared/data/flowers"))
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--shards", default="1,2,4")
    p.add_argument("--weights", default=os.path.join(ROOT, "../shared/weights/mobilenet_v2-b0353104.pth"))
    p.add_argument("--retrain", default=os.path.join(ROOT, "target/release/retrain"))
    a = p.parse_args()
    cores = os.cpu_count() or 1
    weights = a.weights if os.path.exists(a.weights) else None
    with tempfile.TemporaryDirectory() as tmp:
        small, big = os.path.join(tmp, "x1"), os.path.join(tmp, f"x{a.copies}")
        n_small = make_copies(a.data, small, 1)
        n_big = make_copies(a.data, big, a.copies)
        print(f"{os.path.basename(os.path.normpath(a.data))} ×{a.copies}: {n_big} images; {cores} cores; mobilenet_v2, fp32; "
              f"each shard gets cores/N threads", flush=True)
        rows = []
        for n in [int(s) for s in a.shards.split(",")]:
            cache = os.path.join(tmp, f"cache{n}")
            wall, ms = run_shards(a.retrain, big, cache, n, weights, cores)
            files = [m["files"] for m in ms]
            secs = [m["seconds"] for m in ms]
            # (Photos the set holds twice are computed once: the second copy is a cache hit.)
            assert sum(files) == n_big and all(m["computed"] + m["cached"] == m["files"] for m in ms)
            entries, apparent, disk = cache_size(cache)
            if n == 1:
                # Then training on one machine from the full cache: reading entries and fitting the head.
                t = time.time()
                subprocess.run([a.retrain, "train", big, "--cache", cache, "--quiet", "--out", os.path.join(tmp, "m.onnx")]
                               + (["--weights", weights] if weights else []), check=True)
                train_s = time.time() - t
            rows.append({"shards": n, "images": n_big, "wall_s": wall, "images_per_s": n_big / wall,
                         "files_skew": max(files) / (sum(files) / n), "seconds_skew": max(secs) / (sum(secs) / n),
                         "peak_rss_mb": max(m["peak_rss_bytes"] for m in ms) / 2**20,
                         "cache_bytes_per_image": apparent / entries, "cache_disk_per_image": disk / entries})
            shutil.rmtree(cache)
        # Memory does not grow with the dataset: one shard over 1/k of the images.
        _, ms = run_shards(a.retrain, small, os.path.join(tmp, "cache-small"), 1, weights, cores)
        rss_small = ms[0]["peak_rss_bytes"] / 2**20
    base = rows[0]["images_per_s"]
    print(f"\n| shards | threads each | images/s | vs 1 shard | files skew | time skew | peak RSS per shard | cache per image (bytes / on disk) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shards']} | {max(1, cores // r['shards'])} | {r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f}× "
              f"| {r['files_skew']:.3f} | {r['seconds_skew']:.3f} | {r['peak_rss_mb']:.0f} MB "
              f"| {r['cache_bytes_per_image']:.0f} / {r['cache_disk_per_image']:.0f} |")
    print(f"\npeak RSS of one shard: {rss_small:.0f} MB over {n_small} images, "
          f"{rows[0]['peak_rss_mb']:.0f} MB over {n_big} ({a.copies}× the images)")
    print(f"train from the full cache on one machine: {train_s:.1f}s for {n_big} images "
          f"({n_big / train_s:.0f} images/s: reading {entries} entries and fitting the head)")
    per_core = base / cores
    print(f"per-core rate (1 shard, {cores} threads): {per_core:.0f} images/s/core")
    print(json.dumps({"rows": rows, "rss_small_mb": rss_small, "images_small": n_small, "per_core": per_core,
                      "train_from_cache_s": train_s}))


if __name__ == "__main__":
    main()
