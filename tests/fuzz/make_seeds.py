#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py: writes the small seed files of fuzz_checkpoint
(tests/fuzz/corpus-checkpoint/) and fuzz_data (tests/fuzz/corpus-data/).
The checkpoints match fuzz_checkpoint.c's stand-in trainer (tensors w [2, 3],
b [3], opt.m.w [2, 3]; its settings and fingerprint), so the fuzzer starts
from files that load. Run from anywhere; the files are committed."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors(tensors, meta=None):
    header, blob = {}, b""
    if meta:
        header["__metadata__"] = meta
    for name, shape, values in tensors:
        data = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def write(sub, name, data):
    d = os.path.join(HERE, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


W = ("w", [2, 3], [0.5, -1, 2, 0, 1e-3, 3])
B = ("b", [3], [1, 2, 3])
M = ("opt.m.w", [2, 3], [0] * 6)
meta = {"format": "heed-checkpoint-1", "step": "4", "steps": "10", "rng": "1234567",
        "settings": "optimizer=adamw lr=0.001 batch=4 seq=16", "fingerprint": "00112233aabbccdd",
        "run_id": "0123456789abcdef"}
write("corpus-checkpoint", "resume.safetensors", safetensors([W, B, M], meta))
write("corpus-checkpoint", "other-model.safetensors", safetensors([W, M], dict(meta, fingerprint="ffff0000ffff0000")))
write("corpus-checkpoint", "other-settings.safetensors",
      safetensors([W, B, M], dict(meta, settings="optimizer=sgd lr=0.001 batch=4 seq=16")))
write("corpus-checkpoint", "init-prefixed.safetensors",
      safetensors([("model." + W[0],) + W[1:], ("model." + B[0],) + B[1:]]))

write("corpus-data", "text.txt", b"It was the best of times, it was the worst of times.\n" * 2)
toks = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 300, 50256, 0]
write("corpus-data", "plain.bin", struct.pack("<%dH" % len(toks), *toks))
hdr = [20240520, 1, len(toks)] + [0] * 253
write("corpus-data", "llmc.bin", struct.pack("<256i", *hdr) + struct.pack("<%dH" % len(toks), *toks))
