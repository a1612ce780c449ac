/* Printing as PyTorch 1.13's print(t) does, character for character: a port
 * of torch/_tensor_str.py (the _Formatter's int/fixed/scientific modes at
 * precision 4, column widths, 80-column line wrapping, summarisation of
 * tensors over 1000 elements, and the dtype / grad_fn / requires_grad
 * suffixes). */
#include "core/internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define AG__PRECISION 4
#define AG__THRESHOLD 1000
#define AG__EDGEITEMS 3
#define AG__LINEWIDTH 80

/* ---- A growable string -------------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} ag__buf;

static void ag__buf_put(ag__buf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = ag__realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void ag__buf_str(ag__buf *b, const char *s) { ag__buf_put(b, s, strlen(s)); }

static void ag__buf_spaces(ag__buf *b, int n) {
    static const char spaces[] = "                                ";
    for (; n > 0; n -= (int)sizeof spaces - 1)
        ag__buf_put(b, spaces, n < (int)sizeof spaces - 1 ? (size_t)n : sizeof spaces - 1);
}

/* ---- The formatter (torch._tensor_str._Formatter) ----------------------------- */

typedef struct {
    bool int_mode, sci_mode;
    int max_width;
} ag__fmt;

/* Python's float formatting: nan and inf have no sign of nan and no '.' */
static int ag__pyfmt(char *out, size_t n, const char *spec, double v) {
    if (isnan(v))
        return snprintf(out, n, "nan");
    if (isinf(v))
        return snprintf(out, n, v > 0 ? "inf" : "-inf");
    return snprintf(out, n, spec, AG__PRECISION, v);
}

/* Visits the elements that a summarised print shows (all of them when not
 * summarising), in order. */
typedef void (*ag__visit_fn)(void *ud, double v);

static void ag__visit(const ag_tensor *t, int dim, int64_t off, bool summarize, ag__visit_fn fn, void *ud) {
    if (t->ndim == 0) {
        fn(ud, ag__load(t, 0));
        return;
    }
    int64_t size = t->shape[dim], stride = 1;
    for (int d = dim + 1; d < t->ndim; d++)
        stride *= t->shape[d];
    for (int64_t i = 0; i < size; i++) {
        if (summarize && size > 2 * AG__EDGEITEMS && i == AG__EDGEITEMS)
            i = size - AG__EDGEITEMS;
        if (dim == t->ndim - 1)
            fn(ud, ag__load(t, off + i));
        else
            ag__visit(t, dim + 1, off + i * stride, summarize, fn, ud);
    }
}

typedef struct {
    bool any;
    bool int_mode;
    double min_abs, max_abs;
} ag__stats;

static void ag__stats_visit(void *ud, double v) {
    ag__stats *s = ud;
    if (!isfinite(v) || v == 0)
        return;
    double a = fabs(v);
    if (!s->any) {
        s->any = true;
        s->min_abs = s->max_abs = a;
    } else {
        s->min_abs = a < s->min_abs ? a : s->min_abs;
        s->max_abs = a > s->max_abs ? a : s->max_abs;
    }
    if (v != ceil(v))
        s->int_mode = false;
}

typedef struct {
    ag__fmt *f;
    const char *spec; /* "%.*e" or "%.*f" */
    int precision;
    int extra; /* int mode counts the '.' it appends */
} ag__width_ctx;

static void ag__width_visit(void *ud, double v) {
    ag__width_ctx *w = ud;
    if (!isfinite(v) || v == 0)
        return;
    char s[400];
    int n = snprintf(s, sizeof s, w->spec, w->precision, v) + w->extra;
    if (n > w->f->max_width)
        w->f->max_width = n;
}

