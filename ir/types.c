// ir/types.c: dtypes and shapes. A dimension is a monomial n * S1 * S2 ...
// over symbolic sizes (B, T), so reshape(x, [B * T, C]) and its inverse are
// checked exactly at compile time. The frontend infers these types; the IR
// carries them on every node.
#include <string.h>

#include "ir/ir.h"

_Static_assert(IR_F32 == (int)RT_F32 && IR_F16 == (int)RT_F16 && IR_BF16 == (int)RT_BF16 && IR_I32 == (int)RT_I32 &&
                   IR_I64 == (int)RT_I64 && IR_I8 == (int)RT_I8 && IR_U8 == (int)RT_U8 && IR_BOOL == (int)RT_BOOL &&
                   IR_DT_COUNT == (int)RT_DT_PLAIN,
               "IrDType is the plain part of RtDType");

int ir_dtype_from_name(const char *s) {
  for (int i = 0; i < IR_DT_COUNT; i++)
    if (strcmp(ir_dtype_info[i].name, s) == 0) return i;
  return -1;
}

IrDim ir_dim_const(int64_t n) { return (IrDim){.n = n}; }

IrDim ir_dim_sym(int sym) {
  IrDim d = {.n = 1, .nsym = 1};
  d.sym[0] = (uint16_t)sym;
  return d;
}

bool ir_dim_is_const(IrDim d) { return d.nsym == 0; }

bool ir_dim_eq(IrDim a, IrDim b) {
  if (a.n != b.n || a.nsym != b.nsym) return false;
  for (int i = 0; i < a.nsym; i++)
    if (a.sym[i] != b.sym[i]) return false;
  return true;
}

bool ir_dim_mul(IrDim a, IrDim b, IrDim *out) {
  IrDim r = {0};
  if (__builtin_mul_overflow(a.n, b.n, &r.n)) return false;
  if (r.n == 0) {
    *out = ir_dim_const(0);
    return true;
  }
  if (a.nsym + b.nsym > IR_MAX_DIMSYM) return false;
  int i = 0, j = 0;
  while (i < a.nsym || j < b.nsym) {  // merge two sorted lists
    if (j >= b.nsym || (i < a.nsym && a.sym[i] <= b.sym[j]))
      r.sym[r.nsym++] = a.sym[i++];
    else
      r.sym[r.nsym++] = b.sym[j++];
  }
  *out = r;
  return true;
}

bool ir_dim_div(IrDim a, IrDim b, IrDim *out) {
  if (b.n == 0 || a.n % b.n != 0) return false;
  IrDim r = {.n = a.n / b.n};
  int j = 0;
  for (int i = 0; i < a.nsym; i++) {  // remove b's symbols from a's
    if (j < b.nsym && a.sym[i] == b.sym[j])
      j++;
    else
      r.sym[r.nsym++] = a.sym[i];
  }
  if (j != b.nsym) return false;
  if (r.n == 0) r.nsym = 0;
  *out = r;
  return true;
}

bool ir_dim_add(IrDim a, IrDim b, IrDim *out) {
  if (a.nsym != b.nsym) return false;
  for (int i = 0; i < a.nsym; i++)
    if (a.sym[i] != b.sym[i]) return false;
  IrDim r = a;
  if (__builtin_add_overflow(a.n, b.n, &r.n)) return false;
  *out = r;
  return true;
}

bool ir_type_eq(const IrType *a, const IrType *b) {
  if (a->dt != b->dt || a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

const char *ir_dim_str(IrDim d, const IrSymTab *st, char *buf, size_t n) {
  size_t k = 0;
  if (d.nsym == 0 || d.n != 1) k += (size_t)snprintf(buf, n, "%lld", (long long)d.n);
  for (int i = 0; i < d.nsym && k < n; i++) {
    const char *name = st && d.sym[i] < st->len ? st->data[d.sym[i]] : "?";
    k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? "*" : "", name);
  }
  return buf;
}

const char *ir_type_str(const IrType *t, const IrSymTab *st, bool dtype, char *buf, size_t n) {
  size_t k = 0;
  if (n == 0) return buf;
  buf[0] = 0;
  if (dtype) k += (size_t)snprintf(buf, n, "%s", ir_dtype_info[t->dt].name);
  if (k < n) k += (size_t)snprintf(buf + k, n - k, "[");
  for (int i = 0; i < t->rank && k < n; i++) {
    char d[96];
    k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", ir_dim_str(t->dim[i], st, d, sizeof d));
  }
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

int ir_symtab_intern(IrSymTab *st, Arena *a, const char *name) {
  for (int i = 0; i < st->len; i++)
    if (strcmp(st->data[i], name) == 0) return i;
  if (st->len >= 4096) return -1;
  char *copy = arena_strdup(a, name);
  if (!copy || !vec_push(a, st, copy)) return -1;
  return st->len - 1;
}
