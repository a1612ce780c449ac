/* Private entry points of the safetensors reader (safetensors.c), for the
 * library's tests and its fuzz target: the same loader over a buffer in
 * memory, and the size of the largest allocation a load made. */
#ifndef AG_SAFETENSORS_H
#define AG_SAFETENSORS_H

#include "agrad.h"

/* ag_load over the len bytes at buf (a whole file's contents); `what` names
 * the buffer in messages. Same contract as ag_load. */
int ag__load_mem(ag_ctx *ctx, const void *buf, size_t len, const char *what, const char *const *names, ag_tensor **out,
                 int n);

/* The largest single allocation (heap buffer or tensor data) that ag_load /
 * ag__load_mem made on this thread since the last call; resets it to 0. */
size_t ag__safetensors_peak_alloc(void);

#endif /* AG_SAFETENSORS_H */
