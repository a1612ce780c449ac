/* Weights in files: ag_save and ag_load in the safetensors format (an 8-byte
 * little-endian header length, a JSON header, then the raw little-endian
 * data of every tensor), with a small strict JSON reader of its own.
 * A file is untrusted input: every length, offset and shape is checked
 * against the file's size before anything is allocated from it, so no
 * allocation is bigger than the file, and nothing past the header is read
 * except the data of the tensors asked for. */
#include "core/internal.h"
#include "core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB. */
#define AG__ST_MAX_HEADER ((uint64_t)100000000)
/* Nesting allowed inside values of fields this reader does not know. */
#define AG__ST_MAX_DEPTH 64
/* The shortest tensor entry in a header is 49 bytes plus its comma:
 * "":{"dtype":"U8","shape":[],"data_offsets":[0,0]}, so with the braces
 * k entries need at least 50 k + 1 bytes. */
#define AG__ST_MIN_ENTRY 50
/* Longest piece of a tensor name quoted in a message. */
#define AG__ST_NAME_SHOWN 64

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define AG__ST_BIG_ENDIAN 1
#else
#define AG__ST_BIG_ENDIAN 0
#endif

/* The format's dtypes in the reference's order (the writer sorts on it),
 * with their width in bits. */
typedef struct ag__st_dtype {
    const char *name;
    unsigned bits;
} ag__st_dtype;

static const ag__st_dtype ag__st_dtypes[] = {
    {"BOOL", 8},    {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},   {"I8", 8},    {"F8_E5M2", 8},
    {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},    {"U16", 16},    {"F16", 16}, {"BF16", 16}, {"I32", 32},
    {"U32", 32},    {"F32", 32},    {"C64", 64},    {"F64", 64},    {"I64", 64}, {"U64", 64},
};
#define AG__ST_NDTYPES ((int)(sizeof ag__st_dtypes / sizeof ag__st_dtypes[0]))
#define AG__ST_F32 15
#define AG__ST_F64 17

/* ---- Allocation accounting (for the tests' "no allocation bigger than the
 * file" checks) ------------------------------------------------------------ */

static _Thread_local size_t ag__st_peak;

static void ag__st_note_alloc(size_t n) {
    if (n > ag__st_peak)
        ag__st_peak = n;
}

size_t ag__safetensors_peak_alloc(void) {
    size_t p = ag__st_peak;
    ag__st_peak = 0;
    return p;
}

static void *ag__st_malloc(size_t n) {
    ag__st_note_alloc(n);
    void *p = malloc(n ? n : 1);
    if (!p)
        ag__error(AG_ENOMEM, "out of memory (%zu bytes) reading a safetensors file", n);
    return p;
}

/* ---- Where the bytes come from: a file or a buffer ------------------------- */

typedef struct ag__st_src {
    int fd;                   /* -1: read from mem */
    const unsigned char *mem; /* the whole file, when fd is -1 */
    uint64_t size;            /* bytes in the file */
    const char *what;         /* its path, for messages */
} ag__st_src;

/* Reads exactly n bytes at off (the caller has checked off + n <= size). */
static int ag__st_read(const ag__st_src *s, uint64_t off, void *buf, size_t n) {
    if (s->fd < 0) {
        if (n)
            memcpy(buf, s->mem + off, n);
        return 0;
    }
    unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t got = pread(s->fd, p, chunk, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return ag__error(AG_EINVAL, "ag_load: %s: read failed: %s", s->what, strerror(errno));
        if (got == 0)
            return ag__error(AG_EINVAL, "ag_load: %s: the file is shorter than it was when opened", s->what);
        p += got;
        off += (uint64_t)got;
        n -= (size_t)got;
    }
    return 0;
}

/* ---- Messages ------------------------------------------------------------------ */

/* A tensor name as quoted in a message: at most AG__ST_NAME_SHOWN bytes,
 * control characters as '?'. */
static const char *ag__st_shown(char *buf, const char *name, size_t len) {
    size_t n = len < AG__ST_NAME_SHOWN ? len : AG__ST_NAME_SHOWN;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)name[i] < 0x20 || name[i] == 0x7f ? '?' : name[i];
    if (len > n) {
        memcpy(buf + n, "...", 4);
    } else {
        buf[n] = '\0';
    }
    return buf;
}
#define AG__ST_SHOWN_SIZE (AG__ST_NAME_SHOWN + 4)

/* ---- UTF-8 ----------------------------------------------------------------------- */

/* Length of the valid UTF-8 prefix of s[0, n) (n when all of it is valid):
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t ag__utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return i;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return i;
        i += len;
    }
    return n;
}

/* ---- A strict JSON reader for the header --------------------------------------- */

typedef struct ag__json {
    char *p;          /* next byte */
    char *end;        /* one past the header */
    char *base;       /* start of the header, for byte positions in messages */
    const char *what; /* the file, for messages */
} ag__json;

static int ag__json_fail(ag__json *j, const char *msg) {
    if (j->p >= j->end)
        return ag__error(AG_EINVAL, "ag_load: %s: invalid header: %s at the end of the header", j->what, msg);
    return ag__error(AG_EINVAL, "ag_load: %s: invalid header: %s at byte %td", j->what, msg, j->p - j->base);
}

