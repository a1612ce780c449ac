/* Accuracy of the vector math levels (src/ops/vmath.h) against long double
 * references: for every level this CPU runs (libm, and SLEEF's SSE2, AVX2
 * and AVX-512 levels when built with SLEEF), every function, float and
 * double, on random points over each function's range and over all
 * magnitudes, and on the edges: +-0, denormals, +-inf, nan, the overflow
 * and underflow thresholds of exp, large arguments of sin and cos, tanh
 * near 0 and where it saturates, sigmoid far out on both sides, log and
 * log1p at their poles, pow's special pairs. The largest error in ulp of
 * each (level, function, dtype) is asserted against the bound in BOUNDS
 * and printed. Then: a result does not depend on where an element sits in
 * its array (the tails of partial vectors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/vmath.h"

#define NFUNCS (AG__VM_COUNT + 1) /* the unary ones, then pow */
#define POW NFUNCS - 1

static const char *const NAMES[NFUNCS] = {"exp", "log", "log1p", "tanh", "sigmoid", "sin", "cos", "sqrt", "pow"};

/* Largest error allowed, in ulp of the result's dtype, float then double:
 * SLEEF's u10 functions and glibc's are within 1 ulp (glibc's tanh within
 * 2). In sigmoid exp's ulp of e can be two of the result (e near the
 * bottom of its binade, the result near the top of its), plus the
 * division's rounding: 2.40 ulp at most over every float with SLEEF
 * (0.5 with libm, which computes floats in double).
 * exp in double is 1.5: in the last 1.7e-6 before it overflows, where
 * SLEEF gives up early, it is exp(x - 1) times e in two parts. */
static const double BOUNDS[NFUNCS][2] = {{1.0, 1.5}, {1.0, 1.0}, {1.0, 1.0}, {2.0, 2.0}, {2.5, 2.5},
                                         {1.0, 1.0}, {1.0, 1.0}, {0.5, 0.5}, {1.0, 1.0}};

static long double reference(int fn, long double x, long double y) {
    switch (fn) {
    case AG__VM_EXP:
        return expl(x);
    case AG__VM_LOG:
        return logl(x);
    case AG__VM_LOG1P:
        return log1pl(x);
    case AG__VM_TANH:
        return tanhl(x);
    case AG__VM_SIGMOID:
        return x >= 0 ? 1 / (1 + expl(-x)) : expl(x) / (1 + expl(x));
    case AG__VM_SIN:
        return sinl(x);
    case AG__VM_COS:
        return cosl(x);
    case AG__VM_SQRT:
        return sqrtl(x);
    default:
        return powl(x, y);
    }
}

/* |got - want| in units of the last place of want in a type with `mant`
 * bits of mantissa and exponents down to emin (denormals have the spacing
 * of the smallest normal exponent). An infinity stands for 2^(emax + 1),
 * so a result rounded up to inf at the overflow threshold counts as the
 * ulp or so it is. nan must meet nan; an exact infinity must meet it. */
static double ulp_error(long double got, long double want, int mant, int emin, int emax) {
    if (isnan(want) || isnan(got))
        return isnan(want) && isnan(got) ? 0 : INFINITY;
    /* beyond the type's range the rounded result is an infinity */
    if (fabsl(want) >= ldexpl(1, emax + 1))
        want = copysignl(INFINITY, want);
    if (isinf(want))
        return got == want ? 0 : INFINITY;
    if (isinf(got))
        got = copysignl(ldexpl(1, emax + 1), got);
    if (got == want)
        return 0;
    int e = want == 0 ? emin : ilogbl(want);
    if (e < emin)
        e = emin;
    return (double)(fabsl(got - want) / ldexpl(1, e - (mant - 1)));
}

/* xorshift64*: the same points every run */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static double uniform(double lo, double hi) { return lo + (hi - lo) * (double)(rng() >> 11) * 0x1p-53; }

