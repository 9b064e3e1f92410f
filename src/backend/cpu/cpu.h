// CPU backend internals shared by its source files.
#ifndef GLINT_CPU_H
#define GLINT_CPU_H

#include "backend/backend.h"

void glint_cpu_matmul(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T,
                      const glint_weight *W);
// Picks the dot-product kernels: "generic", "avx2", or NULL/anything else for the best available.
void glint_cpu_select_kernels(const char *force_isa);
const char *glint_cpu_isa(void);

#endif
