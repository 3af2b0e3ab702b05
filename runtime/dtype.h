// runtime/dtype.h: the one dtype table, shared by the IR (ir/ir.h: IrDType
// and ir_dtype_info are this enum and these rows) and the runtime
// (safetensors, model files, conversions). Every dtype is a row: its names,
// block shape (block elements in block_bytes bytes; 1 element for the plain
// dtypes), and its conversions to and from f32 and f64. Quantized block
// formats are rows too; they come after RT_DT_PLAIN, which the IR and
// safetensors files do not name (a quantized weight is stored as U8 data and
// F32/F16 scales: docs/quantize.md). Plain C, libc only.
#ifndef HEED_RT_DTYPE_H
#define HEED_RT_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The order is IrDType's (ir/ir.h asserts it).
typedef enum {
  RT_F32, RT_F16, RT_BF16, RT_I32, RT_I64, RT_I8, RT_U8, RT_BOOL,
  RT_Q4_0,  // 32 weights: f16 scale d, 16 bytes of 4-bit q (low nibbles first); w = d * (q - 8)
  RT_Q4_1,  // 32 weights: f16 scale d, f16 min m, 16 bytes of q; w = d * q + m
  RT_DT_COUNT
} RtDType;
#define RT_DT_PLAIN RT_Q4_0  // dtypes below it: one element per block (the IR's and safetensors' dtypes)
enum { RT_QBLOCK = 32 };   // weights per 4-bit block

typedef struct {
  const char *name;     // heed's spelling, as .heed files write it ("f32", "q4_0")
  const char *st_name;  // safetensors' spelling ("F32"); NULL for block formats
  size_t size;          // bytes per element; 0 for block formats (see block, block_bytes)
  uint32_t block, block_bytes;  // elements per block, bytes per block
  bool is_float, is_int, is_quant;
  // n elements (a multiple of block) from src (any alignment) to dst.
  void (*to_f32)(const void *src, float *dst, int64_t n);
  // n elements (a multiple of block) of src into dst; round to nearest even
  // (floats), truncate toward zero and wrap (integers), block formats:
  // rt_quant.c's rounding rule.
  void (*from_f32)(const float *src, void *dst, int64_t n);
  // element i as a double (exact for every plain dtype) and back (plain
  // dtypes only: NULL for block formats).
  double (*get)(const void *p, int64_t i);
  void (*set)(void *p, int64_t i, double v);
} RtDTypeInfo;
extern const RtDTypeInfo rt_dtype_info[RT_DT_COUNT];

const char *rt_dtype_name(RtDType dt);  // safetensors spelling ("F32"), heed's for block formats; "?" if out of range
size_t rt_dtype_size(RtDType dt);       // bytes per element; 0 for block formats or out of range
// Bytes for n elements (n a multiple of the block); -1 if it is not or on overflow.
int64_t rt_dtype_bytes(RtDType dt, int64_t n);

// Round to nearest, ties to even; infinities, NaNs (kept NaN, made quiet),
// signed zeros and subnormals are converted exactly as IEEE 754 says.
float rt_f16_to_f32(uint16_t h);
uint16_t rt_f32_to_f16(float f);
float rt_bf16_to_f32(uint16_t h);
uint16_t rt_f32_to_bf16(float f);

#endif