static void ag__json_ws(ag__json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Skips whitespace and consumes c. */
static int ag__json_expect(ag__json *j, char c, const char *msg) {
    ag__json_ws(j);
    if (j->p >= j->end || *j->p != c)
        return ag__json_fail(j, msg);
    j->p++;
    return 0;
}

static int ag__json_hex4(ag__json *j, unsigned *out) {
    if (j->end - j->p < 4)
        return ag__json_fail(j, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = j->p[k];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return ag__json_fail(j, "bad hex digit in a \\u escape");
        v = v << 4 | d;
    }
    j->p += 4;
    *out = v;
    return 0;
}

/* cp as UTF-8 at *out, advancing it (at most 4 bytes). */
static void ag__utf8_put(char **out, unsigned cp) {
    char *o = *out;
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3f));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    *out = o;
}

/* The code point of a \u escape whose "\u" was read: one, or a surrogate
 * pair written as two escapes. */
static int ag__json_unicode(ag__json *j, unsigned *cp) {
    *cp = 0; /* set by ag__json_hex4 unless it fails */
    if (ag__json_hex4(j, cp))
        return AG_EINVAL;
    if (*cp >= 0xdc00 && *cp <= 0xdfff)
        return ag__json_fail(j, "lone low surrogate in a \\u escape");
    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        unsigned lo = 0;
        if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
            return ag__json_fail(j, "lone high surrogate in a \\u escape");
        j->p += 2;
        if (ag__json_hex4(j, &lo))
            return AG_EINVAL;
        if (lo < 0xdc00 || lo > 0xdfff)
            return ag__json_fail(j, "high surrogate not followed by a low one");
        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    return 0;
}

/* The escape after a backslash, its bytes written at *out (advancing it). */
static int ag__json_escape(ag__json *j, char **out) {
    if (j->p >= j->end)
        return ag__json_fail(j, "unterminated escape");
    char e = *j->p++;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *at = strchr(from, e);
    if (e && at) {
        *(*out)++ = to[at - from];
        return 0;
    }
    if (e != 'u') {
        j->p--;
        return ag__json_fail(j, "unknown escape in a string");
    }
    unsigned cp;
    if (ag__json_unicode(j, &cp))
        return AG_EINVAL;
    ag__utf8_put(out, cp);
    return 0;
}

/* A string (after whitespace), unescaped in place: its bytes are *s..*s+*len
 * inside the header (not NUL-terminated). Escapes only ever shrink, so the
 * result fits where the text was. The header was checked to be UTF-8. */
static int ag__json_string(ag__json *j, char **s, size_t *len) {
    ag__json_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return ag__json_fail(j, "expected a string");
    j->p++;
    char *out = j->p, *start = j->p;
    for (;;) {
        if (j->p >= j->end)
            return ag__json_fail(j, "unterminated string");
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20)
            return ag__json_fail(j, "control character in a string");
        j->p++;
        if (c != '\\')
            *out++ = (char)c;
        else if (ag__json_escape(j, &out))
            return AG_EINVAL;
    }
    *s = start;
    *len = (size_t)(out - start);
    return 0;
}

/* A non-negative integer that fits in uint64 (the format's usize): digits
 * only, no sign, fraction, exponent or leading zero. */
static int ag__json_uint(ag__json *j, uint64_t *out) {
    ag__json_ws(j);
    if (j->p < j->end && *j->p == '-')
        return ag__json_fail(j, "negative number where a size or offset belongs");
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return ag__json_fail(j, "expected a non-negative integer");
    uint64_t v = 0;
    char *first = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ag__json_fail(j, "integer does not fit in 64 bits");
        v = v * 10 + d;
        j->p++;
    }
    if (*first == '0' && j->p - first > 1) {
        j->p = first;
        return ag__json_fail(j, "number with a leading zero");
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return ag__json_fail(j, "expected an integer, found a fraction or exponent");
    *out = v;
    return 0;
}

static int ag__json_skip(ag__json *j, int depth);

/* Any JSON number, validated and skipped. */
static int ag__json_skip_number(ag__json *j) {
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return ag__json_fail(j, "invalid number");
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return ag__json_fail(j, "invalid number");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return ag__json_fail(j, "invalid number");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return 0;
}

/* Any JSON value, validated and skipped; nesting is bounded so that a
 * hostile header cannot exhaust the stack. */
static int ag__json_skip(ag__json *j, int depth) {
    if (depth > AG__ST_MAX_DEPTH)
        return ag__json_fail(j, "values nested more than 64 deep");
    ag__json_ws(j);
    if (j->p >= j->end)
        return ag__json_fail(j, "expected a value");
    char *s;
    size_t len;
    switch (*j->p) {
    case '"':
        return ag__json_string(j, &s, &len);
    case '{':
        j->p++;
        ag__json_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 0;
        }
        for (;;) {
            if (ag__json_string(j, &s, &len) || ag__json_expect(j, ':', "expected ':'") || ag__json_skip(j, depth + 1))
                return AG_EINVAL;
            ag__json_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            return ag__json_expect(j, '}', "expected ',' or '}' in an object");
        }
    case '[':
        j->p++;
        ag__json_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 0;
        }
        for (;;) {
            if (ag__json_skip(j, depth + 1))
                return AG_EINVAL;
            ag__json_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            return ag__json_expect(j, ']', "expected ',' or ']' in an array");
        }
    case 't':
    case 'f':
    case 'n': {
        const char *lit = *j->p == 't' ? "true" : *j->p == 'f' ? "false" : "null";
        size_t n = strlen(lit);
        if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
            return ag__json_fail(j, "invalid literal");
        j->p += n;
        return 0;
    }
    default:
        return ag__json_skip_number(j);
    }
}

/* ---- The header's contents ------------------------------------------------------- */

