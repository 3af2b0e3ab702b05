// passes/autodiff.c: reverse-mode automatic differentiation over the IR
// (ggml_compute_backward). Runs after lowering (frontend -> IrGraph), before
// the later passes (fusion, memory planning): it appends to the same graph
// the nodes that compute d(loss)/d(param) for every trainable parameter and,
// on request, every float input, and names them as outputs "grad.NAME".
//
// The walk visits the forward nodes in reverse topological order from the
// loss. adj[id] holds the adjoint of node id (d loss / d node) summed over
// its users so far; each op's case below turns its adjoint into its operands'
// contributions with the IR builders, so every gradient node is type-checked
// by ir_infer like any other. Only float nodes that depend on a
// differentiated leaf get adjoints: integer values (indices, targets, masks,
// positions) carry none. Gradient kernels live in ir/kernels_grad.c.
#include "passes/pass.h"

// A slice's adjoint not yet placed in its operand's shape: dy at start.
typedef struct Piece {
  IrNode *dy;
  int64_t start;
  struct Piece *next;
} Piece;

typedef struct {
  IrGraph *g;
  IrNode **adj;  // per forward node id: the adjoint so far (NULL: none yet)
  bool *need;    // per forward node id: float and depends on a differentiated leaf
  Piece **pieces;  // per forward node id: slices' adjoints along pieces_axis (settle() adds them)
  int *pieces_axis;
} Ad;

static bool is_float(const IrNode *n) { return ir_dtype_info[n->ty.dt].is_float; }

static bool wanted_leaf(const IrNode *n, bool inputs_too) {
  if (!is_float(n)) return false;
  if (n->op == IR_OP_PARAM) return (n->flags & IR_FLAG_PARAM) && !(n->flags & IR_FLAG_BUFFER);
  return n->op == IR_OP_INPUT && inputs_too;
}

// Does operand x want a gradient? (Callers skip building its contribution if not.)
static bool wants(const Ad *ad, const IrNode *x) { return ad->need[x->id]; }

// ---- builders for gradient nodes (NULL in, NULL out: a failure is already reported) ----

static IrNode *op(Ad *ad, IrOp o, IrNode *const *s, int n, const IrAttr *at, const IrType *ty, SrcLoc loc) {
  return ir_op(ad->g, o, s, n, at, ty, loc);
}

static IrNode *op1(Ad *ad, IrOp o, IrNode *x, const IrAttr *at, const IrType *ty, SrcLoc loc) {
  return op(ad, o, &x, 1, at, ty, loc);
}

static IrNode *op2(Ad *ad, IrOp o, IrNode *a, IrNode *b, const IrAttr *at, SrcLoc loc) {
  IrNode *s[2] = {a, b};
  return op(ad, o, s, 2, at, NULL, loc);
}

static IrNode *op3(Ad *ad, IrOp o, IrNode *a, IrNode *b, IrNode *c, const IrAttr *at, const IrType *ty, SrcLoc loc) {
  IrNode *s[3] = {a, b, c};
  return op(ad, o, s, 3, at, ty, loc);
}

// Sums dy over the axes along which a value of type ty was broadcast.
static IrNode *sum_to(Ad *ad, IrNode *dy, const IrType *ty, SrcLoc loc) {
  if (!dy || ir_type_eq(&dy->ty, ty)) return dy;
  return op1(ad, IR_OP_SUM_TO, dy, NULL, ty, loc);
}

// op1 for the ops whose result type is given (EXPAND, RESHAPE, CAST): dy
// itself when it already has that type.
static IrNode *retype(Ad *ad, IrOp o, IrNode *dy, const IrType *ty, SrcLoc loc) {
  if (!dy || ir_type_eq(&dy->ty, ty)) return dy;
  return op1(ad, o, dy, NULL, ty, loc);
}

// x (..., M, K) as (P*M, K), P the product of the leading axes; false if
// a product overflows.
static bool flat_rows(const IrNode *x, IrType *out) {
  *out = x->ty;
  out->rank = 2;
  IrDim rows = x->ty.dim[0];
  for (int i = 1; i < x->ty.rank - 1; i++)
    if (!ir_dim_mul(rows, x->ty.dim[i], &rows)) return false;
  out->dim[0] = rows;
  out->dim[1] = x->ty.dim[x->ty.rank - 1];
  return true;
}

