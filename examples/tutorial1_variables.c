/* Lec 02, Variable and Autograd, in C: sum/max/data, grad_fn of
 * z = 2*y + 1, a hook that captures z's gradient, out.backward().
 * Prints what the notebook prints under PyTorch 1.13. */
#include "common.h"

/* Where the hook keeps what it captures: the context the copy goes to and
 * the copy (zGrad in the notebook). */
struct capture {
    ag_ctx *ctx;
    ag_tensor *grad;
};

/* def extract(z): global zGrad; zGrad = z
 * The grad a hook is given lives only until the backward ends, so keep a
 * copy in a context of ours. */
static ag_tensor *extract(ag_tensor *grad, void *user_data) {
    struct capture *cap = user_data;
    cap->grad = T(ag_clone(cap->ctx, grad));
    return NULL;
}

static void state(ag_tensor *y, ag_tensor *z, ag_tensor *out) {
    printf("y.requires_grad : %s\n", py_bool(ag_requires_grad(y)));
    printf("z.requires_grad : %s\n", py_bool(ag_requires_grad(z)));
    if (out)
        printf("out.requires_grad : %s\n", py_bool(ag_requires_grad(out)));
    printf("\n");
    show("y.grad :", ag_grad(y));
    show("z.grad :", ag_grad(z));
    if (out)
        show("out.grad :", ag_grad(out));
    printf("\n");
    show_node("y.grad_fn :", ag_grad_fn(y));
    show_node("z.grad_fn :", ag_grad_fn(z));
    if (out)
        show_node("out.grad_fn :", ag_grad_fn(out));
}

int main(void) {
    ag_ctx *ctx = must(ag_ctx_new());
    const int64_t shape[] = {2, 2};
    ag_tensor *x = T(ag_tensor_from(ctx, AG_FLOAT32, 2, shape, (float[]){1, 2, 3, 4}));
    show(NULL, x);
    show(NULL, T(ag_sum(ctx, x)));

    ag_tensor *y = T(ag_detach(x)); /* Variable(x, requires_grad=True) shares x's data */
    ok(ag_requires_grad_(y, true));
    show(NULL, y);
    show(NULL, T(ag_sum(ctx, y)));
    show(NULL, T(ag_max(ctx, y)));
    show(NULL, T(ag_detach(y))); /* y.data */

    ag_tensor *z = T(ag_add_scalar(ctx, ag_mul_scalar(ctx, y, 2), 1));
    show(NULL, z);

    show("z :", z);
    state(y, z, NULL);

    ag_tensor *out = T(ag_sum(ctx, z));
    show(NULL, out);
    state(y, z, out);

    struct capture zGrad = {ctx, T(ag_zeros(ctx, AG_FLOAT32, 2, shape))};
    /* The notebook shows the handle's repr (<RemovableHandle at 0x...>),
     * which has no C counterpart: left out here and in the PyTorch script. */
    ok(ag_register_hook(z, extract, &zGrad));
    ok(ag_backward(out, NULL, NULL));

    state(y, z, out);
    printf("\n");
    show(NULL, zGrad.grad);
    show(NULL, T(ag_detach(out)));
    ag_ctx_free(ctx);
    return 0;
}