/* Edge points for both dtypes (rounded to float for float). */
static const double EDGES[] = {
    0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, 10.0, -10.0, 1e-300, -1e-300,
    /* float and double denormals and the smallest normals */
    0x1p-149, -0x1p-149, 0x1p-127, 0x1p-126, -0x1p-126, 0x1p-1074, -0x1p-1074, 0x1p-1022, 0x1.fffffffffffffp-1023,
    /* exp's overflow and underflow thresholds, float then double */
    88.72283935546875, 88.7228317, 88.0, 89.0, -87.33654475, -88.0, -103.0, -103.97, -104.0, -110.0, 709.782712893384,
    709.7, 710.0, -708.39641853226408, -745.1332191019411, -745.2, -746.0,
    /* where SLEEF's exp in double overflows early and log1p gives up */
    709.78271114955749, 709.7827111495576, 709.7827115, 709.782712, 709.7827128, 709.78271289338397, 709.782712893384,
    9.9e37, 1.01e38, 2e38, 9.9e306, 1.01e307, 1e308,
    /* sigmoid's worst float (2.40 ulp, found by trying every float) */
    -0x1.0a111ap+2,
    /* tanh near 0 and where it saturates, sigmoid far out */
    1e-5, -1e-5, 1e-10, 0x1p-24, -0x1p-24, 0x1p-12, 9.0, -9.0, 9.1, 19.0, 20.0, -20.0, 22.0, 40.0, 1e3, -1e3, 100.0,
    -100.0, -88.0, -89.0, 16.7, -16.7, 37.0, -37.0, 745.0, -745.0, -750.0,
    /* large arguments of sin and cos */
    1e4, -1e4, 1e6, 105414.0, 1e7, 8388608.0, 1e10, 1e15, 1e20, 1e22, 1e30, 3.4e38, -3.4e38, 1e100, 1e300, 1.79e308,
    3.14159265358979, 1.5707963267948966, 6.283185307179586, 710.0, 1.0e5 + 0.5, 2.0e6 / 3,
    /* log and log1p at and near their poles, the largest finite values */
    -0.999999, -0.9999999999, -1.0 + 0x1p-24, -1.0 + 0x1p-53, -1.5, 1.0000001, 0.9999999, 3.4028234663852886e38,
    1.7976931348623157e308, -3.4028234663852886e38, INFINITY, -INFINITY, NAN};
#define NEDGES (sizeof EDGES / sizeof EDGES[0])

/* pow's special pairs (C99 F.9.4.4) and ordinary ones. */
static const double POW_EDGES[][2] = {
    {0.0, 0.0},        {-0.0, 0.0},       {0.0, 2.0},       {0.0, -1.0},      {-0.0, -1.0},     {-0.0, 3.0},
    {0.0, 0.5},        {0.0, -0.5},       {1.0, NAN},       {NAN, 0.0},       {NAN, 1.0},       {-1.0, INFINITY},
    {-1.0, -INFINITY}, {0.5, INFINITY},   {2.0, INFINITY},  {0.5, -INFINITY}, {2.0, -INFINITY}, {-INFINITY, 3.0},
    {-INFINITY, 2.0},  {-INFINITY, -3.0}, {INFINITY, -1.0}, {INFINITY, 0.5},  {-2.0, 0.5},      {-2.0, 3.0},
    {-2.0, -3.0},      {-8.0, 1.0 / 3},   {2.0, 127.0},     {2.0, 128.0},     {2.0, -149.0},    {2.0, -150.0},
    {2.0, 1023.0},     {2.0, 1024.0},     {2.0, -1074.0},   {10.0, 38.5},     {10.0, -45.0},    {1.0000001, 1e8},
    {0.9999999, 1e8},  {3.0, 0.5},        {1e-300, 0.5},    {0x1p-149, 0.5},  {1e10, 30.0},     {1e-10, -30.0},
    {4.0, -0.5},       {1.5, 2.5},        {-1.5, 2.0}};
#define NPOW_EDGES (sizeof POW_EDGES / sizeof POW_EDGES[0])

/* Random points: nrange uniform over the function's useful range, the rest
 * over all magnitudes (a random exponent and mantissa, either sign). */
