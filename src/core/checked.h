/* Overflow-checked size arithmetic. Every element count, byte size and
 * offset that agrad derives from sizes a caller gave goes through these, so
 * an overflow is an error with a message and never a wrapped value that
 * passes a later check. Each returns false on overflow. */
#ifndef AG_CHECKED_H
#define AG_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool ag__mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool ag__add_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool ag__size_mul_ok(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool ag__size_add_ok(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }

/* The element count of shape[0..ndim) (sizes >= 0), multiplied left to
 * right as PyTorch's storage-size calculation does: (0, 2^62, 2^62) is an
 * empty tensor, (2^62, 2^62, 0) overflows. So for every tensor that exists,
 * each product of its leading sizes fits in int64; products of trailing
 * sizes may not when the tensor is empty, which is why kernels return early
 * on empty tensors instead of splitting their shape. */
static inline bool ag__numel_ok(int ndim, const int64_t *shape, int64_t *out) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (!ag__mul_ok(n, shape[d], &n))
            return false;
    *out = n;
    return true;
}

#endif /* AG_CHECKED_H */
