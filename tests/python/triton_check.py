"""Reads what `retrain export triton` wrote with Triton's own schema and talks to a v2 server
with Triton's own HTTP client; prints what it found as JSON (the Rust test checks it).

config.pbtxt is parsed by protobuf's text format into Triton's ModelConfig, which refuses any
field the schema does not have; the InferenceService YAML by PyYAML. The client sends the same
uint8 tensor (value (i * 7) % 256 at flat index i) as JSON and as binary tensors.

usage: triton_check.py CONFIG.pbtxt SERVICE.yaml HOST:PORT MODEL N
"""
import json
import sys

import numpy as np
import tritonclient.http as th
import yaml
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2


def main():
    config_path, yaml_path, url, model, n = sys.argv[1:6]
    config = text_format.Parse(open(config_path).read(), model_config_pb2.ModelConfig())
    service = yaml.safe_load(open(yaml_path))
    client = th.InferenceServerClient(url)
    meta = client.get_model_metadata(model)
    shape = [int(n)] + [int(d) for d in meta["inputs"][0]["shape"][1:]]
    x = (np.arange(np.prod(shape)) * 7 % 256).astype(np.uint8).reshape(shape)
    answers = {}
    for binary in (False, True):
        i = th.InferInput("image", shape, "UINT8")
        i.set_data_from_numpy(x, binary_data=binary)
        wanted = [th.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]]
        r = client.infer(model, [i], outputs=wanted)
        answers["binary" if binary else "json"] = {o["name"]: r.as_numpy(o["name"]).tolist() for o in meta["outputs"]}
    print(json.dumps({
        "config": json_format.MessageToDict(config, preserving_proto_field_name=True),
        "service": service,
        "live": client.is_server_live(),
        "ready": client.is_model_ready(model),
        "metadata": meta,
        "answers": answers,
    }))


if __name__ == "__main__":
    main()
