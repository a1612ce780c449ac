/* Fashion-MNIST with agrad: an MLP (784-256-10, ReLU) trained with Adam on
 * mini-batches, parameters in one context and each step's graph in another
 * that is reset after the step. Reads the IDX files of Debian's
 * dataset-fashion-mnist (gzip'd or not). The trained weights are saved as
 * safetensors under PyTorch's names for nn.Sequential(nn.Linear(784, 256),
 * nn.ReLU(), nn.Linear(256, 10)) ("0.weight", "0.bias", "2.weight",
 * "2.bias"), so model.load_state_dict(safetensors.torch.load_file(PATH))
 * takes them; --load evaluates saved weights (agrad's or PyTorch's)
 * without training.
 *
 * usage: fashion_mnist [--data DIR] [--epochs N] [--batch N] [--lr X]
 *                      [--limit N] [--seed N] [--quiet]
 *                      [--save PATH | --no-save] [--load PATH] */
#include <agrad.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define DEFAULT_WEIGHTS "fashion_mnist.safetensors"

typedef struct {
    int64_t n, rows, cols;
    float *x;   /* n x rows*cols, scaled to [0, 1] */
    int64_t *y; /* n labels in [0, 10) */
} dataset;

/* Reads a whole IDX file (gzip or plain: gzread handles both). NULL and a
 * message in err on any failure. */
