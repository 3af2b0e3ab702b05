// codegen/gemm.c: a generated sgemm, the CPU backend's hot kernel for
// matmul and linear layers. Built with the LLVM C API into the current
// module of llvm.c, on explicit <vw x float> vectors and llvm.fma (not left
// to the loop vectorizer), in the BLIS structure:
//
//   for jc in [n0, n1) step NC            B block (kc x nc) packed: L3
//     for pc in [0, K) step KC            same KC blocks on every thread
//       pack B[pc:pc+kc, jc:jc+nc] -> Bp  NR-column panels, k-major
//       for ic in [0, M) step MC
//         pack A[ic:ic+mc, pc:pc+kc] -> Ap  MR-row panels, k-major: L2
//         for jr step NR, ir step MR      micro-kernel: MR x NR floats in
//           C[ir, jr] (+)= Ap_ir @ Bp_jr  registers, kc rank-1 updates
//
// A row-major A (no trans_a) is not packed: the micro-kernel reads its MR
// rows in place. Edge tiles (any M, N, K) are packed with zeros and stored
// through a tile on the stack. Threads: the entry point cuts C into a grid
// of nthreads blocks (rows in whole MR tiles, columns in whole NR panels;
// emit_grid picks the shape that costs least) and calls rt_parallel_for
// (the runtime's pool); one task per block, each with its own packing
// buffers. Every element of C is computed the same way whatever the grid
// (KC blocks in order, k ascending within one, one fma chain per block),
// so results are bitwise identical for any thread count.
//
// Compile time matters (a program is compiled at every start): the packers
// and micro-kernels stay functions of their own (noinline), every loop
// carries !llvm.loop metadata that keeps LLVM from vectorizing or unrolling
// it again (back_edge), and the packers' rarely run parts (edge panels, k
// tails) are plain scalar loops (pack_scalar).
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/DebugInfo.h>

#include "codegen/cg_llvm.h"

static const SrcLoc NOLOC = {0, 0, 0};

// The generator's state: the builder and the function being built.
typedef struct {
  CgLlvm *cg;
  const CgGemmConfig *cfg;
  LLVMContextRef c;
  LLVMModuleRef m;
  LLVMBuilderRef b;
  LLVMValueRef fn;  // the function being built
  LLVMTypeRef i1, i32, i64, f32, ptr, vec, voidt;
  LLVMTypeRef fma_ty;
  LLVMValueRef fma;  // llvm.fma.v<vw>f32
  LLVMValueRef loop_md;  // !llvm.loop: not vectorized, not unrolled
} G;

static LLVMValueRef ci64(G *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }

static LLVMValueRef gep(G *g, LLVMValueRef p, LLVMValueRef idx) {
  return LLVMBuildInBoundsGEP2(g->b, g->f32, p, &idx, 1, "");
}

static LLVMValueRef load(G *g, LLVMTypeRef t, LLVMValueRef p, unsigned align) {
  LLVMValueRef v = LLVMBuildLoad2(g->b, t, p, "");
  LLVMSetAlignment(v, align);
  return v;
}

static void store(G *g, LLVMValueRef v, LLVMValueRef p, unsigned align) {
  LLVMSetAlignment(LLVMBuildStore(g->b, v, p), align);
}

static LLVMValueRef add(G *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWAdd(g->b, a, b, "");
}
static LLVMValueRef mul(G *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWMul(g->b, a, b, "");
}
static LLVMValueRef lt(G *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildICmp(g->b, LLVMIntSLT, a, b, "");
}
static LLVMValueRef min64(G *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(g->b, lt(g, a, b), a, b, "");
}

static LLVMBasicBlockRef block(G *g, const char *name) {
  return LLVMAppendBasicBlockInContext(g->c, g->fn, name);
}

// for (iv = lo; iv < hi; iv += step) { ... }: loop_begin returns iv and
// leaves the builder in the body; loop_end closes it and moves to the exit.
typedef struct {
  LLVMBasicBlockRef head, exit;
  LLVMValueRef iv, step;
} Loop;

static LLVMValueRef loop_begin(G *g, Loop *l, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef step) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
  l->head = block(g, "loop");
  LLVMBasicBlockRef body = block(g, "body");
  l->exit = block(g, "exit");
  l->step = step;
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->head);
  l->iv = LLVMBuildPhi(g->b, g->i64, "i");
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMBuildCondBr(g->b, lt(g, l->iv, hi), body, l->exit);
  LLVMPositionBuilderAtEnd(g->b, body);
  return l->iv;
}

// The loops are written as they should run (vectors explicit, unrolled
// where it pays): each latch tells LLVM not to vectorize or unroll them,
// which would only multiply the code (and the compile time).
static void back_edge(G *g, LLVMBasicBlockRef head) {
  LLVMValueRef br = LLVMBuildBr(g->b, head);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(g->c, "llvm.loop", 9), g->loop_md);
}

static LLVMValueRef make_loop_md(LLVMContextRef c) {
  LLVMMetadataRef i1 = LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(c), 0, 0));
  LLVMMetadataRef vec[] = {LLVMMDStringInContext2(c, "llvm.loop.vectorize.enable", 26), i1};
  LLVMMetadataRef unroll = LLVMMDStringInContext2(c, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef self = LLVMTemporaryMDNode(c, NULL, 0);
  LLVMMetadataRef ops[] = {self, LLVMMDNodeInContext2(c, vec, 2), LLVMMDNodeInContext2(c, &unroll, 1)};
  LLVMMetadataRef md = LLVMMDNodeInContext2(c, ops, 3);
  LLVMMetadataReplaceAllUsesWith(self, md);  // the first operand: md itself
  return LLVMMetadataAsValue(c, md);
}

static void loop_end(G *g, Loop *l) {
  LLVMValueRef next = add(g, l->iv, l->step);
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
  back_edge(g, l->head);
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(g->b, l->exit);
}

// if (cond) { ... }: if_begin returns the join block for if_end.
static LLVMBasicBlockRef if_begin(G *g, LLVMValueRef cond) {
  LLVMBasicBlockRef then = block(g, "then"), join = block(g, "join");
  LLVMBuildCondBr(g->b, cond, then, join);
  LLVMPositionBuilderAtEnd(g->b, then);
  return join;
}

static void if_end(G *g, LLVMBasicBlockRef join) {
  LLVMBuildBr(g->b, join);
  LLVMPositionBuilderAtEnd(g->b, join);
}

// Starts an internal (or exported) function; the builder sits in its entry.
static LLVMValueRef func_begin(G *g, const char *suffix, LLVMTypeRef ret, LLVMTypeRef *params,
                               unsigned n, bool exported) {
  char name[96];
  snprintf(name, sizeof name, "%s%s", g->cfg->name, suffix);
  LLVMValueRef f = LLVMAddFunction(g->m, name, LLVMFunctionType(ret, params, n, 0));
  if (!exported)
    LLVMSetLinkage(f, LLVMInternalLinkage);
  cg_llvm_fn_attrs(g->cg, f);
  g->fn = f;
  LLVMPositionBuilderAtEnd(g->b, block(g, "entry"));
  return f;
}