// Adds the contribution d (exactly x's type) to x's adjoint.
static bool acc(Ad *ad, IrNode *x, IrNode *d) {
  if (!d) return false;
  if (!ir_type_eq(&d->ty, &x->ty)) {
    char b1[256], b2[256];
    diag_error(ad->g->diag, x->loc, "autodiff: internal error: gradient of %%%u has type %s, want %s", x->id,
               ir_type_str(&d->ty, &ad->g->syms, true, b1, sizeof b1),
               ir_type_str(&x->ty, &ad->g->syms, true, b2, sizeof b2));
    return false;
  }
  IrNode *old = ad->adj[x->id];
  ad->adj[x->id] = old ? op2(ad, IR_OP_ADD, old, d, NULL, d->loc) : d;
  return ad->adj[x->id] != NULL;
}

// The pending pieces of x (slices of it along one axis, e.g. q, k and v
// split from one projection) added to its adjoint: one CONCAT when they
// tile the axis (the usual split), else a SLICE_GRAD each. Called before
// x's adjoint is read.
static bool settle(Ad *ad, IrNode *x) {
  Piece *p = ad->pieces[x->id];
  if (!p) return true;
  ad->pieces[x->id] = NULL;
  int axis = ad->pieces_axis[x->id], n = 0;
  for (Piece *q = p; q; q = q->next) n++;
  Piece **v = arena_alloc(ad->g->a, sizeof *v * (size_t)n);
  if (!v) return diag_error(ad->g->diag, x->loc, "autodiff: out of memory"), false;
  n = 0;
  for (Piece *q = p; q; q = q->next) {  // by start (insertion: a few pieces)
    int j = n++;
    for (; j > 0 && v[j - 1]->start > q->start; j--) v[j] = v[j - 1];
    v[j] = q;
  }
  int64_t end = 0;
  bool tiles = n <= IR_MAX_SRC;
  for (int i = 0; tiles && i < n; i++) {
    tiles = v[i]->start == end;
    end += v[i]->dy->ty.dim[axis].n;
  }
  if (tiles && end == x->ty.dim[axis].n) {
    IrNode *s[IR_MAX_SRC];
    for (int i = 0; i < n; i++) s[i] = v[i]->dy;
    IrAttr at = {.axis = axis};
    return acc(ad, x, n == 1 ? s[0] : op(ad, IR_OP_CONCAT, s, n, &at, NULL, x->loc));
  }
  for (int i = 0; i < n; i++) {
    IrAttr g = {.axis = axis, .start = v[i]->start};
    if (!acc(ad, x, op1(ad, IR_OP_SLICE_GRAD, v[i]->dy, &g, &x->ty, v[i]->dy->loc))) return false;
  }
  return true;
}

// acc after summing a broadcast contribution down to x's shape.
static bool acc_to(Ad *ad, IrNode *x, IrNode *d, SrcLoc loc) { return acc(ad, x, sum_to(ad, d, &x->ty, loc)); }

// The type of a reduction's result with its reduced axes kept as 1.
static IrType keepdim_type(const IrNode *x, uint32_t axes) {
  IrType t = x->ty;
  for (int i = 0; i < t.rank; i++)
    if (axes >> i & 1) t.dim[i] = ir_dim_const(1);
  return t;
}

// PERMUTE attribute swapping the last two axes of a rank-r value.
static IrAttr transpose_attr(int r) {
  IrAttr at = {0};
  for (int i = 0; i < r; i++) at.perm[i] = i;
  at.perm[r - 2] = r - 1;
  at.perm[r - 1] = r - 2;
  return at;
}

// The gradient of a MEAN's dy (in keepdim shape): dy / (number of reduced
// elements), a constant when the reduced sizes are, else counted at run time.
static IrNode *mean_scale(Ad *ad, IrNode *x, IrNode *dyk, uint32_t axes, SrcLoc loc) {
  int64_t cnt = 1;
  bool cst = true;
  for (int i = 0; i < x->ty.rank; i++)
    if (axes >> i & 1) {
      cst &= ir_dim_is_const(x->ty.dim[i]);
      cnt *= x->ty.dim[i].n;
    }
  if (cst) return op2(ad, IR_OP_MUL, dyk, ir_const(ad->g, cnt ? 1.0 / (double)cnt : 0.0, x->ty.dt, loc), NULL, loc);
  IrType full = x->ty;
  IrNode *ones = op1(ad, IR_OP_EXPAND, ir_const(ad->g, 1.0, x->ty.dt, loc), NULL, &full, loc);
  IrAttr at = {.axes = axes, .keepdim = true};
  return op2(ad, IR_OP_DIV, dyk, op1(ad, IR_OP_SUM, ones, &at, NULL, loc), NULL, loc);
}