static void random_points(int fn, bool dbl, double *x, double *y, int n) {
    double lo = -10, hi = 10;
    switch (fn) {
    case AG__VM_EXP:
        lo = dbl ? -750 : -105, hi = dbl ? 710 : 89;
        break;
    case AG__VM_LOG:
    case AG__VM_SQRT:
        lo = 0, hi = 1e3;
        break;
    case AG__VM_LOG1P:
        lo = -1, hi = 10;
        break;
    case AG__VM_TANH:
        lo = -25, hi = 25;
        break;
    case AG__VM_SIGMOID:
        lo = dbl ? -750 : -110, hi = 50;
        break;
    case AG__VM_SIN:
    case AG__VM_COS:
        lo = -1e5, hi = 1e5;
        break;
    default:
        lo = 0, hi = 20;
        break;
    }
    for (int i = 0; i < n; i++) {
        if (i % 2 == 0) {
            x[i] = uniform(lo, hi);
        } else {
            int emax = dbl ? 1023 : 127, emin = dbl ? -1074 : -149;
            int e = emin + (int)(rng() % (uint64_t)(emax - emin + 1));
            x[i] = ldexp(uniform(1, 2), e) * (rng() & 1 ? -1 : 1);
        }
        /* pow: exponents from a small range (results that neither overflow
         * nor vanish) and any magnitude, on positive and negative bases */
        y[i] = i % 4 < 2 ? uniform(-30, 30) : (i % 4 == 2 ? (double)(int)uniform(-40, 40) : uniform(-1e3, 1e3));
        if (fn == POW && i % 3 == 0)
            x[i] = fabs(x[i]);
    }
}

typedef struct {
    double worst;
    double at_x, at_y;
    long double got, want;
} errinfo;

/* Runs one level's function on x (and y) in dtype and records the worst
 * error against the reference. */
static void measure(const ag__vmath *vm, int fn, bool dbl, const double *x, const double *y, int n, errinfo *e) {
    double *xd = malloc((size_t)n * sizeof *xd), *yd = malloc((size_t)n * sizeof *yd);
    double *od = malloc((size_t)n * sizeof *od);
    float *xf = malloc((size_t)n * sizeof *xf), *yf = malloc((size_t)n * sizeof *yf),
          *of = malloc((size_t)n * sizeof *of);
    assert_true(xd && yd && od && xf && yf && of);
    for (int i = 0; i < n; i++) {
        xd[i] = x[i];
        yd[i] = y[i];
        xf[i] = (float)x[i];
        yf[i] = (float)y[i];
    }
    if (dbl && fn == POW)
        vm->pow_f64(od, xd, yd, n);
    else if (dbl)
        vm->f64[fn](od, xd, n);
    else if (fn == POW)
        vm->pow_f32(of, xf, yf, n);
    else
        vm->f32[fn](of, xf, n);
    for (int i = 0; i < n; i++) {
        long double xi = dbl ? xd[i] : xf[i], yi = dbl ? yd[i] : yf[i];
        long double got = dbl ? od[i] : of[i], want = reference(fn, xi, yi);
        double err = dbl ? ulp_error(got, want, DBL_MANT_DIG, DBL_MIN_EXP - 1, DBL_MAX_EXP - 1)
                         : ulp_error(got, want, FLT_MANT_DIG, FLT_MIN_EXP - 1, FLT_MAX_EXP - 1);
        /* a zero result keeps the sign the reference has (sin(-0) = -0) */
        if (want == 0 && got == 0 && signbit(got) != signbit(want))
            err = INFINITY;
        if (err > e->worst || isnan(err))
            *e = (errinfo){err, (double)xi, (double)yi, got, want};
    }
    free(xd);
    free(yd);
    free(od);
    free(xf);
    free(yf);
    free(of);
}

#define NRANDOM 40000

