"""Writes the fuzz targets' seed inputs under tests/fuzz/<target>/ (run from the repository
root with the .venv Python: `.venv/bin/python tools/fuzz_seeds.py`). Small valid files of
each kind, and the hostile ones the fuzzers start from. Inputs the fuzzers found are added
beside them; crates/retrain/tests/fuzz_corpus.rs replays them all."""

import io
import json
import os
import struct
import zipfile

from PIL import Image

OUT = "tests/fuzz"


def put(target, name, data):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    with open(f"{OUT}/{target}/{name}", "wb") as f:
        f.write(data)


# decode: one small image per format, plus headers that claim far more pixels than they hold.
img = Image.new("RGB", (16, 12))
img.putdata([(x * 15, y * 20, 99) for y in range(12) for x in range(16)])
for fmt, ext in [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"), ("WEBP", "webp")]:
    b = io.BytesIO()
    img.save(b, fmt)
    put("decode", f"small.{ext}", b.getvalue())
b = io.BytesIO()
img.convert("CMYK").save(b, "JPEG")
put("decode", "cmyk.jpg", b.getvalue())
b = io.BytesIO()
img.convert("L").save(b, "PNG")
put("decode", "grey.png", b.getvalue())
jpg = bytearray(open(f"{OUT}/decode/small.jpg", "rb").read())
sof = jpg.index(b"\xff\xc0")
jpg[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
put("decode", "lying-65000.jpg", bytes(jpg))
gif = bytearray(open(f"{OUT}/decode/small.gif", "rb").read())
gif[6:10] = struct.pack("<HH", 65000, 65000)
put("decode", "lying-65000.gif", bytes(gif))

# pth / safetensors: the zip format as torch.save writes it, a legacy pickle's head, code.
STATE_PKL = (
    b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\n"
    b"q\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpu"
    b"q\x07K\x04tq\x08QK\x00K\x02K\x02\x86q\tK\x02K\x01\x86q\n\x89ccollections\nOrderedDict\nq\x0b)Rq\x0ctq\rRq\x0es."
)
z = io.BytesIO()
with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr("archive/data.pkl", STATE_PKL)
    zf.writestr("archive/byteorder", "little")
    zf.writestr("archive/data/0", struct.pack("<4f", 1.0, 2.0, -3.0, 0.5))
    zf.writestr("archive/version", "3\n")
put("pth", "zip-state-dict.pth", z.getvalue())
put("pth", "legacy-head.pth", open("../shared/weights/mobilenet_v2-b0353104.pth", "rb").read()[:3000])
put("pth", "os-system-p0.pth", b"cos\nsystem\n(S'echo pwned'\ntR.")
put("pth", "os-system-p4.pth", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.")
header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "h": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]}}).encode()
put("safetensors", "small.safetensors", struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1, 2, 3, 4) + b"\x00\x3c\x00\x40")


# model: a tiny ModelProto with retrain's metadata, its `image` input and `probabilities` output.
def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(num, payload):
    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload


meta = {
    "retrain.format": "1",
    "retrain.class_names": '["ants","bees"]',
    "retrain.backbone": "mobilenet_v2",
    "retrain.weights_sha256": "0" * 64,
    "retrain.preprocess": '{"resize":256,"crop":224,"mean":[123.675,116.28,103.53],"std":[58.395,57.12,57.375],"interpolation":"bilinear"}',
}
graph = field(2, "g") + field(11, field(1, "image")) + field(12, field(1, "probabilities"))
model = field(1, 8) + field(7, graph) + b"".join(field(14, field(1, k) + field(2, v)) for k, v in meta.items())
put("model", "tiny.onnx", model)
put("model", "empty.onnx", b"")

# walk: op triples (kind, parent, name): folders, files, links (`..` and `.` among them), hard links.
put("walk", "classes.bin", bytes([0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 5, 1, 2, 1, 2, 2, 6]))
put("walk", "loop.bin", bytes([0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 2, 1, 3, 1, 5, 3, 2, 6]))
put("walk", "copies.bin", bytes([0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 2, 0, 4, 3, 1, 2, 2, 4]))
