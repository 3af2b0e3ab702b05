// ir/kernels.c: forward reference kernels (to be written).
#include "ir/ir.h"
bool ir_kernel_forward(IrKernelArgs *k) { diag_error(k->d, k->n->loc, "%s: no reference kernel yet", ir_op_name(k->n->op)); return false; }