static unsigned char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            unsigned char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                gzclose(f);
                snprintf(err, errlen, "out of memory reading %s", path);
                return NULL;
            }
            buf = p;
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n));
        if (got < 0) {
            int zerr;
            snprintf(err, errlen, "%s: %s", path, gzerror(f, &zerr));
            free(buf);
            gzclose(f);
            return NULL;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    gzclose(f);
    *len = n;
    return buf;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* images: magic 2051, n, rows, cols, then n*rows*cols bytes;
 * labels: magic 2049, n, then n bytes in [0, 10). */
static int load(const char *dir, const char *images, const char *labels, int64_t limit, dataset *ds, char *err,
                size_t errlen) {
    char ip[4096], lp[4096];
    size_t ilen = 0, llen = 0;
    snprintf(ip, sizeof ip, "%s/%s", dir, images);
    snprintf(lp, sizeof lp, "%s/%s", dir, labels);
    unsigned char *ib = read_file(ip, &ilen, err, errlen);
    if (!ib)
        return -1;
    unsigned char *lb = read_file(lp, &llen, err, errlen);
    if (!lb) {
        free(ib);
        return -1;
    }
    int rc = -1;
    if (ilen < 16 || be32(ib) != 2051) {
        snprintf(err, errlen, "%s: not an IDX image file (bad magic number)", ip);
        goto out;
    }
    if (llen < 8 || be32(lb) != 2049) {
        snprintf(err, errlen, "%s: not an IDX label file (bad magic number)", lp);
        goto out;
    }
    int64_t n = be32(ib + 4), rows = be32(ib + 8), cols = be32(ib + 12);
    if (rows <= 0 || cols <= 0 || rows * cols != 784 || (size_t)(16 + n * rows * cols) > ilen) {
        snprintf(err, errlen, "%s: header says %lld images of %lldx%lld, but the file is %zu bytes (need 28x28)", ip,
                 (long long)n, (long long)rows, (long long)cols, ilen);
        goto out;
    }
    if ((int64_t)be32(lb + 4) != n || (size_t)(8 + n) > llen) {
        snprintf(err, errlen, "%s: %lld labels for %lld images", lp, (long long)be32(lb + 4), (long long)n);
        goto out;
    }
    if (limit > 0 && limit < n)
        n = limit;
    ds->n = n;
    ds->rows = rows;
    ds->cols = cols;
    ds->x = malloc(sizeof(float) * (size_t)(n * rows * cols));
    ds->y = malloc(sizeof(int64_t) * (size_t)n);
    if (!ds->x || !ds->y) {
        snprintf(err, errlen, "out of memory loading %s", ip);
        goto out;
    }
    for (int64_t i = 0; i < n * rows * cols; i++)
        ds->x[i] = (float)ib[16 + i] / 255.0f;
    for (int64_t i = 0; i < n; i++) {
        if (lb[8 + i] > 9) {
            snprintf(err, errlen, "%s: label %d of image %lld is not in 0..9", lp, lb[8 + i], (long long)i);
            goto out;
        }
        ds->y[i] = lb[8 + i];
    }
    rc = 0;
out:
    free(ib);
    free(lb);
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        if (!(x)) {                                                                                                    \
            fprintf(stderr, "fashion_mnist: %s\n", ag_last_error());                                                   \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

/* nn.Linear's initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias. */
static ag_tensor *uniform_param(ag_ctx *ctx, int ndim, const int64_t *shape, int64_t fan_in) {
    ag_tensor *t = ag_rand(ctx, AG_FLOAT32, ndim, shape);
    CHECK(t);
    float *p = ag_mutable_data_ptr(t), bound = 1.0f / sqrtf((float)fan_in);
    for (int64_t i = 0; i < ag_numel(t); i++)
        p[i] = (2 * p[i] - 1) * bound;
    CHECK(ag_requires_grad_(t, true) == 0);
    return t;
}

typedef struct {
    ag_tensor *w1, *b1, *w2, *b2;
} mlp;

/* The parameters' names in the file (PyTorch's state_dict keys) and shapes. */
static const char *const param_names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
static const int64_t param_shapes[4][2] = {{256, 784}, {256, 0}, {10, 256}, {10, 0}};

static int save_weights(const mlp *m, const char *path) {
    ag_tensor *ts[4] = {m->w1, m->b1, m->w2, m->b2};
    return ag_save(path, param_names, ts, 4);
}

/* Weights saved by save_weights (or by PyTorch for the same model), checked
 * to be this model's: float32 and the shapes above. */
static int load_weights(ag_ctx *ctx, const char *path, mlp *m) {
    ag_tensor *ts[4];
    if (ag_load(ctx, path, param_names, ts, 4) != 0) {
        fprintf(stderr, "fashion_mnist: %s\n", ag_last_error());
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        int ndim = param_shapes[i][1] ? 2 : 1;
        bool ok = ag_tensor_dtype(ts[i]) == AG_FLOAT32 && ag_ndim(ts[i]) == ndim;
        for (int d = 0; ok && d < ndim; d++)
            ok = ag_size(ts[i], d) == param_shapes[i][d];
        if (!ok) {
            char want[64];
            snprintf(want, sizeof want, ndim == 2 ? "(%lld, %lld)" : "(%lld,)", (long long)param_shapes[i][0],
                     (long long)param_shapes[i][1]);
            fprintf(stderr, "fashion_mnist: %s: '%s' is not a float32 tensor of shape %s as this model needs\n", path,
                    param_names[i], want);
            return -1;
        }
    }
    *m = (mlp){ts[0], ts[1], ts[2], ts[3]};
    return 0;
}

static ag_tensor *forward(ag_ctx *ctx, const mlp *m, ag_tensor *x) {
    return ag_linear(ctx, ag_relu(ctx, ag_linear(ctx, x, m->w1, m->b1)), m->w2, m->b2);
}

static void progress(int epoch, int64_t done, int64_t total, double loss) {
    int width = 30, filled = (int)(width * done / (total ? total : 1));
    fprintf(stderr, "\repoch %d [", epoch);
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%% loss %.4f", (int)(100 * done / (total ? total : 1)), loss);
    fflush(stderr);
}

/* Accuracy of m on ds, in batches, with grad mode off; the number of
 * correct answers in *correct_out when not NULL. */
static double evaluate(const mlp *m, const dataset *ds, int64_t batch, ag_ctx *ctx, int64_t *correct_out) {
    bool prev = ag_set_grad_enabled(false);
    int64_t correct = 0;
    for (int64_t s = 0; s < ds->n; s += batch) {
        int64_t b = ds->n - s < batch ? ds->n - s : batch;
        ag_tensor *x = ag_tensor_from(ctx, AG_FLOAT32, 2, (int64_t[]){b, 784}, ds->x + s * 784);
        ag_tensor *logits = forward(ctx, m, x);
        CHECK(logits);
        const float *l = ag_data_ptr(logits);
        for (int64_t i = 0; i < b; i++) {
            int best = 0;
            for (int c = 1; c < 10; c++)
                if (l[i * 10 + c] > l[i * 10 + best])
                    best = c;
            correct += best == ds->y[s + i];
        }
        ag_ctx_reset(ctx);
    }
    ag_set_grad_enabled(prev);
    if (correct_out)
        *correct_out = correct;
    return ds->n ? (double)correct / (double)ds->n : 0;
}

int main(int argc, char **argv) {
    const char *dir = DEFAULT_DATA;
    int epochs = 5;
    int64_t batch = 128, limit = 0;
    double lr = 1e-3;
    uint64_t seed = 0;
    bool quiet = false;
    const char *save_path = DEFAULT_WEIGHTS, *load_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--lr") && i + 1 < argc)
            lr = atof(argv[++i]);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            limit = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--quiet"))
            quiet = true;
        else if (!strcmp(argv[i], "--save") && i + 1 < argc)
            save_path = argv[++i];
        else if (!strcmp(argv[i], "--no-save"))
            save_path = NULL;
        else if (!strcmp(argv[i], "--load") && i + 1 < argc)
            load_path = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--data DIR] [--epochs N] [--batch N] [--lr X] [--limit N] [--seed N] [--quiet]\n"
                    "       [--save PATH (default " DEFAULT_WEIGHTS ") | --no-save] [--load PATH]\n",
                    argv[0]);
            return 2;
        }
    }
    if (epochs < 1 || batch < 1 || !(lr > 0)) {
        fprintf(stderr, "fashion_mnist: --epochs and --batch must be positive, --lr > 0\n");
        return 2;
    }
    char err[8192];
    dataset train = {0}, test = {0};
    if (load_path) {
        /* Evaluate saved weights: no training, no training set. */
        if (load(dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", limit, &test, err, sizeof err)) {
            fprintf(stderr, "fashion_mnist: %s\n", err);
            return 1;
        }
        ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
        CHECK(params && step);
        mlp m;
        int rc = load_weights(params, load_path, &m) != 0;
        if (rc == 0) {
            int64_t correct;
            double acc = evaluate(&m, &test, 1000, step, &correct);
            printf("weights from %s: test accuracy %.2f%% (%lld of %lld)\n", load_path, 100 * acc, (long long)correct,
                   (long long)test.n);
        }
        free(test.x);
        free(test.y);
        ag_ctx_free(step);
        ag_ctx_free(params);
        return rc;
    }
    if (load(dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", limit, &train, err, sizeof err) ||
        load(dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", limit, &test, err, sizeof err)) {
        fprintf(stderr,
                "fashion_mnist: %s\n(install Debian's dataset-fashion-mnist, or point --data at a folder "
                "with the four IDX files)\n",
                err);
        return 1;
    }
    printf("Fashion-MNIST: %lld training and %lld test images, MLP 784-256-10, Adam lr %g, batch %lld, %d threads\n",
           (long long)train.n, (long long)test.n, lr, (long long)batch, ag_get_num_threads());

    ag_manual_seed(seed);
    ag_ctx *params = ag_ctx_new(), *step = ag_ctx_new();
    CHECK(params && step);
    mlp m = {uniform_param(params, 2, (int64_t[]){256, 784}, 784), uniform_param(params, 1, (int64_t[]){256}, 784),
             uniform_param(params, 2, (int64_t[]){10, 256}, 256), uniform_param(params, 1, (int64_t[]){10}, 256)};
    ag_tensor *plist[] = {m.w1, m.b1, m.w2, m.b2};
    ag_optim *opt = ag_adam_new(params, plist, 4, &(ag_adam_opts){.lr = lr});
    CHECK(opt);

    int64_t *order = malloc(sizeof(int64_t) * (size_t)train.n);
    float *xb = malloc(sizeof(float) * (size_t)(batch * 784));
    int64_t *yb = malloc(sizeof(int64_t) * (size_t)batch);
    for (int64_t i = 0; i < train.n; i++)
        order[i] = i;
    double total_time = 0;
    srand((unsigned)seed + 1);
    for (int epoch = 1; epoch <= epochs; epoch++) {
        for (int64_t i = train.n - 1; i > 0; i--) { /* shuffle */
            int64_t j = (int64_t)((double)rand() / ((double)RAND_MAX + 1) * (double)(i + 1));
            int64_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double t0 = now_s(), loss_sum = 0;
        int64_t steps = 0;
        for (int64_t s = 0; s < train.n; s += batch) {
            int64_t b = train.n - s < batch ? train.n - s : batch;
            for (int64_t i = 0; i < b; i++) {
                memcpy(xb + i * 784, train.x + order[s + i] * 784, 784 * sizeof(float));
                yb[i] = train.y[order[s + i]];
            }
            ag_tensor *x = ag_tensor_from(step, AG_FLOAT32, 2, (int64_t[]){b, 784}, xb);
            ag_tensor *loss = ag_cross_entropy(step, forward(step, &m, x), yb);
            CHECK(loss);
            CHECK(ag_optim_zero_grad(opt) == 0);
            CHECK(ag_backward(loss, NULL, NULL) == 0);
            bool prev = ag_set_grad_enabled(false);
            CHECK(ag_optim_step(opt) == 0);
            ag_set_grad_enabled(prev);
            loss_sum += ag_item(loss);
            steps++;
            ag_ctx_reset(step);
            if (!quiet && (steps % 10 == 0 || s + b >= train.n))
                progress(epoch, s + b, train.n, loss_sum / (double)steps);
        }
        double dt = now_s() - t0;
        total_time += dt;
        int64_t correct;
        double acc = evaluate(&m, &test, 1000, step, &correct);
        if (!quiet)
            fprintf(stderr, "\n");
        printf("epoch %d  loss %.4f  test accuracy %.2f%%  time %.2f s\n", epoch, loss_sum / (double)steps, 100 * acc,
               dt);
        if (epoch == epochs)
            printf("final test accuracy %.2f%% (%lld of %lld)\n", 100 * acc, (long long)correct, (long long)test.n);
        fflush(stdout);
    }
    printf("mean epoch time %.2f s\n", total_time / epochs);
    if (save_path) {
        CHECK(save_weights(&m, save_path) == 0);
        printf("saved the weights to %s (--load %s evaluates them)\n", save_path, save_path);
    }
    free(order);
    free(xb);
    free(yb);
    free(train.x);
    free(train.y);
    free(test.x);
    free(test.y);
    ag_ctx_free(step);
    ag_ctx_free(params);
    return 0;
}