/* Width and mode from the nonzero finite values shown, as _Formatter. */
static void ag__fmt_init(ag__fmt *f, const ag_tensor *t, bool summarize) {
    f->int_mode = true;
    f->sci_mode = false;
    f->max_width = 1;
    ag__stats s = {false, true, 0, 0};
    ag__visit(t, 0, 0, summarize, ag__stats_visit, &s);
    if (!s.any)
        return;
    f->int_mode = s.int_mode;
    bool big_range = s.max_abs / s.min_abs > 1000.0 || s.max_abs > 1.0e8;
    ag__width_ctx w;
    if (big_range || (!f->int_mode && s.min_abs < 1.0e-4)) {
        f->sci_mode = true;
        w = (ag__width_ctx){f, "%.*e", AG__PRECISION, 0};
    } else if (f->int_mode) {
        w = (ag__width_ctx){f, "%.*f", 0, 1};
    } else {
        w = (ag__width_ctx){f, "%.*f", AG__PRECISION, 0};
    }
    ag__visit(t, 0, 0, summarize, ag__width_visit, &w);
}

static void ag__fmt_value(ag__buf *b, const ag__fmt *f, double v) {
    char s[64];
    int n;
    if (f->sci_mode)
        n = ag__pyfmt(s, sizeof s, "%.*e", v);
    else if (f->int_mode) {
        if (isnan(v) || isinf(v))
            n = ag__pyfmt(s, sizeof s, "%.*f", v);
        else
            n = snprintf(s, sizeof s, "%.0f.", v);
    } else
        n = ag__pyfmt(s, sizeof s, "%.*f", v);
    ag__buf_spaces(b, f->max_width - n);
    ag__buf_put(b, s, (size_t)n);
}

/* ---- Layout (_tensor_str_with_formatter, _vector_str) ------------------------- */

static void ag__vector_str(ag__buf *b, const ag_tensor *t, int64_t off, int indent, bool summarize, const ag__fmt *f) {
    int element_length = f->max_width + 2;
    int per_line = (AG__LINEWIDTH - indent) / element_length;
    if (per_line < 1)
        per_line = 1;
    int64_t size = t->shape[t->ndim - 1];
    bool cut = summarize && size > 2 * AG__EDGEITEMS;
    int64_t items = cut ? 2 * AG__EDGEITEMS + 1 : size; /* " ..." counts as an item */
    ag__buf_str(b, "[");
    for (int64_t k = 0; k < items; k++) {
        if (k > 0) {
            if (k % per_line == 0) {
                ag__buf_str(b, ",\n");
                ag__buf_spaces(b, indent + 1);
            } else {
                ag__buf_str(b, ", ");
            }
        }
        if (cut && k == AG__EDGEITEMS) {
            ag__buf_str(b, " ...");
            continue;
        }
        int64_t i = cut && k > AG__EDGEITEMS ? size - (items - k) : k;
        ag__fmt_value(b, f, ag__load(t, off + i));
    }
    ag__buf_str(b, "]");
}

static void ag__tensor_str(ag__buf *b, const ag_tensor *t, int dim, int64_t off, int indent, bool summarize,
                           const ag__fmt *f) {
    if (t->ndim == 0) {
        ag__fmt_value(b, f, ag__load(t, 0));
        return;
    }
    if (dim == t->ndim - 1) {
        ag__vector_str(b, t, off, indent, summarize, f);
        return;
    }
    int64_t size = t->shape[dim], stride = 1;
    for (int d = dim + 1; d < t->ndim; d++)
        stride *= t->shape[d];
    int rest = t->ndim - dim; /* the dim of this sub-tensor */
    bool cut = summarize && size > 2 * AG__EDGEITEMS;
    ag__buf_str(b, "[");
    bool first = true;
    for (int64_t i = 0; i < size; i++) {
        if (!first) {
            ag__buf_str(b, ",");
            for (int k = 0; k < rest - 1; k++)
                ag__buf_str(b, "\n");
            ag__buf_spaces(b, indent + 1);
        }
        first = false;
        if (cut && i == AG__EDGEITEMS) {
            ag__buf_str(b, "...");
            i = size - AG__EDGEITEMS - 1;
            continue;
        }
        ag__tensor_str(b, t, dim + 1, off + i * stride, indent + 1, summarize, f);
    }
    ag__buf_str(b, "]");
}

/* ---- _str_intern and _add_suffixes --------------------------------------------- */

/* _add_suffixes decides for each suffix in turn, from the length of the last
 * line so far, whether it goes after ", " or on a new line at the indent; so
 * each suffix is placed as soon as it is known. */
