// codegen/attention.c: attention's CPU kernels, into the module compile.c
// builds: the forward (ATTENTION; ATTENTION_KV, decode over a cache) and
// the fused backward (ATTENTION_DQ, _DK, _DV in one kernel: the schedule's
// attention-gradient groups, passes/schedule.c). Sits beside compile.c and compile_grad.c at the
// end of the CPU backend's data flow: IrGraph -> one LLVM module -> LLJIT.
// The reference semantics are ir/kernels.c (attention, attention_kv) and
// ir/kernels_grad.c.
//
// Shapes: q, dout, y, dq (B,T,H*D); k, v, dk, dv (B,S,KV*D); mask (B,S).
// Query head h reads kv head h / G (G = H / KV). Query t sees the keys
// s < lim(t) = clamp(t + S - T + 1, 0, S) when causal (ATTENTION_KV: S is
// pos + T, the cache rows filled), all S otherwise, and of those only the
// ones with mask[b,s] != 0.
//
// Scheme: one unit of parallel work is a (batch, head) (the backward: a
// (batch, kv head), which owns its dk and dv rows). K^T (and V^T) are
// copied once per unit into scratch (D x Sp, Sp = S rounded up to the key
// tile TW, zero padding), and the rows of v (of k) into contiguous rows
// (the rows of a head are KV*D floats apart: a stride that maps them to
// few L1 sets). Query rows go in blocks of RB = NG register tiles of R
// rows; a tile's keys run up to its last row's lim, rounded up to TW.
//   scores (dP = dout V^T alike): per key tile, for each register tile,
//     R x NC vectors of FMAs over d (kt's tile stays in L1 for the block);
//   softmax: per register tile, the R rows together on whole vectors
//     (lanes at or past lim(t), or masked, are -inf; exp on vectors);
//   P @ V (dS @ K): a few rows' D/vw vector accumulators in registers over
//     the keys, in blocks of keys that stay in L1 for all RB rows;
//   dK^T += Q^T dS, dV^T += dout^T P: transposed accumulators (D x Sp),
//     tiled like the scores, transposed into dk, dv at the unit's end.
// Explicit <vw x float> vectors and llvm.fma throughout; head rows whose D
// is not a multiple of vw are read and written with masked loads and
// stores. With fewer than R query rows (decode) the forward skips the
// transpose: one dot product per key, summed across lanes.
// Code size (LLVM's O3 and instruction selection time grow with it): only
// a register tile's work is unrolled (R x NC score vectors, R softmax
// rows, a mix's accumulators), and the scores over a block's NG register
// tiles; the other passes over a block's register tiles or rows and the
// backward's pairs of like passes (scores and dP, dK^T and dV^T, the K^T
// and V^T copies, the dk and dv stores) are IR loops, over a block's row
// pointers, lims and tile key counts kept in small stack arrays.
//
// Numerics: f32 throughout (PyTorch's CPU attention too): scores, the row
// max and sum of exps, P @ V, dP, the row's sum p dp. Each unit runs in a
// fixed order on one task: results do not depend on the thread count.
// Scratch is malloc'd per task (heap, ST_NOMEM when it fails).
#include <math.h>

#include "codegen/compile.h"

enum {
  R = 4,        // query rows per register tile (score tiles R x TW)
  NG = 4,       // register tiles per block
  RB = R * NG,  // query rows per block: each key tile or block of v rows is reused by them from L1
  NC = 2,       // key vectors per score tile: TW = NC vw keys
  MAXV = 8      // vector accumulators a mix keeps in registers
};

typedef struct {
  K *k;
  int64_t H, KV, G, D;
  int vw, nv, tw;           // lanes; vectors per head row (D / vw rounded up); key tile
  LLVMTypeRef vt, it;       // <vw x float>, <vw x i32>
  LLVMValueRef T, S, Sc;    // S: the keys that exist; Sc: rows of k and v per batch (ATTENTION_KV: the cache's)
  LLVMValueRef Sp;          // scratch row stride: S (at least 1) rounded up to tw
  LLVMValueRef mask, kvis;  // mask (B,S) bool or integer (non-zero keeps) or NULL; kvis (Sp) i32: -1 where unmasked
  IrDType mdt;              // the mask's dtype
  bool causal;
} At;

// ---- vectors ----

// A constant of type t: a float (t f32 or f64), or an integer (t i32 or i64),
// splatted when t is a vector of them.
static LLVMValueRef const_of(LLVMTypeRef t, double v) {
  bool vec = LLVMGetTypeKind(t) == LLVMVectorTypeKind;
  LLVMTypeRef e = vec ? LLVMGetElementType(t) : t;
  LLVMTypeKind ek = LLVMGetTypeKind(e);
  LLVMValueRef c = ek == LLVMIntegerTypeKind ? LLVMConstInt(e, (unsigned long long)(int64_t)v, 1) : LLVMConstReal(e, v);
  if (!vec) return c;
  LLVMValueRef l[64];
  unsigned n = LLVMGetVectorSize(t);
  for (unsigned i = 0; i < n && i < 64; i++) l[i] = c;
  return LLVMConstVector(l, n);
}

static LLVMValueRef vzero(At *a) { return LLVMConstNull(a->vt); }

// x (f32 or i32) in every lane
static LLVMValueRef vsplat(At *a, LLVMValueRef x) {
  K *k = a->k;
  LLVMTypeRef t = LLVMTypeOf(x) == k->i32 ? a->it : a->vt;
  LLVMValueRef v = LLVMBuildInsertElement(k->b, LLVMGetUndef(t), x, ci32(k, 0), "");
  return LLVMBuildShuffleVector(k->b, v, LLVMGetUndef(t), LLVMConstNull(a->it), "");
}

static LLVMValueRef vld(At *a, LLVMTypeRef t, LLVMValueRef p) {
  LLVMValueRef v = load(a->k, t, p);
  LLVMSetAlignment(v, 4);
  return v;
}
static void vst(At *a, LLVMValueRef v, LLVMValueRef p) { LLVMSetAlignment(LLVMBuildStore(a->k->b, v, p), 4); }

static LLVMValueRef vfma(At *a, LLVMValueRef x, LLVMValueRef y, LLVMValueRef z) {
  LLVMValueRef args[3] = {x, y, z};
  return intr(a->k, "llvm.fma", &a->vt, 1, args, 3);
}

// f32 sum of a vector's lanes (a fixed tree)
static LLVMValueRef vsum(At *a, LLVMValueRef v) {
  LLVMValueRef args[2] = {cf(a->k, -0.0), v};
  return reassoc(intr(a->k, "llvm.vector.reduce.fadd", &a->vt, 1, args, 2));
}