/* What the reader keeps of every tensor in the file: enough to find
 * duplicate names and to check that the data regions tile the data
 * section exactly (32 bytes, fewer than the shortest entry's text). */
typedef struct ag__st_entry {
    uint64_t start, end; /* data_offsets, relative to the data section */
    const char *name;    /* the unescaped name, inside the header */
    uint32_t name_len;
} ag__st_entry;

/* One tensor's header entry, as parsed. */
typedef struct ag__st_info {
    int dtype; /* index in ag__st_dtypes */
    int ndim;  /* may exceed AG_MAX_DIMS: only the first dims are kept */
    int64_t shape[AG_MAX_DIMS];
    uint64_t start, end;
} ag__st_info;

/* A tensor asked for: its name and, once found, its entry. */
typedef struct ag__st_request {
    const char *name;
    size_t len;
    int index; /* into names[] / out[] */
    bool found;
    ag__st_info info;
} ag__st_request;

typedef struct ag__st_reader {
    ag__json j;
    uint64_t data_size; /* bytes after the header */
    ag__st_entry *entries;
    size_t n_entries, cap_entries, max_entries;
    ag__st_request *req; /* sorted by name */
    int n_req;
} ag__st_reader;

static int ag__st_name_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int ag__st_req_cmp(const void *x, const void *y) {
    const ag__st_request *a = x, *b = y;
    return ag__st_name_cmp(a->name, a->len, b->name, b->len);
}

/* A tensor entry's "dtype" value: one of the format's names. */
static int ag__st_parse_dtype(ag__json *j, const char *name, size_t name_len, int *dtype) {
    char *dt, shown[AG__ST_SHOWN_SIZE], dshown[AG__ST_SHOWN_SIZE];
    size_t dlen;
    if (ag__json_string(j, &dt, &dlen))
        return AG_EINVAL;
    for (int d = 0; d < AG__ST_NDTYPES; d++)
        if (strlen(ag__st_dtypes[d].name) == dlen && !memcmp(ag__st_dtypes[d].name, dt, dlen)) {
            *dtype = d;
            return 0;
        }
    return ag__error(AG_EINVAL, "ag_load: %s: tensor '%s' has unknown dtype \"%s\"", j->what,
                     ag__st_shown(shown, name, name_len), ag__st_shown(dshown, dt, dlen));
}

/* A tensor entry's "shape" value: an array of sizes, any length (only the
 * first AG_MAX_DIMS are kept). *numel is their product; *overflow is set
 * where the reference would fail: it multiplies in order and stops at the
 * first overflow, even if a later size is 0. */
static int ag__st_parse_shape(ag__json *j, const char *name, size_t name_len, ag__st_info *info, uint64_t *numel,
                              bool *overflow) {
    char shown[AG__ST_SHOWN_SIZE];
    *numel = 1;
    *overflow = false;
    info->ndim = 0;
    if (ag__json_expect(j, '[', "expected an array for \"shape\""))
        return AG_EINVAL;
    ag__json_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        uint64_t dim;
        if (ag__json_uint(j, &dim))
            return AG_EINVAL;
        if (dim > INT64_MAX)
            return ag__error(AG_ESHAPE, "ag_load: %s: tensor '%s' has a size of %" PRIu64 ", more than INT64_MAX",
                             j->what, ag__st_shown(shown, name, name_len), dim);
        if (info->ndim < AG_MAX_DIMS)
            info->shape[info->ndim] = (int64_t)dim;
        if (info->ndim < INT32_MAX)
            info->ndim++;
        if (!*overflow && dim && *numel > UINT64_MAX / dim)
            *overflow = true;
        *numel = *overflow ? 0 : *numel * dim;
        ag__json_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return ag__json_expect(j, ']', "expected ',' or ']' in \"shape\"");
    }
}

/* The entry's offsets against the data section, and its size against its
 * shape and dtype. */
static int ag__st_check_info(const ag__st_reader *r, const char *name, size_t name_len, const ag__st_info *info,
                             uint64_t numel, bool overflow) {
    char shown[AG__ST_SHOWN_SIZE];
    const char *what = r->j.what, *dtname = ag__st_dtypes[info->dtype].name;
    ag__st_shown(shown, name, name_len);
    if (info->end < info->start)
        return ag__error(AG_EINVAL,
                         "ag_load: %s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                         "] that end before they start",
                         what, shown, info->start, info->end);
    if (info->end > r->data_size)
        return ag__error(AG_EINVAL,
                         "ag_load: %s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                         "] past the end of the data (%" PRIu64 " bytes)",
                         what, shown, info->start, info->end, r->data_size);
    unsigned bits = ag__st_dtypes[info->dtype].bits;
    if (overflow || numel > UINT64_MAX / bits)
        return ag__error(AG_ESHAPE, "ag_load: %s: tensor '%s': the number of elements of its shape overflows", what,
                         shown);
    uint64_t nbits = numel * bits;
    if (nbits % 8 != 0)
        return ag__error(AG_ESHAPE, "ag_load: %s: tensor '%s': %" PRIu64 " elements of %s do not fill whole bytes",
                         what, shown, numel, dtname);
    if (nbits / 8 != info->end - info->start)
        return ag__error(AG_ESHAPE,
                         "ag_load: %s: tensor '%s': %" PRIu64 " elements of %s take %" PRIu64
                         " bytes, but data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64,
                         what, shown, numel, dtname, nbits / 8, info->start, info->end, info->end - info->start);
    return 0;
}

/* A tensor entry (after its key): an object with "dtype", "shape" and
 * "data_offsets", each once. Other fields are skipped, as the reference
 * reader does. */
