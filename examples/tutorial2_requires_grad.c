/* requires_grad, grad_fn, mean, requires_grad_(), backward with a gradient
 * and no_grad, in C. Random draws of the notebook are fixed to the values
 * it shows; prints what the notebook prints under PyTorch 1.13. The numpy
 * cell on dot products and print(out.size) (the repr of a Python bound
 * method) have no C counterpart and are left out here and in the PyTorch
 * script. */
#include "common.h"

#include <string.h>

int main(void) {
    ag_ctx *ctx = must(ag_ctx_new());
    const int64_t s22[] = {2, 2}, s3[] = {3};
    ag_tensor *x = T(ag_ones(ctx, AG_FLOAT32, 2, s22));
    ok(ag_requires_grad_(x, true));
    show(NULL, x);
    show(NULL, ag_grad(x));
    show_node(NULL, ag_grad_fn(x));

    ag_tensor *y = T(ag_add_scalar(ctx, x, 2));
    show(NULL, y);
    show_node(NULL, ag_grad_fn(y));

    char *ys = repr(y);
    printf("%s torch.Size([%lld, %lld])\n", ys, (long long)ag_size(y, 0), (long long)ag_size(y, 1));
    free(ys);
    ag_tensor *z = T(ag_mul_scalar(ctx, ag_mul(ctx, y, y), 3));
    show(NULL, z);
    ag_tensor *out = T(ag_mean(ctx, z));
    show(NULL, out);
    show_node(NULL, ag_grad_fn(out));

    ag_tensor *a = T(ag_tensor_from(ctx, AG_FLOAT32, 2, s22, (float[]){0.4449f, 0.9204f, 0.4554f, 0.1537f}));
    show(NULL, a);
    a = T(ag_div(ctx, ag_mul_scalar(ctx, a, 3), ag_add_scalar(ctx, a, -1)));
    show(NULL, a);
    printf("%s\n", py_bool(ag_requires_grad(a)));
    ok(ag_requires_grad_(a, true));
    printf("%s\n", py_bool(ag_requires_grad(a)));

    ag_tensor *b = T(ag_sum(ctx, ag_mul(ctx, a, a)));
    printf("%s\n", py_bool(ag_requires_grad(b)));
    show_node(NULL, ag_grad_fn(b));

    show(NULL, out);
    x = T(ag_tensor_from(ctx, AG_FLOAT32, 1, s3, (float[]){0.7171f, -0.4471f, -0.6513f}));
    ok(ag_requires_grad_(x, true));
    show(NULL, ag_grad(x));
    y = T(ag_mul_scalar(ctx, x, 2));
    char node[128], *s = repr(y), *g = repr(ag_grad(y));
    node_repr(node, sizeof node, ag_grad_fn(y));
    printf("%s %s %s\n", s, g, node);
    free(s);
    free(g);

    /* y.data.norm() */
    ag_tensor *yd = T(ag_detach(y));
    ag_tensor *norm = T(ag_sqrt(ctx, ag_sum(ctx, ag_mul(ctx, yd, yd))));
    show(NULL, norm);

    int i = 0;
    for (;;) {
        yd = T(ag_detach(y));
        if (ag_item(T(ag_sqrt(ctx, ag_sum(ctx, ag_mul(ctx, yd, yd))))) >= 1000)
            break;
        i++;
        y = T(ag_mul_scalar(ctx, y, 2));
    }
    s = repr(y);
    printf("%s %d\n", s, i);
    free(s);

    ag_tensor *grads = T(ag_tensor_from(ctx, AG_FLOAT32, 1, s3, (float[]){0.01f, 1.0f, 0.0001f}));
    ok(ag_backward(y, grads, NULL));
    show(NULL, x);
    show(NULL, y);
    show(NULL, ag_grad(x));

    printf("%s\n", py_bool(ag_requires_grad(x)));
    printf("%s\n", py_bool(ag_requires_grad(T(ag_pow_scalar(ctx, x, 2)))));
    bool prev = ag_set_grad_enabled(false); /* with torch.no_grad(): */
    printf("%s\n", py_bool(ag_requires_grad(T(ag_pow_scalar(ctx, x, 2)))));
    ag_set_grad_enabled(prev);
    ag_ctx_free(ctx);
    return 0;
}