// <vw x i1>: lanes [0, n) set
static LLVMValueRef lanes_below(At *a, int n) {
  LLVMValueRef l[16];
  LLVMTypeRef i1 = a->k->i1;
  for (int i = 0; i < a->vw; i++) l[i] = LLVMConstInt(i1, i < n, 0);
  return LLVMConstVector(l, (unsigned)a->vw);
}

// Vector j of a head row at p (D floats): the last one masked (zeros past
// D) when vw does not divide D.
static LLVMValueRef row_ld(At *a, LLVMValueRef p, int j) {
  K *k = a->k;
  LLVMValueRef q = gep(k, k->f32, p, ci(k, (int64_t)j * a->vw));
  int64_t n = a->D - (int64_t)j * a->vw;
  if (n >= a->vw) return vld(a, a->vt, q);
  LLVMTypeRef tys[2] = {a->vt, k->ptr};
  LLVMValueRef args[4] = {q, ci32(k, 4), lanes_below(a, (int)n), vzero(a)};
  return intr(k, "llvm.masked.load", tys, 2, args, 4);
}
static void row_st(At *a, LLVMValueRef v, LLVMValueRef p, int j) {
  K *k = a->k;
  LLVMValueRef q = gep(k, k->f32, p, ci(k, (int64_t)j * a->vw));
  int64_t n = a->D - (int64_t)j * a->vw;
  if (n >= a->vw) {
    vst(a, v, q);
    return;
  }
  LLVMTypeRef tys[2] = {a->vt, k->ptr};
  LLVMValueRef args[4] = {v, q, ci32(k, 4), lanes_below(a, (int)n)};
  intr(k, "llvm.masked.store", tys, 2, args, 4);
}

// ---- sizes and rows ----

static At at_init(K *k) {
  const IrNode *n = k->n;
  At a = {.k = k, .H = n->attr.heads, .KV = n->attr.kv_heads, .vw = k->vw, .causal = n->attr.causal};
  a.G = a.H / a.KV;
  a.D = n->src[0]->ty.dim[2].n / a.H;
  a.nv = (int)((a.D + a.vw - 1) / a.vw);
  a.tw = NC * a.vw;
  a.vt = LLVMVectorType(k->f32, (unsigned)a.vw);
  a.it = LLVMVectorType(k->i32, (unsigned)a.vw);
  a.T = k->idim[0][1];
  a.S = a.Sc = k->idim[1][1];
  return a;
}

// x rounded up to the key tile
static LLVMValueRef at_round(At *a, LLVMValueRef x) {
  K *k = a->k;
  return LLVMBuildAnd(k->b, add(k, x, ci(k, a->tw - 1)), ci(k, -a->tw), "");
}

// The scratch row stride and the unit's key flags (kvis, with a mask), in
// floats from the scratch's offset *off on.
static void at_scratch_keys(At *a, LLVMValueRef buf, LLVMValueRef *off) {
  K *k = a->k;
  a->Sp = at_round(a, imax(k, a->S, ci(k, 1)));
  if (a->mask) {
    if (buf) a->kvis = gep(k, k->f32, buf, *off);
    *off = add(k, *off, a->Sp);
  }
}

// kvis for batch b: -1 where key s < S is unmasked, 0 elsewhere (up to Sp)
static void at_fill_kvis(At *a, LLVMValueRef b) {
  K *k = a->k;
  if (!a->mask) return;
  Loop l;
  LLVMValueRef s = loop_begin(k, &l, ci(k, 0), a->S);
  LLVMValueRef on = icmp(k, LLVMIntNE, ld(k, a->mdt, a->mask, add(k, mul(k, b, a->S), s)), ci(k, 0));
  store(k, LLVMBuildSExt(k->b, on, k->i32, ""), gep(k, k->i32, a->kvis, s));
  loop_end(k, &l);
  s = loop_begin(k, &l, a->S, a->Sp);
  store(k, ci32(k, 0), gep(k, k->i32, a->kvis, s));
  loop_end(k, &l);
}

// Keys [0, lim) are visible to query t by causality.
static LLVMValueRef at_lim(At *a, LLVMValueRef t) {
  K *k = a->k;
  if (!a->causal) return a->S;
  return imax(k, ci(k, 0), imin(k, a->S, add(k, t, add(k, sub(k, a->S, a->T), ci(k, 1)))));
}

// Head rows: q, dout (b, t, h); k, v (b, s, kv head hk)
static LLVMValueRef at_qrow(At *a, LLVMValueRef base, LLVMValueRef b, LLVMValueRef t, LLVMValueRef h) {
  K *k = a->k;
  return gep(k, k->f32, base, mul(k, add(k, mul(k, add(k, mul(k, b, a->T), t), ci(k, a->H)), h), ci(k, a->D)));
}
static LLVMValueRef at_krow(At *a, LLVMValueRef base, LLVMValueRef b, LLVMValueRef s, LLVMValueRef hk) {
  K *k = a->k;
  return gep(k, k->f32, base, mul(k, add(k, mul(k, add(k, mul(k, b, a->Sc), s), ci(k, a->KV)), hk), ci(k, a->D)));
}

// ---- the pieces ----

// The vw x vw block at src (vw vectors, ls floats apart) transposed into
// dst (vw vectors, ld floats apart): log2(vw) rounds of interleaves, row i
// with row i + vw/2, the low and high halves into rows 2i and 2i + 1.
static void tr_block(At *a, LLVMValueRef src, LLVMValueRef ls, LLVMValueRef dst, LLVMValueRef ld) {
  K *k = a->k;
  int vw = a->vw, h = vw / 2;
  LLVMValueRef lo[16], hi[16], t[16], u[16];
  for (int l = 0; l < h; l++) {
    lo[2 * l] = ci32(k, l), lo[2 * l + 1] = ci32(k, vw + l);
    hi[2 * l] = ci32(k, h + l), hi[2 * l + 1] = ci32(k, vw + h + l);
  }
  LLVMValueRef mlo = LLVMConstVector(lo, (unsigned)vw), mhi = LLVMConstVector(hi, (unsigned)vw);
  for (int i = 0; i < vw; i++) t[i] = vld(a, a->vt, gep(k, k->f32, src, mul(k, ci(k, i), ls)));
  for (int round = 1; round < vw; round *= 2) {
    for (int i = 0; i < h; i++) {
      u[2 * i] = LLVMBuildShuffleVector(k->b, t[i], t[i + h], mlo, "");
      u[2 * i + 1] = LLVMBuildShuffleVector(k->b, t[i], t[i + h], mhi, "");
    }
    memcpy(t, u, sizeof t);
  }
  for (int i = 0; i < vw; i++) vst(a, t[i], gep(k, k->f32, dst, mul(k, ci(k, i), ld)));
}