static int ag__st_parse_info(ag__st_reader *r, const char *name, size_t name_len, ag__st_info *info) {
    ag__json *j = &r->j;
    char shown[AG__ST_SHOWN_SIZE];
    bool have_dtype = false, have_shape = false, have_offsets = false, overflow = false;
    uint64_t numel = 1;
    int rc;
    if (ag__json_expect(j, '{', "expected an object for a tensor"))
        return AG_EINVAL;
    ag__json_ws(j);
    if (j->p < j->end && *j->p == '}')
        j->p++;
    else
        for (;;) {
            char *key;
            size_t klen;
            if (ag__json_string(j, &key, &klen) || ag__json_expect(j, ':', "expected ':'"))
                return AG_EINVAL;
            if (klen == 5 && !memcmp(key, "dtype", 5)) {
                if (have_dtype)
                    return ag__json_fail(j, "duplicate field \"dtype\"");
                have_dtype = true;
                rc = ag__st_parse_dtype(j, name, name_len, &info->dtype);
            } else if (klen == 5 && !memcmp(key, "shape", 5)) {
                if (have_shape)
                    return ag__json_fail(j, "duplicate field \"shape\"");
                have_shape = true;
                rc = ag__st_parse_shape(j, name, name_len, info, &numel, &overflow);
            } else if (klen == 12 && !memcmp(key, "data_offsets", 12)) {
                if (have_offsets)
                    return ag__json_fail(j, "duplicate field \"data_offsets\"");
                have_offsets = true;
                rc = ag__json_expect(j, '[', "expected an array for \"data_offsets\"") ||
                             ag__json_uint(j, &info->start) || ag__json_expect(j, ',', "expected two data_offsets") ||
                             ag__json_uint(j, &info->end) ||
                             ag__json_expect(j, ']', "expected exactly two data_offsets")
                         ? AG_EINVAL
                         : 0;
            } else {
                rc = ag__json_skip(j, 1);
            }
            if (rc)
                return rc;
            ag__json_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (ag__json_expect(j, '}', "expected ',' or '}' in a tensor's object"))
                return AG_EINVAL;
            break;
        }
    if (!have_dtype || !have_shape || !have_offsets)
        return ag__error(AG_EINVAL, "ag_load: %s: tensor '%s' lacks \"%s\"", j->what,
                         ag__st_shown(shown, name, name_len),
                         !have_dtype   ? "dtype"
                         : !have_shape ? "shape"
                                       : "data_offsets");
    return ag__st_check_info(r, name, name_len, info, numel, overflow);
}

/* "__metadata__": an object whose values are strings. Its contents are
 * validated, not kept. */
static int ag__st_parse_metadata(ag__json *j) {
    if (ag__json_expect(j, '{', "expected an object for \"__metadata__\""))
        return AG_EINVAL;
    ag__json_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        char *s;
        size_t len;
        if (ag__json_string(j, &s, &len) || ag__json_expect(j, ':', "expected ':'"))
            return AG_EINVAL;
        ag__json_ws(j);
        if (j->p >= j->end || *j->p != '"')
            return ag__json_fail(j, "\"__metadata__\" values must be strings");
        if (ag__json_string(j, &s, &len))
            return AG_EINVAL;
        ag__json_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return ag__json_expect(j, '}', "expected ',' or '}' in \"__metadata__\"");
    }
}

