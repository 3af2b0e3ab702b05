// codegen/compile_kv.c: the kernels of incremental decoding (the step
// graphs of passes/kvcache.c), in the graph compiler's module (compile.c
// calls cg_emit_kv for KV_APPEND (ATTENTION_KV and ROPE_AT are its attention
// and rope with a position offset), and
// cg_emit_gemv before each MATMUL). Same conventions as compile.c: one
// kernel function per distinct node signature, dims from ctx, f32 storage.
//
//   KV_APPEND     rows pos..pos+T-1 of the cache (B,S,C) from the new rows;
//                 the rest copied, unless the output buffer is the cache's
//                 own (the caller's choice: then the append is in place and
//                 a decode step costs T*C, not S*C)
//   ATTENTION_KV  compile.c's emit_attention, keys 0..pos+t
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

void cg_emit_kv(K *k) {
  switch (k->n->op) {
  case IR_OP_KV_APPEND: emit_kv_append(k); break;
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