// dst[j ld + i] = src[i ls + j] for i < m, j < n: whole vw x vw blocks,
// then the edges element by element.
static void at_transpose(At *a, LLVMValueRef dst, LLVMValueRef ld, LLVMValueRef src, LLVMValueRef ls, LLVMValueRef m,
                         LLVMValueRef n) {
  K *k = a->k;
  LLVMValueRef vw = ci(k, a->vw), mb = LLVMBuildAnd(k->b, m, ci(k, -a->vw), "");
  LLVMValueRef nb = LLVMBuildAnd(k->b, n, ci(k, -a->vw), "");
  Loop li, lj;
  LLVMValueRef i = mul(k, loop_begin(k, &li, ci(k, 0), LLVMBuildSDiv(k->b, mb, vw, "")), vw);
  LLVMValueRef j = mul(k, loop_begin(k, &lj, ci(k, 0), LLVMBuildSDiv(k->b, nb, vw, "")), vw);
  tr_block(a, gep(k, k->f32, src, add(k, mul(k, i, ls), j)), ls, gep(k, k->f32, dst, add(k, mul(k, j, ld), i)), ld);
  loop_end(k, &lj);
  loop_end(k, &li);
  for (int e = 0; e < 2; e++) {  // the last columns of every row; the last rows' other columns
    i = loop_begin(k, &li, e ? mb : ci(k, 0), m);
    j = loop_begin(k, &lj, e ? ci(k, 0) : nb, e ? nb : n);
    store(k, load(k, k->f32, gep(k, k->f32, src, add(k, mul(k, i, ls), j))), gep(k, k->f32, dst, add(k, mul(k, j, ld), i)));
    loop_end(k, &lj);
    loop_end(k, &li);
  }
}

// dst (D x Sp) = K^T of kv head hk of src (b) over keys s < n; zeros for s
// in [n, n rounded up to tw).
static void at_load_t(At *a, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef b, LLVMValueRef hk, LLVMValueRef n) {
  K *k = a->k;
  at_transpose(a, dst, a->Sp, at_krow(a, src, b, ci(k, 0), hk), ci(k, a->KV * a->D), n, ci(k, a->D));
  Loop ls, ld;
  LLVMValueRef d = loop_begin(k, &ld, ci(k, 0), ci(k, a->D));
  LLVMValueRef s = loop_begin(k, &ls, n, at_round(a, n));
  store(k, cf(k, 0), gep(k, k->f32, dst, add(k, mul(k, d, a->Sp), s)));
  loop_end(k, &ls);
  loop_end(k, &ld);
}

// if (t0 + r < T) { ... }: r a row of the block
static LLVMBasicBlockRef if_row(At *a, LLVMValueRef t0, LLVMValueRef r) {
  return if_begin(a->k, icmp(a->k, LLVMIntSLT, add(a->k, t0, r), a->T));
}

// dst (rows of Dp floats) = the rows s < n of kv head hk of src (b), zeros
// past D: contiguous, so that a block of them stays in L1 (the rows of k
// and v are KV*D floats apart, a stride that maps them to few cache sets).
static void at_load_rows(At *a, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef b, LLVMValueRef hk, LLVMValueRef n) {
  K *k = a->k;
  Loop ls;
  LLVMValueRef s = loop_begin(k, &ls, ci(k, 0), n), row = at_krow(a, src, b, s, hk);
  LLVMValueRef d = gep(k, k->f32, dst, mul(k, s, ci(k, (int64_t)a->nv * a->vw)));
  for (int j = 0; j < a->nv; j++) vst(a, row_ld(a, row, j), gep(k, k->f32, d, ci(k, (int64_t)j * a->vw)));
  loop_end(k, &ls);
}

// A block of RB query rows from t0, kept in small stack arrays that the
// loops over its register tiles and rows read: the rows of q (and dout),
// past T the last one again; the keys each row sees (lim); a register
// tile's keys, up to its last row's lim (lim grows with t) rounded up to
// the key tile (ncols).
typedef struct {
  int nsrc;                 // row sources (q; q and dout)
  LLVMValueRef t0, nr, ng;  // first row; rows and register tiles with a row before T
  LLVMValueRef rows;        // ptr [nsrc RB]: the rows of base[i] from i RB on
  LLVMValueRef lim, ncols;  // i64 [RB], i64 [NG]
} Blk;

static Blk blk_alloc(At *a, int nsrc) {
  K *k = a->k;
  Blk bl = {0};
  bl.nsrc = nsrc;
  bl.rows = LLVMBuildArrayAlloca(k->ab, k->ptr, ci(k, nsrc * RB), "rows");
  bl.lim = LLVMBuildArrayAlloca(k->ab, k->i64, ci(k, RB), "lim");
  bl.ncols = LLVMBuildArrayAlloca(k->ab, k->i64, ci(k, NG), "ncols");
  return bl;
}

// Row r of source i (an i64 value)
static LLVMValueRef blk_row(At *a, const Blk *bl, LLVMValueRef i, LLVMValueRef r) {
  K *k = a->k;
  return load(k, k->ptr, gep(k, k->ptr, bl->rows, add(k, mul(k, i, ci(k, RB)), r)));
}
static LLVMValueRef blk_i64(At *a, LLVMValueRef arr, LLVMValueRef i) {
  return load(a->k, a->k->i64, gep(a->k, a->k->i64, arr, i));
}

// bl for the block from t0 of head h of batch b, rows[i] into base[i]
static void blk_fill(At *a, Blk *bl, const LLVMValueRef *base, LLVMValueRef b, LLVMValueRef h, LLVMValueRef t0) {
  K *k = a->k;
  bl->t0 = t0;
  bl->nr = imin(k, ci(k, RB), sub(k, a->T, t0));
  bl->ng = LLVMBuildSDiv(k->b, add(k, bl->nr, ci(k, R - 1)), ci(k, R), "");
  Loop l;
  LLVMValueRef r = loop_begin(k, &l, ci(k, 0), ci(k, RB)), t = imin(k, add(k, t0, r), sub(k, a->T, ci(k, 1)));
  for (int i = 0; i < bl->nsrc; i++)
    store(k, at_qrow(a, base[i], b, t, h), gep(k, k->ptr, bl->rows, add(k, r, ci(k, i * RB))));
  store(k, at_lim(a, t), gep(k, k->i64, bl->lim, r));
  loop_end(k, &l);
  LLVMValueRef g = loop_begin(k, &l, ci(k, 0), ci(k, NG));
  LLVMValueRef n = blk_i64(a, bl->lim, add(k, mul(k, g, ci(k, R)), ci(k, R - 1)));
  store(k, at_round(a, n), gep(k, k->i64, bl->ncols, g));
  loop_end(k, &l);
}

