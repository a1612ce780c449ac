/* libFuzzer target for the safetensors reader: the input is a whole file,
 * read by ag__load_mem (ag_load's code past open and fstat) asking for no
 * tensor, for "a", and for "a", "b" and "weight". Whatever the bytes, the
 * reader must not crash, leak or trip a sanitizer, must allocate nothing
 * bigger than the input, must fail as a whole (every output NULL) and must
 * only accept tensors whose data fit in the input. Seeds: corpus_safetensors/;
 * dictionary: corpus_safetensors.dict. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "agrad.h"
#include "core/safetensors.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            abort();                                                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ag_ctx *ctx;
    if (!ctx)
        ctx = ag_ctx_new();
    static const char *const names[] = {"a", "b", "weight"};
    static const int counts[] = {0, 1, 3};
    for (int c = 0; c < 3; c++) {
        int n = counts[c];
        ag_tensor *out[3] = {(ag_tensor *)&out, (ag_tensor *)&out, (ag_tensor *)&out};
        ag__safetensors_peak_alloc();
        int rc = ag__load_mem(ctx, data, size, "fuzz", names, out, n);
        CHECK(ag__safetensors_peak_alloc() <= size);
        if (rc) {
            CHECK(rc < 0 && ag_last_status() == rc && ag_last_error()[0] != '\0');
            for (int i = 0; i < n; i++)
                CHECK(out[i] == NULL);
            continue;
        }
        int64_t bytes = 0;
        for (int i = 0; i < n; i++) {
            CHECK(out[i] != NULL && !ag_requires_grad(out[i]));
            bytes += ag_numel(out[i]) * (ag_tensor_dtype(out[i]) == AG_FLOAT64 ? 8 : 4);
            /* Touch every element so ASan sees any read past the data. */
            volatile double sink = 0;
            for (int64_t k = 0; k < ag_numel(out[i]); k++)
                sink += ag_get(out[i], k);
            (void)sink;
        }
        CHECK(bytes <= (int64_t)size);
    }
    ag_ctx_reset(ctx);
    return 0;
}
