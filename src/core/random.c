/* Random tensors: a per-thread xoshiro256** generator (so threads never
 * contend and a seeded thread is reproducible), uniform floats from the top
 * 53 bits and normals by Box-Muller. */
#include "core/internal.h"

#include <math.h>

typedef struct {
    uint64_t s[4];
    bool seeded;
    bool has_spare;
    double spare;
} ag__rng;

static _Thread_local ag__rng ag__tl_rng;

static uint64_t ag__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ag_manual_seed(uint64_t seed) {
    ag__rng *r = &ag__tl_rng;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = ag__splitmix64(&x);
    r->seeded = true;
    r->has_spare = false;
}

static inline uint64_t ag__rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t ag__next(ag__rng *r) {
    if (AG__UNLIKELY(!r->seeded))
        ag_manual_seed(0x5eed5eedULL);
    uint64_t *s = r->s;
    uint64_t result = ag__rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ag__rotl(s[3], 45);
    return result;
}

static double ag__uniform(ag__rng *r) { return (double)(ag__next(r) >> 11) * 0x1.0p-53; }

static double ag__normal(ag__rng *r) {
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u1, u2;
    do
        u1 = ag__uniform(r);
    while (u1 <= 0.0);
    u2 = ag__uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2.0 * M_PI * u2);
    r->has_spare = true;
    return rad * cos(2.0 * M_PI * u2);
}

ag_tensor *ag_rand(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_zeros(ctx, dt, ndim, shape);
    if (!t)
        return NULL;
    ag__rng *r = &ag__tl_rng;
    for (int64_t i = 0; i < t->numel; i++) {
        double u = ag__uniform(r);
        if (dt == AG_FLOAT32) {
            float f = (float)u;
            if (f >= 1.0f) /* rounding up to 1 would leave [0,1) */
                f = 0x1.fffffep-1f;
            ((float *)t->data)[i] = f;
        } else {
            ((double *)t->data)[i] = u;
        }
    }
    return t;
}

ag_tensor *ag_randn(ag_ctx *ctx, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_zeros(ctx, dt, ndim, shape);
    if (!t)
        return NULL;
    ag__rng *r = &ag__tl_rng;
    for (int64_t i = 0; i < t->numel; i++)
        ag__store(t, i, ag__normal(r));
    return t;
}
