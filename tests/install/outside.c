/* A program outside the source tree, built against the installed agrad. */
#define _GNU_SOURCE
#include <agrad.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    ag_ctx *ctx = ag_ctx_new();
    ag_tensor *x = ag_ones(ctx, AG_FLOAT32, 2, (int64_t[]){2, 2});
    if (!x || ag_requires_grad_(x, true))
        return 1;
    ag_tensor *out = ag_sum(ctx, ag_mul_scalar(ctx, ag_add_scalar(ctx, x, 2), 3));
    if (!out || ag_backward(out, NULL, NULL)) {
        fprintf(stderr, "outside: %s\n", ag_last_error());
        return 1;
    }
    ag_print(ag_grad(x));
    if (ag_get(ag_grad(x), 3) != 3.0)
        return 1;
    /* The library's allocator must not have replaced the application's malloc. */
    Dl_info info;
    if (!dladdr(dlsym(RTLD_DEFAULT, "malloc"), &info) || strstr(info.dli_fname, "jemalloc")) {
        fprintf(stderr, "outside: malloc resolves to %s\n", info.dli_fname ? info.dli_fname : "?");
        return 1;
    }
    ag_ctx_free(ctx);
    return 0;
}