// Kept a function of its own: inlined into range (which the task and the
// entry then inline), the packers and micro-kernels would be unswitched and
// strength-reduced inside its loop nest, several times the compile time of
// each on its own, for no speed (one call per tile or packed block).
static void noinline(G *g, LLVMValueRef f) {
  unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->c, kind, 0));
}

static void noalias(G *g, LLVMValueRef f, unsigned param) {
  unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
  LLVMAddAttributeAtIndex(f, param + 1, LLVMCreateEnumAttribute(g->c, kind, 0));
}

static LLVMValueRef splat(G *g, LLVMValueRef s) {
  LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetUndef(g->vec), s, ci64(g, 0), "");
  LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(g->i32, (unsigned)g->cfg->vw));
  return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(g->vec), zeros, "");
}

// Prefetches the line at p + off floats (rw 1: for writing), into all
// cache levels. The address may lie past the buffer: no inbounds GEP.
static void prefetch(G *g, LLVMValueRef p, LLVMValueRef off, int rw) {
  LLVMTypeRef ps[] = {g->ptr, g->i32, g->i32, g->i32};
  LLVMTypeRef ty = LLVMFunctionType(g->voidt, ps, 4, 0);
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->m, LLVMLookupIntrinsicID("llvm.prefetch", 13), &g->ptr, 1);
  LLVMValueRef args[] = {LLVMBuildGEP2(g->b, g->f32, p, &off, 1, ""), LLVMConstInt(g->i32, (unsigned)rw, 0),
                         LLVMConstInt(g->i32, 3, 0), LLVMConstInt(g->i32, 1, 0)};
  LLVMBuildCall2(g->b, ty, f, args, 4, "");
}

// ---- packing ----

// Packed panels (w rows or columns x kc, k-major) lie PANEL_PAD floats
// apart: without the gap a panel of kc * w floats is often a multiple of
// 4 KB and the panels a row of the source is spread over (pack_rows) would
// fight over the same few L1 sets. 16 floats keep them 64-byte aligned.
enum { PANEL_PAD = 16 };

// The panel holding row (or column) p0, a multiple of w, of a packed block.
static LLVMValueRef panel_at(G *g, LLVMValueRef base, LLVMValueRef p0, LLVMValueRef kc, int w) {
  LLVMValueRef q = LLVMBuildSDiv(g->b, p0, ci64(g, w), "");
  return gep(g, base, mul(g, q, add(g, mul(g, kc, ci64(g, w)), ci64(g, PANEL_PAD))));
}

// Floats in a packed block of n rows (or columns) x kc.
static int64_t packed_floats(int64_t n, int64_t kc, int w) {
  return (n + w - 1) / w * (kc * w + PANEL_PAD);
}

// Transposes vw vectors of vw lanes in place (t[i][j] <- t[j][i]) with
// log2(vw) rounds of interleaves: row i pairs with row i + vw/2 and the
// low/high interleave lands in rows 2i and 2i + 1.
static void transpose(G *g, LLVMValueRef *t) {
  int vw = g->cfg->vw, h = vw / 2;
  LLVMValueRef lo[16], hi[16], out[16];
  for (int l = 0; l < h; l++) {
    lo[2 * l] = LLVMConstInt(g->i32, (unsigned)l, 0);
    lo[2 * l + 1] = LLVMConstInt(g->i32, (unsigned)(vw + l), 0);
    hi[2 * l] = LLVMConstInt(g->i32, (unsigned)(h + l), 0);
    hi[2 * l + 1] = LLVMConstInt(g->i32, (unsigned)(vw + h + l), 0);
  }
  LLVMValueRef mlo = LLVMConstVector(lo, (unsigned)vw), mhi = LLVMConstVector(hi, (unsigned)vw);
  for (int round = 1; round < vw; round *= 2) {
    for (int i = 0; i < h; i++) {
      out[2 * i] = LLVMBuildShuffleVector(g->b, t[i], t[i + h], mlo, "");
      out[2 * i + 1] = LLVMBuildShuffleVector(g->b, t[i], t[i + h], mhi, "");
    }
    memcpy(t, out, (size_t)vw * sizeof *t);
  }
}

// Stores lanes [0, n) of the vector v at p as power-of-two pieces (no
// store touches memory past p + n).
static void store_lanes(G *g, LLVMValueRef v, int n, LLVMValueRef p) {
  for (int off = 0; off < n;) {
    int piece = 1;
    while (piece * 2 <= n - off)
      piece *= 2;
    LLVMValueRef dst = gep(g, p, ci64(g, off));
    if (piece == 1) {
      store(g, LLVMBuildExtractElement(g->b, v, ci64(g, off), ""), dst, 4);
    } else {
      LLVMValueRef idx[16];
      for (int i = 0; i < piece; i++)
        idx[i] = LLVMConstInt(g->i32, (unsigned)(off + i), 0);
      store(g, LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(g->vec), LLVMConstVector(idx, (unsigned)piece), ""),
            dst, 4);
    }
    off += piece;
  }
}

// Copies n floats from src to dst as power-of-two vector pieces.
static void copy_floats(G *g, LLVMValueRef src, LLVMValueRef dst, int n) {
  for (int off = 0; off < n;) {
    int piece = 1;
    while (piece * 2 <= n - off)
      piece *= 2;
    LLVMTypeRef t = piece == 1 ? g->f32 : LLVMVectorType(g->f32, (unsigned)piece);
    store(g, load(g, t, gep(g, src, ci64(g, off)), 4), gep(g, dst, ci64(g, off)), 4);
    off += piece;
  }
}

// A full panel of row-major A (A(r, k) = a[r*lda + k]): vw k at a time,
// the MR rows read as vectors along k and transposed in registers (rows
// MR..vw-1 undefined, never stored); returns the k where the scalar tail
// starts.
static LLVMValueRef pack_a_vec(G *g, LLVMValueRef a, LLVMValueRef lda, LLVMValueRef kc, LLVMValueRef dst) {
  int mr = g->cfg->mr, vw = g->cfg->vw;
  LLVMValueRef kv = LLVMBuildAnd(g->b, kc, ci64(g, -vw), "");  // kc rounded down to vw
  Loop lk;
  LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kv, ci64(g, vw));
  LLVMValueRef t[16];
  for (int r = 0; r < vw; r++)
    t[r] = r < mr ? load(g, g->vec, gep(g, a, add(g, mul(g, ci64(g, r), lda), k)), 4) : LLVMGetUndef(g->vec);
  transpose(g, t);
  for (int l = 0; l < vw; l++)
    store_lanes(g, t[l], mr, gep(g, dst, mul(g, add(g, k, ci64(g, l)), ci64(g, mr))));
  loop_end(g, &lk);
  return kv;
}