// Appends the contributions of node n (whose adjoint is complete) to its operands.
static bool vjp(Ad *ad, IrNode *n) {
  IrNode *dy = ad->adj[n->id], *const *s = n->src, *a = s[0], *b = n->nsrc > 1 ? s[1] : NULL;
  SrcLoc loc = n->loc;
  IrAttr at = n->attr;
  switch (n->op) {
  // y = a + b: da = dy, db = dy (each summed over its broadcast axes)
  case IR_OP_ADD:
    return (!wants(ad, a) || acc_to(ad, a, dy, loc)) && (!wants(ad, b) || acc_to(ad, b, dy, loc));
  // y = a - b: da = dy, db = -dy
  case IR_OP_SUB:
    return (!wants(ad, a) || acc_to(ad, a, dy, loc)) &&
           (!wants(ad, b) || acc_to(ad, b, op1(ad, IR_OP_NEG, dy, NULL, NULL, loc), loc));
  // y = a * b: da = dy b, db = dy a
  case IR_OP_MUL:
    return (!wants(ad, a) || acc_to(ad, a, op2(ad, IR_OP_MUL, dy, b, NULL, loc), loc)) &&
           (!wants(ad, b) || acc_to(ad, b, op2(ad, IR_OP_MUL, dy, a, NULL, loc), loc));
  // y = a / b: da = dy / b, db = -dy a / b^2 = -(dy y) / b
  case IR_OP_DIV: {
    if (wants(ad, a) && !acc_to(ad, a, op2(ad, IR_OP_DIV, dy, b, NULL, loc), loc)) return false;
    if (!wants(ad, b)) return true;
    IrNode *dyy_b = op2(ad, IR_OP_DIV, op2(ad, IR_OP_MUL, dy, n, NULL, loc), b, NULL, loc);
    return acc_to(ad, b, op1(ad, IR_OP_NEG, dyy_b, NULL, NULL, loc), loc);
  }
  // y = max(a, b) (min likewise): dy goes to the winner, half to each on a tie
  case IR_OP_MAXIMUM:
  case IR_OP_MINIMUM: {
    IrAttr g = {.fn = (int)n->op};
    return (!wants(ad, a) || acc_to(ad, a, op3(ad, IR_OP_MAXIMUM_GRAD, a, b, dy, &g, NULL, loc), loc)) &&
           (!wants(ad, b) || acc_to(ad, b, op3(ad, IR_OP_MAXIMUM_GRAD, b, a, dy, &g, NULL, loc), loc));
  }
  // y = where(c, a, b): da = where(c, dy, 0), db = where(c, 0, dy); none for c
  case IR_OP_WHERE: {
    IrNode *zero = ir_const(ad->g, 0.0, dy->ty.dt, loc), *c = s[0];
    a = s[1];
    b = s[2];
    return (!wants(ad, a) || acc_to(ad, a, op3(ad, IR_OP_WHERE, c, dy, zero, NULL, NULL, loc), loc)) &&
           (!wants(ad, b) || acc_to(ad, b, op3(ad, IR_OP_WHERE, c, zero, dy, NULL, NULL, loc), loc));
  }
  // y = f(x): dx = dy f'(x) (UNARY_GRAD x, y, dy; kernels_grad.c has each f')
  case IR_OP_NEG: case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SQRT: case IR_OP_RSQRT: case IR_OP_TANH:
  case IR_OP_SIGMOID: case IR_OP_RELU: case IR_OP_GELU: case IR_OP_GELU_TANH: case IR_OP_SILU: case IR_OP_ABS: {
    IrAttr g = {.fn = (int)n->op};
    return acc(ad, a, op3(ad, IR_OP_UNARY_GRAD, a, n, dy, &g, NULL, loc));
  }
  // y = cast(x): dx = cast(dy) back to x's dtype (float to float only)
  case IR_OP_CAST:
    return !wants(ad, a) || acc(ad, a, retype(ad, IR_OP_CAST, dy, &a->ty, loc));
  // y = dropout(x): the identity outside training
  case IR_OP_DROPOUT:
    return acc(ad, a, dy);
  // C = A @ B, A (...,M,K), B (...,K,N): dA = dC @ B^T, dB = A^T @ dC, each
  // summed over the batch axes along which it was broadcast
  case IR_OP_MATMUL: {
    IrAttr ta = transpose_attr(a->ty.rank), tb = transpose_attr(b->ty.rank);
    IrType a2, d2;
    if (b->ty.rank == 2 && a->ty.rank > 2 && flat_rows(a, &a2) && flat_rows(dy, &d2)) {
      // x (...,M,K) @ W (K,N): dW = x2^T @ dy2 over all P*M rows at once
      // (x2 = x as (P*M, K)), one GEMM instead of P and a sum over them
      IrAttr t2 = transpose_attr(2);
      IrNode *x2 = retype(ad, IR_OP_RESHAPE, a, &a2, loc), *dy2 = retype(ad, IR_OP_RESHAPE, dy, &d2, loc);
      return (!wants(ad, a) ||
              acc_to(ad, a, op2(ad, IR_OP_MATMUL, dy, op1(ad, IR_OP_PERMUTE, b, &tb, NULL, loc), NULL, loc), loc)) &&
             (!wants(ad, b) || acc(ad, b, op2(ad, IR_OP_MATMUL, op1(ad, IR_OP_PERMUTE, x2, &t2, NULL, loc), dy2, NULL, loc)));
    }
    return (!wants(ad, a) ||
            acc_to(ad, a, op2(ad, IR_OP_MATMUL, dy, op1(ad, IR_OP_PERMUTE, b, &tb, NULL, loc), NULL, loc), loc)) &&
           (!wants(ad, b) ||
            acc_to(ad, b, op2(ad, IR_OP_MATMUL, op1(ad, IR_OP_PERMUTE, a, &ta, NULL, loc), dy, NULL, loc), loc));
  }
  // y = sum(x, axes): dx = dy broadcast back over the reduced axes
  // y = mean(x, axes): dx = dy / count broadcast back
  case IR_OP_SUM:
  case IR_OP_MEAN: {
    IrType kt = keepdim_type(a, at.axes);
    IrNode *dyk = retype(ad, IR_OP_RESHAPE, dy, &kt, loc);
    if (n->op == IR_OP_MEAN) dyk = dyk ? mean_scale(ad, a, dyk, at.axes, loc) : NULL;
    return acc(ad, a, retype(ad, IR_OP_EXPAND, dyk, &a->ty, loc));
  }
  // y = max(x, axes) (min likewise): dy to the elements equal to y, split among ties
  case IR_OP_MAX:
  case IR_OP_MIN: {
    IrAttr g = {.axes = at.axes, .keepdim = at.keepdim};
    return acc(ad, a, op3(ad, IR_OP_REDUCE_GRAD, a, n, dy, &g, NULL, loc));
  }
  // y = softmax(x): dx = y (dy - sum(y dy))
  case IR_OP_SOFTMAX: {
    IrAttr g = {.axis = at.axis};
    return acc(ad, a, op2(ad, IR_OP_SOFTMAX_GRAD, n, dy, &g, loc));
  }
  // y = log_softmax(x): dx = dy - exp(y) sum(dy)
  case IR_OP_LOG_SOFTMAX: {
    IrAttr g = {.axis = at.axis};
    return acc(ad, a, op2(ad, IR_OP_LOG_SOFTMAX_GRAD, n, dy, &g, loc));
  }
  // y = xhat w + bias: dx (LAYERNORM_DX), dw = sum dy xhat (LAYERNORM_DW), dbias = sum dy
  case IR_OP_LAYERNORM: {
    IrAttr g = {.eps = at.eps};
    return (!wants(ad, a) || acc(ad, a, op3(ad, IR_OP_LAYERNORM_DX, a, b, dy, &g, NULL, loc))) &&
           (!wants(ad, b) || acc(ad, b, op2(ad, IR_OP_LAYERNORM_DW, a, dy, &g, loc))) &&
           (!wants(ad, s[2]) || acc_to(ad, s[2], dy, loc));
  }
  // y = x s w, s = 1/sqrt(mean(x^2) + eps): dx (RMSNORM_DX), dw = sum dy x s (RMSNORM_DW)
  case IR_OP_RMSNORM: {
    IrAttr g = {.eps = at.eps};
    return (!wants(ad, a) || acc(ad, a, op3(ad, IR_OP_RMSNORM_DX, a, b, dy, &g, NULL, loc))) &&
           (!wants(ad, b) || acc(ad, b, op2(ad, IR_OP_RMSNORM_DW, a, dy, &g, loc)));
  }
  // y = reshape(x): dx = reshape(dy) back
  case IR_OP_RESHAPE:
    return acc(ad, a, retype(ad, IR_OP_RESHAPE, dy, &a->ty, loc));
  // y = permute(x, p) (y axis i is x axis p[i]): dx = permute(dy, p^-1)
  case IR_OP_PERMUTE: {
    IrAttr g = {0};
    for (int i = 0; i < a->ty.rank; i++) g.perm[at.perm[i]] = i;
    return acc(ad, a, op1(ad, IR_OP_PERMUTE, dy, &g, NULL, loc));
  }
  // y = x[start : start+len] along axis: dx = zeros with dy placed at start
  case IR_OP_SLICE: {
    int ax = (int)at.axis;
    if (at.start >= 0 && ir_dim_is_const(a->ty.dim[ax]) && ir_dim_is_const(dy->ty.dim[ax])) {  // placed later
      if (ad->pieces[a->id] && ad->pieces_axis[a->id] != ax && !settle(ad, a)) return false;
      Piece *p = arena_alloc(ad->g->a, sizeof *p);
      if (!p) return diag_error(ad->g->diag, loc, "autodiff: out of memory"), false;
      *p = (Piece){dy, at.start, ad->pieces[a->id]};
      ad->pieces[a->id] = p;
      ad->pieces_axis[a->id] = ax;
      return true;
    }
    IrAttr g = {.axis = at.axis, .start = at.start};
    return acc(ad, a, op1(ad, IR_OP_SLICE_GRAD, dy, &g, &a->ty, loc));
  }
  // y = concat(x0, x1, ...): dx_i = the slice of dy at x_i's offset
  case IR_OP_CONCAT: {
    int64_t off = 0;
    for (int i = 0; i < n->nsrc; i++) {
      IrDim d = s[i]->ty.dim[at.axis];
      if (!ir_dim_is_const(d) && n->nsrc > 1) {
        diag_error(ad->g->diag, loc, "autodiff: concat along an axis of symbolic size has no gradient rule");
        return false;
      }
      IrAttr g = {.axis = at.axis, .start = off};
      if (wants(ad, s[i]) && !acc(ad, s[i], n->nsrc == 1 ? dy : op1(ad, IR_OP_SLICE, dy, &g, &s[i]->ty, loc)))
        return false;
      off += d.n;
    }
    return true;
  }
  // y = expand(x): dx = dy summed over the broadcast axes
  case IR_OP_EXPAND:
    return acc_to(ad, a, dy, loc);
  // y = sum_to(x): dx = dy broadcast back
  case IR_OP_SUM_TO:
    return acc(ad, a, retype(ad, IR_OP_EXPAND, dy, &a->ty, loc));
  // y = table[idx]: dtable = rows of dy scatter-added at idx; none for idx
  case IR_OP_GATHER: {
    IrNode *g[2] = {b, dy};
    return !wants(ad, a) || acc(ad, a, op(ad, IR_OP_GATHER_GRAD, g, 2, NULL, &a->ty, loc));
  }
  // y = attention(q, k, v [, mask]): dq, dk, dv recompute the probabilities; none for the mask
  case IR_OP_ATTENTION: {
    IrNode *g[5] = {s[0], s[1], s[2], dy, n->nsrc > 3 ? s[3] : NULL};
    int ng = n->nsrc + 1;
    static const IrOp dop[3] = {IR_OP_ATTENTION_DQ, IR_OP_ATTENTION_DK, IR_OP_ATTENTION_DV};
    for (int i = 0; i < 3; i++)
      if (wants(ad, s[i]) && !acc(ad, s[i], op(ad, dop[i], g, ng, &at, NULL, loc))) return false;
    return true;
  }
  // y = rope(x): a rotation per pair, so dx = dy rotated back (inverse flipped)
  case IR_OP_ROPE: {
    IrAttr g = at;
    g.inverse = !at.inverse;
    return acc(ad, a, op1(ad, IR_OP_ROPE, dy, &g, NULL, loc));
  }
  // y = mean over kept rows of logsumexp(l) - l[target]:
  // dl = (softmax(l) - onehot(target)) dy / kept, 0 on ignored rows; none for targets
  case IR_OP_XENT: {
    IrAttr g = {.ignore = at.ignore};
    return !wants(ad, a) || acc(ad, a, op3(ad, IR_OP_XENT_GRAD, a, b, dy, &g, NULL, loc));
  }
  default: break;
  }
  diag_error(ad->g->diag, loc, "autodiff: %s has no gradient rule", ir_op_name(n->op));
  return false;
}

