// The backend a C test runs its model on: GLINT_TEST_BACKEND=cpu (default) or cuda, and
// GLINT_TEST_TP=N to split the model over N tensor-parallel ranks (rank r on GPU r, or on a CPU
// backend instance of its own).
#ifndef GLINT_TEST_MODEL_H
#define GLINT_TEST_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/util.h"
#include "model/glm.h"

static int test_wants_cuda(void) {
    const char *which = getenv("GLINT_TEST_BACKEND");
    return which && !strcmp(which, "cuda");
}

static int test_tp_size(void) {
    const char *tp = getenv("GLINT_TEST_TP");
    return tp && *tp ? atoi(tp) : 1;
}

static glint_backend *test_rank_backend(int rank, void *ctx) {
    (void)rank, (void)ctx;  // CUDA: rank r on GPU r
    if (!test_wants_cuda()) return glint_backend_cpu_rank(1);
#ifdef GLINT_HAVE_CUDA
    return glint_backend_cuda(rank);
#else
    glint_set_error("GLINT_TEST_BACKEND=cuda is not available in this build");
    return NULL;
#endif
}

// The single-device backend of the tests (NULL + message when the asked one is not built).
static glint_backend *test_backend(void) {
    const char *which = getenv("GLINT_TEST_BACKEND");
    glint_backend *be = NULL;
    if (test_wants_cuda()) {
#ifdef GLINT_HAVE_CUDA
        be = glint_backend_cuda(0);
#else
        glint_set_error("GLINT_TEST_BACKEND=cuda is not available in this build");
#endif
    } else if (which && *which && strcmp(which, "cpu")) {
        glint_set_error("GLINT_TEST_BACKEND=%s is not a backend (cpu or cuda)", which);
    } else {
        be = glint_backend_cpu(0);
    }
    if (!be) fprintf(stderr, "%s\n", glint_last_error());
    return be;
}

// Loads DIR on the test backend, over GLINT_TEST_TP ranks when set (opts may be NULL).
static glint_model *load_test_model(const char *dir, const glint_load_options *opts) {
    glint_load_options o = {0};
    if (opts) o = *opts;
    o.tp_size = test_tp_size();
    o.rank_backend = test_rank_backend;
    glint_backend *be = o.tp_size > 1 ? NULL : test_backend();
    if (o.tp_size <= 1 && !be) return NULL;
    glint_model *m = glint_model_load(dir, &o, be);
    if (!m) fprintf(stderr, "%s: %s\n", dir, glint_last_error());
    return m;
}

#endif