static void test_accuracy_every_level(void **state) {
    (void)state;
    double *x = malloc((NRANDOM + NEDGES + NPOW_EDGES) * sizeof *x);
    double *y = malloc((NRANDOM + NEDGES + NPOW_EDGES) * sizeof *y);
    assert_true(x && y);
    int levels = 0, failures = 0;
    printf("worst error in ulp (float / double), %d random points and the edges per case:\n", NRANDOM);
    printf("%-8s", "level");
    for (int fn = 0; fn < NFUNCS; fn++)
        printf(" %15s", NAMES[fn]);
    printf("\n");
    for (int l = 0; l < AG__VM_LEVELS; l++) {
        const ag__vmath *vm = ag__vmath_level((ag__vm_level)l);
        if (!vm)
            continue;
        levels++;
        printf("%-8s", vm->name);
        for (int fn = 0; fn < NFUNCS; fn++) {
            double worst[2];
            for (int dbl = 0; dbl < 2; dbl++) {
                rng_state = 0x9E3779B97F4A7C15ull + (uint64_t)fn; /* the same points at every level */
                random_points(fn, dbl, x, y, NRANDOM);
                int n = NRANDOM;
                if (fn == POW) {
                    for (size_t k = 0; k < NPOW_EDGES; k++, n++) {
                        x[n] = POW_EDGES[k][0];
                        y[n] = POW_EDGES[k][1];
                    }
                } else {
                    for (size_t k = 0; k < NEDGES; k++, n++) {
                        x[n] = EDGES[k];
                        y[n] = 0;
                    }
                }
                errinfo e = {0};
                measure(vm, fn, dbl, x, y, n, &e);
                worst[dbl] = e.worst;
                if (!(e.worst <= BOUNDS[fn][dbl])) {
                    fprintf(stderr, "\n%s %s (%s): %.3g ulp at x = %.17g y = %.17g: got %.17Lg, want %.17Lg\n",
                            vm->name, NAMES[fn], dbl ? "double" : "float", e.worst, e.at_x, e.at_y, e.got, e.want);
                    failures++;
                }
            }
            printf(" %7.3f/%7.3f", worst[0], worst[1]);
        }
        printf("\n");
    }
    free(x);
    free(y);
    assert_true(levels >= 1);
    assert_int_equal(failures, 0);
}

/* Each element's result is the same wherever it sits: arrays of every
 * length up to a few vectors, at every offset, against one long run. */
static void test_results_do_not_depend_on_position(void **state) {
    (void)state;
    enum { N = 67 };
    float xf[N], yf[N], whole[N], part[N];
    double xd[N], yd[N], wholed[N], partd[N];
    for (int i = 0; i < N; i++) {
        xd[i] = uniform(-4, 4);
        yd[i] = uniform(-3, 3);
        xf[i] = (float)xd[i];
        yf[i] = (float)yd[i];
    }
    for (int l = 0; l < AG__VM_LEVELS; l++) {
        const ag__vmath *vm = ag__vmath_level((ag__vm_level)l);
        if (!vm)
            continue;
        for (int fn = 0; fn < NFUNCS; fn++) {
            if (fn == POW) {
                vm->pow_f32(whole, xf, yf, N);
                vm->pow_f64(wholed, xd, yd, N);
            } else {
                vm->f32[fn](whole, xf, N);
                vm->f64[fn](wholed, xd, N);
            }
            for (int off = 0; off < 20; off++)
                for (int len = 0; off + len <= N && len < 40; len++) {
                    memset(part, 0, sizeof part);
                    memset(partd, 0, sizeof partd);
                    if (fn == POW) {
                        vm->pow_f32(part + off, xf + off, yf + off, len);
                        vm->pow_f64(partd + off, xd + off, yd + off, len);
                    } else {
                        vm->f32[fn](part + off, xf + off, len);
                        vm->f64[fn](partd + off, xd + off, len);
                    }
                    for (int i = off; i < off + len; i++)
                        if (memcmp(&part[i], &whole[i], sizeof part[i]) ||
                            memcmp(&partd[i], &wholed[i], sizeof partd[i]))
                            fail_msg("%s %s: element %d differs at offset %d length %d", vm->name, NAMES[fn], i, off,
                                     len);
                    if (off + len < N)
                        assert_true(part[off + len] == 0 && partd[off + len] == 0); /* nothing written past the end */
                }
        }
    }
}

/* The level the kernels use is the widest one this CPU runs. */
static void test_widest_level_is_chosen(void **state) {
    (void)state;
    const ag__vmath *chosen = ag__vmath_get();
    assert_non_null(chosen);
    assert_ptr_equal(chosen, ag__vmath_get());
    if (getenv("AG_VMATH"))
        return;
    const ag__vmath *widest = NULL;
    for (int l = 0; l < AG__VM_LEVELS; l++)
        if (ag__vmath_level((ag__vm_level)l))
            widest = ag__vmath_level((ag__vm_level)l);
    assert_ptr_equal(chosen, widest);
    printf("vector math level: %s\n", chosen->name);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy_every_level),
        cmocka_unit_test(test_results_do_not_depend_on_position),
        cmocka_unit_test(test_widest_level_is_chosen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
