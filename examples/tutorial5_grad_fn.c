/* Tensor and Variable, ops on a leaf, grad_fn.next_functions, zeroing .grad,
 * the error of a second backward through freed buffers, and a gradient that
 * flows to one input only, in C. Prints what the notebook prints under
 * PyTorch 1.13. x.volatile (gone from PyTorch; always False) and
 * x1.grad.data.numpy() have no C counterpart and are left out here and in
 * the PyTorch script. */
#include "common.h"

#include <stdlib.h>

int main(void) {
    ag_ctx *ctx = must(ag_ctx_new());
    const int64_t s22[] = {2, 2}, s1[] = {1}, s2[] = {2};
    ag_tensor *tensor = T(ag_tensor_from(ctx, AG_FLOAT32, 2, s22, (float[]){1, 2, 3, 4}));
    ag_tensor *x = T(ag_detach(tensor)); /* Variable(tensor, requires_grad=True) */
    ok(ag_requires_grad_(x, true));
    show(NULL, tensor);
    show(NULL, x);

    char *a = repr(T(ag_sum(ctx, x))), *b = repr(T(ag_sqrt(ctx, x))), *c = repr(T(ag_pow_scalar(ctx, x, 2)));
    printf("(%s, %s, %s)\n", a, b, c);
    free(a);
    free(b);
    free(c);
    show(NULL, T(ag_detach(x)));
    char node[128];
    node_repr(node, sizeof node, ag_grad_fn(x));
    char *g = repr(ag_grad(x));
    printf("(%s, %s, %s)\n", py_bool(ag_requires_grad(x)), g, node);
    free(g);

    x = T(ag_tensor_from(ctx, AG_FLOAT32, 1, s1, (float[]){3}));
    ok(ag_requires_grad_(x, true));
    ag_tensor *y = T(ag_add_scalar(ctx, ag_mul_scalar(ctx, x, 2), 3));
    printf("(%s, %s)\n", py_bool(ag_requires_grad(x)), py_bool(ag_requires_grad(y)));
    show_node(NULL, ag_node_next(ag_grad_fn(y), 0)); /* y.grad_fn.next_functions[0][0] */

    ok(ag_backward(y, NULL, NULL));
    show(NULL, ag_grad(x));
    ok(ag_zero_grad(x)); /* x.grad.data.zero_() */
    show(NULL, ag_grad(x));
    /* y.backward(torch.Tensor([3.0])) again: the MulBackward0 of 2*x saved
     * the factor 2, which the first backward freed, so PyTorch raises. */
    int rc = ag_backward(y, T(ag_tensor_from(ctx, AG_FLOAT32, 1, s1, (float[]){3})), NULL);
    if (rc == AG_ESTATE)
        printf("RuntimeError: %s\n", ag_last_error());
    else
        ok(rc); /* any other error is unexpected; success shows in the output */
    show(NULL, ag_grad(x));

    ag_tensor *x1 = T(ag_ones(ctx, AG_FLOAT32, 1, s2));
    ok(ag_requires_grad_(x1, true));
    ag_tensor *x2 = T(ag_ones(ctx, AG_FLOAT32, 1, s2));
    y = T(ag_add(ctx, ag_mul_scalar(ctx, x1, 2), x2));
    show(NULL, y);
    ok(ag_backward(y, T(ag_ones(ctx, AG_FLOAT32, 1, s2)), NULL));
    char *g1 = repr(ag_grad(x1)), *g2 = repr(ag_grad(x2));
    printf("(%s, %s)\n", g1, g2);
    free(g1);
    free(g2);
    ag_ctx_free(ctx);
    return 0;
}