// dst[k][0:w] <- src[k*ks + c*cs] for c < n, zeros past it, for k in
// [k0, kc): the panels' scalar parts (edge panels, k tails), as a loop
// over both (rarely run: not worth unrolled code).
static void pack_scalar(G *g, LLVMValueRef src, LLVMValueRef ks, LLVMValueRef cs, LLVMValueRef k0,
                        LLVMValueRef kc, LLVMValueRef n, int w, LLVMValueRef dst) {
  Loop lk, lc;
  LLVMValueRef last = LLVMBuildNSWSub(g->b, n, ci64(g, 1), "");
  LLVMValueRef k = loop_begin(g, &lk, k0, kc, ci64(g, 1));
  LLVMValueRef row = gep(g, src, mul(g, k, ks)), out = gep(g, dst, mul(g, k, ci64(g, w)));
  LLVMValueRef c = loop_begin(g, &lc, ci64(g, 0), ci64(g, w), ci64(g, 1));
  LLVMValueRef ok = lt(g, c, n);  // else read the last valid one, store zero
  LLVMValueRef v = load(g, g->f32, gep(g, row, mul(g, LLVMBuildSelect(g->b, ok, c, last, ""), cs)), 4);
  store(g, LLVMBuildSelect(g->b, ok, v, LLVMConstReal(g->f32, 0), ""), gep(g, out, c), 4);
  loop_end(g, &lc);
  loop_end(g, &lk);
}

// Ap[p][k][MR] <- A[p*MR + r, k] for the mc x kc block at A (row stride
// lda); rows past mc are zero. One panel: rows == NULL means a full one.
// With trans_a, A is stored [K, M]: A[i, k] is at a[k * lda + i], and a
// full panel's k is one contiguous copy of MR floats.
static void pack_a_panel(G *g, LLVMValueRef a, LLVMValueRef lda, LLVMValueRef kc,
                         LLVMValueRef dst, LLVMValueRef rows) {
  int mr = g->cfg->mr;
  LLVMValueRef one = ci64(g, 1), n = rows ? rows : ci64(g, mr);
  if (g->cfg->trans_a && rows) {
    pack_scalar(g, a, lda, one, ci64(g, 0), kc, n, mr, dst);
  } else if (g->cfg->trans_a) {  // row r of the panel: a[k * lda + r]
    Loop lk;
    LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, one);
    copy_floats(g, gep(g, a, mul(g, k, lda)), gep(g, dst, mul(g, k, ci64(g, mr))), mr);
    loop_end(g, &lk);
  } else {
    LLVMValueRef k0 = rows || mr > g->cfg->vw ? ci64(g, 0) : pack_a_vec(g, a, lda, kc, dst);
    pack_scalar(g, a, one, lda, k0, kc, n, mr, dst);
  }
}

// The full panels of a block whose panel rows are contiguous in memory
// (transposed A, B): k outer, so that each row of the source is read once,
// in order, and written to the panels as np pieces of w floats:
// dst[p][k][0:w] <- src[k*ld + p*w : +w] for p < np, k < kc. Each piece
// of the row PACK_AHEAD rows ahead is prefetched.
enum { PACK_AHEAD = 8 };

static void pack_rows(G *g, LLVMValueRef src, LLVMValueRef ld, LLVMValueRef kc,
                      LLVMValueRef np, int w, LLVMValueRef dst) {
  Loop lk, lp;
  LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kc, ci64(g, 1));
  LLVMValueRef row = gep(g, src, mul(g, k, ld)), out = gep(g, dst, mul(g, k, ci64(g, w)));
  LLVMValueRef pstride = add(g, mul(g, kc, ci64(g, w)), ci64(g, PANEL_PAD));
  LLVMValueRef ahead = mul(g, ci64(g, PACK_AHEAD), ld);
  LLVMValueRef p = loop_begin(g, &lp, ci64(g, 0), np, ci64(g, 1));
  LLVMValueRef piece = mul(g, p, ci64(g, w));
  prefetch(g, row, add(g, ahead, piece), 0);
  copy_floats(g, gep(g, row, piece), gep(g, out, mul(g, p, pstride)), w);
  loop_end(g, &lp);
  loop_end(g, &lk);
}

// The panels of a block one at a time (panel rows w apart in src: row-major
// A, transposed B): panel(g, src, ld, kc, dst, NULL) for a full one,
// (.., rows) for the last if it is short.
typedef void (*PanelFn)(G *g, LLVMValueRef src, LLVMValueRef ld, LLVMValueRef kc, LLVMValueRef dst,
                        LLVMValueRef rows);

static void pack_panels(G *g, PanelFn panel, LLVMValueRef src, LLVMValueRef ld, LLVMValueRef n,
                        LLVMValueRef kc, int w, LLVMValueRef dst) {
  Loop lp;
  LLVMValueRef p0 = loop_begin(g, &lp, ci64(g, 0), n, ci64(g, w));
  LLVMValueRef rows = LLVMBuildNSWSub(g->b, n, p0, "");
  LLVMValueRef from = gep(g, src, mul(g, p0, ld)), to = panel_at(g, dst, p0, kc, w);
  LLVMBasicBlockRef full = block(g, "full"), edge = block(g, "edge"), next = block(g, "next");
  LLVMBuildCondBr(g->b, lt(g, rows, ci64(g, w)), edge, full);
  LLVMPositionBuilderAtEnd(g->b, full);
  panel(g, from, ld, kc, to, NULL);
  LLVMBuildBr(g->b, next);
  LLVMPositionBuilderAtEnd(g->b, edge);
  panel(g, from, ld, kc, to, rows);
  LLVMBuildBr(g->b, next);
  LLVMPositionBuilderAtEnd(g->b, next);
  loop_end(g, &lp);
}

// Contiguous panel rows: the full panels by pack_rows, then the short one.
static void pack_contiguous(G *g, PanelFn panel, LLVMValueRef src, LLVMValueRef ld, LLVMValueRef n,
                            LLVMValueRef kc, int w, LLVMValueRef dst) {
  LLVMValueRef np = LLVMBuildSDiv(g->b, n, ci64(g, w), ""), done = mul(g, np, ci64(g, w));
  pack_rows(g, src, ld, kc, np, w, dst);
  LLVMBasicBlockRef join = if_begin(g, lt(g, done, n));
  panel(g, gep(g, src, done), ld, kc, panel_at(g, dst, done, kc, w), LLVMBuildNSWSub(g->b, n, done, ""));
  if_end(g, join);
}

// void NAME(const float *src, i64 ld, i64 n, i64 kc, float *dst) (packA:
// n = mc rows of A; packB: its arguments are (B, ldb, kc, nc, Bp), n = nc
// columns): panels of w, with contiguous (rows of the panel adjacent in
// memory: A^T, untransposed B) or strided sources, each by panel.
static LLVMValueRef emit_pack(G *g, const char *name, bool n_first, bool contiguous, PanelFn panel, int w) {
  LLVMTypeRef ps[] = {g->ptr, g->i64, g->i64, g->i64, g->ptr};
  LLVMValueRef f = func_begin(g, name, g->voidt, ps, 5, false);
  LLVMValueRef src = LLVMGetParam(f, 0), ld = LLVMGetParam(f, 1), dst = LLVMGetParam(f, 4);
  LLVMValueRef n = LLVMGetParam(f, n_first ? 2 : 3), kc = LLVMGetParam(f, n_first ? 3 : 2);
  if (contiguous)
    pack_contiguous(g, panel, src, ld, n, kc, w, dst);
  else
    pack_panels(g, panel, src, ld, n, kc, w, dst);
  LLVMBuildRetVoid(g->b);
  return f;
}

