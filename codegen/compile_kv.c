// codegen/compile_kv.c: the kernels of incremental decoding (the step
// graphs of passes/kvcache.c), in the graph compiler's module (compile.c
// calls cg_emit_kv for KV_APPEND and ATTENTION_KV (ROPE_AT is its rope), and
// cg_emit_gemv before each MATMUL). Same conventions as compile.c: one
// kernel function per distinct node signature, dims from ctx, f32 storage.
//
//   KV_APPEND     rows pos..pos+T-1 of the cache (B,S,C) from the new rows;
//                 the rest copied, unless the output buffer is the cache's
//                 own (the caller's choice: then the append is in place and
//                 a decode step costs T*C, not S*C)
//   ATTENTION_KV  compile.c's attention with the key range 0..pos+t
//   ROPE_AT       compile.c's emit_rope, at positions pos + t
//   gemv          a MATMUL whose left operand has one row and whose right
//                 operand is a matrix (decode: x (1,1,C) @ w (C,N)) skips
//                 the sgemm's packing and streams the weights once
#include <math.h>

#include "codegen/cg.h"
#include "codegen/compile.h"

static LLVMValueRef pos_of(K *k, int j) { return ld(k, k->n->src[j]->ty.dt, k->src[j], ci(k, 0)); }

// cache (B,S,C), new (B,T,C), pos -> (B,S,C)
static void emit_kv_append(K *k) {
  LLVMValueRef B = k->odim[0], S = k->odim[1], C = k->odim[2], T = k->idim[1][1], pos = pos_of(k, 2);
  fail_if(k, LLVMBuildOr(k->b, icmp(k, LLVMIntSLT, pos, ci(k, 0)), icmp(k, LLVMIntSGT, add(k, pos, T), S), ""),
          ST_SLICE, T, S);
  LLVMValueRef same = icmp(k, LLVMIntEQ, LLVMBuildPtrToInt(k->b, k->out, k->i64, ""),
                           LLVMBuildPtrToInt(k->b, k->src[0], k->i64, ""));
  LLVMBasicBlockRef join = if_begin(k, LLVMBuildNot(k->b, same, ""));
  copy(k, k->out, k->src[0], mul(k, mul(k, B, S), C), IR_F32);
  if_end(k, join);
  Loop lb;
  LLVMValueRef b = loop_begin(k, &lb, ci(k, 0), B);
  LLVMValueRef dst = gep(k, k->f32, k->out, mul(k, add(k, mul(k, b, S), pos), C));
  copy(k, dst, gep(k, k->f32, k->src[1], mul(k, mul(k, b, T), C)), mul(k, T, C), IR_F32);
  loop_end(k, &lb);
}

