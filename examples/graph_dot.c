/* Writes the backward graph of a small MLP loss as Graphviz DOT and, when
 * Graphviz is installed, renders it to PNG:
 *     graph_dot [OUT.dot]      (default mlp_graph.dot; the PNG beside it) */
#include <agrad.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "mlp_graph.dot";
    ag_ctx *ctx = ag_ctx_new();
    ag_manual_seed(1);
    ag_tensor *w1 = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){8, 4}), *b1 = ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){8});
    ag_tensor *w2 = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){3, 8}), *b2 = ag_zeros(ctx, AG_FLOAT32, 1, (int64_t[]){3});
    ag_tensor *params[] = {w1, b1, w2, b2};
    for (int i = 0; i < 4; i++)
        if (!params[i] || ag_requires_grad_(params[i], true))
            goto fail;
    ag_tensor *x = ag_randn(ctx, AG_FLOAT32, 2, (int64_t[]){5, 4});
    ag_tensor *logits = ag_linear(ctx, ag_tanh(ctx, ag_linear(ctx, x, w1, b1)), w2, b2);
    ag_tensor *loss = ag_cross_entropy(ctx, logits, (const int64_t[]){0, 2, 1, 1, 0});
    if (!loss)
        goto fail;
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    int rc = ag_graph_dot(loss, f);
    fclose(f);
    if (rc)
        goto fail;
    printf("wrote %s\n", path);
    char png[4096], cmd[8300];
    snprintf(png, sizeof png, "%.*s.png",
             (int)(strlen(path) > 4 && !strcmp(path + strlen(path) - 4, ".dot") ? strlen(path) - 4 : strlen(path)),
             path);
    snprintf(cmd, sizeof cmd, "command -v dot >/dev/null 2>&1 && dot -Tpng '%s' -o '%s'", path, png);
    if (system(cmd) == 0)
        printf("wrote %s\n", png);
    else
        printf("Graphviz's dot not found: apt-get install graphviz, then dot -Tpng %s -o %s\n", path, png);
    ag_ctx_free(ctx);
    return 0;
fail:
    fprintf(stderr, "graph_dot: %s\n", ag_last_error());
    return 1;
}