// for (g = 0; g < ng; g++) if (c0 < ncols[g]) { ... }: the register tiles
// of a block with a row before T that key tile c0 is in range of
static LLVMValueRef tile_begin(At *a, const Blk *bl, Loop *l, LLVMValueRef c0, LLVMBasicBlockRef *join) {
  K *k = a->k;
  LLVMValueRef g = loop_begin(k, l, ci(k, 0), bl->ng);
  *join = if_begin(k, icmp(k, LLVMIntSLT, c0, blk_i64(a, bl->ncols, g)));
  return g;
}
static void tile_end(At *a, Loop *l, LLVMBasicBlockRef join) {
  if_end(a->k, join);
  loop_end(a->k, l);
}

// The key tiles of a block: up to the last tile's ncols
static LLVMValueRef key_tiles(At *a, const Blk *bl) {
  K *k = a->k;
  LLVMValueRef n = blk_i64(a, bl->ncols, sub(k, bl->ng, ci(k, 1)));
  return LLVMBuildSDiv(k->b, n, ci(k, a->tw), "");
}

// Register tile r0 / R of the block (rows r0 .. r0 + R - 1) against key
// tile c0: sc[r Sp + s] = sv * row r . key s, rows of source i of bl,
// keys from kt (D x Sp); R x NC vector accumulators over d.
static void score_tile(At *a, LLVMValueRef sc, LLVMValueRef kt, const Blk *bl, LLVMValueRef i, LLVMValueRef sv,
                       LLVMValueRef c0, LLVMValueRef r0) {
  K *k = a->k;
  Loop ld;
  LLVMValueRef acc[R][NC], kv[NC], rows[R];
  for (int r = 0; r < R; r++) {
    rows[r] = blk_row(a, bl, i, add(k, r0, ci(k, r)));
    for (int j = 0; j < NC; j++) acc[r][j] = var(k, a->vt, vzero(a));
  }
  LLVMValueRef d = loop_begin(k, &ld, ci(k, 0), ci(k, a->D));
  LLVMValueRef kp = gep(k, k->f32, kt, add(k, mul(k, d, a->Sp), c0));
  for (int j = 0; j < NC; j++) kv[j] = vld(a, a->vt, gep(k, k->f32, kp, ci(k, (int64_t)j * a->vw)));
  for (int r = 0; r < R; r++) {
    LLVMValueRef qb = vsplat(a, load(k, k->f32, gep(k, k->f32, rows[r], d)));
    for (int j = 0; j < NC; j++) store(k, vfma(a, qb, kv[j], get(k, acc[r][j])), acc[r][j]);
  }
  loop_end(k, &ld);
  for (int r = 0; r < R; r++)
    for (int j = 0; j < NC; j++) {
      LLVMValueRef o = add(k, mul(k, add(k, r0, ci(k, r)), a->Sp), add(k, c0, ci(k, (int64_t)j * a->vw)));
      vst(a, LLVMBuildFMul(k->b, get(k, acc[r][j]), sv, ""), gep(k, k->f32, sc, o));
    }
}

// sc (RB x Sp): sc[r Sp + s] = scale * row r . key s for s < ncols[g] (a
// multiple of tw; g = r / R, the register tile) for the tiles with a row
// before T, rows of source i (i64) of bl, keys from kt (D x Sp); scale an
// f32 value. Per key tile (in L1 after the first), each register tile in
// range (score_tile), unrolled: a loop over the tiles cost 2 to 3% at
// T = 256, D = 64.
static void at_scores(At *a, LLVMValueRef sc, LLVMValueRef kt, const Blk *bl, LLVMValueRef i, LLVMValueRef scale) {
  K *k = a->k;
  Loop lc;
  LLVMValueRef sv = vsplat(a, scale);
  LLVMValueRef c0 = mul(k, loop_begin(k, &lc, ci(k, 0), key_tiles(a, bl)), ci(k, a->tw));
  for (int g = 0; g < NG; g++) {
    LLVMValueRef in = icmp(k, LLVMIntSLT, ci(k, g), bl->ng);
    LLVMBasicBlockRef join =
        if_begin(k, LLVMBuildAnd(k->b, in, icmp(k, LLVMIntSLT, c0, blk_i64(a, bl->ncols, ci(k, g))), ""));
    score_tile(a, sc, kt, bl, i, sv, c0, ci(k, g * R));
    if_end(k, join);
  }
  loop_end(k, &lc);
}

// sc[s] = scale * q . key s for s < lim, keys the rows of kv head hk of src
// (b): a dot product per key, its lanes summed (few query rows: decode).
static void at_scores_direct(At *a, LLVMValueRef sc, LLVMValueRef q, LLVMValueRef src, LLVMValueRef b,
                             LLVMValueRef hk, LLVMValueRef lim, double scale) {
  K *k = a->k;
  LLVMValueRef qv[MAXV];  // q in registers when it fits
  for (int j = 0; j < a->nv && j < MAXV; j++) qv[j] = row_ld(a, q, j);
  Loop ls;
  LLVMValueRef s = loop_begin(k, &ls, ci(k, 0), lim), row = at_krow(a, src, b, s, hk), acc = vzero(a);
  for (int j = 0; j < a->nv; j++) acc = vfma(a, j < MAXV ? qv[j] : row_ld(a, q, j), row_ld(a, row, j), acc);
  store(k, LLVMBuildFMul(k->b, vsum(a, acc), cf(k, scale), ""), gep(k, k->f32, sc, s));
  loop_end(k, &ls);
}