// q (B,T,H*D), kc, vc (B,S,KV*D), pos -> (B,T,H*D). Per query row: scores
// over keys 0..pos+t (f32 dot products), their maximum, p = exp(score -
// max) summed in double, y = sum p/sum * v in double (compile.c's attention).
static void emit_attention_kv(K *k) {
  const IrNode *n = k->n;
  LLVMBuilderRef b = k->b;
  int64_t H = n->attr.heads, KV = n->attr.kv_heads, D = n->ty.dim[2].n / H;
  LLVMValueRef B = k->idim[0][0], T = k->idim[0][1], S = k->idim[1][1], pos = pos_of(k, 3);
  fail_if(k, LLVMBuildOr(b, icmp(k, LLVMIntSLT, pos, ci(k, 0)), icmp(k, LLVMIntSGT, add(k, pos, T), S), ""), ST_SLICE,
          T, S);
  LLVMValueRef s1 = LLVMBuildSelect(k->ab, LLVMBuildICmp(k->ab, LLVMIntSGT, S, ci(k, 1), ""), S, ci(k, 1), "");
  LLVMValueRef w = LLVMBuildArrayAlloca(k->ab, k->f32, s1, "w");
  LLVMValueRef acc = LLVMBuildArrayAlloca(k->ab, k->f64, ci(k, D), "acc");
  LLVMValueRef mx = var(k, k->f32, NULL), dot = var(k, k->f32, NULL), sum = var(k, k->f64, NULL);
  Loop lb, lt, lh, ls, li;
  LLVMValueRef bi = loop_begin(k, &lb, ci(k, 0), B);
  LLVMValueRef t = loop_begin(k, &lt, ci(k, 0), T);
  LLVMValueRef lim = add(k, add(k, pos, t), ci(k, 1));  // keys 0..pos+t (>= 1 of them)
  LLVMValueRef h = loop_begin(k, &lh, ci(k, 0), ci(k, H));
  LLVMValueRef kh = LLVMBuildSDiv(b, h, ci(k, H / KV), "");
  LLVMValueRef row = mul(k, add(k, mul(k, add(k, mul(k, bi, T), t), ci(k, H)), h), ci(k, D));
  LLVMValueRef q = gep(k, k->f32, k->src[0], row), y = gep(k, k->f32, k->out, row);
  LLVMValueRef kbase = mul(k, add(k, mul(k, mul(k, bi, S), ci(k, KV)), kh), ci(k, D));
  store(k, cf(k, -INFINITY), mx);
  LLVMValueRef s = loop_begin(k, &ls, ci(k, 0), lim);
  LLVMValueRef kr = gep(k, k->f32, k->src[1], add(k, kbase, mul(k, s, ci(k, KV * D))));
  store(k, cf(k, 0), dot);
  LLVMValueRef i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  LLVMValueRef pr = LLVMBuildFMul(b, load(k, k->f32, gep(k, k->f32, q, i)), load(k, k->f32, gep(k, k->f32, kr, i)), "");
  store(k, reassoc(LLVMBuildFAdd(b, get(k, dot), reassoc(pr), "")), dot);
  loop_end(k, &li);
  LLVMValueRef sc = LLVMBuildFMul(b, get(k, dot), cf(k, n->attr.scale), "");
  store(k, sc, gep(k, k->f32, w, s));
  store(k, intr2(k, "llvm.maxnum", get(k, mx), sc), mx);
  loop_end(k, &ls);
  i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  store(k, cd(k, 0), gep(k, k->f64, acc, i));
  loop_end(k, &li);
  LLVMValueRef m = get(k, mx);
  store(k, cd(k, 0), sum);
  s = loop_begin(k, &ls, ci(k, 0), lim);
  LLVMValueRef e = fexp(k, LLVMBuildFSub(b, load(k, k->f32, gep(k, k->f32, w, s)), m, ""));
  store(k, e, gep(k, k->f32, w, s));
  store(k, reassoc(LLVMBuildFAdd(b, get(k, sum), ext(k, e), "")), sum);
  loop_end(k, &ls);
  LLVMValueRef inv = LLVMBuildFDiv(b, cd(k, 1), get(k, sum), "");
  s = loop_begin(k, &ls, ci(k, 0), lim);
  LLVMValueRef p = LLVMBuildFMul(b, ext(k, load(k, k->f32, gep(k, k->f32, w, s))), inv, "");
  LLVMValueRef vr = gep(k, k->f32, k->src[2], add(k, kbase, mul(k, s, ci(k, KV * D))));
  i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  LLVMValueRef ap = gep(k, k->f64, acc, i);
  LLVMValueRef pv = LLVMBuildFMul(b, p, ext(k, load(k, k->f32, gep(k, k->f32, vr, i))), "");
  store(k, LLVMBuildFAdd(b, load(k, k->f64, ap), pv, ""), ap);
  loop_end(k, &li);
  loop_end(k, &ls);
  i = loop_begin(k, &li, ci(k, 0), ci(k, D));
  store(k, trn(k, load(k, k->f64, gep(k, k->f64, acc, i))), gep(k, k->f32, y, i));
  loop_end(k, &li);
  loop_end(k, &lh);
  loop_end(k, &lt);
  loop_end(k, &lb);
}

void cg_emit_kv(K *k) {
  switch (k->n->op) {
  case IR_OP_KV_APPEND: emit_kv_append(k); break;
  case IR_OP_ATTENTION_KV: emit_attention_kv(k); break;
  default: heed_unreachable();
  }
}

// ---- gemv: one row times a matrix ----

// y (N) = x (K) @ W (K,N): rows of W streamed four at a time into y
// (vectorized over N; W read once, y stays in cache).
// The output columns this call computes: [plo, phi) in a parallel body
// (cg_par_units splits a one-row MATMUL's N columns), else all.
static LLVMValueRef col_lo(K *k) { return k->plo ? k->plo : ci(k, 0); }
static LLVMValueRef col_hi(K *k, LLVMValueRef N) { return k->phi ? k->phi : N; }