static int ag__st_add_entry(ag__st_reader *r, const char *name, size_t len, const ag__st_info *info) {
    if (r->n_entries == r->cap_entries) {
        /* Grows by doubling, capped at the most entries the header can hold,
         * so this array stays smaller than the header. */
        if (r->cap_entries >= r->max_entries)
            return ag__json_fail(&r->j, "more tensors than the header can describe");
        size_t cap = r->cap_entries ? 2 * r->cap_entries : 16;
        if (cap > r->max_entries)
            cap = r->max_entries;
        ag__st_note_alloc(cap * sizeof(ag__st_entry));
        ag__st_entry *e = realloc(r->entries, cap * sizeof(ag__st_entry));
        if (!e)
            return ag__error(AG_ENOMEM, "out of memory reading a safetensors header");
        r->entries = e;
        r->cap_entries = cap;
    }
    r->entries[r->n_entries++] =
        (ag__st_entry){.start = info->start, .end = info->end, .name = name, .name_len = (uint32_t)len};
    /* Fill every request for this name (a name may be asked for twice). */
    int lo = 0, hi = r->n_req;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (ag__st_name_cmp(r->req[mid].name, r->req[mid].len, name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int i = lo; i < r->n_req && !ag__st_name_cmp(r->req[i].name, r->req[i].len, name, len); i++) {
        r->req[i].found = true;
        r->req[i].info = *info;
    }
    return 0;
}

/* The whole header: {"name": {...}, ..., "__metadata__": {...}} and nothing
 * after it but whitespace. */
static int ag__st_parse_header(ag__st_reader *r) {
    ag__json *j = &r->j;
    bool have_metadata = false;
    if (j->p >= j->end || *j->p != '{')
        return ag__json_fail(j, "the header must start with '{'");
    j->p++;
    ag__json_ws(j);
    if (j->p < j->end && *j->p == '}')
        j->p++;
    else
        for (;;) {
            char *name;
            size_t len;
            if (ag__json_string(j, &name, &len) || ag__json_expect(j, ':', "expected ':'"))
                return AG_EINVAL;
            if (len == 12 && !memcmp(name, "__metadata__", 12)) {
                if (have_metadata)
                    return ag__json_fail(j, "duplicate key \"__metadata__\"");
                have_metadata = true;
                if (ag__st_parse_metadata(j))
                    return AG_EINVAL;
            } else {
                ag__st_info info = {0};
                if (ag__st_parse_info(r, name, len, &info) || ag__st_add_entry(r, name, len, &info))
                    return ag_last_status();
            }
            ag__json_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (ag__json_expect(j, '}', "expected ',' or '}' after a tensor"))
                return AG_EINVAL;
            break;
        }
    ag__json_ws(j);
    if (j->p != j->end)
        return ag__json_fail(j, "trailing characters after the header's object");
    return 0;
}

static int ag__st_entry_name_cmp(const void *x, const void *y) {
    const ag__st_entry *a = x, *b = y;
    return ag__st_name_cmp(a->name, a->name_len, b->name, b->name_len);
}

static int ag__st_entry_offset_cmp(const void *x, const void *y) {
    const ag__st_entry *a = x, *b = y;
    if (a->start != b->start)
        return a->start < b->start ? -1 : 1;
    return (a->end > b->end) - (a->end < b->end);
}

/* No name twice, and the data regions, in offset order, tile the data
 * section exactly: no gap, no overlap, nothing after the last one. */
static int ag__st_check_entries(ag__st_reader *r) {
    char shown[AG__ST_SHOWN_SIZE];
    if (r->n_entries > 1) {
        qsort(r->entries, r->n_entries, sizeof(ag__st_entry), ag__st_entry_name_cmp);
        for (size_t i = 1; i < r->n_entries; i++) {
            const ag__st_entry *a = &r->entries[i - 1], *b = &r->entries[i];
            if (!ag__st_name_cmp(a->name, a->name_len, b->name, b->name_len))
                return ag__error(AG_EINVAL, "ag_load: %s: tensor '%s' appears twice in the header", r->j.what,
                                 ag__st_shown(shown, b->name, b->name_len));
        }
        qsort(r->entries, r->n_entries, sizeof(ag__st_entry), ag__st_entry_offset_cmp);
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < r->n_entries; i++) {
        const ag__st_entry *e = &r->entries[i];
        if (e->start != pos)
            return ag__error(AG_EINVAL,
                             "ag_load: %s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "], but the data "
                             "before it ends at %" PRIu64 " (tensors must follow one another without %s)",
                             r->j.what, ag__st_shown(shown, e->name, e->name_len), e->start, e->end, pos,
                             e->start < pos ? "overlapping" : "gaps");
        pos = e->end;
    }
    if (pos != r->data_size)
        return ag__error(AG_EINVAL,
                         "ag_load: %s: the tensors' data ends at %" PRIu64 ", but the file has %" PRIu64
                         " bytes of data after the header (trailing bytes)",
                         r->j.what, pos, r->data_size);
    return 0;
}

/* ---- Loading ---------------------------------------------------------------------- */

