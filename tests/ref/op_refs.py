#!/usr/bin/env python3
# tests/ref/op_refs.py: the PyTorch side of the reference-kernel tests. For
# every forward IR op it makes seeded random inputs (float32 values, or
# integer/bool tensors), computes the op with PyTorch in float64 from exactly
# those values, and writes CASE.in0, CASE.in1, ..., CASE.out into one
# safetensors file (written by hand: the pip safetensors package is not
# needed). tests/unit/test_ir_interp.c builds the same op as an IR graph per
# case (its table gives the attributes), runs the interpreter and compares.
#
#   /usr/bin/python3 tests/ref/op_refs.py OUT.safetensors
#
# The references use torch.nn.functional and plain torch ops, never heed's
# code; where heed defines a case PyTorch leaves NaN (attention rows with no
# visible key, cross-entropy with every target ignored) the reference applies
# heed's rule explicitly (zeros, 0).
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20240607)
CASES = {}  # name -> ([inputs], output), numpy arrays


def case(name, inputs, out):
    assert name not in CASES, name
    if isinstance(out, torch.Tensor):
        out = out.detach().numpy()
    CASES[name] = ([np.array(a, order="C") for a in inputs], np.array(out, order="C"))  # keeps 0-d


def f32(*shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def ints(lo, hi, *shape, dtype=np.int64):
    return rng.integers(lo, hi, size=shape).astype(dtype)


def T(a):  # numpy -> torch, floats widened to float64 (exact)
    t = torch.from_numpy(np.array(a))
    return t.to(torch.float64) if t.is_floating_point() else t


# ---- positions ----
x = f32(2, 5, 3)
case("positions_basic", [x], np.arange(5, dtype=np.int32))
x = ints(0, 9, 3, 1, dtype=np.int32)
case("positions_t1", [x], np.arange(1, dtype=np.int32))

# ---- broadcasting binary ops and where ----
def binary(name, fn, a, b):
    case(name, [a, b], fn(T(a), T(b)))


binary("add_same", torch.add, f32(2, 3, 4), f32(2, 3, 4))
binary("add_bcast_row", torch.add, f32(3, 4), f32(4))
binary("add_bcast_both", torch.add, f32(3, 1, 5), f32(4, 1))
binary("add_i32", torch.add, ints(-1000, 1000, 3, 4, dtype=np.int32), ints(-1000, 1000, 4, dtype=np.int32))
binary("sub_scalar", torch.sub, f32(2, 3), f32())
binary("sub_scalar_left", torch.sub, f32(), f32(2, 3))
binary("mul_size1", torch.mul, f32(5, 1, 1), f32(1, 3, 2))
d = f32(4, 1)
d[np.abs(d) < 0.1] = 0.5
binary("div_float_bcast", torch.div, f32(4, 3), d)
a, b = ints(-50, 50, 2, 4), ints(1, 7, 4) * np.array([1, -1, 1, -1])
binary("div_i64_trunc", lambda p, q: torch.div(p, q, rounding_mode="trunc"), a, b)
a, b = ints(-50, 50, 3, 5, dtype=np.int32), ints(1, 9, 3, 1, dtype=np.int32) * np.int32(-1)
binary("div_i32_trunc", lambda p, q: torch.div(p, q, rounding_mode="trunc"), a, b)
a, b = f32(3, 4), f32(1, 4)
a[1, :] = b[0, :]  # ties
binary("maximum_bcast", torch.maximum, a, b)
binary("minimum_bcast", torch.minimum, f32(2, 1), f32(3))
c, a, b = rng.random((3, 1)) < 0.5, f32(1, 4), f32()
c[0, 0], c[1, 0] = True, False
case("where_bcast", [c, a, b], torch.where(T(c), T(a), T(b)))
c = rng.random((2, 3)) < 0.5
a, b = f32(2, 3), f32(2, 3)
case("where_full", [c, a, b], torch.where(T(c), T(a), T(b)))

# ---- unary ----
def unary(name, fn, a):
    case(name, [a], fn(T(a)))


unary("neg", torch.neg, f32(3, 7))
unary("exp", torch.exp, f32(3, 7, scale=3))
a = np.abs(f32(3, 7, scale=2))
a[0, 0], a[2, 6] = 0, 1e-30
unary("log", torch.log, a)  # log(0) = -inf
unary("sqrt", torch.sqrt, np.abs(f32(3, 7, scale=4)))
unary("rsqrt", torch.rsqrt, np.abs(f32(3, 7)) + np.float32(0.1))
unary("tanh", torch.tanh, f32(3, 7, scale=3))
a = f32(2, 8, scale=4)
a[0, :6] = [100, -100, 800, -800, 1e30, -1e30]  # a naive sigmoid overflows
unary("sigmoid", torch.sigmoid, a)
a = f32(3, 7)
a[0, 0] = 0
unary("relu", torch.relu, a)
unary("gelu", F.gelu, f32(4, 9, scale=3))
unary("gelu_tanh", lambda t: F.gelu(t, approximate="tanh"), f32(4, 9, scale=3))
a = f32(3, 7, scale=4)
a[0, :4] = [50, -50, 800, -800]
unary("silu", F.silu, a)
unary("abs", torch.abs, f32(3, 7))
a = f32(3, 7, scale=50)
a[0, :4] = [2.5, -2.5, 0.99, -0.99]
case("cast_f32_i32", [a], T(a).to(torch.int32))  # truncation toward zero
a = ints(-(2**30), 2**30, 2, 5) * 4 + 1
a[0, 0] = 2**25 + 1  # not a float32: rounds to nearest even
case("cast_i64_f32", [a], torch.from_numpy(a).to(torch.float32).to(torch.float64))
a = f32(2, 6)
a[0, :3] = 0
case("cast_f32_bool", [a], T(a).to(torch.bool))
a = f32(3, 8, scale=100)
a[0, :6] = [1e-6, -3e-7, 70000, -1e5, 65504, 6.1e-5]  # subnormals, overflow, the largest f16
case("cast_f32_f16", [a], T(a).to(torch.float16).to(torch.float64))
a = f32(3, 8, scale=100)
a[0, :3] = [1e-39, 3.0e38, -1.00390625]  # a subnormal, near the top, a tie
case("cast_f32_bf16", [a], torch.from_numpy(a).to(torch.bfloat16).to(torch.float64))
unary("dropout_eval", lambda t: F.dropout(t, p=0.1, training=False), f32(3, 7))

# ---- matmul ----
binary("matmul_2d", torch.matmul, f32(3, 5), f32(5, 4))
binary("matmul_batched", torch.matmul, f32(2, 3, 5), f32(2, 5, 4))
binary("matmul_batched_bcast", torch.matmul, f32(2, 1, 3, 4), f32(5, 4, 2))
binary("matmul_bcast_lhs", torch.matmul, f32(3, 4), f32(2, 4, 5))
binary("matmul_m1_n1", torch.matmul, f32(1, 7), f32(7, 1))

# ---- reductions ----
x = f32(2, 3, 4)
case("sum_axis_last", [x], torch.sum(T(x), dim=2))
case("sum_axes_keepdim", [x], torch.sum(T(x), dim=(0, 2), keepdim=True))
case("sum_all", [x], torch.sum(T(x)))
case("mean_axis_mid", [x], torch.mean(T(x), dim=1))
x = f32(3, 1, 5, 2)
case("mean_axes_keepdim", [x], torch.mean(T(x), dim=(1, 3), keepdim=True))
x = f32(2, 3, 4)
x[0, 2, :] = x[0, 0, :]  # ties
case("max_axis", [x], torch.amax(T(x), dim=1))
case("max_keepdim", [x], torch.amax(T(x), dim=(0, 2), keepdim=True))
case("min_axis", [x], torch.amin(T(x), dim=2))
case("min_all", [x], torch.amin(T(x)))

# ---- softmax ----
x = f32(3, 6)
case("softmax_last", [x], torch.softmax(T(x), dim=1))
x = f32(5, 4, scale=50)  # large logits: must subtract the maximum
case("softmax_axis0", [x], torch.softmax(T(x), dim=0))
x = f32(3, 1, 4)
case("softmax_size1_axis", [x], torch.softmax(T(x), dim=1))
x = f32(2, 5, 3)
case("log_softmax_mid", [x], torch.log_softmax(T(x), dim=1))
x = f32(4, 7, scale=100)
case("log_softmax_last", [x], torch.log_softmax(T(x), dim=1))

# ---- layernorm, rmsnorm ----
def layernorm(name, x, w, b, eps):
    case(name, [x, w, b], F.layer_norm(T(x), (x.shape[-1],), T(w), T(b), eps))


def rmsnorm(name, x, w, eps):
    t = T(x)
    case(name, [x, w], t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * T(w))


layernorm("layernorm_eps1e3", f32(2, 3, 8), f32(8), f32(8), 1e-3)
layernorm("layernorm_t1", f32(1, 1, 5), f32(5), f32(5), 1e-5)
layernorm("layernorm_offset", f32(3, 16, shift=100), f32(16), f32(16), 1e-5)  # large mean
rmsnorm("rmsnorm_eps1e2", f32(2, 4, 6), f32(6), 1e-2)
rmsnorm("rmsnorm_eps1e6", f32(3, 5), f32(5), 1e-6)

# ---- shape ops ----
x = f32(2, 3, 4)
case("reshape_merge", [x], T(x).reshape(6, 4))
x = f32(12)
case("reshape_split", [x], T(x).reshape(2, 2, 3))
x = f32(2, 3, 4)
case("permute_3d", [x], T(x).permute(2, 0, 1))
x = f32(2, 3, 4, 5)
case("permute_4d", [x], T(x).permute(0, 2, 1, 3))
x = f32(1, 3, 1, 2)
case("permute_size1", [x], T(x).permute(3, 2, 1, 0))
x = f32(3, 7, 2)
case("slice_pos", [x], T(x).narrow(1, 2, 4))
case("slice_neg_start", [x], T(x).narrow(1, 7 - 3, 2))  # start -3, length 2
x = f32(2, 5, 4)
case("slice_last", [x], T(x)[:, -1:, :])  # x[:, -1] keeping the axis
x = f32(6, 3)
case("slice_axis0", [x], T(x)[0:2])
xs = [f32(2, 1, 3), f32(2, 4, 3), f32(2, 2, 3)]
case("concat_axis1_3", xs, torch.cat([T(a) for a in xs], dim=1))
xs = [f32(1, 3), f32(2, 3)]
case("concat_axis0", xs, torch.cat([T(a) for a in xs], dim=0))
xs = [f32(2, 2), f32(2, 3)]
case("concat_last", xs, torch.cat([T(a) for a in xs], dim=1))
x = f32(3)
case("expand_lead", [x], T(x).expand(2, 4, 3))
x = f32(3, 1)
case("expand_size1", [x], T(x).expand(3, 5))
x = f32(1, 4, 1)
case("expand_mixed", [x], T(x).expand(2, 3, 4, 5))


def sum_to(x, shape):  # the adjoint of expand, written out
    t = T(x)
    lead = t.dim() - len(shape)
    t = t.sum(dim=tuple(range(lead))) if lead else t
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    return t.sum(dim=axes, keepdim=True) if axes else t


x = f32(2, 4, 3)
case("sum_to_lead", [x], sum_to(x, (3,)))
x = f32(3, 5)
case("sum_to_size1", [x], sum_to(x, (3, 1)))
x = f32(2, 3, 4, 5)
case("sum_to_mixed", [x], sum_to(x, (1, 4, 1)))
tab, idx = f32(10, 4), ints(0, 10, 2, 3, dtype=np.int32)
idx[0, 0], idx[1, 2] = 0, 9
case("gather_2d_idx", [tab, idx], F.embedding(T(idx).long(), T(tab)))
tab, idx = f32(7), ints(0, 7, 5)
case("gather_1d_table", [tab, idx], T(tab)[T(idx)])
tab, idx = f32(5, 2, 3), ints(0, 5, 4, dtype=np.int32)
case("gather_3d_table", [tab, idx], T(tab)[T(idx).long()])

# ---- attention ----
def attention_ref(q, k, v, H, KV, causal, scale, mask=None):
    """q (B,T,H*D), k, v (B,S,KV*D), mask (B,S) bool keep-mask -> (B,T,H*D)."""
    B, Tq, C = q.shape
    S = k.shape[1]
    D = C // H
    qh = q.view(B, Tq, H, D).transpose(1, 2)                       # (B,H,T,D)
    kh = k.view(B, S, KV, D).transpose(1, 2).repeat_interleave(H // KV, dim=1)  # head h reads h // (H/KV)
    vh = v.view(B, S, KV, D).transpose(1, 2).repeat_interleave(H // KV, dim=1)
    scores = (qh @ kh.transpose(-1, -2)) * scale                   # (B,H,T,S)
    keep = torch.ones(B, 1, Tq, S, dtype=torch.bool)
    if causal:  # query t sits at absolute position t + S - T
        keep = keep & torch.ones(Tq, S, dtype=torch.bool).tril(diagonal=S - Tq)
    if mask is not None:
        keep = keep & mask.view(B, 1, 1, S)
    w = torch.softmax(scores.masked_fill(~keep, -math.inf), dim=-1)
    w = torch.where(keep.any(-1, keepdim=True), w, torch.zeros(()))  # no visible key: zeros (torch: NaN)
    return (w @ vh).transpose(1, 2).reshape(B, Tq, H * D)


def attention(name, B, Tq, S, H, KV, D, causal, scale=None, mask=None):
    q, k, v = f32(B, Tq, H * D), f32(B, S, KV * D), f32(B, S, KV * D)
    scale = 1 / math.sqrt(D) if scale is None else scale
    ins = [q, k, v] + ([mask] if mask is not None else [])
    m = torch.from_numpy(mask != 0) if mask is not None else None  # bool or integer: non-zero keeps
    case(name, ins, attention_ref(T(q), T(k), T(v), H, KV, causal, scale, m))


attention("attention_mha", 2, 5, 5, 2, 2, 4, False)
attention("attention_causal", 2, 6, 6, 3, 3, 2, True)
attention("attention_causal_decode", 2, 1, 5, 2, 2, 4, True)
attention("attention_causal_s_gt_t", 1, 3, 7, 2, 2, 3, True)
attention("attention_causal_t_gt_s", 1, 4, 2, 1, 1, 2, True)  # queries 0, 1 see nothing: zeros
attention("attention_gqa_kv2", 2, 4, 4, 4, 2, 3, True)
attention("attention_mqa_kv1", 1, 3, 5, 4, 1, 2, False, scale=0.3)
attention("attention_b1_t1", 1, 1, 1, 1, 1, 5, True)
mask = np.array([[1, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 0]], dtype=bool)  # batch 2: every key masked
attention("attention_mask", 3, 4, 4, 2, 2, 3, False, mask=mask)
mask = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)  # batch 0, query 0: nothing visible
attention("attention_mask_causal_gqa", 2, 5, 5, 4, 2, 2, True, mask=mask)

# ---- rope ----
def rope_ref(x, H, base, interleaved, inverse):
    """x (B,T,H*D): pairs (i, i+D/2) (GPT-NeoX/HF rotate_half) or (2i, 2i+1) (complex, Llama)."""
    B, Tq, C = x.shape
    D = C // H
    inv_freq = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)   # (D/2)
    ang = torch.arange(Tq, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, D/2)
    if inverse:
        ang = -ang
    xh = x.view(B, Tq, H, D)
    if interleaved:
        z = torch.view_as_complex(xh.reshape(B, Tq, H, D // 2, 2).contiguous())
        rot = torch.polar(torch.ones_like(ang), ang)[None, :, None, :]
        out = torch.view_as_real(z * rot).reshape(B, Tq, H, D)
    else:
        cos = torch.cat([ang.cos(), ang.cos()], dim=-1)[None, :, None, :]
        sin = torch.cat([ang.sin(), ang.sin()], dim=-1)[None, :, None, :]
        x1, x2 = xh[..., : D // 2], xh[..., D // 2:]
        out = xh * cos + torch.cat([-x2, x1], dim=-1) * sin
    return out.reshape(B, Tq, C)


def rope(name, B, Tq, H, D, base, interleaved, inverse):
    x = f32(B, Tq, H * D)
    case(name, [x], rope_ref(T(x), H, base, interleaved, inverse))


rope("rope_neox", 2, 5, 2, 6, 10000.0, False, False)
rope("rope_interleaved", 2, 5, 2, 6, 10000.0, True, False)
rope("rope_neox_inverse", 1, 6, 3, 4, 10000.0, False, True)
rope("rope_interleaved_inverse", 1, 6, 3, 4, 10000.0, True, True)
rope("rope_t1", 2, 1, 2, 4, 10000.0, False, False)
rope("rope_base500", 1, 9, 1, 8, 500.0, True, False)

# ---- cross entropy ----
def xent(name, logits, targets, ignore):
    V = logits.shape[-1]
    lt, tt = T(logits).reshape(-1, V), T(targets).long().reshape(-1)
    if bool((tt == ignore).all()):
        out = torch.zeros((), dtype=torch.float64)  # heed: 0 (torch: NaN)
    else:
        out = F.cross_entropy(lt, tt, ignore_index=ignore, reduction="mean")
    case(name, [logits, targets], out)


xent("xent_basic", f32(6, 5), ints(0, 5, 6), -1)
t = ints(0, 7, 2, 4)
t[0, 1], t[1, 3], t[1, 0] = -1, -1, -1
xent("xent_ignore", f32(2, 4, 7, scale=3), t, -1)
xent("xent_all_ignored", f32(2, 3), np.full(2, -1, dtype=np.int64), -1)
t = ints(0, 4, 5)
t[:2] = 3
xent("xent_ignore_class", f32(5, 4), t, 3)  # an index inside [0, V) ignored
xent("xent_i32_targets", f32(3, 1, 4, scale=10), ints(0, 4, 3, 1, dtype=np.int32), -1)

# ---- attention with an integer keep-mask (Hugging Face's attention_mask is int64): non-zero keeps ----
mask = np.array([[1, 0, 2, 1], [0, 0, 0, 0], [-1, 1, 0, 1]], dtype=np.int64)  # batch 1: every key masked
attention("attention_mask_i64", 3, 4, 4, 2, 2, 3, False, mask=mask)
mask = np.array([[0, 1, 1, 1, 7], [1, 1, 1, 0, 0]], dtype=np.int32)  # batch 0, query 0: nothing visible
attention("attention_mask_i32_causal_gqa", 2, 5, 5, 4, 2, 2, True, mask=mask)


# ---- the file ----
DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64",
          np.dtype(np.int32): "I32", np.dtype(np.bool_): "BOOL"}


def write(path):
    header, blobs, off = {}, [], 0
    for name, (ins, out) in CASES.items():
        if out.dtype.kind == "f":
            out = out.astype(np.float64)
        for key, arr in [(f"{name}.in{i}", a) for i, a in enumerate(ins)] + [(f"{name}.out", out)]:
            data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            header[key] = {"dtype": DTYPES[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
            blobs.append(data)
            off += len(data)
    header["__metadata__"] = {"cases": ",".join(CASES)}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: op_refs.py OUT.safetensors")
    write(sys.argv[1])
    print(f"op_refs: {len(CASES)} cases -> {sys.argv[1]}")