// void packA(const float *A, i64 lda, i64 mc, i64 kc, float *Ap)
static LLVMValueRef emit_pack_a(G *g) {
  return emit_pack(g, ".packA", true, g->cfg->trans_a, pack_a_panel, g->cfg->mr);
}

// A full panel of transposed B (B(k, n) = B[n*ldb + k]): vw k at a time,
// each of the NR columns read as a vector along k and transposed in
// registers; returns the k where the scalar tail starts.
static LLVMValueRef pack_bt_vec(G *g, LLVMValueRef b, LLVMValueRef ldb, LLVMValueRef kc,
                                LLVMValueRef dst) {
  int nr = g->cfg->nr, vw = g->cfg->vw;
  LLVMValueRef kv = LLVMBuildAnd(g->b, kc, ci64(g, -vw), "");  // kc rounded down to vw
  Loop lk;
  LLVMValueRef k = loop_begin(g, &lk, ci64(g, 0), kv, ci64(g, vw));
  for (int j = 0; j < nr / vw; j++) {
    LLVMValueRef t[16];
    for (int l = 0; l < vw; l++)
      t[l] = load(g, g->vec, gep(g, b, add(g, mul(g, ci64(g, j * vw + l), ldb), k)), 4);
    transpose(g, t);
    for (int l = 0; l < vw; l++)
      store(g, t[l], gep(g, dst, add(g, mul(g, add(g, k, ci64(g, l)), ci64(g, nr)), ci64(g, j * vw))),
            (unsigned)vw * 4);
  }
  loop_end(g, &lk);
  return kv;
}

// Bp[q][k][NR] <- B(k, q*NR + c) for the kc x nc block at B: B(k, n) is
// B[k*ldb + n], or B[n*ldb + k] when transposed. Columns past nc are zero.
// One panel: cols == NULL means a full one (only transposed B's: the
// vector transposes, then the k tail; pack_rows copies untransposed B's).
static void pack_b_panel(G *g, LLVMValueRef b, LLVMValueRef ldb, LLVMValueRef kc,
                         LLVMValueRef dst, LLVMValueRef cols) {
  bool tb = g->cfg->trans_b;
  LLVMValueRef k0 = cols ? ci64(g, 0) : pack_bt_vec(g, b, ldb, kc, dst);
  pack_scalar(g, b, tb ? ci64(g, 1) : ldb, tb ? ldb : ci64(g, 1), k0, kc, cols ? cols : ci64(g, g->cfg->nr),
              g->cfg->nr, dst);
}

// void packB(const float *B, i64 ldb, i64 kc, i64 nc, float *Bp)
static LLVMValueRef emit_pack_b(G *g) {
  bool t = g->cfg->trans_b;
  return emit_pack(g, ".packB", false, !t, pack_b_panel, g->cfg->nr);
}

// ---- micro-kernel ----

// One rank-1 update: acc[r][j] += A(r, k) * Bp[k][j*vw .. +vw], where
// A(r, k) is arow[r][k * ks] (packed: Ap + r, ks = MR; in place: the row).
static void kernel_step(G *g, const LLVMValueRef *arow, int ks, LLVMValueRef bp, LLVMValueRef k,
                        LLVMValueRef *acc) {
  int mr = g->cfg->mr, vw = g->cfg->vw, nb = g->cfg->nr / vw;
  LLVMValueRef ak = mul(g, k, ci64(g, ks));
  LLVMValueRef bk = gep(g, bp, mul(g, k, ci64(g, g->cfg->nr)));
  LLVMValueRef bv[4];
  for (int j = 0; j < nb; j++)
    bv[j] = load(g, g->vec, gep(g, bk, ci64(g, j * vw)), (unsigned)vw * 4);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef av = splat(g, load(g, g->f32, gep(g, arow[r], ak), 4));
    for (int j = 0; j < nb; j++) {
      LLVMValueRef args[3] = {av, bv[j], acc[r * nb + j]};
      acc[r * nb + j] = LLVMBuildCall2(g->b, g->fma_ty, g->fma, args, 3, "");
    }
  }
}

// for (k = lo; k + unroll <= hi; k += unroll) `unroll` steps, with the
// accumulators as loop phis; acc holds their exit values afterwards.
// Returns k at exit.
static LLVMValueRef kernel_loop(G *g, const LLVMValueRef *arow, int ks, LLVMValueRef bp, LLVMValueRef lo,
                                LLVMValueRef hi, int unroll, LLVMValueRef *acc) {
  int n = g->cfg->mr * (g->cfg->nr / g->cfg->vw);
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
  LLVMBasicBlockRef head = block(g, "kloop"), body = block(g, "kbody"), exit = block(g, "kexit");
  LLVMBuildBr(g->b, head);
  LLVMPositionBuilderAtEnd(g->b, head);
  LLVMValueRef k = LLVMBuildPhi(g->b, g->i64, "k"), phi[128];
  LLVMAddIncoming(k, &lo, &pre, 1);
  for (int i = 0; i < n; i++) {
    phi[i] = LLVMBuildPhi(g->b, g->vec, "acc");
    LLVMAddIncoming(phi[i], &acc[i], &pre, 1);
  }
  LLVMValueRef more = LLVMBuildICmp(g->b, LLVMIntSLE, add(g, k, ci64(g, unroll)), hi, "");
  LLVMBuildCondBr(g->b, more, body, exit);
  LLVMPositionBuilderAtEnd(g->b, body);
  for (int i = 0; i < n; i++)
    acc[i] = phi[i];
  for (int u = 0; u < unroll; u++)
    kernel_step(g, arow, ks, bp, add(g, k, ci64(g, u)), acc);
  LLVMValueRef knext = add(g, k, ci64(g, unroll));
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
  back_edge(g, head);
  LLVMAddIncoming(k, &knext, &latch, 1);
  for (int i = 0; i < n; i++) {
    LLVMAddIncoming(phi[i], &acc[i], &latch, 1);
    acc[i] = phi[i];
  }
  LLVMPositionBuilderAtEnd(g->b, exit);
  return k;
}

