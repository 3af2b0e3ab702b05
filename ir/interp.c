// ir/interp.c: the reference interpreter's driver: binds symbolic sizes,
// walks the nodes in order, calls the op's kernel (kernels.c, kernels_grad.c)
// and rounds each result to its dtype. It is the oracle every pass and
// backend is tested against and the CLI's --interp; never the fast path.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

bool ir_shape(const IrType *t, const int64_t *symvals, int64_t dims[IR_MAX_RANK]) {
  for (int i = 0; i < t->rank; i++)
    if ((dims[i] = ir_dim_value(t->dim[i], symvals)) < 0) return false;
  return true;
}

bool ir_bind_syms(const IrGraph *g, const int64_t *const *shapes, const int *ranks, int64_t *symvals, Diag *d) {
  char buf[256];
  for (int s = 0; s < IR_MAX_SYMS; s++) symvals[s] = -1;
  // Two rounds: single-symbol dims bind first, products (B*T) are checked after.
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < g->inputs.len; i++) {
      const IrNode *in = g->inputs.data[i];
      if (ranks[i] != in->ty.rank) {
        diag_error(d, in->loc, "input '%s' must have rank %d (%s), got rank %d", in->name, in->ty.rank,
                   ir_type_str(&in->ty, &g->syms, true, buf, sizeof buf), ranks[i]);
        return false;
      }
      for (int a = 0; a < in->ty.rank; a++) {
        IrDim dm = in->ty.dim[a];
        int64_t have = shapes[i][a];
        if (round == 0 && dm.nsym == 1 && dm.n == 1 && symvals[dm.sym[0]] < 0) {
          if (have < 1) {
            diag_error(d, in->loc, "input '%s': axis %d has size %lld; sizes must be positive", in->name, a,
                       (long long)have);
            return false;
          }
          symvals[dm.sym[0]] = have;
          continue;
        }
        if (round == 0 && dm.nsym) continue;
        int64_t want = ir_dim_value(dm, symvals);
        if (want < 0 || want != have) {
          char db[64];
          diag_error(d, in->loc, "input '%s': axis %d must have size %s%s, got %lld", in->name, a,
                     ir_dim_str(dm, &g->syms, db, sizeof db), want >= 0 ? "" : " (unbound)", (long long)have);
          if (want >= 0) diag_note(d, in->loc, "'%s' is %s", in->name, ir_type_str(&in->ty, &g->syms, true, buf, sizeof buf));
          return false;
        }
      }
    }
  return true;
}

// ---- sizes the graph cannot run with ----

static bool is_position_gather(const IrNode *n) {
  return n->op == IR_OP_GATHER && n->src[1]->op == IR_OP_POSITIONS && ir_dim_is_const(n->src[0]->ty.dim[0]);
}

bool ir_size_limits(const IrGraph *g, IrSizeLimit **out, int *n) {
  *out = NULL, *n = 0;
  int count = 0;
  for (int i = 0; i < g->nodes.len; i++) count += is_position_gather(g->nodes.data[i]);
  if (!count) return true;
  if (!(*out = heed_calloc((size_t)count, sizeof **out))) return false;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *x = g->nodes.data[i];
    if (is_position_gather(x)) (*out)[(*n)++] = (IrSizeLimit){x->src[1]->ty.dim[0], x->src[0]->ty.dim[0].n, x->loc};
  }
  return true;
}

bool ir_check_size_limits(const IrSizeLimit *l, int n, const int64_t *symvals, Diag *d) {
  for (int i = 0; i < n; i++) {
    int64_t len = ir_dim_value(l[i].len, symvals);
    if (len > l[i].rows) {
      diag_error(d, l[i].loc, "the sequence length T = %lld exceeds the %lld rows of the position table",
                 (long long)len, (long long)l[i].rows);
      return false;
    }
  }
  return true;
}

bool ir_check_sizes(const IrGraph *g, const int64_t *symvals, Diag *d) {
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *x = g->nodes.data[i];
    if (!is_position_gather(x)) continue;
    IrSizeLimit l = {x->src[1]->ty.dim[0], x->src[0]->ty.dim[0].n, x->loc};
    if (!ir_check_size_limits(&l, 1, symvals, d)) return false;
  }
  return true;
}

static float f16_round(double v) {  // round to nearest even at 11 significant bits, range of f16
  if (!isfinite(v) || v == 0) return (float)v;
  double a = fabs(v);
  if (a >= 65520.0) return v > 0 ? INFINITY : -INFINITY;
  int e;
  frexp(a, &e);                       // a = m * 2^e, m in [0.5, 1)
  int exp = e < -13 ? -13 : e;        // below 2^-14 the spacing is fixed (subnormals)
  double q = ldexp(1.0, exp - 11);    // spacing of f16 values near a
  return (float)(copysign(nearbyint(a / q) * q, v));
}

