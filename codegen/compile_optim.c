// codegen/compile_optim.c: the kernels of the fused optimizer updates
// (OPT_MOMENT, OPT_MOMENT2, OPT_ADAMW in ir/ops.def) that
// passes/train_step.c emits at the end of a train-step graph. Part of the
// graph compiler (compile.c calls cg_emit_optim for these ops; compile.h is
// the builder kit). Each is one flat loop over the tensor operands with the
// scalar operands loaded once; every operation is a plain f32 one (no
// fast-math flags, so no contraction into FMA and no reassociation), in the
// order of the reference kernels (ir/kernels_grad.c), so the results equal
// the interpreter's and the unfused MUL/ADD/DIV/SQRT chain's bit for bit.
#include "codegen/compile.h"

static LLVMValueRef fmul(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(k->b, a, b, ""); }
static LLVMValueRef fadd(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(k->b, a, b, ""); }
static LLVMValueRef fdiv(K *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(k->b, a, b, ""); }

// One element: v = the tensor operands' values, s = the scalars.
static LLVMValueRef update(K *k, const LLVMValueRef *v, const LLVMValueRef *s) {
  const IrNode *n = k->n;
  if (n->op == IR_OP_OPT_ADAMW) {  // p, m, v; decay, step_size, bc2_sqrt
    LLVMValueRef p1 = fmul(k, v[0], s[0]);
    LLVMValueRef num = fmul(k, LLVMBuildFNeg(k->b, s[1], ""), v[1]);
    LLVMValueRef den = fadd(k, fdiv(k, intr1(k, "llvm.sqrt", v[2]), s[2]), cf(k, (float)n->attr.eps));
    return fadd(k, p1, fdiv(k, num, den));
  }
  LLVMValueRef gc = fmul(k, v[1], s[0]);  // x, g; c
  LLVMValueRef t = fmul(k, cf(k, (float)n->attr.scale), gc);
  if (n->op == IR_OP_OPT_MOMENT2) t = fmul(k, t, gc);
  return fadd(k, fmul(k, v[0], cf(k, (float)n->attr.value)), t);
}

void cg_emit_optim(K *k) {
  const IrNode *n = k->n;
  int nt = n->op == IR_OP_OPT_ADAMW ? 3 : 2;
  LLVMValueRef s[IR_MAX_SRC], v[IR_MAX_SRC];
  for (int j = nt; j < n->nsrc; j++) s[j - nt] = load(k, k->f32, k->src[j]);
  Loop l;
  LLVMValueRef i = loop_begin(k, &l, ci(k, 0), prod(k, k->odim, 0, n->ty.rank));
  for (int j = 0; j < nt; j++) v[j] = load(k, k->f32, gep(k, k->f32, k->src[j], i));
  store(k, update(k, v, s), gep(k, k->f32, k->out, i));
  loop_end(k, &l);
}
