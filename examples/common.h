/* Small helpers the tutorial programs share: print like Python's print()
 * (None for a missing tensor or node, a node as <Name object at 0x...>),
 * and stop with agrad's message when a call fails unexpectedly. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <agrad.h>
#include <stdio.h>
#include <stdlib.h>

static inline void *must(void *p) {
    if (!p) {
        fprintf(stderr, "agrad: %s\n", ag_last_error());
        exit(1);
    }
    return p;
}

static inline void ok(int rc) {
    if (rc < 0) {
        fprintf(stderr, "agrad: %s\n", ag_last_error());
        exit(1);
    }
}

#define T(expr) ((ag_tensor *)must(expr))

/* The repr Python prints for a tensor or None; caller frees. */
static inline char *repr(const ag_tensor *t) {
    if (!t) {
        char *s = malloc(5);
        snprintf(s, 5, "None");
        return s;
    }
    return must(ag_to_string(t));
}

static inline void show(const char *label, const ag_tensor *t) {
    char *s = repr(t);
    if (label)
        printf("%s %s\n", label, s);
    else
        printf("%s\n", s);
    free(s);
}

static inline const char *py_bool(bool b) { return b ? "True" : "False"; }

static inline void node_repr(char *buf, size_t n, const ag_node *node) {
    if (node)
        snprintf(buf, n, "<%s object at %p>", ag_node_name(node), (const void *)node);
    else
        snprintf(buf, n, "None");
}

static inline void show_node(const char *label, const ag_node *node) {
    char buf[128];
    node_repr(buf, sizeof buf, node);
    if (label)
        printf("%s %s\n", label, buf);
    else
        printf("%s\n", buf);
}

#endif