// exp(x) for x <= 0 or NaN (a score less its row's max; -inf for a hidden
// key), lanes alike: Cephes' expf as fexp's, with FMAs, one power of two
// and no overflow side; 0 below -80 (e^-80 is far under a row sum of at
// least 1, and every intermediate stays normal: no denormal assists).
static LLVMValueRef at_exp(At *a, LLVMValueRef x) {
  K *k = a->k;
  LLVMBuilderRef b = k->b;
#define C_(v) const_of(a->vt, (v))
  LLVMValueRef xc = intr2(k, "llvm.maxnum", x, C_(-80.0));
  LLVMValueRef n = intr1(k, "llvm.rint", LLVMBuildFMul(b, xc, C_(1.44269504088896341), ""));
  LLVMValueRef r = vfma(a, n, C_(-0.693359375), xc);
  r = vfma(a, n, C_(2.12194440e-4), r);
  static const double c[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMValueRef p = C_(c[0]);
  for (int i = 1; i < 6; i++) p = vfma(a, p, r, C_(c[i]));
  p = vfma(a, p, LLVMBuildFMul(b, r, r, ""), LLVMBuildFAdd(b, r, C_(1), ""));
  LLVMValueRef ni = LLVMBuildFPToSI(b, n, a->it, "");  // in [-116, 0]
  LLVMValueRef sc = LLVMBuildShl(b, LLVMBuildAdd(b, ni, const_of(a->it, 127), ""), const_of(a->it, 23), "");
  LLVMValueRef y = LLVMBuildFMul(b, p, LLVMBuildBitCast(b, sc, a->vt, ""), "");
  y = sel(k, fcmp(k, LLVMRealOLT, x, C_(-80.0)), C_(0), y);
  return sel(k, fcmp(k, LLVMRealUNO, x, x), x, y);
#undef C_
}

// R rows of scores (sc, rows Sp apart, ncols a multiple of tw), the first
// query t0r, to e = exp(x - max) in place, over the keys s < limp[r] that
// the mask shows (e = 0 elsewhere); inv[r] = 1 / sum e, 0 when no key is
// visible or t0r + r >= T (so that the row is 0). The rows go through each
// pass together: R independent chains of exp per vector of keys.
static void at_softmax(At *a, LLVMValueRef sc, LLVMValueRef limp, LLVMValueRef ncols, LLVMValueRef inv,
                       LLVMValueRef t0r) {
  K *k = a->k;
  LLVMValueRef iota[16], ninf = const_of(a->vt, -INFINITY), vmax[R], vs[R], m[R], lim[R];
  for (int r = 0; r < R; r++) lim[r] = blk_i64(a, limp, ci(k, r));
  for (int i = 0; i < a->vw; i++) iota[i] = ci32(k, i);
  LLVMValueRef io = LLVMConstVector(iota, (unsigned)a->vw), nvec = LLVMBuildSDiv(k->b, ncols, ci(k, a->vw), "");
  for (int r = 0; r < R; r++) vmax[r] = var(k, a->vt, ninf), vs[r] = var(k, a->vt, vzero(a));
  Loop l;
  LLVMValueRef c = mul(k, loop_begin(k, &l, ci(k, 0), nvec), ci(k, a->vw)), vis = NULL;
  if (a->mask) vis = LLVMBuildICmp(k->b, LLVMIntNE, vld(a, a->it, gep(k, k->i32, a->kvis, c)), LLVMConstNull(a->it), "");
  for (int r = 0; r < R; r++) {
    LLVMValueRef p = gep(k, k->f32, sc, add(k, mul(k, ci(k, r), a->Sp), c));
    LLVMValueRef left = vsplat(a, LLVMBuildTrunc(k->b, sub(k, lim[r], c), k->i32, ""));  // lanes < lim - c
    LLVMValueRef on = LLVMBuildICmp(k->b, LLVMIntSLT, io, left, "");
    if (vis) on = LLVMBuildAnd(k->b, on, vis, "");
    LLVMValueRef x = sel(k, on, vld(a, a->vt, p), ninf);
    vst(a, x, p);
    store(k, fmaxr(k, get(k, vmax[r]), x), vmax[r]);
  }
  loop_end(k, &l);
  for (int r = 0; r < R; r++) {
    LLVMValueRef mr = intr1(k, "llvm.vector.reduce.fmax", get(k, vmax[r]));
    LLVMSetFastMathFlags(mr, LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
    m[r] = vsplat(a, sel(k, fcmp(k, LLVMRealOEQ, mr, cf(k, -INFINITY)), cf(k, 0), mr));  // no key: every e is 0
  }
  c = mul(k, loop_begin(k, &l, ci(k, 0), nvec), ci(k, a->vw));
  for (int r = 0; r < R; r++) {
    LLVMValueRef p = gep(k, k->f32, sc, add(k, mul(k, ci(k, r), a->Sp), c));
    LLVMValueRef e = at_exp(a, LLVMBuildFSub(k->b, vld(a, a->vt, p), m[r], ""));
    vst(a, e, p);
    store(k, LLVMBuildFAdd(k->b, get(k, vs[r]), e, ""), vs[r]);
  }
  loop_end(k, &l);
  for (int r = 0; r < R; r++) {
    LLVMValueRef sum = vsum(a, get(k, vs[r]));
    LLVMValueRef ok = LLVMBuildAnd(k->b, fcmp(k, LLVMRealOGT, sum, cf(k, 0)),
                                   icmp(k, LLVMIntSLT, add(k, t0r, ci(k, r)), a->T), "");
    store(k, sel(k, ok, LLVMBuildFDiv(k->b, cf(k, 1), sum, ""), cf(k, 0)), gep(k, k->f32, inv, ci(k, r)));
  }
}

// Rows per at_mix call: as many as keep R x (vectors per row) <= MAXV
// accumulators, a power of two dividing R.
static int mix_rows(const At *a) {
  int nr = R;
  while (nr > 1 && nr * a->nv > MAXV) nr /= 2;
  return nr;
}

// yb (RB x Dp floats, zero) += w (RB x Sp) @ the rows s of vr (Dp floats
// each), for the rows t0 + r < T and the keys s < lim of the last row of r's
// group: nr rows at a time with their accumulators in registers (at most
// MAXV vectors: columns in groups when D is wide), over blocks of kb keys
// that stay in L1 for all the rows.
static void at_mix(At *a, LLVMValueRef w, LLVMValueRef vr, LLVMValueRef yb, LLVMValueRef t0) {
  K *k = a->k;
  int nr = mix_rows(a), cgw = a->nv < MAXV ? a->nv : MAXV;
  int64_t dp = (int64_t)a->nv * a->vw, kb = 4096 / dp < 8 ? 8 : 4096 / dp;  // 16 KB of keys
  Loop lk, lg, ls;
  LLVMValueRef last = sub(k, a->T, ci(k, 1)), n = at_lim(a, imin(k, add(k, t0, ci(k, RB - 1)), last));
  LLVMValueRef k0 = mul(k, loop_begin(k, &lk, ci(k, 0), LLVMBuildSDiv(k->b, add(k, n, ci(k, kb - 1)), ci(k, kb), "")),
                        ci(k, kb));
  LLVMValueRef r0 = mul(k, loop_begin(k, &lg, ci(k, 0), ci(k, RB / nr)), ci(k, nr));
  LLVMBasicBlockRef join = if_row(a, t0, r0);
  LLVMValueRef k1 = imin(k, add(k, k0, ci(k, kb)), at_lim(a, imin(k, add(k, t0, add(k, r0, ci(k, nr - 1))), last)));
  for (int j0 = 0; j0 < a->nv; j0 += cgw) {
    int j1 = j0 + cgw < a->nv ? j0 + cgw : a->nv;
    LLVMValueRef acc[R][MAXV], vv[MAXV];
    for (int r = 0; r < nr; r++)
      for (int j = j0; j < j1; j++) {
        LLVMValueRef p = gep(k, k->f32, yb, add(k, mul(k, add(k, r0, ci(k, r)), ci(k, dp)), ci(k, (int64_t)j * a->vw)));
        acc[r][j - j0] = var(k, a->vt, vld(a, a->vt, p));
      }
    LLVMValueRef s = loop_begin(k, &ls, k0, k1), row = gep(k, k->f32, vr, mul(k, s, ci(k, dp)));
    for (int j = j0; j < j1; j++) vv[j - j0] = vld(a, a->vt, gep(k, k->f32, row, ci(k, (int64_t)j * a->vw)));
    for (int r = 0; r < nr; r++) {
      LLVMValueRef wr = gep(k, k->f32, w, add(k, mul(k, add(k, r0, ci(k, r)), a->Sp), s));
      LLVMValueRef c = vsplat(a, load(k, k->f32, wr));
      for (int j = j0; j < j1; j++) store(k, vfma(a, c, vv[j - j0], get(k, acc[r][j - j0])), acc[r][j - j0]);
    }
    loop_end(k, &ls);
    for (int r = 0; r < nr; r++)
      for (int j = j0; j < j1; j++) {
        LLVMValueRef p = gep(k, k->f32, yb, add(k, mul(k, add(k, r0, ci(k, r)), ci(k, dp)), ci(k, (int64_t)j * a->vw)));
        vst(a, get(k, acc[r][j - j0]), p);
      }
  }
  if_end(k, join);
  loop_end(k, &lg);
  loop_end(k, &lk);
}

// The rows t0 + r < T of head h of base (b) = yb rows (Dp floats) * scl[r]
// (scl NULL: 1)
static void at_out(At *a, LLVMValueRef yb, LLVMValueRef base, LLVMValueRef b, LLVMValueRef h, LLVMValueRef scl,
                   const Blk *bl) {
  K *k = a->k;
  int64_t dp = (int64_t)a->nv * a->vw;
  Loop l;
  LLVMValueRef r = loop_begin(k, &l, ci(k, 0), bl->nr), out = at_qrow(a, base, b, add(k, bl->t0, r), h);
  LLVMValueRef sv = scl ? vsplat(a, load(k, k->f32, gep(k, k->f32, scl, r))) : NULL;
  LLVMValueRef yr = gep(k, k->f32, yb, mul(k, r, ci(k, dp)));
  for (int j = 0; j < a->nv; j++) {
    LLVMValueRef v = vld(a, a->vt, gep(k, k->f32, yr, ci(k, (int64_t)j * a->vw)));
    row_st(a, sv ? LLVMBuildFMul(k->b, v, sv, "") : v, out, j);
  }
  loop_end(k, &l);
}

// ---- forward: q (B,T,H*D), k, v (B,S,KV*D) [, mask (B,S)] -> y (B,T,H*D);
// ATTENTION_KV: q, caches kc, vc (B,S,KV*D), pos -> y, over cache rows
// [0, pos + T) ----

// One block of RB query rows (from t0) of unit (b, h): scores, softmax, y.
// sp: sc (RB x Sp), yb (RB x Dp), inv (RB), vr (Sp x Dp: v's rows).
static void fwd_block(At *a, const LLVMValueRef *sp, Blk *bl, LLVMValueRef kt, LLVMValueRef tiled, LLVMValueRef b,
                      LLVMValueRef h, LLVMValueRef hk, LLVMValueRef t0) {
  K *k = a->k;
  double scale = k->n->attr.scale;
  LLVMValueRef sc = sp[0], yb = sp[1], inv = sp[2];
  blk_fill(a, bl, &k->src[0], b, h, t0);
  LLVMBasicBlockRef tl = block(k, "tiled"), dr = block(k, "direct"), join = block(k, "scored");
  LLVMBuildCondBr(k->b, tiled, tl, dr);
  at(k, tl);
  at_scores(a, sc, kt, bl, ci(k, 0), cf(k, scale));
  LLVMBuildBr(k->b, join);
  at(k, dr);
  Loop l;
  LLVMValueRef r = loop_begin(k, &l, ci(k, 0), bl->nr);
  at_scores_direct(a, gep(k, k->f32, sc, mul(k, r, a->Sp)), blk_row(a, bl, ci(k, 0), r), k->src[1], b, hk,
                   blk_i64(a, bl->lim, r), scale);
  loop_end(k, &l);
  LLVMBuildBr(k->b, join);
  at(k, join);
  LLVMValueRef g = loop_begin(k, &l, ci(k, 0), bl->ng), r0 = mul(k, g, ci(k, R));
  at_softmax(a, gep(k, k->f32, sc, mul(k, r0, a->Sp)), gep(k, k->i64, bl->lim, r0), blk_i64(a, bl->ncols, g),
             gep(k, k->f32, inv, r0), add(k, t0, r0));
  loop_end(k, &l);
  LLVMBuildMemSet(k->b, yb, LLVMConstInt(k->i8, 0, 0), ci(k, 4 * RB * (int64_t)a->nv * a->vw), 4);
  at_mix(a, sc, sp[3], yb, t0);
  at_out(a, yb, k->out, b, h, inv, bl);
}

static void emit_forward(K *k) {
  const IrNode *n = k->n;
  At a = at_init(k);
  if (n->op == IR_OP_ATTENTION_KV) {  // over the cache rows filled: query t sees keys 0..pos+t
    LLVMValueRef pos = ld(k, n->src[3]->ty.dt, k->src[3], ci(k, 0));
    fail_if(k, LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, pos, ci(k, 0)), icmp(k, LLVMIntSGT, add(k, pos, a.T), a.Sc), ""),
            ST_SLICE, a.T, a.Sc);
    a.S = add(k, pos, a.T);
    a.causal = true;
  } else if (n->nsrc > 3) {
    a.mask = k->src[3];
    a.mdt = n->src[3]->ty.dt;
  }
  // scratch (floats): kvis (Sp), kt (D x Sp), sc (RB x Sp), yb (RB x Dp), vr (Sp x Dp)
  int64_t dp = (int64_t)a.nv * a.vw;
  LLVMValueRef off = ci(k, 0);
  at_scratch_keys(&a, NULL, &off);
  LLVMValueRef fl = add(k, add(k, off, mul(k, a.Sp, ci(k, a.D + RB + dp))), ci(k, RB * dp));
  LLVMValueRef buf = heap(k, mul(k, fl, ci(k, 4)));
  off = ci(k, 0);
  at_scratch_keys(&a, buf, &off);
  LLVMValueRef sp[4], kt = gep(k, k->f32, buf, off);
  sp[0] = gep(k, k->f32, kt, mul(k, a.Sp, ci(k, a.D)));
  sp[1] = gep(k, k->f32, sp[0], mul(k, a.Sp, ci(k, RB)));
  sp[2] = LLVMBuildArrayAlloca(k->ab, k->f32, ci(k, RB), "inv");
  sp[3] = gep(k, k->f32, sp[1], ci(k, RB * dp));
  LLVMBuildMemSet(k->b, sp[0], LLVMConstInt(k->i8, 0, 0), mul(k, a.Sp, ci(k, 4 * RB)), 4);
  LLVMValueRef tiled = icmp(k, LLVMIntSGE, a.T, ci(k, R));  // else one dot product per key
  Blk bl = blk_alloc(&a, 1);
  Loop lu, lb;
  LLVMValueRef u = par_begin(k, &lu);  // u = b * H + h
  LLVMValueRef h = LLVMBuildSRem(k->b, u, ci(k, a.H), ""), b = LLVMBuildSDiv(k->b, u, ci(k, a.H), "");
  LLVMValueRef hk = LLVMBuildSDiv(k->b, h, ci(k, a.G), "");
  at_fill_kvis(&a, b);
  LLVMBasicBlockRef tr = if_begin(k, tiled);
  at_load_t(&a, kt, k->src[1], b, hk, at_lim(&a, sub(k, a.T, ci(k, 1))));
  if_end(k, tr);
  at_load_rows(&a, sp[3], k->src[2], b, hk, at_lim(&a, sub(k, a.T, ci(k, 1))));
  LLVMValueRef nb = LLVMBuildSDiv(k->b, add(k, a.T, ci(k, RB - 1)), ci(k, RB), "");
  LLVMValueRef t0 = mul(k, loop_begin(k, &lb, ci(k, 0), nb), ci(k, RB));
  fwd_block(&a, sp, &bl, kt, tiled, b, h, hk, t0);
  loop_end(k, &lb);
  loop_end(k, &lu);
  heap_free(k, buf);
}

