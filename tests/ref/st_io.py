"""tests/ref/st_io.py: safetensors by hand (8-byte little-endian header
length, JSON header, raw little-endian data), so the Python references and
tests need no pip package. Shared by models_torch.py, train_torch.py,
generate_torch.py and tests/program/test_build.py."""
import json
import struct

import numpy as np

ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
             "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
NP_TO_ST = {np.dtype(v): k for k, v in ST_DTYPES.items()}


def write_st(path, tensors, metadata=None):
    """tensors: {name: np.ndarray}; written in the given order."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": NP_TO_ST[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def read_st(path):
    """-> ({name: np.ndarray} in file order, metadata or None)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    base, out = 8 + n, {}
    for name, h in header.items():
        s, e = h["data_offsets"]
        dt = np.dtype(ST_DTYPES[h["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(raw[base + s:base + e], dtype=dt).reshape(h["shape"]).astype(dt.newbyteorder("="))
    return out, meta
