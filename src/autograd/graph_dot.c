/* Graphviz export of a backward graph, for looking at what an op chain
 * recorded: `dot -Tpng graph.dot -o graph.png`. */
#include "core/internal.h"

#include <inttypes.h>
#include <stdlib.h>

typedef struct {
    const ag_node **v;
    size_t n, cap;
} ag__node_set;

/* Index of node in the set, adding it when absent (linear: graphs written
 * to DOT are small enough to look at). *added tells; -1 on ENOMEM. */
static long ag__set_index(ag__node_set *s, const ag_node *node, bool *added) {
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == node) {
            *added = false;
            return (long)i;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        const ag_node **v = ag__realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = node;
    *added = true;
    return (long)s->n++;
}

static void ag__dot_label(FILE *out, long id, const ag_node *node, bool is_root) {
    char shape[160];
    const ag_tensor *t = node->out;
    ag__shape_str(shape, sizeof shape, t->ndim, t->shape);
    if (node->kind == &ag__accumulate_grad_kind)
        fprintf(out,
                "  n%ld [label=\"AccumulateGrad\\nleaf %s %s\", shape=box, style=filled, fillcolor=\"#cde6ff\"];\n", id,
                ag__dtype_scalar_name(t->dtype), shape);
    else
        fprintf(out, "  n%ld [label=\"%s\\n%s\"%s];\n", id, node->kind->name, shape,
                is_root ? ", style=filled, fillcolor=\"#ffe0b0\"" : "");
}

int ag_graph_dot(const ag_tensor *root, FILE *out) {
    if (!root)
        return ag__null_code("ag_graph_dot");
    if (!out)
        return ag__error(AG_EINVAL, "ag_graph_dot: FILE is NULL");
    const ag_node *start = root->grad_fn ? root->grad_fn : root->grad_accumulator;
    fprintf(out, "digraph agrad {\n  rankdir=BT;\n  node [shape=ellipse, fontname=\"Helvetica\"];\n");
    if (!start) {
        fprintf(out, "}\n");
        return 0;
    }
    ag__node_set set = {0};
    bool added;
    int rc = 0;
    if (ag__set_index(&set, start, &added) < 0) {
        rc = ag__error(AG_ENOMEM, "out of memory writing DOT");
        goto done;
    }
    ag__dot_label(out, 0, start, true);
    /* set.v doubles as the work list: nodes are labelled when first seen
     * and expanded in order. */
    for (size_t i = 0; i < set.n; i++) {
        const ag_node *node = set.v[i];
        for (int k = 0; k < node->num_next; k++) {
            const ag_node *next = node->next[k];
            if (!next)
                continue;
            long j = ag__set_index(&set, next, &added);
            if (j < 0) {
                rc = ag__error(AG_ENOMEM, "out of memory writing DOT");
                goto done;
            }
            if (added)
                ag__dot_label(out, j, next, false);
            fprintf(out, "  n%zu -> n%ld;\n", i, j);
        }
    }
done:
    fprintf(out, "}\n");
    free(set.v);
    return rc;
}
