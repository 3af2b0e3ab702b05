// codegen/gpu/render.c: the GPU renderer's driver: the prelude of each
// dialect, the text buffer, index arithmetic shared by the kernels, and the
// walk over the schedule's calls (one kernel each, in run order). The
// kernels' bodies are in render_ops.c. See gpu.h.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/gpu/render.h"

// ---- the dialects: one set of macros each, the kernels share the rest ----

static const char *prelude_cuda =
    "// heed: kernels rendered for CUDA (NVRTC)\n"
    "#define KERNEL extern \"C\" __global__ void\n"
    "#define GLOBAL\n"
    "#define LOCAL __shared__\n"
    "#define BARRIER() __syncthreads()\n"
    "#define LID0 ((long long)threadIdx.x)\n#define LID1 ((long long)threadIdx.y)\n"
    "#define GRP0 ((long long)blockIdx.x)\n#define GRP1 ((long long)blockIdx.y)\n#define GRP2 ((long long)blockIdx.z)\n"
    "#define GID0 (GRP0 * (long long)blockDim.x + LID0)\n"
    "typedef long long I64;\ntypedef unsigned char U8;\ntypedef signed char I8;\n"
    "#define F_EXP expf\n#define F_LOG logf\n#define F_SQRT sqrtf\n#define F_TANH tanhf\n#define F_ERF erff\n"
    "#define F_ABS fabsf\n#define F_COS cosf\n#define F_SIN sinf\n#define F_MAX fmaxf\n"
    "#define H_NAN __int_as_float(0x7fc00000)\n#define H_INF __int_as_float(0x7f800000)\n"
    "#define H_MUL __fmul_rn\n#define H_ADD __fadd_rn\n#define H_DIV __fdiv_rn\n";

static const char *prelude_opencl =
    "// heed: kernels rendered for OpenCL C 1.2\n"
    "#define KERNEL __kernel void\n"
    "#define GLOBAL __global\n"
    "#define LOCAL __local\n"
    "#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)\n"
    "#define LID0 ((long)get_local_id(0))\n#define LID1 ((long)get_local_id(1))\n"
    "#define GRP0 ((long)get_group_id(0))\n#define GRP1 ((long)get_group_id(1))\n#define GRP2 ((long)get_group_id(2))\n"
    "#define GID0 ((long)get_global_id(0))\n"
    "typedef long I64;\ntypedef uchar U8;\ntypedef char I8;\n"
    "#define F_EXP exp\n#define F_LOG log\n#define F_SQRT sqrt\n#define F_TANH tanh\n#define F_ERF erf\n"
    "#define F_ABS fabs\n#define F_COS cos\n#define F_SIN sin\n#define F_MAX fmax\n"
    "#define H_NAN as_float(0x7fc00000)\n#define H_INF as_float(0x7f800000)\n"
    "#pragma OPENCL FP_CONTRACT OFF\n"
    "#define H_MUL(a, b) ((a) * (b))\n#define H_ADD(a, b) ((a) + (b))\n#define H_DIV(a, b) ((a) / (b))\n";

// Helpers both dialects share (written once, after the macros).
static const char *prelude_common =
    "#define H_MAXNAN(a, b) ((isnan(a) || isnan(b)) ? H_NAN : ((a) > (b) ? (a) : (b)))\n"
    "#define H_MINNAN(a, b) ((isnan(a) || isnan(b)) ? H_NAN : ((a) < (b) ? (a) : (b)))\n"
    "#define H_SIGMOID(x) ((x) >= 0.0f ? 1.0f / (1.0f + F_EXP(-(x))) : F_EXP(x) / (1.0f + F_EXP(x)))\n";

const char *cg_gpu_dialect_name(CgGpuDialect dl) { return dl == CG_GPU_CUDA ? "cuda" : "opencl"; }

// ---- text ----

void gr_printf(GpuR *r, const char *fmt, ...) {
  if (r->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = r->cap - r->len;
    int n = vsnprintf(r->buf + r->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      r->oom = true;
      return;
    }
    if ((size_t)n < room) {
      r->len += (size_t)n;
      return;
    }
    size_t cap = r->cap * 2 + (size_t)n + 1;
    char *b = realloc(r->buf, cap);
    if (!b) {
      r->oom = true;
      return;
    }
    r->buf = b, r->cap = cap;
  }
}

const char *gr_ctype(IrDType dt) {
  switch (dt) {
  case IR_F32: return "float";
  case IR_I32: return "int";
  case IR_I64: return "I64";
  case IR_I8: return "I8";
  case IR_U8: case IR_BOOL: return "U8";
  default: return NULL;
  }
}

// ---- index arithmetic ----

void gr_dims(const GpuR *r, const IrNode *n, int64_t *d) {
  if (!ir_shape(&n->ty, r->symvals, d))
    for (int i = 0; i < n->ty.rank; i++) d[i] = 0;
}

int64_t gr_prod(const int64_t *d, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= d[i];
  return p;
}

// Row-major strides of a tensor (dims, rank) read as one of rank rr under
// numpy broadcasting (right-aligned): 0 on the axes it lacks or has size 1 on.
void gr_bcast_strides(const int64_t *dims, int rank, int rr, int64_t *st) {
  int64_t s = 1;
  for (int i = rr - 1; i >= 0; i--) {
    int j = i - (rr - rank);
    if (j < 0) {
      st[i] = 0;
      continue;
    }
    st[i] = dims[j] == 1 ? 0 : s;
    s *= dims[j];
  }
}

