/* Thread-local error state: the code and message of the last failure on this
 * thread, set by ag__error() and read by ag_last_error() / ag_last_status().
 * Messages follow PyTorch's wording where PyTorch has one. */
#include "core/internal.h"

#include <stdio.h>

static _Thread_local int ag__last_code;
static _Thread_local char ag__last_msg[AG__ERRMSG_MAX];

static void ag__verror(int code, const char *fmt, va_list ap) {
    ag__last_code = code;
    vsnprintf(ag__last_msg, sizeof ag__last_msg, fmt, ap);
}

int ag__error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ag__verror(code, fmt, ap);
    va_end(ap);
    return code;
}

void *ag__error_null(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ag__verror(code, fmt, ap);
    va_end(ap);
    return NULL;
}

/* A NULL tensor usually means an earlier op failed: keep that first error so
 * a chain of calls can be checked once at its end. */
void *ag__null_arg(const char *fn) {
    if (ag__last_code == AG_OK)
        ag__error(AG_EINVAL, "%s: got a NULL tensor", fn);
    return NULL;
}

int ag__null_code(const char *fn) {
    ag__null_arg(fn);
    return ag__last_code < 0 ? ag__last_code : AG_EINVAL;
}

int ag__null_object(const char *fn, const char *what) {
    if (ag__last_code == AG_OK)
        ag__error(AG_EINVAL, "%s: %s is NULL", fn, what);
    return ag__last_code < 0 ? ag__last_code : AG_EINVAL;
}

const char *ag_last_error(void) { return ag__last_msg; }
int ag_last_status(void) { return ag__last_code; }

void ag_clear_error(void) {
    ag__last_code = AG_OK;
    ag__last_msg[0] = '\0';
}

/* The texts, indexed by -code, from the one table in agrad.h. */
static const char *const ag__errstr[] = {"success",
#define AG__ERRNO_STR(name, code, msg) msg,
                                         AG_ERRNO_MAP(AG__ERRNO_STR)
#undef AG__ERRNO_STR
};
_Static_assert(sizeof(ag__errstr) / sizeof(ag__errstr[0]) == AG_ERRNO_COUNT,
               "AG_ERRNO_COUNT must count AG_OK and every code of AG_ERRNO_MAP");
/* The index of each code in the table above is its position: the codes
 * must be -1, -2, ... in table order. */
enum {
    AG__ERRNO_POS_OK,
#define AG__ERRNO_POS(name, code, msg) AG__ERRNO_POS_##name,
    AG_ERRNO_MAP(AG__ERRNO_POS)
#undef AG__ERRNO_POS
};
#define AG__ERRNO_CHECK(name, code, msg)                                                                               \
    _Static_assert(AG_##name == -AG__ERRNO_POS_##name, "AG_" #name " must be minus its position in AG_ERRNO_MAP");
AG_ERRNO_MAP(AG__ERRNO_CHECK)
#undef AG__ERRNO_CHECK

const char *ag_strerror(int code) {
    if (code > 0 || code <= -AG_ERRNO_COUNT)
        return "unknown error";
    return ag__errstr[-code];
}

const char *ag__dtype_torch_name(ag_dtype dt) { return dt == AG_FLOAT64 ? "torch.DoubleTensor" : "torch.FloatTensor"; }

const char *ag__dtype_scalar_name(ag_dtype dt) { return dt == AG_FLOAT64 ? "Double" : "Float"; }

size_t ag__dtype_size(ag_dtype dt) { return dt == AG_FLOAT64 ? sizeof(double) : sizeof(float); }
