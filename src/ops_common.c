/* Helpers the op families share: broadcasting shapes (NumPy rules, PyTorch's
 * error message) and argument checks. */
#include "internal.h"

#include <inttypes.h>

int ag__broadcast_shape(const ag_tensor *a, const ag_tensor *b, int *ndim, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = n - 1; i >= 0; i--) {
        int off = n - 1 - i;
        int da = a->ndim - 1 - off, db = b->ndim - 1 - off;
        int64_t sa = da >= 0 ? a->shape[da] : 1;
        int64_t sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return ag__error(AG_ESHAPE,
                             "The size of tensor a (%" PRId64 ") must match the size of tensor b (%" PRId64
                             ") at non-singleton dimension %d",
                             sa, sb, i);
        shape[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return 0;
}
