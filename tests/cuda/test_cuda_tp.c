// The CUDA backend's tensor-parallel all-reduce: N = min(GPUs, 4) ranks, each a thread with the
// backend of its own GPU, connected through tp_connect. Every rank's result must equal the host's sum
// in rank order, ((x0 + x1) + x2) + ..., bitwise, over many rounds of several all-reduces issued back
// to back (sizes 1, 7, 6144, 64·6144 and one over the kernel's 4 Mi floats per round, some at an
// address that is not 16-byte aligned), then for all-reduces captured into a CUDA graph through
// graph_begin / graph_end and replayed. Ends with the time per all-reduce. --stall instead: the last
// rank skips an all-reduce; the others must give up (NaN, not a hang) and report it at their next
// call. Needs 2 GPUs or more (fewer: says skipped, exit 0); scripts/gpu-test.sh tp.
//   usage: test_cuda_tp [ROUNDS]     (default 500; under 50 also fewer graph steps and no timing)
//          test_cuda_tp --stall      (takes the all-reduce's 20 s timeout)
#include <cuda_runtime_api.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "common/util.h"

enum { MAX_RANKS = 4, PER_ROUND = 3, GRAPH_STEPS = 200 };
enum { LARGE = (4 << 20) + 6144 + 3 };  // two kernel rounds, the second with an odd tail
static const size_t SIZES[] = {1, 7, 6144, 64 * 6144};
static const size_t GRAPH_SIZES[PER_ROUND] = {6144, 7, 64 * 6144};

static int n_ranks, rounds = 500, graph_steps = GRAPH_STEPS, stall;
static glint_tp_link tp_link;
static pthread_barrier_t step_barrier;  // the test's own lockstep, apart from the link's
static float *inputs[MAX_RANKS][PER_ROUND];  // each rank's x of the current step (host copies)
static int any_backend_missing, total_failures;  // read after a barrier: the same for every rank

typedef struct {
    int rank;
    glint_backend *be;
    int failures, replays;
    double seconds_small, seconds_large, seconds_stalled;
} rank_state;

// Deterministic values of both signs over several binades, so that the order of the sums shows.
static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t h = mix(seed * 0x9E3779B97F4A7C15ull + i);
        x[i] = ldexpf((float)(h & 0xffffff) / 8388608.0f - 1.0f, (int)((h >> 24) % 17) - 8);
    }
}

static size_t size_of(int round, int j) {
    if (round % 25 == 0 && j == 0) return LARGE;
    return SIZES[(size_t)(round + j) % (sizeof SIZES / sizeof SIZES[0])];
}

// Compares the rank's result of buffer j with the host sum in rank order; counts the mismatches.
static int check(const rank_state *s, const float *got, int j, size_t n, const char *what, int step) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = inputs[0][j][i];
        for (int r = 1; r < n_ranks; r++) want += inputs[r][j][i];
        if (memcmp(&want, &got[i], sizeof want)) {
            if (bad < 3)
                fprintf(stderr, "FAIL: rank %d, %s %d, all-reduce %d of %zu floats: [%zu] = %.9g, want %.9g%s%s\n",
                        s->rank, what, step, j, n, i, got[i], want, glint_last_error()[0] ? "; error: " : "",
                        glint_last_error());
            bad++;
        }
    }
    __atomic_add_fetch(&total_failures, bad, __ATOMIC_RELAXED);
    return bad;
}

// The last rank skips one all-reduce: the others' kernels must give up after the timeout with NaN,
// and their next all_reduce_sum must set the error. The link is out of step afterwards.
static void stall_check(rank_state *s, float *dev, float *got) {
    glint_backend *be = s->be;
    const int r = s->rank, late = n_ranks - 1;
    const size_t n = 6144;
    fill(inputs[r][0], n, (uint64_t)r);
    be->upload(be, dev, inputs[r][0], sizeof(float) * n);
    be->all_reduce_sum(be, dev, n);  // in step
    pthread_barrier_wait(&step_barrier);
    be->download(be, got, dev, n);
    s->failures += check(s, got, 0, n, "stall warm-up", 0);
    const double t0 = glint_now_seconds();
    if (r != late) be->all_reduce_sum(be, dev, n);
    be->download(be, got, dev, n);
    s->seconds_stalled = glint_now_seconds() - t0;
    if (r == late) return;
    int nan = 0;
    for (size_t i = 0; i < n; i++) nan += isnan(got[i]);
    glint_clear_error();
    be->all_reduce_sum(be, dev, n);  // sees the timeout of the last call
    const int reported = strstr(glint_last_error(), "waited more than") != NULL;
    be->download(be, got, dev, n);
    if (nan != (int)n || !reported || !isnan(got[0])) {
        fprintf(stderr, "FAIL: rank %d after the stall: %d of %zu NaN, error \"%s\", next result %g\n", r, nan, n,
                glint_last_error(), got[0]);
        s->failures++;
    } else if (r == 0) {
        printf("rank 0 gave up after %.1f s: \"%s\"\n", s->seconds_stalled, glint_last_error());
    }
}

