#!/usr/bin/env python3
"""`retrain serve` under load against `retrain predict` on the same photos, on this machine.

The peer is `retrain predict` over the files (one process, batches of 32: the best an offline
run does). The server gets the same photos as HTTP requests, one photo per request, from
`wrk` (loopback, C concurrent connections, D seconds), with the server's dynamic batching
gathering them. Reports requests/s, the ratio to predict's images/s, wrk's p50/p90/p99
latency, the mean batch size (from /metrics) and the server's memory across the measured round.

    python3 bench/serve.py [--photos 600] [--connections 16] [--seconds 20] [--model M.onnx]

Needs `wrk` (apt-get install wrk) and the release build (bash setup.sh).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/retrain")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

LUA = """
local files = {}
for line in io.lines(os.getenv("PHOTO_LIST")) do
  local f = assert(io.open(line, "rb"))
  files[#files + 1] = f:read("*a")
  f:close()
end
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/predict?top=1", {["Content-Type"] = "image/jpeg"}, files[(i % #files) + 1])
end
"""


def photos(n):
    out = []
    root = os.path.join(SHARED, "data/flowers")
    per = {c: sorted(os.listdir(os.path.join(root, c))) for c in sorted(os.listdir(root))}
    while len(out) < n and any(per.values()):
        for c, files in per.items():
            if files and len(out) < n:
                out.append(os.path.join(root, c, files.pop(0)))
    return out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])


def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=600)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--model")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="retrain-serve-bench-")
    model = a.model
    if not model:
        model = os.path.join(tmp, "flowers.onnx")
        subprocess.run([BIN, "train", os.path.join(SHARED, "data/flowers"), "--quiet", "--weights",
                        os.path.join(SHARED, "weights/mobilenet_v2-b0353104.pth"), "--out", model], check=True)
    files = photos(a.photos)
    listing = os.path.join(tmp, "photos.txt")
    with open(listing, "w") as f:
        f.write("\n".join(files) + "\n")

    # The peer: predict over the same files, best of two runs.
    best = None
    for _ in range(2):
        t = time.perf_counter()
        subprocess.run([BIN, "predict", model, *files, "--quiet", "--top", "1"], check=True, stdout=subprocess.DEVNULL)
        best = min(best or 1e9, time.perf_counter() - t)
    predict_ips = len(files) / best

    server = subprocess.Popen([BIN, "serve", model, "--port", "0"], stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip().removeprefix("listening on ")
    lua = os.path.join(tmp, "post.lua")
    with open(lua, "w") as f:
        f.write(LUA)
    env = dict(os.environ, PHOTO_LIST=listing)
    # Warm-up: every photo once through the page cache and the server.
    subprocess.run(["wrk", "-t1", "-c4", "-d3s", "-s", lua, url], env=env, check=True, capture_output=True)
    load = ["wrk", "-t2", f"-c{a.connections}", f"-d{a.seconds}s", "--latency", "-s", lua, url]
    # A first round under the full load grows ONNX Runtime's arena to the largest batch; the
    # second is measured, and memory is compared across it (flat: no growth per request).
    subprocess.run(load, env=env, check=True, capture_output=True)
    rss_before = rss_kb(server.pid)
    before = urllib.request.urlopen(url + "/metrics").read().decode()
    out = subprocess.run(load, env=env, check=True, capture_output=True, text=True).stdout
    after = urllib.request.urlopen(url + "/metrics").read().decode()
    rss_after = rss_kb(server.pid)
    server.terminate()
    server.wait(timeout=30)

    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    name = os.path.splitext(os.path.basename(model))[0]
    batches = metric(after, f'retrain_batch_size_count{{model="{name}"}}') - metric(before, f'retrain_batch_size_count{{model="{name}"}}')
    images = metric(after, f'retrain_batch_size_sum{{model="{name}"}}') - metric(before, f'retrain_batch_size_sum{{model="{name}"}}')
    print(f"photos: {len(files)} from ../shared/data/flowers; {os.cpu_count()} cores")
    print(f"retrain predict:  {predict_ips:7.1f} images/s ({best:.2f} s)")
    print(f"retrain serve:    {rps:7.1f} requests/s, {a.connections} connections, {a.seconds} s "
          f"(ratio to predict {rps / predict_ips:.2f})")
    print(f"latency:          p50 {lat.get('50')}, p90 {lat.get('90')}, p99 {lat.get('99')}")
    print(f"batches:          mean {images / max(batches, 1):.1f} images per ONNX Runtime batch ({int(batches)} batches)")
    print(f"non-2xx answers:  {errors.group(1) if errors else 0}")
    answered = int(metric(after, 'retrain_requests_total{route="/v1/predict",status="200"}'))
    print(f"server memory:    {rss_before / 1024:.0f} MB before the measured round, {rss_after / 1024:.0f} MB after "
          f"({answered} requests answered in all)")


if __name__ == "__main__":
    sys.exit(main())