// The expression of the offset of (row-major) element `var` of a tensor of
// dims (rank) under strides st: sum of ((var / inner) % dim) * stride.
void gr_offset(GpuR *r, const char *var, const int64_t *dims, int rank, const int64_t *st) {
  int64_t inner = 1;
  bool any = false;
  for (int a = rank - 1; a >= 0; a--) {
    if (st[a] != 0 && dims[a] != 1) {
      gr_printf(r, "%s((%s / %lldL) %% %lldL) * %lldL", any ? " + " : "", var, (long long)inner, (long long)dims[a],
                (long long)st[a]);
      any = true;
    }
    inner *= dims[a];
  }
  if (!any) gr_printf(r, "0L");
}

// ---- the kernels, in run order ----

// The kernel's signature: the result, then its operands, by their buffers.
void gr_signature(GpuR *r, CgGpuLaunch *l, const SchedKernel *k) {
  const IrNode *n = r->g->nodes.data[k->root];
  gr_printf(r, "\nKERNEL %s(GLOBAL %s *y", l->name, gr_ctype(n->ty.dt));
  l->root = k->root;
  l->nargs = 1 + k->nopnd;
  l->arg[0] = r->s->alias[k->root];
  for (int j = 0; j < k->nopnd; j++) {
    const IrNode *x = r->g->nodes.data[k->opnd[j]];
    gr_printf(r, ", GLOBAL const %s *x%d", gr_ctype(x->ty.dt), j);
    l->arg[j + 1] = r->s->alias[k->buf[j]];
  }
  gr_printf(r, ") {\n");
}

// A one-dimensional launch of n work-items in groups of wg.
void gr_launch_1d(CgGpuLaunch *l, int64_t n, int wg) {
  int64_t groups = (n + wg - 1) / wg;
  l->global[0] = (size_t)(groups < 1 ? 1 : groups) * (size_t)wg;
  l->global[1] = l->global[2] = 1;
  l->local[0] = (size_t)wg, l->local[1] = l->local[2] = 1;
}

static bool dtypes_ok(const IrGraph *g, const SchedKernel *k, Diag *d) {
  const IrNode *n = g->nodes.data[k->root];
  for (int j = -1; j < k->nopnd; j++) {
    const IrNode *x = j < 0 ? n : g->nodes.data[k->opnd[j]];
    if (!gr_ctype(x->ty.dt)) {
      diag_error(d, n->loc, "the GPU backend has no %s kernel for %s tensors yet", ir_op_name(n->op),
                 ir_dtype_info[x->ty.dt].name);
      return false;
    }
  }
  return true;
}

bool cg_gpu_supports(const IrGraph *g, const SchedKernel *k, Diag *d) {
  const IrNode *n = g->nodes.data[k->root];
  IrOp fn = (IrOp)n->attr.fn;
  if (n->op == IR_OP_UNARY_GRAD && (fn < IR_OP_NEG || fn > IR_OP_ABS || fn == IR_OP_CAST)) {
    diag_error(d, n->loc, "the GPU backend has no derivative kernel for %s", ir_op_name(fn));
    return false;
  }
  if (!gr_op_supported(n->op)) {
    diag_error(d, n->loc, "the GPU backend has no kernel for %s yet (the cpu target has)", ir_op_name(n->op));
    return false;
  }
  return dtypes_ok(g, k, d);
}

void cg_gpu_caps(SchedCaps *caps) {
  memset(caps, 0, sizeof *caps);
  caps->alias_reshapes = true;
}

CgGpuProgram *cg_gpu_render(const IrGraph *g, const Schedule *s, const int64_t *symvals, CgGpuDialect dl, Diag *d) {
  CgGpuProgram *p = calloc(1, sizeof *p);
  GpuR r = {.g = g, .s = s, .symvals = symvals, .dl = dl, .cap = 1 << 16};
  if (!p || !(r.buf = malloc(r.cap)) || !(p->l = calloc((size_t)(s->nk ? s->nk : 1), sizeof *p->l))) goto oom;
  r.buf[0] = 0;
  p->dialect = dl;
  gr_printf(&r, "%s%s", dl == CG_GPU_CUDA ? prelude_cuda : prelude_opencl, prelude_common);
  for (int c = 0; c < s->nk; c++) {
    const SchedKernel *k = &s->k[c];
    if (!cg_gpu_supports(g, k, d)) goto fail;
    CgGpuLaunch *l = &p->l[p->nl++];
    snprintf(l->name, sizeof l->name, "k%d_%s", c, ir_op_name(g->nodes.data[k->root]->op));
    gr_kernel(&r, l, k);
  }
  if (r.oom) goto oom;
  p->src = r.buf;
  return p;
oom:
  diag_error(d, (SrcLoc){0}, "out of memory rendering GPU kernels");
fail:
  free(r.buf);
  if (p) free(p->l);
  free(p);
  return NULL;
}

void cg_gpu_program_free(CgGpuProgram *p) {
  if (!p) return;
  free(p->src);
  free(p->l);
  free(p);
}
