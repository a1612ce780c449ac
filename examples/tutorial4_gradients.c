/* Gradient calculation in C (scalar and vector-Jacobian), three ways to
 * stop tracking, and gradients that accumulate across backward calls until
 * zeroed. Prints what the notebook prints under PyTorch 1.13. */
#include "common.h"

static ag_tensor *leaf3(ag_ctx *ctx, float a, float b, float c) {
    ag_tensor *t = T(ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){3}, (float[]){a, b, c}));
    ok(ag_requires_grad_(t, true));
    return t;
}

int main(void) {
    ag_ctx *ctx = must(ag_ctx_new());
    ag_tensor *x = leaf3(ctx, -1.5981f, -0.8342f, 1.3817f);
    show(NULL, x);
    ag_tensor *y = T(ag_add_scalar(ctx, x, 2));
    show(NULL, y);
    ag_tensor *z = T(ag_mul_scalar(ctx, ag_mul(ctx, y, y), 2));
    show(NULL, z);
    z = T(ag_mean(ctx, z));
    show(NULL, z);
    ok(ag_backward(z, NULL, NULL));
    show(NULL, ag_grad(x));

    x = leaf3(ctx, -0.1240f, -0.8386f, 0.2818f);
    show(NULL, x);
    y = T(ag_add_scalar(ctx, x, 2));
    show(NULL, y);
    z = T(ag_mul_scalar(ctx, ag_mul(ctx, y, y), 2));
    show(NULL, z);
    ag_tensor *v = T(ag_tensor_from(ctx, AG_FLOAT32, 1, (int64_t[]){3}, (float[]){0.1f, 1.0f, 0.001f}));
    ok(ag_backward(z, v, NULL));
    show(NULL, ag_grad(x));

    /* 1. x.requires_grad_(False) */
    x = leaf3(ctx, -1.3992f, -0.5867f, 0.0301f);
    show(NULL, x);
    ok(ag_requires_grad_(x, false));
    show(NULL, x);

    /* 2. x.detach() returns a new tensor; x itself is unchanged */
    x = leaf3(ctx, 0.6700f, -1.7655f, 0.6098f);
    show(NULL, x);
    must(ag_detach(x));
    show(NULL, x);
    y = T(ag_detach(x));
    show(NULL, y);

    /* 3. with torch.no_grad(): */
    x = leaf3(ctx, -0.4035f, 0.4721f, 1.4661f);
    show(NULL, x);
    y = T(ag_add_scalar(ctx, x, 2));
    show(NULL, y);
    bool prev = ag_set_grad_enabled(false);
    y = T(ag_add_scalar(ctx, x, 2));
    show(NULL, y);
    ag_set_grad_enabled(prev);

    /* .backward() accumulates into .grad ... */
    ag_tensor *weights = T(ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4}));
    ok(ag_requires_grad_(weights, true));
    for (int epoch = 0; epoch < 3; epoch++) {
        ag_tensor *model_output = T(ag_sum(ctx, ag_mul_scalar(ctx, weights, 3)));
        ok(ag_backward(model_output, NULL, NULL));
        show(NULL, ag_grad(weights));
    }
    /* ... until it is zeroed */
    weights = T(ag_ones(ctx, AG_FLOAT32, 1, (int64_t[]){4}));
    ok(ag_requires_grad_(weights, true));
    for (int epoch = 0; epoch < 3; epoch++) {
        ag_tensor *model_output = T(ag_sum(ctx, ag_mul_scalar(ctx, weights, 3)));
        ok(ag_backward(model_output, NULL, NULL));
        show(NULL, ag_grad(weights));
        ok(ag_zero_grad(weights));
    }
    ag_ctx_free(ctx);
    return 0;
}