static void ag__st_bswap(void *data, size_t nbytes, size_t width) {
#if AG__ST_BIG_ENDIAN
    unsigned char *p = data;
    for (size_t i = 0; i + width <= nbytes; i += width)
        for (size_t a = i, b = i + width - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
#else
    AG__UNUSED(data);
    AG__UNUSED(nbytes);
    AG__UNUSED(width);
#endif
}

/* The header's length from the file's first 8 bytes (little-endian), checked
 * against the format's limit and the file's size. */
static int ag__st_header_len(const ag__st_src *src, uint64_t *hlen) {
    if (src->size < 8)
        return ag__error(AG_EINVAL, "ag_load: %s: the file is %" PRIu64 " bytes, too short for a safetensors header",
                         src->what, src->size);
    unsigned char lenbuf[8];
    if (ag__st_read(src, 0, lenbuf, 8))
        return ag_last_status();
    *hlen = 0;
    for (int k = 7; k >= 0; k--)
        *hlen = *hlen << 8 | lenbuf[k];
    if (*hlen > AG__ST_MAX_HEADER)
        return ag__error(AG_EINVAL,
                         "ag_load: %s: header length %" PRIu64 " is more than the format's limit of %" PRIu64,
                         src->what, *hlen, AG__ST_MAX_HEADER);
    if (*hlen > src->size - 8)
        return ag__error(AG_EINVAL,
                         "ag_load: %s: header length %" PRIu64 " is past the end of the file (%" PRIu64 " bytes)",
                         src->what, *hlen, src->size);
    if (*hlen == 0)
        return ag__error(AG_EINVAL, "ag_load: %s: the header is empty", src->what);
    return 0;
}

/* Every name asked for exists, as F32 or F64 with at most 8 dims; the error
 * names the first one, in the caller's order, that does not. */
static int ag__st_check_requests(const ag__st_reader *r, const ag__st_src *src) {
    char shown[AG__ST_SHOWN_SIZE];
    const ag__st_request *bad = NULL;
    for (int k = 0; k < r->n_req; k++) {
        const ag__st_request *q = &r->req[k];
        bool ok =
            q->found && (q->info.dtype == AG__ST_F32 || q->info.dtype == AG__ST_F64) && q->info.ndim <= AG_MAX_DIMS;
        if (!ok && (!bad || q->index < bad->index))
            bad = q;
    }
    if (!bad)
        return 0;
    ag__st_shown(shown, bad->name, bad->len);
    if (!bad->found)
        return ag__error(AG_EINVAL, "ag_load: %s: file does not contain tensor '%s'", src->what, shown);
    if (bad->info.dtype != AG__ST_F32 && bad->info.dtype != AG__ST_F64)
        return ag__error(AG_EDTYPE, "ag_load: %s: tensor '%s' has dtype %s; agrad reads F32 and F64", src->what, shown,
                         ag__st_dtypes[bad->info.dtype].name);
    return ag__error(AG_ESHAPE, "ag_load: %s: tensor '%s' has %d dimensions; agrad has at most %d", src->what, shown,
                     bad->info.ndim, AG_MAX_DIMS);
}

/* The checked requests' tensors, made in ctx and filled from the data that
 * starts at byte 8 + hlen; out[] in the caller's order. */
static int ag__st_make(ag_ctx *ctx, const ag__st_src *src, uint64_t hlen, const ag__st_reader *r, ag_tensor **out) {
    char shown[AG__ST_SHOWN_SIZE];
    for (int k = 0; k < r->n_req; k++) {
        const ag__st_request *q = &r->req[k];
        ag_dtype dt = q->info.dtype == AG__ST_F64 ? AG_FLOAT64 : AG_FLOAT32;
        if (q->info.end - q->info.start > SIZE_MAX / 2) /* 32-bit hosts */
            return ag__error(AG_ENOMEM, "ag_load: %s: tensor '%s' is too large for this machine", src->what,
                             ag__st_shown(shown, q->name, q->len));
        ag__st_note_alloc((size_t)(q->info.end - q->info.start));
        ag_tensor *t = ag__tensor_new(ctx, dt, q->info.ndim, q->info.shape);
        if (!t)
            return ag_last_status() ? ag_last_status() : AG_ENOMEM;
        size_t nbytes = (size_t)(q->info.end - q->info.start);
        int rc = ag__st_read(src, 8 + hlen + q->info.start, t->data, nbytes);
        if (rc)
            return rc;
        ag__st_bswap(t->data, nbytes, ag__dtype_size(dt));
        out[q->index] = t;
    }
    return 0;
}

static int ag__st_load(ag_ctx *ctx, const ag__st_src *src, const char *const *names, ag_tensor **out, int n) {
    uint64_t hlen = 0;
    int rc = ag__st_header_len(src, &hlen);
    if (rc)
        return rc;
    ag__st_reader r = {.data_size = src->size - 8 - hlen, .max_entries = (size_t)((hlen - 1) / AG__ST_MIN_ENTRY)};
    char *header = ag__st_malloc((size_t)hlen);
    /* Sized by the caller, not by the file: not counted in the peak. */
    r.req = n ? malloc((size_t)n * sizeof(ag__st_request)) : NULL;
    if (!header || (n && !r.req)) {
        rc = ag__error(AG_ENOMEM, "ag_load: out of memory");
        goto done;
    }
    if ((rc = ag__st_read(src, 8, header, (size_t)hlen)))
        goto done;
    size_t valid = ag__utf8_valid_prefix((const unsigned char *)header, (size_t)hlen);
    if (valid != hlen) {
        rc = ag__error(AG_EINVAL, "ag_load: %s: invalid header: not UTF-8 at byte %zu", src->what, valid);
        goto done;
    }
    for (int i = 0; i < n; i++)
        r.req[i] = (ag__st_request){.name = names[i], .len = strlen(names[i]), .index = i};
    if (n > 1)
        qsort(r.req, (size_t)n, sizeof(ag__st_request), ag__st_req_cmp);
    r.n_req = n;
    r.j = (ag__json){.p = header, .end = header + hlen, .base = header, .what = src->what};
    /* Every request is checked before any tensor is made. */
    if (!(rc = ag__st_parse_header(&r)) && !(rc = ag__st_check_entries(&r)) && !(rc = ag__st_check_requests(&r, src)))
        rc = ag__st_make(ctx, src, hlen, &r, out);
done:
    if (rc)
        for (int i = 0; i < n; i++)
            out[i] = NULL;
    free(header);
    free(r.entries);
    free(r.req);
    return rc;
}

/* Arguments shared by ag_load and ag__load_mem; clears out[] first. */
static int ag__st_check_load_args(ag_ctx *ctx, const char *path, const char *const *names, ag_tensor **out, int n) {
    if (out)
        for (int i = 0; i < n; i++)
            out[i] = NULL;
    if (!ctx)
        return ag__error(AG_EINVAL, "ag_load: context is NULL");
    if (!path)
        return ag__error(AG_EINVAL, "ag_load: path is NULL");
    if (n < 0)
        return ag__error(AG_EINVAL, "ag_load: n is %d (must be >= 0)", n);
    if (n > 0 && (!names || !out))
        return ag__error(AG_EINVAL, "ag_load: %s is NULL", !names ? "names" : "out");
    for (int i = 0; i < n; i++)
        if (!names[i])
            return ag__error(AG_EINVAL, "ag_load: names[%d] is NULL", i);
    return 0;
}

int ag__load_mem(ag_ctx *ctx, const void *buf, size_t len, const char *what, const char *const *names, ag_tensor **out,
                 int n) {
    int rc = ag__st_check_load_args(ctx, what ? what : "", names, out, n);
    if (rc)
        return rc;
    if (!buf && len)
        return ag__error(AG_EINVAL, "ag_load: buffer is NULL");
    ag__st_src src = {.fd = -1, .mem = buf, .size = len, .what = what ? what : "<memory>"};
    return ag__st_load(ctx, &src, names, out, n);
}

int ag_load(ag_ctx *ctx, const char *path, const char *const *names, ag_tensor **out, int n) {
    int rc = ag__st_check_load_args(ctx, path, names, out, n);
    if (rc)
        return rc;
    /* O_NONBLOCK: a FIFO must not hang the open; it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return ag__error(AG_EINVAL, "ag_load: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = ag__error(AG_EINVAL, "ag_load: %s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = ag__error(AG_EINVAL, "ag_load: %s is not a regular file", path);
    } else {
        ag__st_src src = {.fd = fd, .size = (uint64_t)st.st_size, .what = path};
        rc = ag__st_load(ctx, &src, names, out, n);
    }
    close(fd);
    return rc;
}

/* ---- Saving ------------------------------------------------------------------------ */

typedef struct ag__st_out {
    const char *name;
    size_t len;
    ag_tensor *t;
    uint64_t nbytes;
} ag__st_out;

/* The reference writer's order: wider dtypes first (F64 before F32, so
 * every tensor's data stays aligned to its element size), then by name. */
static int ag__st_out_cmp(const void *x, const void *y) {
    const ag__st_out *a = x, *b = y;
    if (a->t->dtype != b->t->dtype)
        return a->t->dtype == AG_FLOAT64 ? -1 : 1;
    return ag__st_name_cmp(a->name, a->len, b->name, b->len);
}

static int ag__st_name_order(const void *x, const void *y) {
    const ag__st_out *a = x, *b = y;
    return ag__st_name_cmp(a->name, a->len, b->name, b->len);
}

/* A growable buffer for the header's text. */
typedef struct ag__st_buf {
    char *p;
    size_t len, cap;
    bool failed;
} ag__st_buf;

static void ag__st_put(ag__st_buf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void ag__st_puts(ag__st_buf *b, const char *s) { ag__st_put(b, s, strlen(s)); }

/* A JSON string as serde_json writes it: '"' and '\' escaped, control
 * characters as \b \f \n \r \t or \u00xx, everything else as is (UTF-8). */
static void ag__st_put_string(ag__st_buf *b, const char *s, size_t n) {
    ag__st_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            ag__st_put(b, esc, 2);
        } else if (c < 0x20) {
            const char *named = c == '\b'   ? "\\b"
                                : c == '\f' ? "\\f"
                                : c == '\n' ? "\\n"
                                : c == '\r' ? "\\r"
                                : c == '\t' ? "\\t"
                                            : NULL;
            if (named) {
                ag__st_puts(b, named);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                ag__st_put(b, esc, 6);
            }
        } else {
            ag__st_put(b, (const char *)&s[i], 1);
        }
    }
    ag__st_put(b, "\"", 1);
}

static int ag__st_write_all(int fd, const void *data, size_t n, const char *path) {
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(fd, p, chunk);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return ag__error(AG_EINVAL, "ag_save: writing %s failed: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A tensor's elements in row-major order, little-endian. A tensor that
 * ag_data_ptr refuses (a non-contiguous view) is copied out first; the
 * error that refusal sets is put back as it was. */
static int ag__st_write_tensor(int fd, ag_tensor *t, uint64_t nbytes, const char *path) {
    if (nbytes == 0)
        return 0;
    int prev_code = ag_last_status();
    char prev_msg[1024];
    snprintf(prev_msg, sizeof prev_msg, "%s", ag_last_error());
    const void *data = ag_data_ptr(t);
    void *copy = NULL;
    if (!data || AG__ST_BIG_ENDIAN) {
        if (!data) {
            if (prev_code)
                ag__error(prev_code, "%s", prev_msg);
            else
                ag_clear_error();
        }
        copy = malloc((size_t)nbytes);
        if (!copy)
            return ag__error(AG_ENOMEM, "ag_save: out of memory (%" PRIu64 " bytes) copying a tensor", nbytes);
        int rc = ag_copy_to(t, copy, t->dtype);
        if (rc) {
            free(copy);
            return rc;
        }
        ag__st_bswap(copy, (size_t)nbytes, ag__dtype_size(t->dtype));
        data = copy;
    }
    int rc = ag__st_write_all(fd, data, (size_t)nbytes, path);
    free(copy);
    return rc;
}

/* The header: {"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},...}
 * in the order of outs, padded with spaces to a multiple of 8 bytes. */
static int ag__st_header(ag__st_buf *b, const ag__st_out *outs, int n) {
    uint64_t offset = 0;
    char num[96];
    ag__st_put(b, "{", 1);
    for (int i = 0; i < n; i++) {
        const ag_tensor *t = outs[i].t;
        if (i)
            ag__st_put(b, ",", 1);
        ag__st_put_string(b, outs[i].name, outs[i].len);
        ag__st_puts(b, t->dtype == AG_FLOAT64 ? ":{\"dtype\":\"F64\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%" PRId64 : "%" PRId64, t->shape[d]);
            ag__st_puts(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + outs[i].nbytes);
        ag__st_puts(b, num);
        offset += outs[i].nbytes;
    }
    ag__st_put(b, "}", 1);
    while (!b->failed && b->len % 8)
        ag__st_put(b, " ", 1);
    if (b->failed)
        return ag__error(AG_ENOMEM, "ag_save: out of memory building the header");
    if (b->len > AG__ST_MAX_HEADER)
        return ag__error(AG_EINVAL, "ag_save: the header would be %zu bytes, more than the format's limit of %" PRIu64,
                         b->len, AG__ST_MAX_HEADER);
    return 0;
}

static int ag__st_check_save_args(const char *path, const char *const *names, ag_tensor *const *tensors, int n) {
    if (!path)
        return ag__error(AG_EINVAL, "ag_save: path is NULL");
    if (n < 0)
        return ag__error(AG_EINVAL, "ag_save: n is %d (must be >= 0)", n);
    if (n > 0 && (!names || !tensors))
        return ag__error(AG_EINVAL, "ag_save: %s is NULL", !names ? "names" : "tensors");
    char shown[AG__ST_SHOWN_SIZE];
    for (int i = 0; i < n; i++) {
        if (!names[i])
            return ag__error(AG_EINVAL, "ag_save: names[%d] is NULL", i);
        size_t len = strlen(names[i]);
        if (ag__utf8_valid_prefix((const unsigned char *)names[i], len) != len)
            return ag__error(AG_EINVAL, "ag_save: names[%d] is not valid UTF-8", i);
        if (!strcmp(names[i], "__metadata__"))
            return ag__error(AG_EINVAL, "ag_save: \"__metadata__\" is reserved by the format (names[%d])", i);
        if (!tensors[i]) {
            /* Most likely an op that failed earlier: keep its error. */
            if (ag_last_status() == AG_OK)
                return ag__error(AG_EINVAL, "ag_save: tensors[%d] ('%s') is NULL", i,
                                 ag__st_shown(shown, names[i], len));
            return ag_last_status();
        }
    }
    return 0;
}

/* The tensors to save, sorted as the file lists them; a name given twice is
 * an error. *outs is the caller's to free. */
static int ag__st_outs(const char *const *names, ag_tensor *const *tensors, int n, ag__st_out **outs) {
    char shown[AG__ST_SHOWN_SIZE];
    ag__st_out *o = malloc((n > 0 ? (size_t)n : 1) * sizeof(ag__st_out));
    if (!o)
        return ag__error(AG_ENOMEM, "ag_save: out of memory");
    for (int i = 0; i < n; i++)
        o[i] = (ag__st_out){.name = names[i],
                            .len = strlen(names[i]),
                            .t = tensors[i],
                            .nbytes = (uint64_t)tensors[i]->numel * ag__dtype_size(tensors[i]->dtype)};
    qsort(o, (size_t)n, sizeof(ag__st_out), ag__st_name_order);
    for (int i = 1; i < n; i++)
        if (!ag__st_name_cmp(o[i - 1].name, o[i - 1].len, o[i].name, o[i].len)) {
            int rc =
                ag__error(AG_EINVAL, "ag_save: the name '%s' is given twice", ag__st_shown(shown, o[i].name, o[i].len));
            free(o);
            return rc;
        }
    qsort(o, (size_t)n, sizeof(ag__st_out), ag__st_out_cmp);
    *outs = o;
    return 0;
}

/* A fresh file next to path, open for writing: *tmp (the caller's to free)
 * is its name. Written there, then renamed over path, the file is seen by a
 * reader as the old one or the whole new one, never a part. */
static int ag__st_open_tmp(const char *path, char **tmp, int *fd) {
    static _Atomic unsigned ag__st_tmp_counter;
    size_t plen = strlen(path);
    char *name = malloc(plen + 48);
    if (!name)
        return ag__error(AG_ENOMEM, "ag_save: out of memory");
    *fd = -1;
    for (int attempt = 0; *fd < 0 && attempt < 100; attempt++) {
        snprintf(name, plen + 48, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&ag__st_tmp_counter, 1));
        *fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (*fd < 0 && errno != EEXIST)
            break;
    }
    if (*fd < 0) {
        int rc = ag__error(AG_EINVAL, "ag_save: cannot create %s: %s", name, strerror(errno));
        free(name);
        return rc;
    }
    *tmp = name;
    return 0;
}

/* The header's length, the header and the tensors' bytes, synced and
 * closed (*fd is -1 after, whatever happened to the close). */
static int ag__st_write_file(int *fd, const ag__st_buf *hdr, const ag__st_out *outs, int n, const char *tmp) {
    unsigned char lenbuf[8];
    for (int k = 0; k < 8; k++)
        lenbuf[k] = (unsigned char)((uint64_t)hdr->len >> (8 * k));
    int rc;
    if ((rc = ag__st_write_all(*fd, lenbuf, 8, tmp)) || (rc = ag__st_write_all(*fd, hdr->p, hdr->len, tmp)))
        return rc;
    for (int i = 0; i < n; i++)
        if ((rc = ag__st_write_tensor(*fd, outs[i].t, outs[i].nbytes, tmp)))
            return rc;
    if (fsync(*fd) != 0)
        return ag__error(AG_EINVAL, "ag_save: writing %s failed: %s", tmp, strerror(errno));
    int cfd = *fd;
    *fd = -1;
    if (close(cfd) != 0)
        return ag__error(AG_EINVAL, "ag_save: writing %s failed: %s", tmp, strerror(errno));
    return 0;
}

int ag_save(const char *path, const char *const *names, ag_tensor *const *tensors, int n) {
    int rc = ag__st_check_save_args(path, names, tensors, n);
    if (rc)
        return rc;
    ag__st_out *outs = NULL;
    if ((rc = ag__st_outs(names, tensors, n, &outs)))
        return rc;
    ag__st_buf hdr = {0};
    char *tmp = NULL;
    int fd = -1;
    if ((rc = ag__st_header(&hdr, outs, n)) || (rc = ag__st_open_tmp(path, &tmp, &fd)) ||
        (rc = ag__st_write_file(&fd, &hdr, outs, n, tmp)))
        goto done;
    if (rename(tmp, path) != 0) {
        rc = ag__error(AG_EINVAL, "ag_save: cannot replace %s: %s", path, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
done:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(hdr.p);
    free(outs);
    return rc;
}