static float bf16_round(double v) {
  float f = (float)v;
  if (!isfinite(f)) return f;
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);  // round to nearest even
  u &= 0xFFFF0000u;
  memcpy(&f, &u, 4);
  return f;
}

double ir_round_to(IrDType dt, double v) {
  switch (dt) {
  case IR_F32: return (float)v;
  case IR_F16: return f16_round(v);
  case IR_BF16: return bf16_round(v);
  case IR_BOOL: return v != 0;
  default: break;
  }
  if (!isfinite(v)) return 0;
  double t = trunc(v);
  if (dt == IR_I64) return t;
  int bits = dt == IR_I32 ? 32 : 8;
  double m = ldexp(1.0, bits), r = fmod(t, m);
  if (r < 0) r += m;                  // two's-complement wrap-around
  if (dt != IR_U8 && r >= m / 2) r -= m;
  return r;
}

void ir_values_free(IrValues *v) {
  if (!v) return;
  for (int i = 0; v->val && i < v->g->nodes.len; i++) heed_free(v->val[i]);
  heed_free(v->val);
  heed_free(v->numel);
  heed_free(v);
}

static bool run_node(IrValues *v, const IrNode *n, double *const *inputs, double *const *params, int ii, int pi,
                     Diag *d) {
  IrKernelArgs k = {.n = n, .d = d};
  if (!ir_shape(&n->ty, v->symvals, k.dims)) {
    diag_error(d, n->loc, "a size of %s is unbound or too large", ir_op_name(n->op));
    return false;
  }
  int64_t numel = ir_type_numel(&n->ty, v->symvals);
  if (numel < 0 || numel > ((int64_t)1 << 34)) {
    diag_error(d, n->loc, "%s: the result is too large to evaluate (%lld elements)", ir_op_name(n->op), (long long)numel);
    return false;
  }
  double *out = heed_malloc(sizeof(double) * (size_t)(numel ? numel : 1));
  if (!out) {
    diag_error(d, n->loc, "out of memory evaluating %s", ir_op_name(n->op));
    return false;
  }
  v->val[n->id] = out;
  v->numel[n->id] = numel;
  k.out = out;
  k.numel = numel;
  if (n->op == IR_OP_INPUT || n->op == IR_OP_PARAM) {
    const double *src = n->op == IR_OP_INPUT ? inputs[ii] : params[pi];
    memcpy(out, src, sizeof(double) * (size_t)numel);
  } else if (n->op == IR_OP_CONST) {
    for (int64_t i = 0; i < numel; i++) out[i] = n->attr.value;
  } else {
    for (int j = 0; j < n->nsrc; j++) {
      k.in[j] = v->val[n->src[j]->id];
      ir_shape(&n->src[j]->ty, v->symvals, k.in_dims[j]);
    }
    bool grad = n->op >= IR_OP_UNARY_GRAD;
    if (!(grad ? ir_kernel_grad(&k) : ir_kernel_forward(&k))) return false;
  }
  if (!v->exact)
    for (int64_t i = 0; i < numel; i++) out[i] = ir_round_to(n->ty.dt, out[i]);
  return true;
}

IrValues *ir_interp(const IrGraph *g, const int64_t *symvals, double *const *inputs, double *const *params,
                    bool exact, Diag *d) {
  IrValues *v = heed_calloc(1, sizeof *v);
  if (!v) return diag_error(d, (SrcLoc){0}, "out of memory starting the interpreter"), NULL;
  v->g = g;
  v->exact = exact;
  v->val = heed_calloc((size_t)g->nodes.len + 1, sizeof(double *));
  v->numel = heed_calloc((size_t)g->nodes.len + 1, sizeof(int64_t));
  memcpy(v->symvals, symvals, sizeof(int64_t) * (size_t)(g->syms.len < IR_MAX_SYMS ? g->syms.len : IR_MAX_SYMS));
  if (!v->val || !v->numel || g->syms.len > IR_MAX_SYMS) {
    diag_error(d, (SrcLoc){0}, "out of memory starting the interpreter");
    ir_values_free(v);
    return NULL;
  }
  if (!ir_check_sizes(g, symvals, d)) {
    ir_values_free(v);
    return NULL;
  }
  int ii = 0, pi = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    const IrNode *n = g->nodes.data[i];
    if (!run_node(v, n, inputs, params, ii, pi, d)) {
      ir_values_free(v);
      return NULL;
    }
    ii += n->op == IR_OP_INPUT;
    pi += n->op == IR_OP_PARAM;
  }
  return v;
}