// void kernel(i64 kc, const float *A, const float *Bp, float *C, i64 ldc,
//             i64 mr, i64 nr, i32 add, i64 lda)
// C[0:mr, 0:nr] = (add ? C : 0) + A (MR x kc) @ Bp (kc x NR). A is a packed
// panel (k-major, lda unused), or (direct) the rows of A in place, lda
// apart (rows past mr read the last valid one; their results are dropped).
static LLVMValueRef emit_kernel(G *g, bool direct) {
  LLVMTypeRef ps[] = {g->i64, g->ptr, g->ptr, g->ptr, g->i64, g->i64, g->i64, g->i32, g->i64};
  LLVMValueRef f = func_begin(g, direct ? ".kernel_direct" : ".kernel", g->voidt, ps, 9, false);
  for (unsigned i = 1; i <= 3; i++)
    noalias(g, f, i);
  LLVMValueRef kc = LLVMGetParam(f, 0), ap = LLVMGetParam(f, 1), bp = LLVMGetParam(f, 2),
               c = LLVMGetParam(f, 3), ldc = LLVMGetParam(f, 4), mrv = LLVMGetParam(f, 5),
               nrv = LLVMGetParam(f, 6), lda = LLVMGetParam(f, 8);
  LLVMValueRef addc = LLVMBuildICmp(g->b, LLVMIntNE, LLVMGetParam(f, 7), LLVMConstInt(g->i32, 0, 0), "");
  int mr = g->cfg->mr, nr = g->cfg->nr, vw = g->cfg->vw, nb = nr / vw, n = mr * nb;
  LLVMValueRef arow[64];
  for (int r = 0; r < mr; r++) {
    LLVMValueRef rr = min64(g, ci64(g, r), LLVMBuildNSWSub(g->b, mrv, ci64(g, 1), ""));
    arow[r] = direct ? gep(g, ap, mul(g, rr, lda)) : gep(g, ap, ci64(g, r));
  }
  int ks = direct ? 1 : mr;
  // The edge tile lives on the stack (allocas in the entry block).
  LLVMValueRef tile = LLVMBuildArrayAlloca(g->b, g->f32, ci64(g, mr * nr), "tile");
  LLVMSetAlignment(tile, 64);
  LLVMValueRef acc[128];
  for (int i = 0; i < n; i++)
    acc[i] = LLVMConstNull(g->vec);
  // Prefetch the C tile (the first and last float of each row) while the
  // rank-1 updates run.
  for (int r = 0; r < mr; r++) {
    LLVMValueRef row = gep(g, c, mul(g, min64(g, ci64(g, r), LLVMBuildNSWSub(g->b, mrv, ci64(g, 1), "")), ldc));
    prefetch(g, row, ci64(g, 0), 1);
    prefetch(g, row, ci64(g, nr - 1), 1);
  }
  LLVMValueRef k = kernel_loop(g, arow, ks, bp, ci64(g, 0), kc, 4, acc);
  kernel_loop(g, arow, ks, bp, k, kc, 1, acc);

  LLVMValueRef full = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, mrv, ci64(g, mr), ""),
                                   LLVMBuildICmp(g->b, LLVMIntEQ, nrv, ci64(g, nr), ""), "");
  LLVMBasicBlockRef bfull = block(g, "full"), bedge = block(g, "edge"), done = block(g, "done");
  LLVMBuildCondBr(g->b, full, bfull, bedge);
  // Full tile: C rows (unaligned) += or = the accumulators; C is read only
  // when adding (the first K block of beta = 0 never touches it).
  LLVMPositionBuilderAtEnd(g->b, bfull);
  LLVMBasicBlockRef badd = block(g, "add"), bset = block(g, "set");
  LLVMBuildCondBr(g->b, addc, badd, bset);
  for (int pass = 0; pass < 2; pass++) {
    LLVMPositionBuilderAtEnd(g->b, pass ? bset : badd);
    for (int r = 0; r < mr; r++) {
      LLVMValueRef row = gep(g, c, mul(g, ci64(g, r), ldc));
      for (int j = 0; j < nb; j++) {
        LLVMValueRef p = gep(g, row, ci64(g, j * vw)), v = acc[r * nb + j];
        if (!pass)
          v = LLVMBuildFAdd(g->b, load(g, g->vec, p, 4), v, "");
        store(g, v, p, 4);
      }
    }
    LLVMBuildBr(g->b, done);
  }
  // Edge tile: spill to the stack, copy the valid mr x nr part.
  LLVMPositionBuilderAtEnd(g->b, bedge);
  for (int i = 0; i < n; i++)
    store(g, acc[i], gep(g, tile, ci64(g, i * vw)), 64);
  Loop li, lj;
  LLVMValueRef i = loop_begin(g, &li, ci64(g, 0), mrv, ci64(g, 1));
  LLVMValueRef row = gep(g, c, mul(g, i, ldc)), trow = gep(g, tile, mul(g, i, ci64(g, nr)));
  LLVMValueRef j = loop_begin(g, &lj, ci64(g, 0), nrv, ci64(g, 1));
  LLVMValueRef p = gep(g, row, j), t = load(g, g->f32, gep(g, trow, j), 4);
  LLVMValueRef sum = LLVMBuildFAdd(g->b, load(g, g->f32, p, 4), t, "");
  store(g, LLVMBuildSelect(g->b, addc, sum, t, ""), p, 4);
  loop_end(g, &lj);
  loop_end(g, &li);
  LLVMBuildBr(g->b, done);
  LLVMPositionBuilderAtEnd(g->b, done);
  LLVMBuildRetVoid(g->b);
  return f;
}

// ---- blocking and threads ----

// One mc x kc block of A against the packed kc x nc block of B: the
// micro-kernel over its tiles. Packed A (ak = Ap): a B panel stays in L1
// while the A panels stream from L2. A in place (ak = A's block, lda
// apart): its MR rows stay in L1 while the B panels stream from L2.
typedef struct {
  LLVMValueRef kc, mc, nc, ak, lda, bp, c, ldc, addc;
} Tiles;

static void emit_tiles(G *g, LLVMValueRef kernel, bool direct, const Tiles *t) {
  const CgGemmConfig *cfg = g->cfg;
  LLVMValueRef zero = ci64(g, 0);
  Loop lo, li;
  LLVMValueRef ir, jr;
  if (direct) {
    ir = loop_begin(g, &lo, zero, t->mc, ci64(g, cfg->mr));
    jr = loop_begin(g, &li, zero, t->nc, ci64(g, cfg->nr));
  } else {
    jr = loop_begin(g, &lo, zero, t->nc, ci64(g, cfg->nr));
    ir = loop_begin(g, &li, zero, t->mc, ci64(g, cfg->mr));
  }
  LLVMValueRef nr = min64(g, ci64(g, cfg->nr), LLVMBuildNSWSub(g->b, t->nc, jr, ""));
  LLVMValueRef mr = min64(g, ci64(g, cfg->mr), LLVMBuildNSWSub(g->b, t->mc, ir, ""));
  LLVMValueRef cij = gep(g, t->c, add(g, mul(g, ir, t->ldc), jr));
  LLVMValueRef a = direct ? gep(g, t->ak, mul(g, ir, t->lda)) : panel_at(g, t->ak, ir, t->kc, cfg->mr);
  LLVMValueRef args[] = {t->kc, a, panel_at(g, t->bp, jr, t->kc, cfg->nr), cij, t->ldc, mr, nr, t->addc, t->lda};
  LLVMBuildCall2(g->b, LLVMGlobalGetValueType(kernel), kernel, args, 9, "");
  loop_end(g, &li);
  loop_end(g, &lo);
}

// void range(i64 M, i64 N, i64 K, const float *A, i64 lda, const float *B,
//            i64 ldb, float *C, i64 ldc, i32 beta, i64 n0, i64 n1, float *work)
// Columns [n0, n1) of C; work holds Ap (MC x KC) then Bp (KC x NC). A
// row-major A is read in place when the columns are at most DIRECT_MAX_N
// (few B panels share each A row: packing would not pay), else packed.
enum { DIRECT_MAX_N = 512 };

