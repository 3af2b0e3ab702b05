// tests/fuzz/fuzz_safetensors.c: libFuzzer target for the runtime's way in:
// arbitrary bytes -> rt_st_parse -> every tensor found by name and read as
// f32. Any crash, leak, sanitizer report or slow input is a bug
// (scripts/fuzz.sh, `make fuzz`; seeds in tests/fuzz/corpus-safetensors/).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  RtSafetensors st;
  char err[256];
  if (rt_st_parse(data, size, "fuzz.safetensors", &st, err, sizeof err) != 0) {
    if (st.n != 0 || st.t || st.nmeta != 0 || !memchr(err, 0, sizeof err) || err[0] == 0) abort();
    rt_st_close(&st);  // harmless on a failed parse
    return 0;
  }
  for (int i = 0; i < st.n; i++) {
    const RtStTensor *t = &st.t[i];
    if (rt_st_find(&st, t->name) != t) abort();  // names are unique
    if (t->off + t->nbytes > st.data_len) abort();
    uint64_t n = rt_st_numel(t);  // nbytes <= size: the buffer stays small
    float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    if (out && rt_st_read_f32(&st, t, out, err, sizeof err) != 0) abort();
    free(out);
  }
  rt_st_close(&st);
  return 0;
}