static void gemv_nn(K *k, LLVMValueRef N, LLVMValueRef Kd) {
  LLVMBuilderRef b = k->b;
  LLVMValueRef x = k->src[0], W = k->src[1], y = k->out;
  Loop ln, lk, lr;
  LLVMValueRef n = loop_begin(k, &ln, col_lo(k), col_hi(k, N));
  store(k, cf(k, 0), gep(k, k->f32, y, n));
  loop_end(k, &ln);
  LLVMValueRef K4 = mul(k, LLVMBuildSDiv(b, Kd, ci(k, 4), ""), ci(k, 4));
  LLVMValueRef kk = var(k, k->i64, ci(k, 0));
  // four rows per pass
  LLVMBasicBlockRef head = block(k, "k4"), body = block(k, "k4body"), done = block(k, "k4done");
  LLVMBuildBr(b, head);
  at(k, head);
  LLVMValueRef k0 = get(k, kk);
  LLVMBuildCondBr(b, icmp(k, LLVMIntSLT, k0, K4), body, done);
  at(k, body);
  LLVMValueRef xs[4], ws[4];
  for (int r = 0; r < 4; r++) {
    LLVMValueRef kr = add(k, k0, ci(k, r));
    xs[r] = load(k, k->f32, gep(k, k->f32, x, kr));
    ws[r] = gep(k, k->f32, W, mul(k, kr, N));
  }
  n = loop_begin(k, &ln, col_lo(k), col_hi(k, N));
  LLVMValueRef acc = load(k, k->f32, gep(k, k->f32, y, n));
  for (int r = 0; r < 4; r++)
    acc = reassoc(LLVMBuildFAdd(b, acc, reassoc(LLVMBuildFMul(b, xs[r], load(k, k->f32, gep(k, k->f32, ws[r], n)), "")), ""));
  store(k, acc, gep(k, k->f32, y, n));
  loop_end(k, &ln);
  store(k, add(k, k0, ci(k, 4)), kk);
  LLVMBuildBr(b, head);
  at(k, done);
  // the remaining rows one at a time
  LLVMValueRef kr = loop_begin(k, &lk, K4, Kd);
  LLVMValueRef xv = load(k, k->f32, gep(k, k->f32, x, kr)), wr = gep(k, k->f32, W, mul(k, kr, N));
  n = loop_begin(k, &lr, col_lo(k), col_hi(k, N));
  LLVMValueRef yp = gep(k, k->f32, y, n);
  store(k, reassoc(LLVMBuildFAdd(b, load(k, k->f32, yp), reassoc(LLVMBuildFMul(b, xv, load(k, k->f32, gep(k, k->f32, wr, n)), "")), "")), yp);
  loop_end(k, &lr);
  loop_end(k, &lk);
}

// y (N) = x (K) @ transpose(Wt (N,K)): one dot product per output.
static void gemv_nt(K *k, LLVMValueRef N, LLVMValueRef Kd) {
  LLVMBuilderRef b = k->b;
  LLVMValueRef dot = var(k, k->f32, NULL);
  Loop ln, lk;
  LLVMValueRef n = loop_begin(k, &ln, col_lo(k), col_hi(k, N));
  LLVMValueRef wr = gep(k, k->f32, k->src[1], mul(k, n, Kd));
  store(k, cf(k, 0), dot);
  LLVMValueRef i = loop_begin(k, &lk, ci(k, 0), Kd);
  LLVMValueRef pr = LLVMBuildFMul(b, load(k, k->f32, gep(k, k->f32, k->src[0], i)), load(k, k->f32, gep(k, k->f32, wr, i)), "");
  store(k, reassoc(LLVMBuildFAdd(b, get(k, dot), reassoc(pr), "")), dot);
  loop_end(k, &lk);
  store(k, get(k, dot), gep(k, k->f32, k->out, n));
  loop_end(k, &ln);
}

void cg_emit_gemv(K *k) {
  const IrNode *n = k->n;
  int ra = src_rank(k, 0), rb = n->src[1]->ty.rank;
  if (rb != 2 || n->ty.dt != IR_F32 || (k->nt & TR_A)) return;  // batched right operands, A^T: the sgemm
  LLVMValueRef Kd = k->idim[0][ra - 1], N = k->odim[n->ty.rank - 1];
  LLVMValueRef rows = prod(k, k->idim[0], 0, ra - 1);
  LLVMBasicBlockRef join = if_begin(k, LLVMBuildAnd(k->b, icmp(k, LLVMIntEQ, rows, ci(k, 1)),
                                                    icmp(k, LLVMIntSGT, Kd, ci(k, 0)), ""));
  if (k->nt & TR_B) gemv_nt(k, N, Kd);
  else gemv_nn(k, N, Kd);
  LLVMBuildRet(k->b, ci32(k, 0));
  at(k, join);
}