static LLVMValueRef emit_range(G *g, LLVMValueRef pack_a, LLVMValueRef pack_b, LLVMValueRef kernel,
                               LLVMValueRef kernel_direct) {
  const CgGemmConfig *cfg = g->cfg;
  LLVMTypeRef ps[] = {g->i64, g->i64, g->i64, g->ptr, g->i64, g->ptr, g->i64,
                      g->ptr, g->i64, g->i32, g->i64, g->i64, g->ptr};
  LLVMValueRef f = func_begin(g, ".range", g->voidt, ps, 13, false);
  LLVMValueRef M = LLVMGetParam(f, 0), K = LLVMGetParam(f, 2), a = LLVMGetParam(f, 3),
               lda = LLVMGetParam(f, 4), b = LLVMGetParam(f, 5), ldb = LLVMGetParam(f, 6),
               c = LLVMGetParam(f, 7), ldc = LLVMGetParam(f, 8), beta = LLVMGetParam(f, 9),
               n0 = LLVMGetParam(f, 10), n1 = LLVMGetParam(f, 11), work = LLVMGetParam(f, 12);
  int64_t ap_floats = (packed_floats(cfg->mc, cfg->kc, cfg->mr) + 15) / 16 * 16;
  LLVMValueRef ap = work, bp = gep(g, work, ci64(g, ap_floats));
  LLVMValueRef zero = ci64(g, 0), one = ci64(g, 1);
  LLVMTypeRef pack_ty = LLVMGlobalGetValueType(pack_a);

  // K == 0: C = beta ? C : 0 (no K block runs below).
  LLVMValueRef kzero = LLVMBuildICmp(g->b, LLVMIntEQ, K, zero, "");
  LLVMValueRef nobeta = LLVMBuildICmp(g->b, LLVMIntEQ, beta, LLVMConstInt(g->i32, 0, 0), "");
  LLVMBasicBlockRef join = if_begin(g, LLVMBuildAnd(g->b, kzero, nobeta, ""));
  Loop lzi, lzj;
  LLVMValueRef zi = loop_begin(g, &lzi, zero, M, one);
  LLVMValueRef zrow = gep(g, c, mul(g, zi, ldc));
  LLVMValueRef zj = loop_begin(g, &lzj, n0, n1, one);
  store(g, LLVMConstReal(g->f32, 0), gep(g, zrow, zj), 4);
  loop_end(g, &lzj);
  loop_end(g, &lzi);
  if_end(g, join);

  Loop ljc, lpc, lic;
  LLVMValueRef jc = loop_begin(g, &ljc, n0, n1, ci64(g, cfg->nc));
  LLVMValueRef nc = min64(g, ci64(g, cfg->nc), LLVMBuildNSWSub(g->b, n1, jc, ""));
  LLVMValueRef pc = loop_begin(g, &lpc, zero, K, ci64(g, cfg->kc));
  LLVMValueRef kc = min64(g, ci64(g, cfg->kc), LLVMBuildNSWSub(g->b, K, pc, ""));
  LLVMValueRef addc = LLVMBuildZExt(
      g->b, LLVMBuildOr(g->b, LLVMBuildNot(g->b, nobeta, ""), LLVMBuildICmp(g->b, LLVMIntSGT, pc, zero, ""), ""),
      g->i32, "");
  LLVMValueRef bsrc = cfg->trans_b ? gep(g, b, add(g, mul(g, jc, ldb), pc))
                                   : gep(g, b, add(g, mul(g, pc, ldb), jc));
  LLVMValueRef pb_args[] = {bsrc, ldb, kc, nc, bp};
  LLVMBuildCall2(g->b, pack_ty, pack_b, pb_args, 5, "");
  LLVMValueRef ic = loop_begin(g, &lic, zero, M, ci64(g, cfg->mc));
  LLVMValueRef mc = min64(g, ci64(g, cfg->mc), LLVMBuildNSWSub(g->b, M, ic, ""));
  LLVMValueRef asrc = cfg->trans_a ? gep(g, a, add(g, mul(g, pc, lda), ic)) : gep(g, a, add(g, mul(g, ic, lda), pc));
  Tiles t = {kc, mc, nc, ap, lda, bp, gep(g, c, add(g, mul(g, ic, ldc), jc)), ldc, addc};
  LLVMBasicBlockRef join_d = NULL;
  if (kernel_direct) {  // A in place, or packed below
    LLVMBasicBlockRef bd = block(g, "direct"), bp_ = block(g, "packed");
    join_d = block(g, "tiled");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLE, nc, ci64(g, DIRECT_MAX_N), ""), bd, bp_);
    LLVMPositionBuilderAtEnd(g->b, bd);
    Tiles td = t;
    td.ak = asrc;
    emit_tiles(g, kernel_direct, true, &td);
    LLVMBuildBr(g->b, join_d);
    LLVMPositionBuilderAtEnd(g->b, bp_);
  }
  LLVMValueRef pa_args[] = {asrc, lda, mc, kc, ap};
  LLVMBuildCall2(g->b, pack_ty, pack_a, pa_args, 5, "");
  emit_tiles(g, kernel, false, &t);
  if (join_d) {
    LLVMBuildBr(g->b, join_d);
    LLVMPositionBuilderAtEnd(g->b, join_d);
  }
  loop_end(g, &lic);
  loop_end(g, &lpc);
  loop_end(g, &ljc);
  LLVMBuildRetVoid(g->b);
  return f;
}

// The context the entry point passes to its tasks (one per thread).
enum { CTX_M, CTX_N, CTX_K, CTX_A, CTX_LDA, CTX_B, CTX_LDB, CTX_C, CTX_LDC, CTX_BETA,
       CTX_NTHREADS, CTX_WORK, CTX_TM, CTX_COUNT };

static LLVMTypeRef ctx_type(G *g) {
  LLVMTypeRef t[CTX_COUNT] = {g->i64, g->i64, g->i64, g->ptr, g->i64, g->ptr,
                              g->i64, g->ptr, g->i64, g->i32, g->i32, g->ptr, g->i64};
  return LLVMStructTypeInContext(g->c, t, CTX_COUNT, 0);
}

static LLVMValueRef ceil_div(G *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSDiv(g->b, add(g, a, LLVMBuildNSWSub(g->b, b, ci64(g, 1), "")), b, "");
}

// Part i of n of [0, units) units of size unit, clipped to [0, total):
// [i*units/n, (i+1)*units/n) * unit.
static void split(G *g, LLVMValueRef i, LLVMValueRef n, LLVMValueRef units, int unit,
                  LLVMValueRef total, LLVMValueRef *lo, LLVMValueRef *hi) {
  LLVMValueRef p0 = LLVMBuildSDiv(g->b, mul(g, i, units), n, "");
  LLVMValueRef p1 = LLVMBuildSDiv(g->b, mul(g, add(g, i, ci64(g, 1)), units), n, "");
  *lo = mul(g, p0, ci64(g, unit));
  *hi = min64(g, total, mul(g, p1, ci64(g, unit)));
}

