"""Runs a retrain model with Python's onnxruntime, preprocessing with PIL as the model's
metadata says, and prints {path: probabilities} as JSON. Used by the end-to-end tests to prove
that any ONNX Runtime gives the same answers as `retrain predict`.

usage: ort_predict.py MODEL.onnx IMAGE...
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def prepare(path, resize, crop):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    # torchvision's Resize(int): shorter side to `resize`, the longer scaled and rounded.
    if w <= h:
        nw, nh = resize, round(resize * h / w)
    else:
        nw, nh = round(resize * w / h), resize
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - crop) / 2.0)), int(round((nh - crop) / 2.0))
    return np.asarray(im.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def main():
    model, images = sys.argv[1], sys.argv[2:]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    pre = json.loads(meta["retrain.preprocess"])
    classes = json.loads(meta["retrain.class_names"])
    out = {}
    for path in images:
        x = prepare(path, pre["resize"], pre["crop"])[None]
        (probs,) = session.run(["probabilities"], {"image": x})
        out[path] = dict(zip(classes, probs[0].astype(float).tolist()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