typedef struct {
    ag__buf *b;
    long last_line_len; /* as _add_suffixes counts it: one more than the line's length */
    int indent;
} ag__suffixes;

static void ag__suffixes_init(ag__suffixes *sx, ag__buf *b, int indent) {
    const char *nl = b->s ? strrchr(b->s, '\n') : NULL;
    sx->b = b;
    sx->last_line_len = (long)b->len - (nl ? (long)(nl - b->s) : -1) + 1;
    sx->indent = indent;
}

static void ag__suffix_add(ag__suffixes *sx, const char *s, size_t n) {
    if (sx->last_line_len + (long)n + 2 > AG__LINEWIDTH) {
        ag__buf_str(sx->b, ",\n");
        ag__buf_spaces(sx->b, sx->indent);
        sx->last_line_len = sx->indent + (long)n;
    } else {
        ag__buf_str(sx->b, ", ");
        sx->last_line_len += (long)n + 2;
    }
    ag__buf_put(sx->b, s, n);
}

/* A suffix made of pieces ("grad_fn=<", the node's name, ">"). */
static void ag__suffix_cat(ag__suffixes *sx, const char *a, const char *b, const char *c) {
    ag__buf s = {0};
    ag__buf_str(&s, a);
    ag__buf_str(&s, b);
    ag__buf_str(&s, c);
    if (s.oom)
        sx->b->oom = true;
    else
        ag__suffix_add(sx, s.s, s.len);
    free(s.s);
}

static char *ag__to_string(const ag_tensor *t) {
    ag__buf b = {0};
    const int indent = 7; /* strlen("tensor(") */
    ag__buf_str(&b, "tensor(");
    bool summarize = t->numel > AG__THRESHOLD;
    if (t->numel == 0) {
        ag__buf_str(&b, "[]");
    } else {
        ag__fmt f;
        ag__fmt_init(&f, t, summarize);
        ag__tensor_str(&b, t, 0, 0, indent, summarize, &f);
    }
    ag__suffixes sx;
    ag__suffixes_init(&sx, &b, indent);
    if (t->numel == 0 && t->ndim != 1) {
        /* str(tuple(shape)): only the 1-d empty tensor goes without it */
        char dims[AG_MAX_DIMS * 24] = "";
        for (int d = 0, o = 0; d < t->ndim; d++)
            o += snprintf(dims + o, sizeof dims - (size_t)o, d ? ", %" PRId64 : "%" PRId64, t->shape[d]);
        ag__suffix_cat(&sx, "size=(", dims, ")");
    }
    if (t->dtype == AG_FLOAT64) /* not the default dtype */
        ag__suffix_cat(&sx, "dtype=torch.float64", "", "");
    if (t->grad_fn)
        ag__suffix_cat(&sx, "grad_fn=<", t->grad_fn->kind->name, ">");
    else if (t->requires_grad)
        ag__suffix_cat(&sx, "requires_grad=True", "", "");
    ag__buf_str(&b, ")");
    if (b.oom) {
        free(b.s);
        return ag__error_null(AG_ENOMEM, "out of memory printing a tensor");
    }
    return b.s;
}

char *ag_to_string(const ag_tensor *t) {
    if (!t)
        return ag__null_arg("ag_to_string");
    if (ag__check_alive(t, "ag_to_string"))
        return NULL;
    return ag__to_string(t);
}

static int ag__fprint(FILE *out, const ag_tensor *t, const char *fn) {
    if (!t)
        return ag__null_code(fn);
    if (!out)
        return ag__error(AG_EINVAL, "%s: FILE is NULL", fn);
    if (ag__check_alive(t, fn))
        return AG_ESTATE;
    char *s = ag__to_string(t);
    if (!s)
        return AG_ENOMEM;
    int rc = fprintf(out, "%s\n", s) < 0 ? ag__error(AG_EINVAL, "%s: write failed", fn) : 0;
    free(s);
    return rc;
}

int ag_fprint(FILE *out, const ag_tensor *t) { return ag__fprint(out, t, "ag_fprint"); }
int ag_print(const ag_tensor *t) { return ag__fprint(stdout, t, "ag_print"); }