// void task(void *ctx, i64 task, i32 thread): the task's block of the
// tm x (nt / tm) grid over C (rows in whole MR tiles, columns in whole NR
// panels), work buffer number task.
static LLVMValueRef emit_task(G *g, LLVMValueRef range) {
  LLVMTypeRef ps[] = {g->ptr, g->i64, g->i32};
  LLVMValueRef f = func_begin(g, ".task", g->voidt, ps, 3, false);
  LLVMValueRef ctx = LLVMGetParam(f, 0), task = LLVMGetParam(f, 1);
  LLVMTypeRef ct = ctx_type(g);
  LLVMTypeRef ft[CTX_COUNT];
  LLVMGetStructElementTypes(ct, ft);
  LLVMValueRef v[CTX_COUNT];
  for (int i = 0; i < CTX_COUNT; i++)
    v[i] = load(g, ft[i], LLVMBuildStructGEP2(g->b, ct, ctx, (unsigned)i, ""), 4);
  int mr = g->cfg->mr, nr = g->cfg->nr;
  LLVMValueRef nt = LLVMBuildSExt(g->b, v[CTX_NTHREADS], g->i64, ""), tm = v[CTX_TM];
  LLVMValueRef tn = LLVMBuildSDiv(g->b, nt, tm, "");
  LLVMValueRef ti = LLVMBuildSDiv(g->b, task, tn, ""), tj = LLVMBuildSRem(g->b, task, tn, "");
  LLVMValueRef m0, m1, n0, n1;
  split(g, ti, tm, ceil_div(g, v[CTX_M], ci64(g, mr)), mr, v[CTX_M], &m0, &m1);
  split(g, tj, tn, ceil_div(g, v[CTX_N], ci64(g, nr)), nr, v[CTX_N], &n0, &n1);
  int64_t ws = (int64_t)(cg_gemm_work_bytes(g->cfg) / sizeof(float)) / g->cfg->nthreads_max;
  LLVMValueRef work = gep(g, v[CTX_WORK], mul(g, task, ci64(g, ws)));
  LLVMBasicBlockRef join = if_begin(g, LLVMBuildAnd(g->b, lt(g, m0, m1), lt(g, n0, n1), ""));
  LLVMValueRef a = gep(g, v[CTX_A], g->cfg->trans_a ? m0 : mul(g, m0, v[CTX_LDA]));
  LLVMValueRef c = gep(g, v[CTX_C], mul(g, m0, v[CTX_LDC]));
  LLVMValueRef args[] = {LLVMBuildNSWSub(g->b, m1, m0, ""), v[CTX_N], v[CTX_K], a, v[CTX_LDA], v[CTX_B],
                         v[CTX_LDB], c, v[CTX_LDC], v[CTX_BETA], n0, n1, work};
  LLVMBuildCall2(g->b, LLVMGlobalGetValueType(range), range, args, 13, "");
  if_end(g, join);
  LLVMBuildRetVoid(g->b);
  return f;
}

// The task grid's rows tm, a divisor of nt: the one whose largest block
// costs least, counting its multiply-adds (rows x columns, whole tiles) and
// its packing (rows + columns, both operands are packed by every task; a
// packed element as PACK_COST multiply-adds). Ties keep fewer rows.
enum { PACK_COST = 16 };

static LLVMValueRef emit_grid(G *g, LLVMValueRef M, LLVMValueRef N, LLVMValueRef nt) {
  int mr = g->cfg->mr, nr = g->cfg->nr;
  LLVMValueRef mu = ceil_div(g, M, ci64(g, mr)), nu = ceil_div(g, N, ci64(g, nr));
  LLVMValueRef best = LLVMBuildAlloca(g->b, g->i64, "best"), cost = LLVMBuildAlloca(g->b, g->i64, "cost");
  store(g, ci64(g, 1), best, 8);
  store(g, ci64(g, INT64_MAX), cost, 8);
  Loop l;
  LLVMValueRef tm = loop_begin(g, &l, ci64(g, 1), add(g, nt, ci64(g, 1)), ci64(g, 1));
  LLVMValueRef divides = LLVMBuildICmp(g->b, LLVMIntEQ, LLVMBuildSRem(g->b, nt, tm, ""), ci64(g, 0), "");
  LLVMBasicBlockRef join = if_begin(g, divides);
  LLVMValueRef rows = mul(g, ceil_div(g, mu, tm), ci64(g, mr));
  LLVMValueRef cols = mul(g, ceil_div(g, nu, LLVMBuildSDiv(g->b, nt, tm, "")), ci64(g, nr));
  LLVMValueRef c = add(g, mul(g, rows, cols), mul(g, add(g, rows, cols), ci64(g, PACK_COST)));
  LLVMValueRef better = lt(g, c, load(g, g->i64, cost, 8));
  store(g, LLVMBuildSelect(g->b, better, c, load(g, g->i64, cost, 8), ""), cost, 8);
  store(g, LLVMBuildSelect(g->b, better, tm, load(g, g->i64, best, 8), ""), best, 8);
  if_end(g, join);
  loop_end(g, &l);
  return load(g, g->i64, best, 8);
}

// The exported entry (CgGemmFn): fills the context and hands nthreads tasks
// to rt_parallel_for.
static void emit_entry(G *g, LLVMValueRef task) {
  LLVMTypeRef ps[] = {g->i64, g->i64, g->i64, g->ptr, g->i64, g->ptr, g->i64,
                      g->ptr, g->i64, g->i32, g->ptr, g->i32, g->ptr};
  LLVMValueRef f = func_begin(g, "", g->voidt, ps, 13, true);
  LLVMTypeRef ct = ctx_type(g);
  LLVMValueRef ctx = LLVMBuildAlloca(g->b, ct, "ctx");
  // Parameters in order, skipping the pool (10), match the context fields.
  unsigned from[CTX_TM] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12};
  for (int i = 0; i < CTX_TM; i++) {
    LLVMValueRef p = LLVMGetParam(f, from[i]);
    if (i == CTX_NTHREADS) {  // clamp to [1, nthreads_max]
      LLVMValueRef one = LLVMConstInt(g->i32, 1, 0), mx = LLVMConstInt(g->i32, (unsigned)g->cfg->nthreads_max, 0);
      p = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, p, one, ""), one, p, "");
      p = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, p, mx, ""), mx, p, "");
    }
    store(g, p, LLVMBuildStructGEP2(g->b, ct, ctx, (unsigned)i, ""), 4);
  }
  LLVMValueRef nt = LLVMBuildSExt(g->b, load(g, g->i32, LLVMBuildStructGEP2(g->b, ct, ctx, CTX_NTHREADS, ""), 4),
                                  g->i64, "");
  LLVMValueRef tm = emit_grid(g, LLVMGetParam(f, 0), LLVMGetParam(f, 1), nt);
  store(g, tm, LLVMBuildStructGEP2(g->b, ct, ctx, CTX_TM, ""), 4);
  LLVMTypeRef pf_ps[] = {g->ptr, g->i64, g->ptr, g->ptr};
  LLVMTypeRef pf_ty = LLVMFunctionType(g->voidt, pf_ps, 4, 0);
  LLVMValueRef pf = LLVMGetNamedFunction(g->m, "rt_parallel_for");
  if (!pf)
    pf = LLVMAddFunction(g->m, "rt_parallel_for", pf_ty);
  LLVMValueRef args[] = {LLVMGetParam(f, 10), nt, task, ctx};
  LLVMBuildCall2(g->b, pf_ty, pf, args, 4, "");
  LLVMBuildRetVoid(g->b);
}