// Adds output name = n, flagged as a gradient.
static bool grad_output(IrGraph *g, const IrNode *leaf, IrNode *n) {
  n->flags |= IR_FLAG_GRAD;
  const char *name = arena_printf(g->a, "grad.%s", leaf->name);
  return name && ir_output(g, name, n);
}

bool pass_autodiff(IrGraph *g, IrNode *loss, bool inputs_too) {
  char buf[256];
  if (!loss || loss->ty.rank != 0 || !is_float(loss)) {
    diag_error(g->diag, loss ? loss->loc : (SrcLoc){0}, "autodiff: the loss must be a float scalar, not %s",
               loss ? ir_type_str(&loss->ty, &g->syms, true, buf, sizeof buf) : "nothing");
    return false;
  }
  int nfwd = g->nodes.len;
  // Scratch in the graph's arena (released with the compilation).
  Ad ad = {.g = g, .adj = arena_alloc(g->a, sizeof(IrNode *) * ((size_t)nfwd + 1)),
           .need = arena_alloc(g->a, sizeof(bool) * ((size_t)nfwd + 1)),
           .pieces = arena_alloc(g->a, sizeof(Piece *) * ((size_t)nfwd + 1)),
           .pieces_axis = arena_alloc(g->a, sizeof(int) * ((size_t)nfwd + 1))};
  bool ok = ad.adj && ad.need && ad.pieces && ad.pieces_axis;
  if (!ok) diag_error(g->diag, loss->loc, "autodiff: out of memory");

  // Which nodes depend on a differentiated leaf (forward order)?
  for (int i = 0; ok && i < nfwd; i++) {
    IrNode *n = g->nodes.data[i];
    bool dep = wanted_leaf(n, inputs_too);
    for (int j = 0; j < n->nsrc; j++) dep |= ad.need[n->src[j]->id];
    ad.need[i] = dep && is_float(n);
  }

  // d(loss)/d(loss) = 1, then every node before the loss in reverse order:
  // a node's users all come after it, so its adjoint is complete when reached.
  if (ok && ad.need[loss->id]) ok = (ad.adj[loss->id] = ir_const(g, 1.0, loss->ty.dt, loss->loc)) != NULL;
  for (int i = (int)loss->id; ok && i >= 0; i--) {
    IrNode *n = g->nodes.data[i];
    if (!(ok = settle(&ad, n))) break;
    if (!ad.adj[i] || n->nsrc == 0) continue;
    ok = vjp(&ad, n);
  }

  // Outputs: the loss, then grad.NAME for each parameter (and float input).
  if (ok && !(loss->flags & IR_FLAG_OUTPUT)) ok = ir_output(g, "loss", loss);
  for (int pass = 0; ok && pass < 2; pass++) {
    const IrNode *const *leaves = (const IrNode *const *)(pass ? g->inputs.data : g->params.data);
    int nl = pass ? g->inputs.len : g->params.len;
    for (int i = 0; ok && i < nl; i++) {
      const IrNode *x = leaves[i];
      if ((int)x->id >= nfwd || !wanted_leaf(x, inputs_too)) continue;
      IrNode *d = ad.adj[x->id];
      if (!d) {  // the loss does not depend on x: a zero gradient of x's shape
        d = ir_const(g, 0.0, x->ty.dt, x->loc);
        if (d && x->ty.rank) d = op1(&ad, IR_OP_EXPAND, d, NULL, &x->ty, x->loc);
      }
      ok = d && grad_output(g, x, d);
    }
  }
  return ok;
}