static void *rank_main(void *arg) {
    rank_state *s = arg;
    const int r = s->rank;
    s->be = glint_backend_cuda(r);  // binds this thread to GPU r
    glint_backend *be = s->be;
    if (!be) {
        fprintf(stderr, "rank %d: %s\n", r, glint_last_error());
        any_backend_missing = 1;
    }
    pthread_barrier_wait(&step_barrier);
    if (any_backend_missing) {
        s->failures++;
        return NULL;
    }
    if (be->tp_connect(be, &tp_link, r)) {
        fprintf(stderr, "rank %d: tp_connect: %s\n", r, glint_last_error());
        s->failures++;
    }
    pthread_barrier_wait(&step_barrier);
    if (tp_link.failed) {  // every rank passes tp_disconnect's wait
        be->tp_disconnect(be);
        return NULL;
    }
    float *dev[PER_ROUND], *got = malloc(sizeof(float) * (LARGE + 1));
    for (int j = 0; j < PER_ROUND; j++) dev[j] = be->alloc(be, sizeof(float) * (LARGE + 1), "test buffer");
    if (stall) stall_check(s, dev[0], got);  // (no rounds, no graph steps)

    // Rounds of PER_ROUND all-reduces issued back to back (no host synchronization between them: the
    // ranks' kernels meet on the devices), then every result checked.
    for (int round = 0; round < rounds && __atomic_load_n(&total_failures, __ATOMIC_RELAXED) < 10; round++) {
        size_t n[PER_ROUND], offset[PER_ROUND];
        for (int j = 0; j < PER_ROUND; j++) {
            n[j] = size_of(round, j), offset[j] = round % 7 == 3 && j == 1;  // x + 1: not 16-byte aligned
            fill(inputs[r][j], n[j], (uint64_t)round * 64 + (uint64_t)j * 8 + (uint64_t)r);
            be->upload(be, dev[j] + offset[j], inputs[r][j], sizeof(float) * n[j]);
        }
        if (round % 10 == 5 && r == round / 10 % n_ranks)  // one rank late: the others' kernels wait
            nanosleep(&(struct timespec){0, 2000000}, NULL);
        for (int j = 0; j < PER_ROUND; j++) be->all_reduce_sum(be, dev[j] + offset[j], n[j]);
        pthread_barrier_wait(&step_barrier);  // every rank's inputs are written
        for (int j = 0; j < PER_ROUND; j++) {
            be->download(be, got, dev[j] + offset[j], n[j]);
            s->failures += check(s, got, j, n[j], "round", round);
        }
        pthread_barrier_wait(&step_barrier);  // every rank has checked: inputs may change
    }

    // The same all-reduces captured into a graph (the key's first step runs eagerly, the second is
    // captured, later ones replay), inputs uploaded into the same buffers before each step.
    for (int step = 0; step < graph_steps && be->graph_begin && __atomic_load_n(&total_failures, __ATOMIC_RELAXED) < 10;
         step++) {
        for (int j = 0; j < PER_ROUND; j++) {
            fill(inputs[r][j], GRAPH_SIZES[j], 1000003ull * (uint64_t)(step + 1) + (uint64_t)j * 8 + (uint64_t)r);
            be->upload(be, dev[j], inputs[r][j], sizeof(float) * GRAPH_SIZES[j]);
        }
        const int replay = be->graph_begin(be, 0x7470);
        if (!replay)
            for (int j = 0; j < PER_ROUND; j++) be->all_reduce_sum(be, dev[j], GRAPH_SIZES[j]);
        if (be->graph_end(be) < 0)  // recording failed and nothing ran: the ops again, eagerly
            for (int j = 0; j < PER_ROUND; j++) be->all_reduce_sum(be, dev[j], GRAPH_SIZES[j]);
        s->replays += replay;
        pthread_barrier_wait(&step_barrier);
        for (int j = 0; j < PER_ROUND; j++) {
            be->download(be, got, dev[j], GRAPH_SIZES[j]);
            s->failures += check(s, got, j, GRAPH_SIZES[j], "graph step", step);
        }
        pthread_barrier_wait(&step_barrier);
    }

    // Time per all-reduce, issued back to back (a decode step's hidden state, and 64 of them).
    const size_t timed[2] = {6144, 64 * 6144};
    for (int k = 0; k < 2 && rounds >= 50; k++) {
        const int reps = k ? 200 : 1000;
        be->download(be, got, dev[0], 1);
        pthread_barrier_wait(&step_barrier);
        const double t0 = glint_now_seconds();
        for (int i = 0; i < reps; i++) be->all_reduce_sum(be, dev[0], timed[k]);
        be->download(be, got, dev[0], 1);
        *(k ? &s->seconds_large : &s->seconds_small) = (glint_now_seconds() - t0) / reps;
    }
    for (int j = 0; j < PER_ROUND; j++) be->free(be, dev[j]);
    free(got);
    be->tp_disconnect(be);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--stall")) stall = 1, rounds = 0;
    else if (argc > 1) rounds = atoi(argv[1]);
    if (rounds < 50) graph_steps = rounds;
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess) gpus = 0;
    if (gpus < 2) {
        printf("skipped: %d GPU(s); the tensor-parallel all-reduce needs 2 or more\n", gpus);
        return 0;
    }
    n_ranks = gpus < MAX_RANKS ? gpus : MAX_RANKS;
    tp_link.n_ranks = n_ranks;
    pthread_barrier_init(&tp_link.barrier, NULL, (unsigned)n_ranks);
    pthread_barrier_init(&step_barrier, NULL, (unsigned)n_ranks);
    for (int r = 0; r < n_ranks; r++)
        for (int j = 0; j < PER_ROUND; j++) inputs[r][j] = malloc(sizeof(float) * (LARGE + 1));
    rank_state states[MAX_RANKS] = {{0}};
    pthread_t threads[MAX_RANKS];
    const double t0 = glint_now_seconds();
    for (int r = 0; r < n_ranks; r++) {
        states[r].rank = r;
        pthread_create(&threads[r], NULL, rank_main, &states[r]);
    }
    int failures = 0, replays = 0;
    for (int r = 0; r < n_ranks; r++) {
        pthread_join(threads[r], NULL);
        failures += states[r].failures, replays += states[r].replays;
    }
    if (stall) {
        printf("%s: the last of %d ranks skipped an all-reduce; the others gave up with NaN and reported it\n",
               failures ? "FAILED" : "ok", n_ranks);
        return failures ? 1 : 0;
    }
    if (states[0].be && states[0].be->graph_begin && !failures && replays == 0 && graph_steps > 2) {
        fprintf(stderr, "FAIL: no graph was replayed\n");
        failures++;
    }
    printf("device 0: %s\n", states[0].be ? states[0].be->describe(states[0].be) : "?");
    if (rounds >= 50)
        printf("all-reduce of 6144 floats: %.1f us, of 64 x 6144: %.1f us (%.0f GB/s of each rank's data), rank 0\n",
               states[0].seconds_small * 1e6, states[0].seconds_large * 1e6,
               states[0].seconds_large > 0 ? 64 * 6144 * 4 / states[0].seconds_large / 1e9 : 0.0);
    printf("%s: %d ranks, %d rounds of %d all-reduces (sizes 1 to %d floats) and %d graph steps (%d replays) "
           "bitwise equal to the host's sums in rank order, %d mismatches (%.1f s)\n",
           failures ? "FAILED" : "ok", n_ranks, rounds, PER_ROUND, LARGE, graph_steps, replays, failures,
           glint_now_seconds() - t0);
    return failures ? 1 : 0;
}