// The data caches the blocking is sized for: the host's own (glibc's
// sysconf, from CPUID) when compiling for it, else (a named CPU, --cpu)
// those of the machines each level was tuned on: AVX-512 AMD Zen 5 (48 KB
// L1d, 1 MB L2), AVX2 AMD Zen 3 (32 KB, 512 KB).
static void cache_sizes(int vw, bool host, long *l1, long *l2) {
  *l1 = vw == 16 ? 48 << 10 : 32 << 10;
  *l2 = vw == 16 ? 1 << 20 : 512 << 10;
  if (!host) return;
  long h1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), h2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (h1 >= 16 << 10 && h1 <= 1 << 20) *l1 = h1;
  if (h2 >= 128 << 10 && h2 <= 64 << 20) *l2 = h2;
}

// The blocking for vw f32 lanes (16: AVX-512, else AVX2) and the caches:
//   register tile MR x NR, NR = 2 vectors: AVX-512 (32 zmm) 12 x 32, 24
//     accumulators + 2 B vectors + a broadcast; AVX2 (16 ymm) 6 x 16, 12.
//   KC: the B micro-panel (KC x NR floats) fills half of L1d, a multiple
//     of 16 (Zen 5: 192, 24 KB; Zen 3: 256, 16 KB; a 32 KB L1d with
//     AVX-512, Skylake-X: 128).
//   MC: the A block (MC x KC floats) the share of L2 found best on the
//     tuning machines (Zen 5: 240 x 192, 180 KB of 1 MB; Zen 3: 144 x 256,
//     144 KB of 512 KB), a multiple of MR.
// KC sets the order of the sums (one fma chain per KC block): on the
// tuning machines, and for every named CPU, it is what it was before the
// caches were read, so results there are unchanged.
static void config_blocks(CgGemmConfig *cfg, int vw, bool host) {
  long l1, l2;
  cache_sizes(vw, host, &l1, &l2);
  cfg->vw = vw;
  cfg->nr = 2 * vw;
  cfg->mr = vw == 16 ? 12 : 6;
  int kc = (int)(l1 / 2 / (cfg->nr * (long)sizeof(float))) / 16 * 16;
  cfg->kc = kc < 64 ? 64 : kc > 512 ? 512 : kc;
  double share = vw == 16 ? 240.0 * 192 * 4 / (1 << 20) : 144.0 * 256 * 4 / (512 << 10);
  int mc = (int)(share * (double)l2 / (cfg->kc * (double)sizeof(float))) / cfg->mr * cfg->mr;
  int mc_max = 1024 / cfg->mr * cfg->mr;
  cfg->mc = mc < 4 * cfg->mr ? 4 * cfg->mr : mc > mc_max ? mc_max : mc;
  cfg->nc = 3072;  // B block 3 MB (L3)
  cfg->nthreads_max = 64;
}

void cg_gemm_config_default(const CgLlvm *cg, CgGemmConfig *cfg, const char *name, bool trans_b) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->name, sizeof cfg->name, "%s", name);
  cfg->trans_b = trans_b;
  config_blocks(cfg, cg_llvm_vector_width(cg), cg_llvm_is_host(cg));
}

size_t cg_gemm_work_bytes_for(const char *cpu, int vw, int nthreads) {
  CgGemmConfig cfg;
  memset(&cfg, 0, sizeof cfg);
  config_blocks(&cfg, vw, !cpu || !*cpu);
  cfg.nthreads_max = nthreads > 1 ? nthreads : 1;
  return cg_gemm_work_bytes(&cfg);
}

size_t cg_gemm_work_bytes(const CgGemmConfig *cfg) {
  size_t per = (size_t)(packed_floats(cfg->mc, cfg->kc, cfg->mr) + 15) / 16 * 16 +
               (size_t)packed_floats(cfg->nc, cfg->kc, cfg->nr);  // floats
  per = (per + 15) / 16 * 16;  // each thread's buffer 64-byte aligned
  return per * sizeof(float) * (size_t)cfg->nthreads_max;
}

bool cg_gemm_emit(CgLlvm *cg, const CgGemmConfig *cfg, Diag *d) {
  LLVMModuleRef m = cg_llvm_module(cg);
  if (!m) {
    diag_error(d, NOLOC, "gemm: no current module");
    return false;
  }
  if ((cfg->vw != 8 && cfg->vw != 16) || cfg->nr % cfg->vw || cfg->nr / cfg->vw > 4 || cfg->mr < 1 ||
      cfg->mr > 32 || cfg->mr * (cfg->nr / cfg->vw) > 128 || cfg->nr > 64 || cfg->mc % cfg->mr ||
      cfg->nc % cfg->nr || cfg->kc < 1 || cfg->nthreads_max < 1) {
    diag_error(d, NOLOC, "gemm %s: bad blocking (vw %d, mr %d, nr %d, mc %d, kc %d, nc %d)",
               cfg->name, cfg->vw, cfg->mr, cfg->nr, cfg->mc, cfg->kc, cfg->nc);
    return false;
  }
  G g = {.cg = cg, .cfg = cfg, .m = m, .c = LLVMGetModuleContext(m)};
  g.b = LLVMCreateBuilderInContext(g.c);
  g.i1 = LLVMInt1TypeInContext(g.c);
  g.i32 = LLVMInt32TypeInContext(g.c);
  g.i64 = LLVMInt64TypeInContext(g.c);
  g.f32 = LLVMFloatTypeInContext(g.c);
  g.ptr = LLVMPointerTypeInContext(g.c, 0);
  g.voidt = LLVMVoidTypeInContext(g.c);
  g.vec = LLVMVectorType(g.f32, (unsigned)cfg->vw);
  unsigned fma_id = LLVMLookupIntrinsicID("llvm.fma", 8);
  g.fma = LLVMGetIntrinsicDeclaration(m, fma_id, &g.vec, 1);
  g.fma_ty = LLVMIntrinsicGetType(g.c, fma_id, &g.vec, 1);
  g.loop_md = make_loop_md(g.c);
  LLVMValueRef pa = emit_pack_a(&g), pb = emit_pack_b(&g), k = emit_kernel(&g, false);
  LLVMValueRef kd = cfg->trans_a ? NULL : emit_kernel(&g, true);
  noinline(&g, pa);
  noinline(&g, pb);
  noinline(&g, k);
  if (kd)
    noinline(&g, kd);
  LLVMValueRef range = emit_range(&g, pa, pb, k, kd);
  emit_entry(&g, emit_task(&g, range));
  LLVMDisposeBuilder(g.b);
  return true;
}