// ---- the fused backward: q, k, v, dout [, mask] -> dq, dk, dv (k->xout,
// any of them NULL at run time when the graph lacks it). With p a row's
// probabilities, dp_s = dout . v_s, delta = sum_s p_s dp_s and ds = scale
// p (dp - delta): dq_t = sum_s ds_s k_s; dk_s = sum ds q; dv_s = sum p
// dout, the last two over the queries of the G heads sharing the kv head.

// R rows: p = e * inv[r] in place (sc, e from at_softmax), then dp -> ds
// in place (dpt), the rows together in each pass.
static void bwd_rows(At *a, LLVMValueRef sc, LLVMValueRef dpt, LLVMValueRef inv, LLVMValueRef ncols) {
  K *k = a->k;
  LLVMValueRef nvec = LLVMBuildSDiv(k->b, ncols, ci(k, a->vw), ""), dacc[R], delta[R], iv[R];
  LLVMValueRef sv = vsplat(a, cf(k, k->n->attr.scale));
  for (int r = 0; r < R; r++) {
    dacc[r] = var(k, a->vt, vzero(a));
    iv[r] = vsplat(a, load(k, k->f32, gep(k, k->f32, inv, ci(k, r))));
  }
  Loop l;
  LLVMValueRef c = mul(k, loop_begin(k, &l, ci(k, 0), nvec), ci(k, a->vw));
  for (int r = 0; r < R; r++) {
    LLVMValueRef o = add(k, mul(k, ci(k, r), a->Sp), c), pp = gep(k, k->f32, sc, o);
    LLVMValueRef p = LLVMBuildFMul(k->b, vld(a, a->vt, pp), iv[r], "");
    vst(a, p, pp);
    store(k, vfma(a, p, vld(a, a->vt, gep(k, k->f32, dpt, o)), get(k, dacc[r])), dacc[r]);
  }
  loop_end(k, &l);
  for (int r = 0; r < R; r++) delta[r] = vsplat(a, vsum(a, get(k, dacc[r])));
  c = mul(k, loop_begin(k, &l, ci(k, 0), nvec), ci(k, a->vw));
  for (int r = 0; r < R; r++) {
    LLVMValueRef o = add(k, mul(k, ci(k, r), a->Sp), c), dp = gep(k, k->f32, dpt, o);
    LLVMValueRef d = LLVMBuildFSub(k->b, vld(a, a->vt, dp), delta[r], "");
    vst(a, LLVMBuildFMul(k->b, LLVMBuildFMul(k->b, vld(a, a->vt, gep(k, k->f32, sc, o)), d, ""), sv, ""), dp);
  }
  loop_end(k, &l);
}

