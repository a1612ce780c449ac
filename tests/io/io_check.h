/* Helpers for the file tests: a scratch folder, whole-file reads and
 * writes, and assertions that report the caller's line. */
#ifndef IO_CHECK_H
#define IO_CHECK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agrad.h"

#define assert_ok(rc)                                                                                                  \
    do {                                                                                                               \
        int rc_ = (rc);                                                                                                \
        if (rc_ != 0)                                                                                                  \
            print_error("%s -> %d: %s\n", #rc, rc_, ag_last_error());                                                  \
        assert_int_equal(rc_, 0);                                                                                      \
    } while (0)

/* rc is `code`, the last error too, and its message contains `part`. */
static inline void check_error(int rc, int code, const char *part, const char *file, int line) {
    if (rc != code || ag_last_status() != code || !strstr(ag_last_error(), part)) {
        print_error("got %d (last status %d) \"%s\"\nexpected %d with \"%s\"\n", rc, ag_last_status(), ag_last_error(),
                    code, part);
        _fail(file, line);
    }
}
#define assert_error_rc(rc, code, part) check_error((rc), (code), (part), __FILE__, __LINE__)

/* A fresh folder under $TMPDIR (or /tmp); path written to dir. */
static inline void make_scratch(char *dir, size_t n) {
    const char *base = getenv("TMPDIR");
    snprintf(dir, n, "%s/agrad-io-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
}

/* Removes the scratch folder and the files in it (no subfolders). */
static inline void remove_scratch(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096 + 512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* How many entries the folder holds (besides . and ..). */
static inline int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

static inline void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, malloc'd (caller frees); NULL if it cannot be read. */
static inline unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *n = len;
    return buf;
}

/* a and b have the same dtype, shape and bits in every element. */
static inline void check_same_tensor(const ag_tensor *a, const ag_tensor *b, const char *file, int line) {
    if (!a || !b) {
        print_error("NULL tensor: %s\n", ag_last_error());
        _fail(file, line);
    }
    if (ag_tensor_dtype(a) != ag_tensor_dtype(b) || ag_ndim(a) != ag_ndim(b)) {
        print_error("dtype %d/%d, ndim %d/%d\n", ag_tensor_dtype(a), ag_tensor_dtype(b), ag_ndim(a), ag_ndim(b));
        _fail(file, line);
    }
    for (int d = 0; d < ag_ndim(a); d++)
        if (ag_size(a, d) != ag_size(b, d)) {
            print_error("size %d: %lld vs %lld\n", d, (long long)ag_size(a, d), (long long)ag_size(b, d));
            _fail(file, line);
        }
    size_t es = ag_tensor_dtype(a) == AG_FLOAT64 ? 8 : 4, n = (size_t)ag_numel(a) * es;
    unsigned char *x = malloc(n ? n : 1), *y = malloc(n ? n : 1);
    assert_ok(ag_copy_to(a, x, ag_tensor_dtype(a)));
    assert_ok(ag_copy_to(b, y, ag_tensor_dtype(b)));
    int same = memcmp(x, y, n) == 0;
    free(x);
    free(y);
    if (!same) {
        print_error("the elements differ\n");
        _fail(file, line);
    }
}
#define assert_same_tensor(a, b) check_same_tensor((a), (b), __FILE__, __LINE__)

#endif
