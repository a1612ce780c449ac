/* The autograd tutorial in C: out = mean(3 (x + 2)^2) and d(out)/dx, then
 * retain_graph so that y's backward can run twice. Prints what the
 * tutorial prints under PyTorch 1.13. */
#include "common.h"

int main(void) {
    ag_ctx *ctx = must(ag_ctx_new());
    const int64_t s22[] = {2, 2};
    ag_tensor *x = T(ag_ones(ctx, AG_FLOAT32, 2, s22));
    ok(ag_requires_grad_(x, true));
    show(NULL, x);
    show(NULL, T(ag_detach(x)));
    show(NULL, ag_grad(x));
    show_node(NULL, ag_grad_fn(x));

    ag_tensor *y = T(ag_add_scalar(ctx, x, 2));
    show(NULL, y);
    show_node(NULL, ag_grad_fn(y));

    ag_tensor *z = T(ag_mul_scalar(ctx, ag_mul(ctx, y, y), 3));
    ag_tensor *out = T(ag_mean(ctx, z));
    char *zs = repr(z), *os = repr(out);
    printf("%s %s\n", zs, os);
    free(zs);
    free(os);

    ok(ag_backward(out, NULL, NULL));
    show(NULL, ag_grad(x));

    x = T(ag_ones(ctx, AG_FLOAT32, 2, s22));
    ok(ag_requires_grad_(x, true));
    y = T(ag_add_scalar(ctx, x, 2));
    ok(ag_backward(y, T(ag_ones(ctx, AG_FLOAT32, 2, s22)), &(ag_backward_opts){.retain_graph = true}));
    show(NULL, ag_grad(x));

    z = T(ag_mul(ctx, y, y));
    show(NULL, z);

    ag_tensor *gradient = T(ag_tensor_from(ctx, AG_FLOAT32, 2, s22, (float[]){-0.8349f, -0.0071f, -1.6825f, 1.6321f}));
    ok(ag_backward(y, gradient, NULL));
    show(NULL, ag_grad(x));
    ag_ctx_free(ctx);
    return 0;
}