// acct (D x Sp, a transposed accumulator): acct[d Sp + s] += sum over the
// block's rows r of w[r Sp + s] * row r [d] (source i of bl), for s <
// ncols[r / R] (the register tiles with a row before T). Per key tile (in
// L1 after the first), a register tile's R x NC vectors of w stay in
// registers over d.
static void at_accum(At *a, LLVMValueRef acct, LLVMValueRef w, const Blk *bl, LLVMValueRef i) {
  K *k = a->k;
  Loop lc, lg, ld;
  LLVMBasicBlockRef join;
  LLVMValueRef wv[R][NC], av[NC], rows[R];
  LLVMValueRef c0 = mul(k, loop_begin(k, &lc, ci(k, 0), key_tiles(a, bl)), ci(k, a->tw));
  LLVMValueRef r0 = mul(k, tile_begin(a, bl, &lg, c0, &join), ci(k, R));
  for (int r = 0; r < R; r++) {
    rows[r] = blk_row(a, bl, i, add(k, r0, ci(k, r)));
    for (int j = 0; j < NC; j++) {
      LLVMValueRef o = add(k, mul(k, add(k, r0, ci(k, r)), a->Sp), add(k, c0, ci(k, (int64_t)j * a->vw)));
      wv[r][j] = vld(a, a->vt, gep(k, k->f32, w, o));
    }
  }
  LLVMValueRef d = loop_begin(k, &ld, ci(k, 0), ci(k, a->D));
  LLVMValueRef ap = gep(k, k->f32, acct, add(k, mul(k, d, a->Sp), c0));
  for (int j = 0; j < NC; j++) av[j] = vld(a, a->vt, gep(k, k->f32, ap, ci(k, (int64_t)j * a->vw)));
  for (int r = 0; r < R; r++) {
    LLVMValueRef qb = vsplat(a, load(k, k->f32, gep(k, k->f32, rows[r], d)));
    for (int j = 0; j < NC; j++) av[j] = vfma(a, qb, wv[r][j], av[j]);
  }
  for (int j = 0; j < NC; j++) vst(a, av[j], gep(k, k->f32, ap, ci(k, (int64_t)j * a->vw)));
  loop_end(k, &ld);
  tile_end(a, &lg, join);
  loop_end(k, &lc);
}

