#!/usr/bin/env python3
"""Feature extraction sharded over a Ray cluster, then training: retrain on Ray.

One Ray task per shard runs `retrain features DATA_DIR --shard K/N --cache CACHE` (the retrain
binary and DATA_DIR and CACHE reachable at the same paths on every node: a shared filesystem).
A task whose worker dies, or whose retrain fails, is retried; what it had cached is kept, so the
retry only computes the rest. When every shard is done, `retrain train DATA_DIR --cache CACHE`
runs here and finds every feature cached: the model is byte-identical to a one-machine run.

    python deploy/ray/extract.py DATA_DIR --cache /shared/cache --shards 64 --out model.onnx
    python deploy/ray/extract.py DATA_DIR ... --address auto      # an existing cluster
    python deploy/ray/extract.py DATA_DIR ... -- --precision int8 --report r.json   # train flags
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import ray


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", help="folder of class folders, at the same path on every node")
    p.add_argument("--cache", required=True, help="feature cache on a filesystem every node shares")
    p.add_argument("--shards", type=int, required=True, help="number of shards (tasks)")
    p.add_argument("--out", required=True, help="the trained model")
    p.add_argument("--retrain", default=shutil.which("retrain") or "retrain", help="the retrain binary (default: on PATH)")
    p.add_argument("--model", default="mobilenet_v2", help="backbone, for both steps")
    p.add_argument("--weights", help="weights file, at the same path on every node")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="for both steps")
    p.add_argument("--cpus-per-shard", type=int, default=1, help="Ray num_cpus of each task, and its retrain --threads")
    p.add_argument("--max-retries", type=int, default=3, help="attempts after the first, per shard")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--local-cpus", type=int, help="CPUs of the local cluster (default: all)")
    p.add_argument("--summary", help="write the shards' manifests and the timings here (JSON)")
    p.epilog = (p.epilog or "") + "Flags after -- go to `retrain train`."
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.train_args = argv[cut + 1:]
    if args.shards < 1:
        p.error("--shards must be at least 1")
    return args


def die_with_parent():
    # If Ray kills this task's worker, its retrain child dies too instead of running on alone.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@ray.remote
def shard(cmd):
    """One shard; its manifest. A failed retrain raises, so that Ray retries the task."""
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {run.returncode}: {run.stderr.strip()[-2000:]}")
    return json.loads(run.stdout)


def main():
    args = parse()
    common = ["--model", args.model, "--precision", args.precision]
    if args.weights:
        common += ["--weights", args.weights]
    if args.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.local_cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=100 * 1024 * 1024)
    started = time.time()
    task = shard.options(num_cpus=args.cpus_per_shard, max_retries=args.max_retries, retry_exceptions=True)
    pending = {}
    for k in range(args.shards):
        cmd = [args.retrain, "features", args.data_dir, "--shard", f"{k}/{args.shards}", "--cache", args.cache,
               "--threads", str(args.cpus_per_shard), "--quiet", "--format", "json"] + common
        pending[task.remote(cmd)] = k
    manifests = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        k = pending.pop(done[0])
        try:
            m = ray.get(done[0])
        except Exception as e:  # retries exhausted: the other shards' work is cached all the same
            sys.exit(f"shard {k}/{args.shards} failed after {args.max_retries} retries: {e}")
        manifests.append(m)
        print(f"shard {m['shard']} done on {m['host']}: {m['files']} files, {m['computed']} computed, "
              f"{m['cached']} cached, {len(m['skipped'])} skipped in {m['seconds']:.1f}s "
              f"({len(manifests)}/{args.shards} shards)", flush=True)
    extracted = time.time() - started
    ray.shutdown()

    files = sum(m["files"] for m in manifests)
    print(f"features: {files} files in {extracted:.1f}s ({files / max(extracted, 1e-9):.0f} images/s)", flush=True)
    train = [args.retrain, "train", args.data_dir, "--cache", args.cache, "--out", args.out] + common + args.train_args
    t = time.time()
    subprocess.run(train, check=True)
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump({"shards": sorted(manifests, key=lambda m: int(m["shard"].split("/")[0])),
                       "extract_seconds": extracted, "train_seconds": time.time() - t}, f, indent=2)


if __name__ == "__main__":
    main()