// One block of RB query rows (from t0) of head h: p, ds; dq rows; dk, dv +=.
// sp: kt, vt (D x Sp), sc, dpt (RB x Sp), dkt, dvt (D x Sp), yb (RB x Dp), inv (RB),
// kr (Sp x Dp: k's rows). bl: the rows of q and dout.
static void bwd_block(At *a, const LLVMValueRef *sp, Blk *bl, LLVMValueRef b, LLVMValueRef h, LLVMValueRef t0) {
  K *k = a->k;
  LLVMValueRef sc = sp[2], dpt = sp[3], yb = sp[6], inv = sp[7], dqo = k->xout[0];
  LLVMValueRef base[2] = {k->src[0], k->src[3]};
  blk_fill(a, bl, base, b, h, t0);
  Loop l;
  // scores = q K^T (scaled), dP = dout V^T: the pair as a loop
  LLVMValueRef i = loop_begin(k, &l, ci(k, 0), ci(k, 2)), i0 = icmp(k, LLVMIntEQ, i, ci(k, 0));
  at_scores(a, sel(k, i0, sc, dpt), sel(k, i0, sp[0], sp[1]), bl, i, sel(k, i0, cf(k, k->n->attr.scale), cf(k, 1)));
  loop_end(k, &l);
  LLVMValueRef g = loop_begin(k, &l, ci(k, 0), bl->ng), r0 = mul(k, g, ci(k, R)), og = mul(k, r0, a->Sp);
  LLVMValueRef ig = gep(k, k->f32, inv, r0), nc = blk_i64(a, bl->ncols, g);
  at_softmax(a, gep(k, k->f32, sc, og), gep(k, k->i64, bl->lim, r0), nc, ig, add(k, t0, r0));  // a row past T: 0
  bwd_rows(a, gep(k, k->f32, sc, og), gep(k, k->f32, dpt, og), ig, nc);
  loop_end(k, &l);
  LLVMBasicBlockRef j = if_begin(k, LLVMBuildIsNotNull(k->b, dqo, ""));
  LLVMBuildMemSet(k->b, yb, LLVMConstInt(k->i8, 0, 0), ci(k, 4 * RB * (int64_t)a->nv * a->vw), 4);
  at_mix(a, dpt, sp[8], yb, t0);
  at_out(a, yb, dqo, b, h, NULL, bl);
  if_end(k, j);
  i = loop_begin(k, &l, ci(k, 0), ci(k, 2)), i0 = icmp(k, LLVMIntEQ, i, ci(k, 0));  // dK^T += q^T dS, dV^T += dout^T P
  at_accum(a, sel(k, i0, sp[4], sp[5]), sel(k, i0, dpt, sc), bl, i);
  loop_end(k, &l);
}

// dst rows (b, s, hk) for s < S from acct (D x Sp), if dst is set
static void bwd_store(At *a, LLVMValueRef dst, LLVMValueRef acct, LLVMValueRef b, LLVMValueRef hk) {
  K *k = a->k;
  LLVMBasicBlockRef j = if_begin(k, LLVMBuildIsNotNull(k->b, dst, ""));
  at_transpose(a, at_krow(a, dst, b, ci(k, 0), hk), ci(k, a->KV * a->D), acct, a->Sp, ci(k, a->D), a->S);
  if_end(k, j);
}

static void emit_backward(K *k) {
  At a = at_init(k);
  a.mask = k->n->nsrc > 4 ? k->src[4] : NULL;
  a.mdt = a.mask ? k->n->src[4]->ty.dt : IR_BOOL;
  // scratch (floats): kvis (Sp), kt, vt (D x Sp), sc, dpt (RB x Sp), dkt, dvt (D x Sp), yb (RB x Dp),
  // kr (Sp x Dp)
  int64_t dp = (int64_t)a.nv * a.vw;
  LLVMValueRef off = ci(k, 0);
  at_scratch_keys(&a, NULL, &off);
  LLVMValueRef fl = add(k, add(k, off, mul(k, a.Sp, ci(k, 4 * a.D + 2 * RB + dp))), ci(k, RB * dp));
  LLVMValueRef buf = heap(k, mul(k, fl, ci(k, 4)));
  off = ci(k, 0);
  at_scratch_keys(&a, buf, &off);
  LLVMValueRef sp[9], dsp = mul(k, a.Sp, ci(k, a.D)), rsp = mul(k, a.Sp, ci(k, RB));
  sp[0] = gep(k, k->f32, buf, off);
  sp[1] = gep(k, k->f32, sp[0], dsp);
  sp[2] = gep(k, k->f32, sp[1], dsp);
  sp[3] = gep(k, k->f32, sp[2], rsp);
  sp[4] = gep(k, k->f32, sp[3], rsp);
  sp[5] = gep(k, k->f32, sp[4], dsp);
  sp[6] = gep(k, k->f32, sp[5], dsp);
  sp[7] = LLVMBuildArrayAlloca(k->ab, k->f32, ci(k, RB), "inv");
  sp[8] = gep(k, k->f32, sp[6], ci(k, RB * dp));
  Blk bl = blk_alloc(&a, 2);
  Loop lu, lg, lb;
  LLVMValueRef u = par_begin(k, &lu);  // u = b * KV + hk
  LLVMValueRef hk = LLVMBuildSRem(k->b, u, ci(k, a.KV), ""), b = LLVMBuildSDiv(k->b, u, ci(k, a.KV), "");
  at_fill_kvis(&a, b);
  LLVMValueRef limu = at_lim(&a, sub(k, a.T, ci(k, 1)));
  LLVMValueRef i = loop_begin(k, &lg, ci(k, 0), ci(k, 2)), i0 = icmp(k, LLVMIntEQ, i, ci(k, 0));  // K^T, V^T
  at_load_t(&a, sel(k, i0, sp[0], sp[1]), sel(k, i0, k->src[1], k->src[2]), b, hk, limu);
  loop_end(k, &lg);
  at_load_rows(&a, sp[8], k->src[1], b, hk, limu);
  LLVMBuildMemSet(k->b, sp[4], LLVMConstInt(k->i8, 0, 0), mul(k, dsp, ci(k, 8)), 4);
  LLVMValueRef g = loop_begin(k, &lg, ci(k, 0), ci(k, a.G)), h = add(k, mul(k, hk, ci(k, a.G)), g);
  LLVMValueRef nb = LLVMBuildSDiv(k->b, add(k, a.T, ci(k, RB - 1)), ci(k, RB), "");
  LLVMValueRef t0 = mul(k, loop_begin(k, &lb, ci(k, 0), nb), ci(k, RB));
  bwd_block(&a, sp, &bl, b, h, t0);
  loop_end(k, &lb);
  loop_end(k, &lg);
  i = loop_begin(k, &lg, ci(k, 0), ci(k, 2)), i0 = icmp(k, LLVMIntEQ, i, ci(k, 0));  // dk, dv
  bwd_store(&a, sel(k, i0, k->xout[1], k->xout[2]), sel(k, i0, sp[4], sp[5]), b, hk);
  loop_end(k, &lg);
  loop_end(k, &lu);
  heap_free(k, buf);
}

void cg_emit_attention(K *k) {
  if (is_attention_grad(k->n->op)) emit_backward(k);
  else emit_forward(k);
}
