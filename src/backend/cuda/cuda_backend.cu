// CUDA backend: the contract of backend/backend.h on a GPU (an instance per device, each driven by
// its own thread for tensor parallelism). Activations are FP32 in device memory, weights are copied
// to the device in their checkpoint format by prepare_weight and dequantized in the kernels,
// accumulation is FP32. Everything runs on one stream per device (glint_cuda_stream()); a download
// waits for it. Decode steps' layer stacks are replayed as CUDA graphs (GLINT_CUDA_GRAPHS=0: not).
//
// Nothing is read back during a decode step (T <= 64): the indexer sizes its grid from the cache
// map's host-side max_position, the MoE routes and plans on the device (cuda_moe.cu). Prefill
// (T > 64) reads the MoE's per-expert counts back to launch one tiled matmul per active expert.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

typedef struct {
    glint_backend base;
    int device, sms;
    size_t smem_per_block;  // the most shared memory a block may opt in to
    size_t attend_smem;   // the attention kernel's shared memory when attend_resident was measured
    int attend_resident;  // its blocks resident per SM
    int attend_tc;        // ... of the tensor-core kernel (else the FP32 one)
    char description[256];
    void **owned;  // device copies made by prepare_weight, freed never (they live as long as the model)
    size_t n_owned, cap_owned, owned_bytes;
    // Grow-only scratch buffers for the ops that need temporaries.
    void *scratch[GLINT_CUDA_STREAMS][16];  // per stream slot (ops on different streams run at once)
    size_t scratch_bytes[GLINT_CUDA_STREAMS][16];
    // The multi-block top-k's states (SCR_TOPK) hold zeros between selections (its passes leave them
    // so): zeroed once after each allocation instead of by a memset node before every selection,
    // which broke the chain of launches (~14 us per layer at 128k on H200).
    int topk_zeroed[GLINT_CUDA_STREAMS];
    // alloc/free go through a pool: the model allocates its activations on every forward, and
    // cudaMalloc/cudaFree (which synchronizes the device) there would cost more than small steps.
    struct pooled {
        void *ptr;
        size_t bytes;
        int in_use;
    } *pool;
    size_t n_pool, cap_pool;
} cuda_backend;

enum {
    SCR_IDS, SCR_SCORES, SCR_BW, SCR_ATTEND, SCR_TOPK, SCR_ARGMAX, SCR_SAMPLE, SCR_EDITS, SCR_TOPK_COUNTS
};

// The instance behind be. Its first call on a thread that never made a backend binds that thread
// (glint_cuda_device), so the op's CUDA calls that precede any stream use go to the right device.
static cuda_backend *cuda_of(glint_backend *be) {
    glint_cuda_device();
    return (cuda_backend *)be;
}

extern "C" int glint_cuda_device_of(glint_backend *be) { return ((cuda_backend *)be)->device; }

// Per-device state (cuda_internal.cuh) and the thread's binding.
glint_cuda_device_state glint_cuda_devices[GLINT_CUDA_MAX_DEVICES];
thread_local int glint_cuda_thread_device = -1;
thread_local int glint_cuda_thread_branch = 0;
static int first_device = -1;  // the first device a backend was made for (atomic: read by unbound threads)

int glint_cuda_bind_first_device(void) {
    const int device = __atomic_load_n(&first_device, __ATOMIC_ACQUIRE);
    if (device < 0) return 0;  // no backend yet: nothing to bind to
    cudaSetDevice(device);
    glint_cuda_thread_device = device;
    return device;
}

// GLINT_CUDA_PROFILE=1: every op waits for the device and its wall time (launch + GPU) is added
// to its name's total; the table goes to stderr at exit (one per device). Ops are called back to
// back by the model, so the time since the previous op's end is this op's time.
enum { PROFILE_SLOTS = 128 };
static int profile_on;  // the same for every device (set before any backend is returned)
static struct profile_table {
    double last;
    char name[PROFILE_SLOTS][64];
    double seconds[PROFILE_SLOTS];
    long calls[PROFILE_SLOTS];
    int n;
} profiles[GLINT_CUDA_MAX_DEVICES];

static void profile_report_table(profile_table &profile, const char *label) {
    double total = 0;
    for (int i = 0; i < profile.n; i++) total += profile.seconds[i];
    fprintf(stderr, "GLINT_CUDA_PROFILE%s: %-40s %10s %12s %10s %7s\n", label, "op", "calls", "total ms", "us/call",
            "share");
    for (int done = 0; done < profile.n; done++) {  // largest first
        int best = -1;
        for (int i = 0; i < profile.n; i++)
            if (profile.calls[i] >= 0 && (best < 0 || profile.seconds[i] > profile.seconds[best])) best = i;
        fprintf(stderr, "GLINT_CUDA_PROFILE%s: %-40s %10ld %12.3f %10.1f %6.1f%%\n", label, profile.name[best],
                profile.calls[best], profile.seconds[best] * 1e3,
                profile.seconds[best] * 1e6 / (double)profile.calls[best],
                100.0 * profile.seconds[best] / (total > 0 ? total : 1));
        profile.calls[best] = -1;
    }
}

static void profile_report(void) {
    int used = 0;
    for (int d = 0; d < GLINT_CUDA_MAX_DEVICES; d++) used += profiles[d].n > 0;
    for (int d = 0; d < GLINT_CUDA_MAX_DEVICES; d++) {
        if (!profiles[d].n) continue;
        char label[32] = "";
        if (used > 1) snprintf(label, sizeof label, " (device %d)", d);  // one device: the table as before
        profile_report_table(profiles[d], label);
    }
}

static void profile_mark(const char *what) {
    cudaDeviceSynchronize();
    profile_table &profile = profiles[glint_cuda_device()];
    const double now = glint_now_seconds(), dt = now - profile.last;
    profile.last = now;
    int i = 0;
    while (i < profile.n && strcmp(profile.name[i], what)) i++;
    if (i == profile.n) {
        if (profile.n == PROFILE_SLOTS) return;
        snprintf(profile.name[profile.n++], sizeof profile.name[0], "%s", what);
    }
    profile.seconds[i] += dt, profile.calls[i]++;
}

int glint_cuda_profiling(void) { return profile_on; }

int glint_cuda_chaining(void) {
    static int chaining_of_device[GLINT_CUDA_MAX_DEVICES];  // 0 unknown, 1 off, 2 on
    int &chaining = chaining_of_device[glint_cuda_device()];
    if (!chaining) {
        int major = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, glint_cuda_device()) != cudaSuccess)
            cudaGetLastError(), major = 0;
        chaining = major >= 9 && glint_cuda_switch("GLINT_CUDA_PDL", 1) ? 2 : 1;
    }
    return chaining == 2;
}

void glint_cuda_fail(void) { glint_cuda_dev().op_failed = 1; }

int glint_cuda_check(const char *what) {
    if (profile_on) profile_mark(what);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return 0;
    glint_set_error("CUDA %s: %s", what, cudaGetErrorString(err));
    glint_cuda_dev().op_failed = 1;
    return -1;
}

static void *scratch(glint_backend *be, int slot, size_t bytes) {
    cuda_backend *cb = cuda_of(be);
    void *&buf = cb->scratch[glint_cuda_stream_slot()][slot];
    size_t &have = cb->scratch_bytes[glint_cuda_stream_slot()][slot];
    if (bytes == 0) bytes = 16;
    if (have >= bytes) return buf;
    glint_cuda_dev().buffer_epoch++;
    cudaFree(buf);
    buf = NULL, have = 0;
    size_t want = bytes + bytes / 4;  // headroom so slowly growing contexts don't reallocate each step
    if (cudaMalloc(&buf, want) != cudaSuccess) {
        cudaGetLastError();
        glint_set_error("CUDA: out of device memory for %zu bytes of scratch", want);
        glint_cuda_dev().op_failed = 1;
        return NULL;
    }
    have = want;
    return buf;
}

// ---------------------------------------------------------------------------------------------
// Memory

static void pool_release_unused(cuda_backend *cb) {
    size_t kept = 0;
    for (size_t i = 0; i < cb->n_pool; i++)
        if (cb->pool[i].in_use) cb->pool[kept++] = cb->pool[i];
        else cudaFree(cb->pool[i].ptr);
    cb->n_pool = kept;
}

static void *cuda_alloc(glint_backend *be, size_t bytes, const char *what) {
    cuda_backend *cb = cuda_of(be);
    const size_t need = (bytes + 255) & ~(size_t)255;
    // a free pooled block of between need and 2·need bytes, the smallest
    long best = -1;
    for (size_t i = 0; i < cb->n_pool; i++)
        if (!cb->pool[i].in_use && cb->pool[i].bytes >= need && cb->pool[i].bytes <= 2 * need + 4096 &&
            (best < 0 || cb->pool[i].bytes < cb->pool[best].bytes))
            best = (long)i;
    if (best >= 0) {
        cb->pool[best].in_use = 1;
        cudaMemsetAsync(cb->pool[best].ptr, 0, need, glint_cuda_stream());
        return cb->pool[best].ptr;
    }
    if (cb->n_pool == cb->cap_pool) {
        size_t cap = cb->cap_pool ? 2 * cb->cap_pool : 64;
        void *grown = realloc(cb->pool, cap * sizeof *cb->pool);
        if (!grown) {
            glint_set_error("out of host memory");
            return NULL;
        }
        cb->pool = (struct cuda_backend::pooled *)grown, cb->cap_pool = cap;
    }
    void *p = NULL;
    if (cudaMalloc(&p, need ? need : 256) != cudaSuccess) {
        cudaGetLastError();
        pool_release_unused(cb);  // give the pool's idle blocks back and try once more
        if (cudaMalloc(&p, need ? need : 256) != cudaSuccess) {
            cudaGetLastError();
            glint_set_error("CUDA: out of device memory for %s (%zu bytes)", what, bytes);
            return NULL;
        }
    }
    cudaMemsetAsync(p, 0, need, glint_cuda_stream());
    cb->pool[cb->n_pool].ptr = p, cb->pool[cb->n_pool].bytes = need ? need : 256, cb->pool[cb->n_pool].in_use = 1;
    cb->n_pool++;
    return p;
}

static void cuda_free(glint_backend *be, void *p) {
    cuda_backend *cb = cuda_of(be);
    if (!p) return;
    for (size_t i = 0; i < cb->n_pool; i++)
        if (cb->pool[i].ptr == p) {
            cb->pool[i].in_use = 0;  // kept for the next alloc of about this size
            return;
        }
    cudaFree(p);
}

static void cuda_download(glint_backend *be, float *host, const float *src, size_t n) {
    (void)be;
    int &op_failed = glint_cuda_dev().op_failed;
    if (op_failed) {  // an earlier op failed (its error is set): no partial results
        op_failed = 0;
        for (size_t i = 0; i < n; i++) host[i] = NAN;
        return;
    }
    if (cudaMemcpy(host, src, n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) {
        glint_cuda_check("download");
        for (size_t i = 0; i < n; i++) host[i] = NAN;  // a failed step must not look like a result
    } else if (profile_on) {
        profile_mark("download");
    }
}

// Small host -> device copies on the main stream (a decode step's positions, page tables and token
// ids: three blocking cudaMemcpy calls of 7-13 us of host time each on H200, with the GPU idle
// between steps) can instead be queued on the stream from pinned staging memory, the host going on
// at once (the default; GLINT_CUDA_ASYNC_UPLOAD=0: blocking copies). On H200 (session 12, alternated
// in one call) 61.2, 61.2 -> 61.8, 61.5% of copy at 256 and 59.2, 59.4 -> 59.8, 59.7% at 4k. The
// staging memory's two halves are used in turn; before a half is reused the host waits for the event
// recorded after its last copies.
enum { STAGE_BYTES = 1 << 20, STAGE_MAX_COPY = 64 << 10 };
struct upload_stage {
    unsigned char *host;  // pinned, STAGE_BYTES
    size_t used;          // bytes taken in the current half
    int half, broken;     // broken: staging could not be set up (copies stay blocking)
    cudaEvent_t done[2];  // recorded on the main stream when the copies from that half are queued
};
static upload_stage upload_stages[GLINT_CUDA_MAX_DEVICES];

// true when the copy was queued (host may be reused at once); false: the caller copies it itself.
static bool upload_staged(void *dst, const void *host, size_t bytes) {
    static const int on = glint_cuda_switch("GLINT_CUDA_ASYNC_UPLOAD", 1);
    if (!on || bytes == 0 || bytes > STAGE_MAX_COPY || glint_cuda_stream_slot() != 0) return false;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;  // a captured copy would bake in the slot
    if (cudaStreamIsCapturing(glint_cuda_stream(), &capturing) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    upload_stage &st = upload_stages[glint_cuda_device()];
    // A side line left but not yet joined may still read dst: only a blocking copy waits for it.
    if (capturing != cudaStreamCaptureStatusNone || st.broken || glint_cuda_dev().pending_joins) return false;
    if (!st.host) {
        if (cudaHostAlloc((void **)&st.host, STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&st.done[0], cudaEventDisableTiming) != cudaSuccess ||
            cudaEventCreateWithFlags(&st.done[1], cudaEventDisableTiming) != cudaSuccess) {
            cudaGetLastError();
            st.broken = 1;
            return false;
        }
    }
    const size_t half_bytes = STAGE_BYTES / 2;
    size_t at = (st.used + 15) & ~(size_t)15;
    if (at + bytes > half_bytes) {  // this half is full: mark its copies, take the other one once its own ran
        if (cudaEventRecord(st.done[st.half], glint_cuda_stream()) != cudaSuccess ||
            cudaEventSynchronize(st.done[st.half ^ 1]) != cudaSuccess) {  // (never recorded: returns at once)
            cudaGetLastError();
            st.broken = 1;
            return false;
        }
        st.half ^= 1, at = 0;
    }
    unsigned char *slot = st.host + (size_t)st.half * half_bytes + at;
    memcpy(slot, host, bytes);
    if (cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, glint_cuda_stream()) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    st.used = at + bytes;
    return true;
}

static void cuda_upload(glint_backend *be, void *dst, const void *host, size_t bytes) {
    (void)cuda_of(be);  // binds an unbound thread before the copy
    if (upload_staged(dst, host, bytes)) return;
    if (cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) glint_cuda_check("upload");
}

// Weights are copied by several threads at once (glint_backend.prepare_threads); this guards the
// owned table of every device.
static pthread_mutex_t owned_lock = PTHREAD_MUTEX_INITIALIZER;

static const void *copy_to_device(cuda_backend *cb, const void *host, size_t bytes, const char *name) {
    if (!host || !bytes) return host;
    void *d = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess) {
        cudaGetLastError();
        size_t free_bytes = 0, total_bytes = 0;
        cudaMemGetInfo(&free_bytes, &total_bytes);
        pthread_mutex_lock(&owned_lock);
        const double held = (double)cb->owned_bytes / 1e9;
        pthread_mutex_unlock(&owned_lock);
        glint_set_error("CUDA: out of device memory for weight %s (%zu bytes) after %.2f GB of weights on a %.1f GB "
                        "card: the model does not fit this GPU (split it over several with --tp N)",
                        name ? name : "?", bytes, held, (double)total_bytes / 1e9);
        return NULL;
    }
    if (cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
        glint_cuda_check("copying a weight");
        cudaFree(d);
        return NULL;
    }
    pthread_mutex_lock(&owned_lock);
    if (cb->n_owned == cb->cap_owned) {
        size_t cap = cb->cap_owned ? 2 * cb->cap_owned : 256;
        void **grown = (void **)realloc(cb->owned, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&owned_lock);
            cudaFree(d);
            glint_set_error("out of host memory");
            return NULL;
        }
        cb->owned = grown, cb->cap_owned = cap;
    }
    cb->owned[cb->n_owned++] = d;
    cb->owned_bytes += bytes;
    pthread_mutex_unlock(&owned_lock);
    return d;
}

static int cuda_prepare_weight(glint_backend *be, glint_weight *w) {
    cuda_backend *cb = (cuda_backend *)be;
    if (glint_cuda_thread_device != cb->device) {  // an upload thread: bound to this backend's device
        if (cudaSetDevice(cb->device) != cudaSuccess) {
            glint_set_error("CUDA device %d: cannot bind an upload thread", cb->device);
            cudaGetLastError();
            return -1;
        }
        glint_cuda_thread_device = cb->device;
    }
    cudaPointerAttributes attr;
    if (w->data && cudaPointerGetAttributes(&attr, w->data) == cudaSuccess && attr.type == cudaMemoryTypeDevice)
        return 0;  // made on the device already (synthesize)
    cudaGetLastError();
    const size_t rows = (size_t)w->rows, cols = (size_t)(w->cols > 0 ? w->cols : 1);
    size_t data_bytes = 0, scale_bytes = 0, zero_bytes = 0;
    switch (w->format) {
    case GLINT_WFMT_NVFP4:
        data_bytes = rows * cols / 2, scale_bytes = rows * cols / 16;
        break;
    case GLINT_WFMT_FP8_BLOCK: {
        const size_t b = (size_t)w->block;
        data_bytes = rows * cols, scale_bytes = (rows + b - 1) / b * ((cols + b - 1) / b) * sizeof(float);
        break;
    }
    case GLINT_WFMT_GPTQ_INT4: {
        const size_t groups = (cols + (size_t)w->block - 1) / (size_t)w->block;
        data_bytes = cols / 8 * rows * 4, zero_bytes = groups * (rows / 8) * 4;
        scale_bytes = groups * rows * glint_dtype_size(w->scales_dtype);
        break;
    }
    default: data_bytes = rows * cols * glint_dtype_size(w->dtype);
    }
    const void *data = copy_to_device(cb, w->data, data_bytes, w->name);
    const void *scales = copy_to_device(cb, w->scales, scale_bytes, w->name);
    const void *zeros = copy_to_device(cb, w->zeros, zero_bytes, w->name);
    if ((w->data && !data) || (w->scales && scale_bytes && !scales) || (w->zeros && zero_bytes && !zeros)) return -1;
    w->data = data, w->scales = scales, w->zeros = zeros;
    return 0;
}

__global__ void read_kernel(const float4 *src, size_t n4, float *sink) {
    float4 acc = make_float4(0, 0, 0, 0);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 v = src[i];
        acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
    }
    float total = acc.x + acc.y + acc.z + acc.w;
    if (total == 12345.678f) sink[0] = total;  // keeps the loads; practically never taken
}

// Streaming copy (device to device, read + written bytes) and a streaming read kernel over 1 GiB
// buffers, best of several passes, timed with events.
static int cuda_measure_bandwidth(glint_backend *be, double *copy_bytes_per_s, double *read_bytes_per_s) {
    const size_t bytes = (size_t)1 << 30;
    if (profile_on) profiles[glint_cuda_device()].last = glint_now_seconds();  // count the measurement alone
    char *buf = (char *)scratch(be, SCR_BW, 2 * bytes);
    if (!buf) return -1;
    cudaMemset(buf, 0, 2 * bytes);
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, cuda_of(be)->device);
    double best_copy = 0, best_read = 0;
    for (int rep = 0; rep < 6; rep++) {
        float ms = 0;
        cudaEventRecord(a, glint_cuda_stream());
        cudaMemcpyAsync(buf + bytes, buf, bytes, cudaMemcpyDeviceToDevice, glint_cuda_stream());
        cudaEventRecord(b, glint_cuda_stream());
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&ms, a, b);
        if (rep && ms > 0 && 2.0 * bytes / (ms * 1e-3) > best_copy) best_copy = 2.0 * bytes / (ms * 1e-3);
        cudaEventRecord(a, glint_cuda_stream());
        read_kernel<<<sms * 8, 512, 0, glint_cuda_stream()>>>((const float4 *)buf, bytes / 16, (float *)(buf + bytes));
        cudaEventRecord(b, glint_cuda_stream());
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&ms, a, b);
        if (rep && ms > 0 && bytes / (ms * 1e-3) > best_read) best_read = bytes / (ms * 1e-3);
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    // Give the 2 GiB back: the model needs it more than the next measurement.
    void *&bw_buf = cuda_of(be)->scratch[glint_cuda_stream_slot()][SCR_BW];
    cudaFree(bw_buf);
    bw_buf = NULL, cuda_of(be)->scratch_bytes[glint_cuda_stream_slot()][SCR_BW] = 0;
    *copy_bytes_per_s = best_copy, *read_bytes_per_s = best_read;
    return glint_cuda_check("bandwidth measurement");
}

static const char *cuda_describe(glint_backend *be) { return cuda_of(be)->description; }

// ---------------------------------------------------------------------------------------------
// Small ops

static unsigned blocks_for(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 1u << 30 ? 1u << 30 : b);
}

// grid (T, column blocks): an element per thread (a block walking a whole row pays a memory round
// trip per 256 elements: 12 us for one GLM-5 row).
enum { EMBED_THREADS = 256 };
__global__ void __launch_bounds__(EMBED_THREADS) embed_kernel(float *x, dev_weight table, const int32_t *ids, int T) {
    chain_wait();
    const int t = blockIdx.x;
    const int64_t d = (int64_t)blockIdx.y * EMBED_THREADS + threadIdx.x;
    if (t >= T || d >= table.cols) return;
    x[(size_t)t * table.cols + d] = weight_element(table, ids[t], d);
}

static void cuda_embed(glint_backend *be, float *x, const glint_weight *table, const int32_t *ids, int T) {
    if (T <= 0) return;
    int32_t *dids = (int32_t *)scratch(be, SCR_IDS, sizeof(int32_t) * (size_t)T);
    if (!dids) return;
    cuda_upload(be, dids, ids, sizeof(int32_t) * (size_t)T);
    const dim3 grid((unsigned)T, (unsigned)((table->cols + EMBED_THREADS - 1) / EMBED_THREADS));
    launch_chained(embed_kernel, grid, EMBED_THREADS, 0, x, dev_weight_of(table), dids, T);
    glint_cuda_check("embed");
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v) {
    __shared__ float warp_sums[32];
    __shared__ float total;
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    __syncthreads();  // warp_sums may still be read by a previous call
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < warps ? warp_sums[lane] : 0.0f;
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

// One row of a decode step is one block and latency-bound: a thread's elements d = tid + k·blockDim
// (k < ROW_REGS) are loaded into registers, every load issued before any is used (a loop that stores
// what it loads waits a memory round trip per element). Rows wider than ROW_REGS·blockDim take the
// loops below. The plain and the fused kernels share these helpers, so they compute the same bits.
enum { ROW_REGS = 12, ROW_THREADS = 512 };
// Threads of the block of a row of D (all row kernels use this, so plain and fused ops sum alike).
static inline int row_threads(int D) { return D >= 2048 ? ROW_THREADS : 256; }

__device__ __forceinline__ bool row_fits_regs(int D) { return D <= ROW_REGS * (int)blockDim.x; }

// v[k] = r[tid + k·blockDim] (0 at or beyond D)
__device__ __forceinline__ void load_row(float (&v)[ROW_REGS], const float *r, int D) {
#pragma unroll
    for (int k = 0; k < ROW_REGS; k++) {
        const int d = threadIdx.x + k * blockDim.x;
        v[k] = d < D ? r[d] : 0.0f;
    }
}
// The weight's dtype is decided once, not per element (a switch per element is most of a small row
// kernel's instructions).
__device__ __forceinline__ void load_row_weight(float (&v)[ROW_REGS], const dev_weight &w, int D) {
    if (w.dtype == GLINT_DTYPE_BF16) {
        const uint16_t *p = (const uint16_t *)w.data;
#pragma unroll
        for (int k = 0; k < ROW_REGS; k++) {
            const int d = threadIdx.x + k * blockDim.x;
            v[k] = d < D ? bf16_bits_to_float(p[d]) : 0.0f;
        }
    } else if (w.dtype == GLINT_DTYPE_F32) {
        load_row(v, (const float *)w.data, D);
    } else {
#pragma unroll
        for (int k = 0; k < ROW_REGS; k++) {
            const int d = threadIdx.x + k * blockDim.x;
            v[k] = d < D ? dense_element(w.data, w.dtype, d) : 0.0f;
        }
    }
}
__device__ __forceinline__ void store_row(float *r, const float (&v)[ROW_REGS], int D) {
#pragma unroll
    for (int k = 0; k < ROW_REGS; k++) {
        const int d = threadIdx.x + k * blockDim.x;
        if (d < D) r[d] = v[k];
    }
}

// v (a row of D in registers, see load_row) <- rmsnorm(v) · g; elements at or beyond D unchanged.
__device__ __forceinline__ void rmsnorm_regs(float (&v)[ROW_REGS], int D, const float (&g)[ROW_REGS], float eps) {
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < ROW_REGS; k++)
        if (threadIdx.x + k * blockDim.x < D) ss += v[k] * v[k];
    const float inv = 1.0f / sqrtf(block_sum(ss) / (float)D + eps);
#pragma unroll
    for (int k = 0; k < ROW_REGS; k++)
        if (threadIdx.x + k * blockDim.x < D) v[k] = g[k] * (v[k] * inv);
}

// v <- layernorm(v) · g + bias, as rmsnorm_regs
__device__ __forceinline__ void layernorm_regs(float (&v)[ROW_REGS], int D, const float (&g)[ROW_REGS],
                                               const float (&bias)[ROW_REGS], float eps) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < ROW_REGS; k++)
        if (threadIdx.x + k * blockDim.x < D) s += v[k];
    const float mean = block_sum(s) / (float)D;
    float var = 0.0f;
#pragma unroll
    for (int k = 0; k < ROW_REGS; k++)
        if (threadIdx.x + k * blockDim.x < D) var += (v[k] - mean) * (v[k] - mean);
    const float inv = 1.0f / sqrtf(block_sum(var) / (float)D + eps);
#pragma unroll
    for (int k = 0; k < ROW_REGS; k++)
        if (threadIdx.x + k * blockDim.x < D) v[k] = (v[k] - mean) * inv * g[k] + bias[k];
}

// One row of D normalized by the block (yr may be xr).
__device__ __forceinline__ void rmsnorm_row(float *yr, const float *xr, int D, const dev_weight &w, float eps) {
    if (row_fits_regs(D)) {
        float v[ROW_REGS], g[ROW_REGS];
        load_row(v, xr, D), load_row_weight(g, w, D);
        rmsnorm_regs(v, D, g, eps);
        store_row(yr, v, D);
        return;
    }
    float ss = 0.0f;
#pragma unroll 4
    for (int d = threadIdx.x; d < D; d += blockDim.x) ss += xr[d] * xr[d];
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)D + eps);
#pragma unroll 4
    for (int d = threadIdx.x; d < D; d += blockDim.x) yr[d] = dense_element(w.data, w.dtype, d) * (xr[d] * inv);
}

__device__ __forceinline__ void layernorm_row(float *yr, const float *xr, int D, const dev_weight &w,
                                              const dev_weight &b, float eps) {
    if (row_fits_regs(D)) {
        float v[ROW_REGS], g[ROW_REGS], bias[ROW_REGS];
        load_row(v, xr, D), load_row_weight(g, w, D), load_row_weight(bias, b, D);
        layernorm_regs(v, D, g, bias, eps);
        store_row(yr, v, D);
        return;
    }
    float s = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) s += xr[d];
    const float mean = block_sum(s) / (float)D;
    float v = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) v += (xr[d] - mean) * (xr[d] - mean);
    const float inv = 1.0f / sqrtf(block_sum(v) / (float)D + eps);
    for (int d = threadIdx.x; d < D; d += blockDim.x)
        yr[d] = (xr[d] - mean) * inv * dense_element(w.data, w.dtype, d) + dense_element(b.data, b.dtype, d);
}

__global__ void __launch_bounds__(ROW_THREADS)
    rmsnorm_kernel(float *y, const float *x, int stride, int D, dev_weight w, float eps) {
    chain_wait();
    rmsnorm_row(y + (size_t)blockIdx.x * stride, x + (size_t)blockIdx.x * stride, D, w, eps);
}

static void cuda_rmsnorm(glint_backend *be, float *y, const float *x, int stride, int T, int D, const glint_weight *w,
                         float eps) {
    (void)be;
    if (T <= 0) return;
    // a row per block; wide rows get more threads (a decode step's norms are one row: latency-bound)
    launch_chained(rmsnorm_kernel, T, row_threads(D), 0, y, x, stride, D, dev_weight_of(w), eps);
    glint_cuda_check("rmsnorm");
}

__global__ void __launch_bounds__(ROW_THREADS)
    layernorm_kernel(float *y, const float *x, int stride, int D, dev_weight w, dev_weight b, float eps) {
    chain_wait();
    layernorm_row(y + (size_t)blockIdx.x * stride, x + (size_t)blockIdx.x * stride, D, w, b, eps);
}

static void cuda_layernorm(glint_backend *be, float *y, const float *x, int stride, int T, int D,
                           const glint_weight *w, const glint_weight *b, float eps) {
    (void)be;
    if (T <= 0) return;
    launch_chained(layernorm_kernel, T, 256, 0, y, x, stride, D, dev_weight_of(w), dev_weight_of(b), eps);
    glint_cuda_check("layernorm");
}

__global__ void rope_kernel(float *x, int T, int n_heads, int head_stride, int row_stride, int offset, int pairs,
                            const int32_t *pos, rope_freqs f, float attn_factor) {
    chain_wait();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * pairs * n_heads) return;
    const int h = (int)(i % n_heads), pair = (int)(i / n_heads % pairs), t = (int)(i / n_heads / pairs);
    float *p = x + (size_t)t * row_stride + (size_t)h * head_stride + offset + 2 * pair;
    rope_rotate(p[0], p[1], f.inv_freq[pair], pos[t], attn_factor);
}

// The kernels' by-value frequency table of rope_dim / 2 pairs (cuda_internal.cuh); 0, or -1 (error set,
// step failed) when it does not fit.
int rope_table(rope_freqs *f, const float *inv_freq, int rope_dim) {
    const int pairs = rope_dim / 2;
    if (pairs > ROPE_MAX_PAIRS) {
        glint_set_error("CUDA rope: rope_dim %d exceeds %d", rope_dim, 2 * ROPE_MAX_PAIRS);
        glint_cuda_dev().op_failed = 1;
        return -1;
    }
    memset(f, 0, sizeof *f);
    memcpy(f->inv_freq, inv_freq, sizeof(float) * (size_t)(pairs > 0 ? pairs : 0));
    return 0;
}

static void cuda_rope(glint_backend *be, float *x, int T, int n_heads, int head_stride, int row_stride, int offset,
                      int rope_dim, const int32_t *pos, const float *inv_freq, float attn_factor) {
    (void)be;
    const int pairs = rope_dim / 2;
    rope_freqs f;
    if (T <= 0 || pairs <= 0 || rope_table(&f, inv_freq, rope_dim)) return;
    const size_t n = (size_t)T * pairs * n_heads;
    launch_chained(rope_kernel, blocks_for(n, 256), 256, 0, x, T, n_heads, head_stride, row_stride, offset, pairs, pos,
        f, attn_factor);
    glint_cuda_check("rope");
}

__global__ void silu_mul_kernel(float *y, const float *g, const float *u, int stride, int T, int I) {
    chain_wait();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * I) return;
    const size_t t = i / I, c = i % I;
    const float gv = g[t * stride + c];
    y[i] = gv / (1.0f + expf(-gv)) * u[t * stride + c];
}

static void cuda_silu_mul(glint_backend *be, float *y, const float *g, const float *u, int stride, int T, int I) {
    (void)be;
    if (T <= 0 || I <= 0) return;
    launch_chained(silu_mul_kernel, blocks_for((size_t)T * I, 256), 256, 0, y, g, u, stride, T, I);
    glint_cuda_check("silu_mul");
}

__global__ void add_kernel(float *y, const float *x, size_t n) {
    chain_wait();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

static void cuda_add(glint_backend *be, float *y, const float *x, size_t n) {
    (void)be;
    if (!n) return;
    launch_chained(add_kernel, blocks_for(n, 256), 256, 0, y, x, n);
    glint_cuda_check("add");
}

static void cuda_copy_rows(glint_backend *be, float *y, int y_stride, const float *x, int x_stride, int T, int n) {
    (void)be;
    if (T <= 0 || n <= 0) return;
    cudaMemcpy2DAsync(y, (size_t)y_stride * sizeof(float), x, (size_t)x_stride * sizeof(float), (size_t)n * sizeof(float),
                      (size_t)T, cudaMemcpyDeviceToDevice, glint_cuda_stream());
    glint_cuda_check("copy_rows");
}

// pool row of (row_seq[t], pos[t]) <- x[t, 0..n); grid T.
__global__ void write_cache_kernel(float *pool, int pool_stride, const float *x, int x_stride, int n,
                                   const int32_t *pos, glint_cache_map map) {
    chain_wait();
    const int t = blockIdx.x;
    float *dst = pool + cache_row(map, map.row_seq[t], pos[t]) * pool_stride;
    const float *src = x + (size_t)t * x_stride;
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

static void cuda_write_cache(glint_backend *be, float *pool, int pool_stride, const float *x, int x_stride, int T,
                             int n, const int32_t *pos, const glint_cache_map *map) {
    (void)be;
    if (T <= 0 || n <= 0) return;
    launch_chained(write_cache_kernel, T, 128, 0, pool, pool_stride, x, x_stride, n, pos, *map);
    glint_cuda_check("write_cache");
}

// ---------------------------------------------------------------------------------------------
// Fused small ops of a decode layer (backend.h: add_rmsnorm, norm_rope_cache): the same arithmetic as
// the ops they stand for, in one launch instead of two to four (each launch of these one-row kernels
// costs a few microseconds of mostly idle GPU).

// x[t] += a[t] (+ b[t], added to a first), then xn[t] = rmsnorm(x[t]) (xn may be NULL); a row per block,
// rmsnorm_kernel's thread count and order.
__global__ void __launch_bounds__(ROW_THREADS)
    add_rmsnorm_kernel(float *x, float *a, const float *b, float *xn, int D, dev_weight w, float eps) {
    chain_wait();
    const size_t row = (size_t)blockIdx.x * D;
    float *xr = x + row, *ar = a + row;
    if (row_fits_regs(D)) {
        float av[ROW_REGS], bv[ROW_REGS], xv[ROW_REGS], g[ROW_REGS];
        if (xn) load_row_weight(g, w, D);  // issued first: nothing waits for them until the end
        load_row(av, ar, D), load_row(xv, xr, D);
        if (b) load_row(bv, b + row, D);
#pragma unroll
        for (int k = 0; k < ROW_REGS; k++) {
            if (b) av[k] = av[k] + bv[k];
            xv[k] = xv[k] + av[k];
        }
        if (b) store_row(ar, av, D);
        store_row(xr, xv, D);
        if (!xn) return;
        rmsnorm_regs(xv, D, g, eps);
        store_row(xn + row, xv, D);
        return;
    }
    float ss = 0.0f;
#pragma unroll 4
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float v = ar[d];
        if (b) ar[d] = v = v + b[row + d];
        const float xv = xr[d] + v;
        xr[d] = xv;
        ss += xv * xv;
    }
    if (!xn) return;
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)D + eps);
    float *yr = xn + row;
#pragma unroll 4
    for (int d = threadIdx.x; d < D; d += blockDim.x) yr[d] = dense_element(w.data, w.dtype, d) * (xr[d] * inv);
}

static void cuda_add_rmsnorm(glint_backend *be, float *x, float *a, const float *b, float *xn, int T, int D,
                             const glint_weight *w, float eps) {
    (void)be;
    if (T <= 0 || D <= 0) return;
    launch_chained(add_rmsnorm_kernel, T, row_threads(D), 0, x, a, b, xn, D, xn ? dev_weight_of(w) : dev_weight{}, eps);
    glint_cuda_check("add_rmsnorm");
}

// One row per block (the thread count of the norm it stands for): the row's first `span` floats
// (span <= ROW_REGS·blockDim, checked by the launcher) in registers, normalized there, then rotated
// in shared memory [span], written back and to the cache rows from there.
__global__ void __launch_bounds__(ROW_THREADS)
    norm_rope_cache_kernel(float *x, int x_stride, int span, int n_norm, dev_weight w, dev_weight b,
                                       int layer, float eps, int rope_offset, int pairs, const int32_t *pos,
                                       rope_freqs f, float attn_factor, float *pool_a, int split, float *pool_b,
                                       int width, glint_cache_map map) {
    chain_wait();
    extern __shared__ float row_s[];
    const int t = blockIdx.x;
    float *xr = x + (size_t)t * x_stride;
    float v[ROW_REGS], g[ROW_REGS], bias[ROW_REGS];
    load_row(v, xr, span), load_row_weight(g, w, n_norm);
    if (layer) {
        load_row_weight(bias, b, n_norm);
        layernorm_regs(v, n_norm, g, bias, eps);
    } else {
        rmsnorm_regs(v, n_norm, g, eps);
    }
    store_row(row_s, v, span);
    __syncthreads();
    for (int pair = threadIdx.x; pair < pairs; pair += blockDim.x)
        rope_rotate(row_s[rope_offset + 2 * pair], row_s[rope_offset + 2 * pair + 1], f.inv_freq[pair], pos[t],
                    attn_factor);
    __syncthreads();
    const size_t cache = cache_row(map, map.row_seq[t], pos[t]);
    for (int i = threadIdx.x; i < span; i += blockDim.x) xr[i] = row_s[i];
    for (int i = threadIdx.x; i < split; i += blockDim.x) pool_a[cache * split + i] = row_s[i];
    if (pool_b)
        for (int i = threadIdx.x; i < width - split; i += blockDim.x)
            pool_b[cache * (width - split) + i] = row_s[split + i];
}

static void cuda_norm_rope_cache(glint_backend *be, float *x, int x_stride, int T, int n_norm, const glint_weight *w,
                                 const glint_weight *b, float eps, int rope_offset, int rope_dim, const int32_t *pos,
                                 const float *inv_freq, float attn_factor, float *pool_a, int split, float *pool_b,
                                 int width, const glint_cache_map *map) {
    (void)be;
    const int pairs = rope_dim / 2;
    rope_freqs f;
    if (T <= 0 || rope_table(&f, inv_freq, rope_dim)) return;
    const int threads = b ? 256 : row_threads(n_norm);  // as cuda_rmsnorm / cuda_layernorm
    // what the kernel stages: the normalized part, the rotated pairs and the cached columns
    int span = n_norm > width ? n_norm : width;
    if (rope_offset + 2 * pairs > span) span = rope_offset + 2 * pairs;
    if (span > ROW_REGS * threads) {
        glint_set_error("CUDA norm_rope_cache: a row of %d floats exceeds %d", span, ROW_REGS * threads);
        glint_cuda_dev().op_failed = 1;
        return;
    }
    launch_chained(norm_rope_cache_kernel, T, threads, sizeof(float) * (size_t)span, x, x_stride, span, n_norm,
        dev_weight_of(w), b ? dev_weight_of(b) : dev_weight{}, b != NULL, eps, rope_offset, pairs, pos, f, attn_factor,
        pool_a, split, pool_b, width, *map);
    glint_cuda_check("norm_rope_cache");
}

// ---------------------------------------------------------------------------------------------
// Greedy decoding on the device (backend.h: argmax): glint_argmax of each row, so only the ids are
// copied to the host. glint_argmax's rule in parallel: v[0] NaN -> 0; otherwise the first index of
// the largest non-NaN value.

enum { ARGMAX_THREADS = 256, ARGMAX_PARTS = 64 };

// (value, index) pairs: a valid one beats none; larger value; equal values: lower index
__device__ __forceinline__ bool argmax_better(float v, int i, float w, int j) {
    return j < 0 || (i >= 0 && (v > w || (v == w && i < j)));
}

// The warp's best pair, in every lane.
__device__ __forceinline__ void argmax_warp(float &bv, int &bi) {
    for (int o = 16; o; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (argmax_better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
}

// Pass 1, grid (ARGMAX_PARTS, rows): block p's best pair over part p of its row (ARGMAX_PARTS
// contiguous parts: one block walking a 154,880-logit row takes ~16 us of round trips).
__global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_part_kernel(float *part_v, int *part_i, const float *logits, int n) {
    chain_wait();
    __shared__ float best_v[ARGMAX_THREADS / 32];
    __shared__ int best_i[ARGMAX_THREADS / 32];
    const float *row = logits + (size_t)blockIdx.y * n;
    const int chunk = (n + ARGMAX_PARTS - 1) / ARGMAX_PARTS, begin = (int)blockIdx.x * chunk;
    const int end = min(n, begin + chunk);
    float bv = 0.0f;
    int bi = -1;          // no value yet
    enum { UNROLL = 4 };  // loads in flight per thread
    for (int base = begin + threadIdx.x; base < end; base += UNROLL * ARGMAX_THREADS) {
        float v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int i = base + u * ARGMAX_THREADS;
            v[u] = i < end ? row[i] : NAN;
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++)  // ascending i per thread: ties keep the first
            if (!isnan(v[u]) && (bi < 0 || v[u] > bv)) bv = v[u], bi = base + u * ARGMAX_THREADS;
    }
    argmax_warp(bv, bi);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) best_v[warp] = bv, best_i[warp] = bi;
    __syncthreads();
    if (warp) return;
    bv = lane < ARGMAX_THREADS / 32 ? best_v[lane] : 0.0f;
    bi = lane < ARGMAX_THREADS / 32 ? best_i[lane] : -1;
    argmax_warp(bv, bi);
    if (lane == 0) {
        const size_t at = (size_t)blockIdx.y * ARGMAX_PARTS + blockIdx.x;
        part_v[at] = bv, part_i[at] = bi;
    }
}

// Pass 2, a warp per row: the best of the parts' pairs, then glint_argmax's NaN rule.
__global__ void __launch_bounds__(32) argmax_final_kernel(int32_t *ids, float *values, const float *part_v,
                                                           const int *part_i, const float *logits, int n) {
    chain_wait();
    const int r = blockIdx.x, lane = threadIdx.x;
    float bv = 0.0f;
    int bi = -1;
    for (int p = lane; p < ARGMAX_PARTS; p += 32) {
        const size_t at = (size_t)r * ARGMAX_PARTS + p;
        if (argmax_better(part_v[at], part_i[at], bv, bi)) bv = part_v[at], bi = part_i[at];
    }
    argmax_warp(bv, bi);
    if (lane == 0) {
        const float *row = logits + (size_t)r * n;
        const int id = isnan(row[0]) || bi < 0 ? 0 : bi;
        ids[r] = id, values[r] = row[id];
    }
}

static void cuda_argmax(glint_backend *be, int32_t *ids, float *values, const float *logits, int rows, int n) {
    if (rows <= 0) return;
    // [rows] ids, then [rows] values (one copy back), then the parts' values and indices [rows, PARTS] each
    const size_t n_parts = (size_t)rows * ARGMAX_PARTS;
    int32_t *dev = (int32_t *)scratch(be, SCR_ARGMAX, sizeof(int32_t) * (2 * (size_t)rows + 2 * n_parts));
    int32_t *host = (int32_t *)malloc(2 * sizeof(int32_t) * (size_t)rows);
    int ok = dev && host && n > 0;
    if (ok) {
        float *part_v = (float *)(dev + 2 * rows);
        int *part_i = (int *)(part_v + n_parts);
        launch_chained(argmax_part_kernel, dim3(ARGMAX_PARTS, (unsigned)rows), ARGMAX_THREADS, 0, part_v, part_i,
            logits, n);
        launch_chained(argmax_final_kernel, rows, 32, 0, dev, (float *)(dev + rows), part_v, part_i, logits, n);
        ok = !glint_cuda_check("argmax") &&
             cudaMemcpyAsync(host, dev, 2 * sizeof(int32_t) * (size_t)rows, cudaMemcpyDeviceToHost,
                             glint_cuda_stream()) == cudaSuccess &&
             cudaStreamSynchronize(glint_cuda_stream()) == cudaSuccess;
        if (!ok) glint_cuda_check("argmax download");
    }
    for (int r = 0; r < rows; r++) {
        float v = NAN;
        if (ok) memcpy(&v, &host[rows + r], sizeof v);
        ids[r] = ok ? host[r] : 0;
        if (values) values[r] = v;
    }
    free(host);
}

// ---------------------------------------------------------------------------------------------
// Sampled decoding on the device (backend.h: sample): common/sampling.c's glint_sample_draw, bit for
// bit, a block per row. The probabilities come from the same header functions and the same sum tree
// (thread j is lane j of GLINT_SAMPLE_LANES), in correctly rounded operations; the candidates above
// the host's floor are sorted in shared memory (bitonic, by probability then id: the host's order)
// and thread 0 walks them as the host does. A row whose candidates outgrow shared memory, or with no
// distribution (every logit -inf or NaN), is declined (-1): the host draws it from its logits.

enum { SAMPLE_THREADS = GLINT_SAMPLE_LANES, SAMPLE_CAP = 2048 };
static_assert(SAMPLE_THREADS == 1024, "one thread per lane of the sum tree");

__device__ __forceinline__ float sample_block_max(float v, float *red) {
    for (int o = 16; o; o >>= 1) {
        const float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    __syncthreads();  // red is free
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    v = red[0];
    for (int w = 1; w < SAMPLE_THREADS / 32; w++) v = red[w] > v ? red[w] : v;
    return v;
}

__device__ __forceinline__ int sample_block_count(int c, int *red) {
    for (int o = 16; o; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = c;
    __syncthreads();
    c = 0;
    for (int w = 0; w < SAMPLE_THREADS / 32; w++) c += red[w];
    return c;
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(int32_t *ids, float *probs_all, const float *logits_all, int V, const glint_sample_params *params,
                  const double *uniforms) {
    chain_wait();
    __shared__ double part[SAMPLE_THREADS];
    __shared__ unsigned long long keys[SAMPLE_CAP];
    __shared__ float red_f[SAMPLE_THREADS / 32];
    __shared__ int red_i[SAMPLE_THREADS / 32], fill, done, chosen;
    __shared__ float floor_s;
    const int row = blockIdx.x, j = threadIdx.x;
    const glint_sample_params p = params[row];
    const float *logits = logits_all + (size_t)row * V;
    float *probs = probs_all + (size_t)row * V;
    if (glint_sample_is_greedy(&p)) {  // greedy: the caller's argmax
        if (j == 0) ids[row] = -1;
        return;
    }
    float m = -INFINITY;
    for (int t = j; t < V; t += SAMPLE_THREADS) {
        const float x = __fdiv_rn(logits[t], p.temperature);
        m = x > m ? x : m;
    }
    const float maxv = sample_block_max(m, red_f);
    double acc = 0.0;
    for (int t = j; t < V; t += SAMPLE_THREADS) {
        const float w = glint_sample_weight(logits[t], p.temperature, maxv);
        probs[t] = w;
        acc = __dadd_rn(acc, (double)w);
    }
    part[j] = acc;
    __syncthreads();
    for (int stride = SAMPLE_THREADS / 2; stride; stride >>= 1) {
        if (j < stride) part[j] = __dadd_rn(part[j], part[j + stride]);
        __syncthreads();
    }
    const double inv = __ddiv_rn(1.0, part[0]);
    float pm = 0.0f;
    for (int t = j; t < V; t += SAMPLE_THREADS) {
        const float q = __double2float_rn(__dmul_rn((double)probs[t], inv));
        probs[t] = q;
        pm = q > pm ? q : pm;
    }
    const float pmax = sample_block_max(pm, red_f);
    if (!(pmax > 0.0f)) {  // no distribution: the host takes the argmax
        if (j == 0) ids[row] = -1;
        return;
    }
    const int keep = p.top_k > 0 && p.top_k < V ? p.top_k : V;
    const float min_keep = __fmul_rn(p.min_p, pmax), first_floor = __fmul_rn(pmax, 0x1p-12f);
    if (j == 0) {
        floor_s = min_keep > first_floor ? min_keep : first_floor;
        if (floor_s > pmax) floor_s = pmax;
        if (p.top_p >= 1.0f && keep == V && min_keep <= 0.0f) floor_s = 0.0f;
        done = 0, chosen = -1;
    }
    for (;;) {
        __syncthreads();  // floor_s, done
        const float floor = floor_s;
        int c = 0;
        for (int t = j; t < V; t += SAMPLE_THREADS) c += floor <= 0.0f || probs[t] >= floor;
        const int candidates = sample_block_count(c, red_i);
        if (candidates > SAMPLE_CAP) break;  // declined (chosen stays -1)
        if (j == 0) fill = 0;
        __syncthreads();
        for (int t = j; t < V; t += SAMPLE_THREADS)
            if (floor <= 0.0f || probs[t] >= floor) {
                const uint32_t bits = __float_as_uint(probs[t]);
                keys[atomicAdd(&fill, 1)] = (unsigned long long)~bits << 32 | (uint32_t)t;
            }
        int n2 = 1;
        while (n2 < candidates) n2 <<= 1;
        __syncthreads();
        for (int i = candidates + j; i < n2; i += SAMPLE_THREADS) keys[i] = ~0ull;
        __syncthreads();
        for (int k = 2; k <= n2; k <<= 1)  // ascending: probability descending, then id
            for (int half = k >> 1; half > 0; half >>= 1) {
                for (int i = j; i < n2; i += SAMPLE_THREADS) {
                    const int other = i ^ half;
                    if (other > i) {
                        const unsigned long long a = keys[i], b = keys[other];
                        if ((a > b) == ((i & k) == 0)) keys[i] = b, keys[other] = a;
                    }
                }
                __syncthreads();
            }
        if (j == 0) {  // the host's walk (common/sampling.c)
            double cumulative = 0.0, kept_mass = 0.0;
            int n = 0, stopped = 0;
            for (; n < keep; n++) {
                if (n == candidates) break;
                const float pr = __uint_as_float(~(uint32_t)(keys[n] >> 32));  // the key holds it
                if (cumulative > p.top_p || pr < min_keep) {
                    stopped = 1;
                    break;
                }
                cumulative = __dadd_rn(cumulative, (double)pr);
                kept_mass = __dadd_rn(kept_mass, (double)pr);
            }
            if (stopped || n == keep || candidates == V || cumulative > p.top_p || floor <= min_keep) {
                if (n == 0) n = 1, kept_mass = pmax;
                const double target = __dmul_rn(uniforms[row], kept_mass);
                double sum = 0.0;
                chosen = (int)(uint32_t)keys[n - 1];
                for (int i = 0; i < n; i++) {
                    sum = __dadd_rn(sum, (double)__uint_as_float(~(uint32_t)(keys[i] >> 32)));
                    if (target < sum) {
                        chosen = (int)(uint32_t)keys[i];
                        break;
                    }
                }
                done = 1;
            } else {
                floor_s = floor > 1e-30f ? __fmul_rn(floor, 0x1p-8f) : 0.0f;  // 0: every token
            }
        }
        __syncthreads();
        if (done) break;
    }
    if (j == 0) ids[row] = chosen;
}

// A thread per edit (the tokens are distinct: no two threads touch one logit).
__global__ void edit_logits_kernel(float *logits, const glint_logit_edit *edits, int n_edits) {
    chain_wait();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n_edits) logits[edits[i].token] = glint_logit_edit_apply(edits + i, logits[edits[i].token]);
}

static int cuda_edit_logits(glint_backend *be, float *logits, int n, const glint_logit_edit *edits, int n_edits) {
    if (n_edits <= 0) return 0;
    // sized once for the engine's usual lists (up to n/8 generated tokens with penalties, plus the
    // others): a scratch that grows moves, and every captured decode graph is captured again
    const size_t usual = (size_t)n / 8 + 4096, want = (size_t)n_edits > usual ? (size_t)n_edits : usual;
    glint_logit_edit *dev = (glint_logit_edit *)scratch(be, SCR_EDITS, sizeof(glint_logit_edit) * want);
    if (!dev) return -1;
    if (cudaMemcpyAsync(dev, edits, sizeof(glint_logit_edit) * (size_t)n_edits, cudaMemcpyHostToDevice,
                        glint_cuda_stream()) != cudaSuccess) {
        glint_cuda_check("edit_logits upload");
        return -1;
    }
    launch_chained(edit_logits_kernel, blocks_for((size_t)n_edits, 256), 256, 0, logits, dev, n_edits);
    return glint_cuda_check("edit_logits") ? -1 : 0;
}

static void cuda_sample(glint_backend *be, int32_t *ids, const float *logits, int rows, int n,
                        const glint_sample_params *params, const double *uniforms) {
    if (rows <= 0) return;
    // Rows the kernel would hand back anyway (greedy: the caller's argmax; every token a candidate:
    // more than SAMPLE_CAP) cost no launch and no wait when they are all there is.
    int to_draw = 0;
    for (int r = 0; r < rows; r++)
        to_draw += !glint_sample_is_greedy(&params[r]) && !(n > SAMPLE_CAP && glint_sample_keeps_all(&params[r], n));
    if (!to_draw) {
        for (int r = 0; r < rows; r++) ids[r] = -1;
        return;
    }
    // [rows] uniforms (the doubles first: aligned), [rows] params, [rows] ids, then [rows, n] probabilities
    const size_t head = (sizeof(int32_t) + sizeof(glint_sample_params) + sizeof(double)) * (size_t)rows;
    const size_t head_aligned = (head + 255) / 256 * 256;
    unsigned char *dev = (unsigned char *)scratch(be, SCR_SAMPLE, head_aligned + sizeof(float) * (size_t)rows * n);
    int ok = dev != NULL && n > 0;
    if (ok) {
        double *dev_u = (double *)dev;
        glint_sample_params *dev_p = (glint_sample_params *)(dev_u + rows);
        int32_t *dev_ids = (int32_t *)(dev_p + rows);
        ok = cudaMemcpyAsync(dev_u, uniforms, sizeof(double) * rows, cudaMemcpyHostToDevice, glint_cuda_stream()) ==
                 cudaSuccess &&
             cudaMemcpyAsync(dev_p, params, sizeof(glint_sample_params) * rows, cudaMemcpyHostToDevice,
                             glint_cuda_stream()) == cudaSuccess;
        if (ok) {
            launch_chained(sample_kernel, rows, SAMPLE_THREADS, 0, dev_ids, (float *)(dev + head_aligned), logits, n,
                dev_p, dev_u);
            ok = !glint_cuda_check("sample") &&
                 cudaMemcpyAsync(ids, dev_ids, sizeof(int32_t) * rows, cudaMemcpyDeviceToHost, glint_cuda_stream()) ==
                     cudaSuccess &&
                 cudaStreamSynchronize(glint_cuda_stream()) == cudaSuccess;
        }
        if (!ok) glint_cuda_check("sample download");
    }
    if (!ok)
        for (int r = 0; r < rows; r++) ids[r] = -1;  // the host draws them (its logits download reports the error)
}

// ---------------------------------------------------------------------------------------------
// DSA indexer: scores, then a radix top-k per query with the CPU's total order (higher score
// first, then lower position).

enum { IDX_KEYS = 32, IDX_TILES = 4, IDX_THREADS = 256, IDX_GROUPS = IDX_THREADS / IDX_KEYS, IDX_HEADS = 4 };

// scores[s, t] for keys t of IDX_TILES 32-key tiles (q staged once per block); grid (tile groups,
// queries). Shared: q [Hi·Di], keys [32][Di+4] (VEC4; else Di+1: padded against bank conflicts),
// partial sums [8][32], w [Hi].
template <bool VEC4>
__global__ void __launch_bounds__(IDX_THREADS)
    indexer_scores_kernel(float *scores, int scores_stride, const float *q, const float *w, const float *k_pool,
                          const int32_t *pos, glint_cache_map map, int s0, int n_heads, int head_dim, float scale,
                          float weight_scale, int tiles) {
    chain_wait();
    extern __shared__ float smem[];
    const int s = s0 + blockIdx.y, visible = pos[s] + 1, first = blockIdx.x * IDX_KEYS * tiles;
    const int seq = map.row_seq[s];
    if (first >= visible) return;
    const int ks_stride = head_dim + (VEC4 ? 4 : 1), D4 = head_dim / 4;
    float *qs = smem, *ks = qs + n_heads * head_dim, *part = ks + IDX_KEYS * ks_stride, *ws = part + IDX_GROUPS * IDX_KEYS;
    stage_rows(qs, q + (size_t)s * n_heads * head_dim, 1, 1, n_heads * head_dim, 0);
    for (int i = threadIdx.x; i < n_heads; i += IDX_THREADS) ws[i] = w[(size_t)s * n_heads + i] * weight_scale;
    const int key = threadIdx.x % IDX_KEYS, group = threadIdx.x / IDX_KEYS;
    for (int tile = 0; tile < tiles; tile++) {
        const int t0 = first + tile * IDX_KEYS;
        if (t0 >= visible) break;  // the same for the whole block
        __syncthreads();           // q loaded; the previous tile's keys and partial sums used
        if (VEC4) {  // unrolled: the page-table and key loads of several keys in flight
#pragma unroll 4
            for (int i = threadIdx.x; i < IDX_KEYS * D4; i += IDX_THREADS) {
                const int k = i / D4, d4 = i % D4;
                ((float4 *)(ks + k * ks_stride))[d4] =
                    t0 + k < visible ? ((const float4 *)(k_pool + cache_row(map, seq, t0 + k) * head_dim))[d4]
                                     : make_float4(0, 0, 0, 0);
            }
        } else {
            for (int i = threadIdx.x; i < IDX_KEYS * head_dim; i += IDX_THREADS) {
                const int k = i / head_dim, d = i % head_dim;
                ks[k * ks_stride + d] = t0 + k < visible ? k_pool[cache_row(map, seq, t0 + k) * head_dim + d] : 0.0f;
            }
        }
        __syncthreads();
        const float *kr = ks + key * ks_stride;
        float total = 0.0f;
        // IDX_HEADS heads per pass (group, group + 8, ...): each key element read from shared memory
        // serves them all. Shared-memory bandwidth bounds this kernel: when it starts while another
        // kernel holds most SMs, its blocks pile up on the few free ones.
        for (int h0 = group; h0 < n_heads; h0 += IDX_HEADS * IDX_GROUPS) {
            float dot[IDX_HEADS] = {};
            if (VEC4) {  // 16-byte shared loads: q broadcast, keys conflict-free with the +4 padding
                for (int d4 = 0; d4 < D4; d4++) {
                    const float4 b = ((const float4 *)kr)[d4];
#pragma unroll
                    for (int j = 0; j < IDX_HEADS; j++)
                        if (h0 + j * IDX_GROUPS < n_heads) {
                            const float4 a = ((const float4 *)(qs + (h0 + j * IDX_GROUPS) * head_dim))[d4];
                            dot[j] += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
                        }
                }
            } else {
                for (int d = 0; d < head_dim; d++)
#pragma unroll
                    for (int j = 0; j < IDX_HEADS; j++)
                        if (h0 + j * IDX_GROUPS < n_heads) dot[j] += qs[(h0 + j * IDX_GROUPS) * head_dim + d] * kr[d];
            }
#pragma unroll
            for (int j = 0; j < IDX_HEADS; j++)  // heads in ascending order, as one at a time
                if (h0 + j * IDX_GROUPS < n_heads) {
                    const float dot_j = dot[j] * scale;
                    total += ws[h0 + j * IDX_GROUPS] * (dot_j > 0.0f ? dot_j : 0.0f);
                }
        }
        part[group * IDX_KEYS + key] = total;
        __syncthreads();
        if (threadIdx.x < IDX_KEYS && t0 + threadIdx.x < visible) {
            float sum = 0.0f;
            for (int g = 0; g < IDX_GROUPS; g++) sum += part[g * IDX_KEYS + threadIdx.x];
            scores[(size_t)blockIdx.y * scores_stride + t0 + threadIdx.x] = sum;
        }
    }
}

enum { TOPK_THREADS = 1024 };

// Exclusive prefix sum over the block (blockDim.x a multiple of 32); *total gets the sum.
// All threads must call it.
__device__ int block_exclusive_scan(int v, int *total) {
    __shared__ int warp_prefix[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    int inclusive = v;
    for (int o = 1; o < 32; o <<= 1) {
        const int n = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o) inclusive += n;
    }
    __syncthreads();  // the previous call's readers are done with warp_prefix
    if (lane == 31) warp_prefix[warp] = inclusive;
    __syncthreads();
    if (warp == 0) {
        int incl = lane < warps ? warp_prefix[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            const int n = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += n;
        }
        warp_prefix[lane] = incl;  // inclusive prefix over the warps' totals
    }
    __syncthreads();
    *total = warp_prefix[warps - 1];
    return (warp ? warp_prefix[warp - 1] : 0) + inclusive - v;
}

// One block per query (contexts below TK_MULTI_MIN = TOPK_THREADS·TOPK_PER_THREAD keys): thread t
// holds the order keys of positions t·P .. t·P+P-1 (P = ceil(visible / TOPK_THREADS)) in registers,
// read once; radix select, 8 bits at a time from the top, finds the key of the topk-th entry; one
// block scan of (keys above, keys equal) counts gives each selected key its slot in position order.
enum { TOPK_PER_THREAD = 16 };
__global__ void __launch_bounds__(TOPK_THREADS)
    topk_kernel(int32_t *sel, int32_t *n_sel, const float *scores, int scores_stride, const int32_t *pos,
                glint_cache_map map, int s0, int topk) {
    chain_wait();
    __shared__ int hist[256];
    __shared__ uint32_t prefix_s;
    __shared__ int remaining_s;
    const int row = blockIdx.x, s = s0 + row, visible = pos[s] + 1, seq = map.row_seq[s];
    int32_t *out = sel + (size_t)s * topk;
    if (visible <= topk) {  // every visible key is selected
        for (int t = threadIdx.x; t < visible; t += blockDim.x) out[t] = (int32_t)cache_row(map, seq, t);
        if (threadIdx.x == 0) n_sel[s] = visible;
        return;
    }
    const float *sc = scores + (size_t)row * scores_stride;
    const int per = (visible + TOPK_THREADS - 1) / TOPK_THREADS, first = threadIdx.x * per;
    uint32_t key[TOPK_PER_THREAD];
#pragma unroll
    for (int j = 0; j < TOPK_PER_THREAD; j++)
        key[j] = j < per && first + j < visible ? order_key(sc[first + j]) : 0u;
    uint32_t prefix = 0, mask = 0;
    int remaining = topk;
    for (int shift = 24; shift >= 0; shift -= 8) {
        if (threadIdx.x < 256) hist[threadIdx.x] = 0;
        __syncthreads();
#pragma unroll
        for (int j = 0; j < TOPK_PER_THREAD; j++) {
            if (j >= per) break;  // the same for the whole block
            const bool in = first + j < visible && (key[j] & mask) == prefix;
            if (!__any_sync(0xffffffffu, in)) continue;  // later passes: most warps have no key left
            const uint32_t digit = in ? (key[j] >> shift) & 255u : 256u;
            // lanes with the same digit add once (equal scores would serialize on one counter)
            const unsigned peers = __match_any_sync(0xffffffffu, digit);
            if (in && (threadIdx.x & 31) == (unsigned)(__ffs(peers) - 1)) atomicAdd(&hist[digit], __popc(peers));
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            int digit, above;
            radix_digit_warp<false>(hist, remaining, &digit, &above);
            if (threadIdx.x == 0) {
                prefix_s = prefix | ((uint32_t)digit << shift);
                remaining_s = remaining - above;
            }
        }
        __syncthreads();
        prefix = prefix_s, remaining = remaining_s, mask |= 255u << shift;
    }
    // Keys above the threshold are all in; of those equal to it, the `remaining` lowest positions.
    // Counts packed as above << 16 | equal (each at most 16384).
    int gt = 0, eq = 0;
#pragma unroll
    for (int j = 0; j < TOPK_PER_THREAD; j++)
        if (j < per && first + j < visible) gt += key[j] > prefix, eq += key[j] == prefix;
    int total;
    const int before = block_exclusive_scan(gt << 16 | eq, &total);
    int gt_before = before >> 16, eq_before = before & 0xffff;
#pragma unroll
    for (int j = 0; j < TOPK_PER_THREAD; j++) {
        const int t = first + j;
        if (j >= per || t >= visible) break;
        const bool is_gt = key[j] > prefix, is_eq = key[j] == prefix;
        if (is_gt || (is_eq && eq_before < remaining)) {
            const int at = gt_before + min(eq_before, remaining);
            if (at < topk) out[at] = (int32_t)cache_row(map, seq, t);
        }
        gt_before += is_gt, eq_before += is_eq;
    }
    if (threadIdx.x == 0) n_sel[s] = topk;
}

// Long contexts: the same selection spread over many blocks per query (the one-block kernel reads
// every score 5 times on one SM). Per query: 4 histogram passes (blocks of TK_CHUNK keys add their
// digit counts to a global histogram; the last block to finish picks the digit), a count pass
// (keys above the threshold and equal to it, per block; the last block turns them into prefix
// sums), a write pass (each selected key's output slot: keys above before it + min(equal before
// it, remaining)). Same result as topk_kernel: same set, ascending positions.
enum { TK_THREADS = 256, TK_PER_THREAD = 4, TK_CHUNK = TK_THREADS * TK_PER_THREAD };
enum { TK_MULTI_MIN = TOPK_THREADS * TOPK_PER_THREAD };  // topk_kernel holds up to this many keys
// This thread's order keys of a block's chunk: positions t0 + i·TK_THREADS + thread (0 past visible).
__device__ __forceinline__ void topk_load_keys(uint32_t (&key)[TK_PER_THREAD], const float *sc, int t0, int visible) {
#pragma unroll
    for (int i = 0; i < TK_PER_THREAD; i++) {
        const int t = t0 + i * TK_THREADS + threadIdx.x;
        key[i] = t < visible ? order_key(sc[t]) : 0u;
    }
}

// A histogram pass over a block's keys (topk_load_keys'): hist [256] (shared) gets the counts of
// digit (key >> shift) & 255 among the keys whose bits above it are prefix's.
__device__ __forceinline__ void topk_block_hist(int *hist, const uint32_t (&key)[TK_PER_THREAD], int t0, int visible,
                                                uint32_t prefix, int shift) {
    const uint32_t mask = shift == 24 ? 0u : 0xffffffffu << (shift + 8);
    hist[threadIdx.x] = 0;  // TK_THREADS == 256
    __syncthreads();
#pragma unroll
    for (int i = 0; i < TK_PER_THREAD; i++) {
        const int t = t0 + i * TK_THREADS + threadIdx.x;
        const bool in = t < visible && (key[i] & mask) == prefix;
        const uint32_t digit = in ? (key[i] >> shift) & 255u : 256u;
        // lanes with the same digit add once (equal scores would serialize on one counter)
        const unsigned peers = __match_any_sync(0xffffffffu, digit);
        if (in && (threadIdx.x & 31) == (unsigned)(__ffs(peers) - 1)) atomicAdd(&hist[digit], __popc(peers));
    }
}

// The count pass over a block's keys, every thread: (keys above the threshold, keys equal to it).
__device__ __forceinline__ int2 topk_block_counts(const uint32_t (&key)[TK_PER_THREAD], int t0, int visible,
                                                  uint32_t threshold) {
    int gt = 0, eq = 0;
#pragma unroll
    for (int i = 0; i < TK_PER_THREAD; i++) {
        const int t = t0 + i * TK_THREADS + threadIdx.x;
        gt += t < visible && key[i] > threshold, eq += t < visible && key[i] == threshold;
    }
    int total_gt, total_eq;
    block_exclusive_scan(gt, &total_gt);
    block_exclusive_scan(eq, &total_eq);
    return make_int2(total_gt, total_eq);
}

// A query with no more visible keys than topk: each block writes its chunk's keys, all selected.
__device__ __forceinline__ void topk_select_all(int32_t *out, int32_t *n_sel, int s, const glint_cache_map &map,
                                                int seq, int t0, int visible) {
    for (int t = t0 + threadIdx.x; t < visible && t < t0 + TK_CHUNK; t += TK_THREADS)
        out[t] = (int32_t)cache_row(map, seq, t);
    if (blockIdx.x == 0 && threadIdx.x == 0) n_sel[s] = visible;
}

__global__ void __launch_bounds__(TK_THREADS)
    topk_hist_kernel(topk_state *states, const float *scores, int scores_stride, const int32_t *pos, int s0, int topk,
                     int shift) {
    chain_wait();
    __shared__ int hist[256];
    const int row = blockIdx.y, s = s0 + row, visible = pos[s] + 1;
    if (visible <= topk) return;  // whole query: every block leaves, the write pass copies all keys
    topk_state *st = states + row;
    const uint32_t prefix = shift == 24 ? 0u : st->prefix;
    const int remaining = shift == 24 ? topk : st->remaining;
    const int t0 = blockIdx.x * TK_CHUNK;
    uint32_t key[TK_PER_THREAD];
    topk_load_keys(key, scores + (size_t)row * scores_stride, t0, visible);
    topk_block_hist(hist, key, t0, visible, prefix, shift);
    topk_pass_finish(st, hist, (int)gridDim.x, prefix, remaining, shift);
}

// counts [rows][blocks][2]: keys above the threshold, keys equal to it; turned into exclusive
// prefix sums over the blocks by the last block of each query.
__global__ void __launch_bounds__(TK_THREADS)
    topk_count_kernel(topk_state *states, int2 *counts, const float *scores, int scores_stride, const int32_t *pos,
                      int s0, int topk) {
    chain_wait();
    const int row = blockIdx.y, s = s0 + row, visible = pos[s] + 1;
    if (visible <= topk) return;
    topk_state *st = states + row;
    const int t0 = blockIdx.x * TK_CHUNK;
    uint32_t key[TK_PER_THREAD];
    topk_load_keys(key, scores + (size_t)row * scores_stride, t0, visible);
    const int2 totals = topk_block_counts(key, t0, visible, st->prefix);
    int2 *mine = counts + (size_t)row * gridDim.x;
    if (threadIdx.x == 0) mine[blockIdx.x] = totals;
    __threadfence();
    __syncthreads();
    if (!topk_arrive(st, (int)gridDim.x)) return;
    __threadfence();
    int base_gt = 0, base_eq = 0;
    for (int b0 = 0; b0 < (int)gridDim.x; b0 += TK_THREADS) {
        const int b = b0 + threadIdx.x;
        const int2 c = b < (int)gridDim.x ? __ldcg(mine + b) : make_int2(0, 0);
        int sum_gt, sum_eq;
        const int before_gt = block_exclusive_scan(c.x, &sum_gt), before_eq = block_exclusive_scan(c.y, &sum_eq);
        if (b < (int)gridDim.x) mine[b] = make_int2(base_gt + before_gt, base_eq + before_eq);
        base_gt += sum_gt, base_eq += sum_eq;
    }
    if (threadIdx.x == 0) st->done = 0;
}

// The write pass of a block, every thread: the keys key[i] at positions t0 + i·TK_THREADS + thread
// above the threshold, and those equal to it while fewer than `remaining` come before, into their
// slots of out in ascending positions; base_gt / base_eq: the counts of the query's blocks before.
__device__ __forceinline__ void topk_write_block(int32_t *out, const uint32_t (&key)[TK_PER_THREAD], int t0,
                                                 int visible, uint32_t threshold, int remaining, int topk, int base_gt,
                                                 int base_eq, const glint_cache_map &map, int seq) {
#pragma unroll
    for (int i = 0; i < TK_PER_THREAD; i++) {
        const int t = t0 + i * TK_THREADS + threadIdx.x;
        const int is_gt = t < visible && key[i] > threshold, is_eq = t < visible && key[i] == threshold;
        int sum_gt, sum_eq;
        const int gt_before = base_gt + block_exclusive_scan(is_gt, &sum_gt);
        const int eq_before = base_eq + block_exclusive_scan(is_eq, &sum_eq);
        if (is_gt || (is_eq && eq_before < remaining)) {
            const int at = gt_before + min(eq_before, remaining);
            if (at < topk) out[at] = (int32_t)cache_row(map, seq, t);
        }
        base_gt += sum_gt, base_eq += sum_eq;
    }
}

__global__ void __launch_bounds__(TK_THREADS)
    topk_write_kernel(int32_t *sel, int32_t *n_sel, const topk_state *states, const int2 *counts, const float *scores,
                      int scores_stride, const int32_t *pos, glint_cache_map map, int s0, int topk) {
    chain_wait();
    const int row = blockIdx.y, s = s0 + row, visible = pos[s] + 1, seq = map.row_seq[s];
    int32_t *out = sel + (size_t)s * topk;
    const int t0 = blockIdx.x * TK_CHUNK;
    if (visible <= topk) {  // every visible key is selected
        topk_select_all(out, n_sel, s, map, seq, t0, visible);
        return;
    }
    const topk_state *st = states + row;
    const uint32_t threshold = st->prefix;
    const int remaining = st->remaining;
    const int2 base = counts[(size_t)row * gridDim.x + blockIdx.x];
    const float *sc = scores + (size_t)row * scores_stride;
    uint32_t key[TK_PER_THREAD];
    topk_load_keys(key, sc, t0, visible);
    topk_write_block(out, key, t0, visible, threshold, remaining, topk, base.x, base.y, map, seq);
    if (blockIdx.x == 0 && threadIdx.x == 0) n_sel[s] = topk;
}

// Waits for the last of the `blocks` blocks of this query to arrive (block_hist: this block's counts
// of the pass, added to st->hist first; NULL: a plain barrier); the last one picks the pass's digit
// as topk_pass_finish does. A wait of more than 20 s (blocks not resident after all, e.g. another
// process holding the SMs) traps: a CUDA error that ends the process's use of the device, rather
// than a hang.
enum : unsigned long long { TOPK_WAIT_TIMEOUT_NS = 20000000000ull };
__device__ void topk_pass_wait(topk_state *st, const int *block_hist, int blocks, uint32_t prefix, int remaining,
                               int shift) {
    // read before arriving, fenced from the arrival: the last block bumps it only after everyone has
    const int gen = threadIdx.x == 0 ? *(volatile int *)&st->gen : 0;
    if (block_hist) topk_add_hist(st, block_hist);
    else __syncthreads();  // (the counts written before: fenced by each thread below)
    __threadfence();
    if (topk_arrive(st, blocks)) {
        __threadfence();
        if (block_hist && threadIdx.x < 32) {
            topk_pick_digit(st, prefix, remaining, shift);
            __threadfence();  // before the others are let go
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            st->done = 0;
            __threadfence();
            atomicAdd(&st->gen, 1);
        }
    } else if (threadIdx.x == 0) {
        const unsigned long long start = global_now_ns();
        while (*(volatile int *)&st->gen == gen) {
            __nanosleep(64);
            if (global_now_ns() - start > TOPK_WAIT_TIMEOUT_NS) __trap();
        }
        __threadfence();
    }
    __syncthreads();
}

// The multi-block selection's histogram passes, count and write in one launch (by default;
// GLINT_CUDA_TOPK_RESIDENT=0: a launch per pass) when every block of the grid can be resident at
// once (the host checks): each block keeps its TK_CHUNK order keys in registers (the scores are read
// once), and where topk_hist_kernel's blocks would end and the next launch begin, they wait for the
// pass's last block instead (topk_pass_wait); after the count one more wait, then each block sums
// the counts of the blocks before it. Same arithmetic as the launches it replaces: same set, ascending
// positions. first_shift: 24, or 16 when the scores did the first histogram pass.
__global__ void __launch_bounds__(TK_THREADS)
    topk_resident_kernel(int32_t *sel, int32_t *n_sel, topk_state *states, int2 *counts, const float *scores,
                         int scores_stride, const int32_t *pos, glint_cache_map map, int s0, int topk,
                         int first_shift) {
    chain_wait();
    __shared__ int hist[256];
    const int row = blockIdx.y, s = s0 + row, visible = pos[s] + 1, seq = map.row_seq[s];
    int32_t *out = sel + (size_t)s * topk;
    const int t0 = blockIdx.x * TK_CHUNK, blocks = (int)gridDim.x;
    if (visible <= topk) {  // every visible key is selected (the same for all the query's blocks)
        topk_select_all(out, n_sel, s, map, seq, t0, visible);
        return;
    }
    topk_state *st = states + row;
    const float *sc = scores + (size_t)row * scores_stride;
    uint32_t key[TK_PER_THREAD];
    topk_load_keys(key, sc, t0, visible);
    uint32_t prefix = first_shift == 24 ? 0u : __ldcg(&st->prefix);
    int remaining = first_shift == 24 ? topk : __ldcg(&st->remaining);
    for (int shift = first_shift; shift >= 0; shift -= 8) {
        topk_block_hist(hist, key, t0, visible, prefix, shift);
        topk_pass_wait(st, hist, blocks, prefix, remaining, shift);
        prefix = __ldcg(&st->prefix), remaining = __ldcg(&st->remaining);
    }
    // count: this block's keys above the threshold and equal to it, published for the others
    const int2 totals = topk_block_counts(key, t0, visible, prefix);
    int2 *mine = counts + (size_t)row * blocks;
    if (threadIdx.x == 0) mine[blockIdx.x] = totals;
    topk_pass_wait(st, NULL, blocks, 0u, 0, 0);
    // write: the blocks before this one give its first slots
    int base_gt = 0, base_eq = 0;
    for (int b0 = 0; b0 < (int)blockIdx.x; b0 += TK_THREADS) {
        const int b = b0 + threadIdx.x;
        const int2 c = b < (int)blockIdx.x ? __ldcg(mine + b) : make_int2(0, 0);
        int sum_gt, sum_eq;
        block_exclusive_scan(c.x, &sum_gt);
        block_exclusive_scan(c.y, &sum_eq);
        base_gt += sum_gt, base_eq += sum_eq;
    }
    topk_write_block(out, key, t0, visible, prefix, remaining, topk, base_gt, base_eq, map, seq);
    if (blockIdx.x == 0 && threadIdx.x == 0) n_sel[s] = topk;
}

// Whether `blocks` blocks of topk_resident_kernel can all be resident on the calling thread's device
// at once (GLINT_CUDA_TOPK_RESIDENT=0: never). On H200 (session 13, alternated in one call) it gave
// 16k 56.2, 57.2 -> 57.4, 57.8% of copy; 64k 56.8, 57.5 -> 58.2, 57.7%; 128k 57.3, 58.0 -> 57.8, 58.1%.
static bool topk_resident_fits(int blocks, int sms) {
    static const int on = glint_cuda_switch("GLINT_CUDA_TOPK_RESIDENT", 1);
    static int per_sm[GLINT_CUDA_MAX_DEVICES];
    if (!on) return false;
    int &n = per_sm[glint_cuda_device()];
    // (not while another error is pending: clearing the query's own error would clear that one too)
    if (!n && cudaPeekAtLastError() == cudaSuccess &&
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, topk_resident_kernel, TK_THREADS, 0) != cudaSuccess) {
        cudaGetLastError();
        n = -1;
    }
    return n > 0 && (long)blocks <= (long)n * sms;
}

static void cuda_indexer_select(glint_backend *be, int32_t *sel, int32_t *n_sel, const float *q, const float *w,
                                const float *k_pool, int T, const int32_t *pos, const glint_cache_map *map,
                                int n_heads, int head_dim, int topk, float scale, float weight_scale) {
    if (T <= 0) return;
    const int max_visible = map->max_position + 1;  // sizes the score buffer and the grid
    // Queries per pass so the score buffer stays within 256 MiB.
    // (and within the grid's y limit)
    const int per_pass = (int)fmin(fmin((double)T, 65535.0), fmax(1.0, (double)(64 << 20) / max_visible));
    float *scores = (float *)scratch(be, SCR_SCORES, sizeof(float) * (size_t)per_pass * max_visible);
    if (!scores) return;
    const bool vec4 = head_dim % 4 == 0 && (uintptr_t)k_pool % 16 == 0;
    const size_t smem = sizeof(float) * ((size_t)n_heads * head_dim + n_heads + IDX_KEYS * (head_dim + 4) +
                                         IDX_GROUPS * IDX_KEYS);
    if (smem > 48 * 1024 &&
        (cudaFuncSetAttribute(indexer_scores_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) !=
             cudaSuccess ||
         cudaFuncSetAttribute(indexer_scores_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) !=
             cudaSuccess)) {
        glint_cuda_check("indexer shared memory");
        return;
    }
    for (int s0 = 0; s0 < T; s0 += per_pass) {
        const int n = T - s0 < per_pass ? T - s0 : per_pass;
        // up to IDX_TILES key tiles per block (q staged once), as long as about two blocks per SM remain
        const int n_tiles = (max_visible + IDX_KEYS - 1) / IDX_KEYS;
        int tiles = n_tiles * n / (2 * cuda_of(be)->sms);
        tiles = tiles < 1 ? 1 : tiles > IDX_TILES ? IDX_TILES : tiles;
        dim3 grid((unsigned)((n_tiles + tiles - 1) / tiles), (unsigned)n);
        // The multi-block selection (16k keys and more) needs its per-query states before the scores:
        // the tensor-core scores run its first histogram pass (GLINT_CUDA_TOPK_FUSED=0: a launch of its own).
        const bool multi = max_visible >= TK_MULTI_MIN;
        const int blocks = (max_visible + TK_CHUNK - 1) / TK_CHUNK;
        topk_state *states = NULL;
        int2 *counts = NULL;
        if (multi) {
            const unsigned long long epoch = glint_cuda_dev().buffer_epoch;
            states = (topk_state *)scratch(be, SCR_TOPK, sizeof(topk_state) * (size_t)per_pass);
            counts = (int2 *)scratch(be, SCR_TOPK_COUNTS, sizeof(int2) * (size_t)per_pass * blocks);
            if (!states || !counts) return;
            int &zeroed = cuda_of(be)->topk_zeroed[glint_cuda_stream_slot()];
            if (glint_cuda_dev().buffer_epoch != epoch) zeroed = 0;  // (re)allocated
            if (!zeroed) {  // all of it: rows past this call's per_pass may be used later without reallocating
                cudaMemsetAsync(states, 0, cuda_of(be)->scratch_bytes[glint_cuda_stream_slot()][SCR_TOPK],
                                glint_cuda_stream());
                // A capture that (re)allocated is discarded (new epoch) and its ops run again: zero again then.
                cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
                cudaStreamIsCapturing(glint_cuda_stream(), &capturing);
                zeroed = capturing == cudaStreamCaptureStatusNone;
            }
        }
        // On H200 (session 12, alternated in one call): 64k 56.5, 57.6 -> 57.8, 57.8% of copy; 128k 58.3,
        // 58.0 -> 58.3, 58.5%.
        static const int fuse_switch = glint_cuda_switch("GLINT_CUDA_TOPK_FUSED", 1);
        topk_state *fused = multi && fuse_switch ? states : NULL;
        // tensor cores where the shape is GLM-5's (cuda_indexer.cu), else the FP32 kernel
        const int on_tensor_cores = glint_cuda_indexer_scores_tc(scores, max_visible, q, w, k_pool, pos, *map, s0, n,
                                                                 max_visible, n_heads, head_dim, scale, weight_scale,
                                                                 cuda_of(be)->sms, fused, topk);
        if (!on_tensor_cores) {
            fused = NULL;
            if (vec4)
                launch_chained(indexer_scores_kernel<true>, grid, IDX_THREADS, smem, scores, max_visible, q, w, k_pool,
                    pos, *map, s0, n_heads, head_dim, scale, weight_scale, tiles);
            else
                launch_chained(indexer_scores_kernel<false>, grid, IDX_THREADS, smem, scores, max_visible, q, w, k_pool,
                    pos, *map, s0, n_heads, head_dim, scale, weight_scale, tiles);
        }
        if (!multi) {
            launch_chained(topk_kernel, n, TOPK_THREADS, 0, sel, n_sel, scores, max_visible, pos, *map, s0, topk);
            continue;
        }
        const dim3 tk_grid((unsigned)blocks, (unsigned)n);
        if (topk_resident_fits(blocks * n, cuda_of(be)->sms)) {
            launch_chained(topk_resident_kernel, tk_grid, TK_THREADS, 0, sel, n_sel, states, counts, scores,
                max_visible, pos, *map, s0, topk, fused ? 16 : 24);
            continue;
        }
        for (int shift = fused ? 16 : 24; shift >= 0; shift -= 8)
            launch_chained(topk_hist_kernel, tk_grid, TK_THREADS, 0, states, scores, max_visible, pos, s0, topk, shift);
        launch_chained(topk_count_kernel, tk_grid, TK_THREADS, 0, states, counts, scores, max_visible, pos, s0, topk);
        launch_chained(topk_write_kernel, tk_grid, TK_THREADS, 0, sel, n_sel, states, counts, scores, max_visible, pos,
            *map, s0, topk);
    }
    if (glint_cuda_check("indexer_select")) cuda_of(be)->topk_zeroed[glint_cuda_stream_slot()] = 0;
}

// ---------------------------------------------------------------------------------------------
// Absorbed MLA

enum { ABSORB_COLS = 128, ABSORB_TOKENS = 16, ABSORB_SPLIT = 4 };

// q_lat[t, h, c] = Σ_j q[t, h, j] · kv_b[h·(Dn+Dv) + j, c]; grid (C/128, H, T/16), block (128, 4).
// A thread owns a column c (coalesced weight reads) for 16 tokens whose q_nope rows sit in shared
// memory; the 4 thread rows split j and are summed at the end.
__global__ void __launch_bounds__(ABSORB_COLS * ABSORB_SPLIT)
    absorb_q_kernel(float *q_lat, const float *q, int T, int H, int q_head_stride, int Dn, int Dv, dev_weight kv_b) {
    chain_wait();
    extern __shared__ float qn[];  // [16][Dn], then partial sums [4][16][128]
    float *partial = qn + ABSORB_TOKENS * Dn;
    const int h = blockIdx.y, t0 = blockIdx.z * ABSORB_TOKENS, nt = min(ABSORB_TOKENS, T - t0);
    const int tid = threadIdx.y * ABSORB_COLS + threadIdx.x;
    const int64_t C = kv_b.cols, c = (int64_t)blockIdx.x * ABSORB_COLS + threadIdx.x;
    for (int i = tid; i < ABSORB_TOKENS * Dn; i += ABSORB_COLS * ABSORB_SPLIT) {
        const int t = i / Dn, j = i % Dn;
        qn[i] = t < nt ? q[((size_t)(t0 + t) * H + h) * q_head_stride + j] : 0.0f;
    }
    __syncthreads();
    float acc[ABSORB_TOKENS];
#pragma unroll
    for (int t = 0; t < ABSORB_TOKENS; t++) acc[t] = 0.0f;
    if (c < C && kv_b.format == GLINT_WFMT_DENSE && kv_b.dtype == GLINT_DTYPE_BF16) {
        // BF16 (the checkpoints' kv_b): 8 rows' loads issued together, the sum in the same j order
        const uint16_t *col = (const uint16_t *)kv_b.data + ((int64_t)h * (Dn + Dv)) * C + c;
        int j = threadIdx.y;
        for (; j + 7 * ABSORB_SPLIT < Dn; j += 8 * ABSORB_SPLIT) {
            float w[8];
#pragma unroll
            for (int u = 0; u < 8; u++) w[u] = bf16_bits_to_float(__ldg(col + (int64_t)(j + u * ABSORB_SPLIT) * C));
#pragma unroll
            for (int u = 0; u < 8; u++)
#pragma unroll
                for (int t = 0; t < ABSORB_TOKENS; t++)
                    if (t < nt) acc[t] += qn[t * Dn + j + u * ABSORB_SPLIT] * w[u];
        }
        for (; j < Dn; j += ABSORB_SPLIT) {
            const float w = bf16_bits_to_float(__ldg(col + (int64_t)j * C));
#pragma unroll
            for (int t = 0; t < ABSORB_TOKENS; t++)
                if (t < nt) acc[t] += qn[t * Dn + j] * w;
        }
    } else if (c < C)
        for (int j = threadIdx.y; j < Dn; j += ABSORB_SPLIT) {
            const float w = weight_element(kv_b, (int64_t)h * (Dn + Dv) + j, c);
#pragma unroll
            for (int t = 0; t < ABSORB_TOKENS; t++)
                if (t < nt) acc[t] += qn[t * Dn + j] * w;
        }
#pragma unroll
    for (int t = 0; t < ABSORB_TOKENS; t++)
        if (t < nt) partial[(threadIdx.y * ABSORB_TOKENS + t) * ABSORB_COLS + threadIdx.x] = acc[t];
    __syncthreads();
    if (threadIdx.y != 0 || c >= C) return;
    for (int t = 0; t < nt; t++) {
        float v = 0.0f;
        for (int k = 0; k < ABSORB_SPLIT; k++) v += partial[(k * ABSORB_TOKENS + t) * ABSORB_COLS + threadIdx.x];
        q_lat[((size_t)(t0 + t) * H + h) * C + c] = v;
    }
}

// BF16 kv_b (the checkpoints'): a thread owns 4 adjacent columns (8-byte loads, 8 rows' loads issued
// together) of up to 4 tokens; 8 thread rows split j and are summed in order at the end; grid
// (C/256, H, T/4). The old kernel's 2-byte loads kept too few bytes in flight (19 us for 12.6 MB on an
// H200).
enum { ABSORB4_COLS = 64, ABSORB4_SPLIT = 8, ABSORB4_TOKENS = 4, ABSORB4_UNROLL = 24 };
__global__ void __launch_bounds__(ABSORB4_COLS * ABSORB4_SPLIT)
    absorb_q_bf16_kernel(float *q_lat, const float *q, int T, int H, int q_head_stride, int Dn, int Dv, int C,
                         const uint16_t *kv_b) {
    __shared__ float qn[ABSORB4_TOKENS * 256];  // [token][Dn]
    __shared__ float4 partial[ABSORB4_SPLIT][ABSORB4_TOKENS][ABSORB4_COLS];
    const int h = blockIdx.y, t0 = blockIdx.z * ABSORB4_TOKENS, nt = min(ABSORB4_TOKENS, T - t0);
    const int c = (blockIdx.x * ABSORB4_COLS + threadIdx.x) * 4;
    const uint16_t *col = kv_b + (size_t)h * (Dn + Dv) * C + c;
    // rows j = threadIdx.y + u·SPLIT: ABSORB4_UNROLL weight loads in flight (all of a 192-row head).
    // The first rows' loads go out before the wait for q: no kernel writes the weights.
    uint2 w[ABSORB4_UNROLL];
#pragma unroll
    for (int u = 0; u < ABSORB4_UNROLL; u++) {
        const int j = threadIdx.y + u * ABSORB4_SPLIT;
        w[u] = j < Dn && c < C ? __ldg((const uint2 *)(col + (size_t)j * C)) : make_uint2(0, 0);
    }
    chain_wait();
    stage_rows(qn, q + ((size_t)t0 * H + h) * q_head_stride, nt, ABSORB4_TOKENS, Dn, (size_t)H * q_head_stride);
    __syncthreads();
    float4 acc[ABSORB4_TOKENS];
#pragma unroll
    for (int t = 0; t < ABSORB4_TOKENS; t++) acc[t] = make_float4(0, 0, 0, 0);
    if (c < C) {
        for (int j0 = threadIdx.y; j0 < Dn; j0 += ABSORB4_UNROLL * ABSORB4_SPLIT) {
            if (j0 != threadIdx.y)
#pragma unroll
                for (int u = 0; u < ABSORB4_UNROLL; u++) {
                    const int j = j0 + u * ABSORB4_SPLIT;
                    w[u] = j < Dn ? __ldg((const uint2 *)(col + (size_t)j * C)) : make_uint2(0, 0);
                }
#pragma unroll
            for (int u = 0; u < ABSORB4_UNROLL; u++) {
                const int j = j0 + u * ABSORB4_SPLIT;
                if (j >= Dn) break;
                const float w0 = bf16_bits_to_float(w[u].x & 0xffffu), w1 = bf16_bits_to_float(w[u].x >> 16);
                const float w2 = bf16_bits_to_float(w[u].y & 0xffffu), w3 = bf16_bits_to_float(w[u].y >> 16);
#pragma unroll
                for (int t = 0; t < ABSORB4_TOKENS; t++) {
                    const float qv = qn[t * Dn + j];
                    acc[t].x += qv * w0, acc[t].y += qv * w1, acc[t].z += qv * w2, acc[t].w += qv * w3;
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < ABSORB4_TOKENS; t++) partial[threadIdx.y][t][threadIdx.x] = acc[t];
    __syncthreads();
    if (threadIdx.y >= ABSORB4_TOKENS || c >= C || threadIdx.y >= nt) return;
    const int t = threadIdx.y;  // thread rows 0..3 write one token each
    float4 v = partial[0][t][threadIdx.x];
    for (int k = 1; k < ABSORB4_SPLIT; k++) {
        const float4 p = partial[k][t][threadIdx.x];
        v.x += p.x, v.y += p.y, v.z += p.z, v.w += p.w;
    }
    *(float4 *)(q_lat + ((size_t)(t0 + t) * H + h) * C + c) = v;
}

static void cuda_mla_absorb_q(glint_backend *be, float *q_lat, const float *q, int T, int H, int q_head_stride, int Dn,
                              int Dv, const glint_weight *kv_b) {
    (void)be;
    if (T <= 0) return;
    const int64_t C = kv_b->cols;
    if (kv_b->format == GLINT_WFMT_DENSE && kv_b->dtype == GLINT_DTYPE_BF16 && C % 4 == 0 && Dn <= 256 &&
        (uintptr_t)kv_b->data % 8 == 0) {
        dim3 grid((unsigned)((C + 4 * ABSORB4_COLS - 1) / (4 * ABSORB4_COLS)), (unsigned)H,
                  (unsigned)((T + ABSORB4_TOKENS - 1) / ABSORB4_TOKENS));
        launch_chained(absorb_q_bf16_kernel, grid, dim3(ABSORB4_COLS, ABSORB4_SPLIT), 0, q_lat, q, T, H, q_head_stride,
            Dn, Dv, (int)C, (const uint16_t *)kv_b->data);
        glint_cuda_check("mla_absorb_q");
        return;
    }
    const size_t smem = sizeof(float) * ABSORB_TOKENS * ((size_t)Dn + ABSORB_SPLIT * ABSORB_COLS);
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(absorb_q_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess) {
        glint_cuda_check("mla_absorb_q shared memory");
        return;
    }
    dim3 grid((unsigned)((kv_b->cols + ABSORB_COLS - 1) / ABSORB_COLS), (unsigned)H,
              (unsigned)((T + ABSORB_TOKENS - 1) / ABSORB_TOKENS));
    launch_chained(absorb_q_kernel, grid, dim3(ABSORB_COLS, ABSORB_SPLIT), smem, q_lat, q, T, H, q_head_stride, Dn, Dv,
        dev_weight_of(kv_b));
    glint_cuda_check("mla_absorb_q");
}

enum { ATTEND_HEADS = 8, ATTEND_KEYS = 16, ATTEND_THREADS = 256, ATTEND_MAX_COLS = 4, ATTEND_FOLD_GROUP = 16 };

// Attention of a query over its selected keys, in an order that does not depend on the batch: the
// selection is cut into chunks of a fixed number of keys (per shape: from H, sel_stride and the SM
// count, never T); each chunk is an online softmax over its key tiles; the chunks' (max, sum,
// output) are folded by attend_fold in chunk order within groups of ATTEND_FOLD_GROUP chunks, and
// the groups in group order. Decode (few queries) runs a block per chunk and folds in
// combine_attend_kernel (the groups in parallel); otherwise a block folds its chunks itself, with
// the same arithmetic, so a row's result is the same bits alone or in any batch.
//
// Folds chunk state (m_k, s_k) into the running (M, S): the factors for the running output (a) and
// the chunk's (b). Returns false for an empty chunk (skipped). Rounded products and sums (no FMA
// contraction) so the block and the combine kernel compute the same bits.
__device__ __forceinline__ bool attend_fold(float &M, float &S, float m_k, float s_k, float &a, float &b) {
    if (m_k == -INFINITY) return false;
    const float m = fmaxf(M, m_k);
    a = M == -INFINITY ? 0.0f : expf(M - m);
    b = expf(m_k - m);
    S = __fadd_rn(__fmul_rn(S, a), __fmul_rn(s_k, b));
    M = m;
    return true;
}
__device__ __forceinline__ float attend_fold_value(float acc, float a, float acc_k, float b) {
    return __fadd_rn(__fmul_rn(acc, a), __fmul_rn(acc_k, b));
}
__device__ __forceinline__ float attend_normalize(float acc, float S) { return S > 0.0f ? __fdiv_rn(acc, S) : 0.0f; }

// One output element of a chunk (acc) into its group with the factors (a, b), and at the group's end
// the group into the fold with (a2, b2) (attend_fold_factors; b, b2 < 0: an empty chunk or group).
__device__ __forceinline__ void attend_fold_element(float &grp, float &fold, float acc, float a, float b, float a2,
                                                    float b2, bool group_end) {
    if (b >= 0.0f) grp = attend_fold_value(grp, a, acc, b);
    if (group_end) {
        if (b2 >= 0.0f) fold = attend_fold_value(fold, a2, grp, b2);
        grp = 0.0f;
    }
}

// The key rows of chunk `chunk` of a query's selection (idx, n_keys of them) into keys_s by cp.async
// (one committed group; slots past the selection zero-filled).
__device__ __forceinline__ void attend_load_keys(int32_t *keys_s, const int32_t *idx, int chunk, int keys_per_chunk,
                                                 int n_keys) {
    const int begin = chunk * keys_per_chunk, n = min(n_keys, begin + keys_per_chunk) - begin;
    for (int i = threadIdx.x; i < keys_per_chunk; i += blockDim.x)
        cp_async4(smem_u32(keys_s + i), i < n ? idx + begin + i : idx, i < n);
    cp_async_commit();
}

// Head hh's chunk state (run_max, run_sum) into its group, and at the group's end the group into the
// fold: the factors for the outputs (fold_a/b: group and chunk; tot_a/b: fold and group; b < 0: an
// empty chunk or group, skipped).
__device__ __forceinline__ void attend_fold_factors(int hh, bool group_end, const float *run_max, const float *run_sum,
                                                    float *grp_max, float *grp_sum, float *fold_max, float *fold_sum,
                                                    float *fold_a, float *fold_b, float *tot_a, float *tot_b) {
    float a = 1.0f, b = -1.0f, a2 = 1.0f, b2 = -1.0f;
    attend_fold(grp_max[hh], grp_sum[hh], run_max[hh], run_sum[hh], a, b);
    if (group_end) {
        attend_fold(fold_max[hh], fold_sum[hh], grp_max[hh], grp_sum[hh], a2, b2);
        grp_max[hh] = -INFINITY, grp_sum[hh] = 0.0f;
    }
    fold_a[hh] = a, fold_b[hh] = b, tot_a[hh] = a2, tot_b[hh] = b2;
}

// One block per (query, group of 8 heads[, chunk]): key tiles of 16 selected cache rows are staged in
// shared memory and used by all 8 heads; the next tile is loaded while the block works on the current
// one (two buffers; cp.async with VEC4). With partial_out the block takes chunk blockIdx.z and writes
// its unnormalized output and (max, sum); without, it folds every chunk and writes the output. VEC4 (C, Dr multiples of 4, C <= 512, aligned caches): 16-byte shared
// loads; scores: a warp per two keys of all 8 heads, lanes over float4s; values: a thread owns one float4
// column of 4 heads. Otherwise a thread owns up to 4 latent columns of all 8 heads (C <= 1024).
// Shared layout (floats): q_lat [8][C], q_pe [8][Dr], lat [2][16][C], kpe [2][16][Dr], p [16 keys][8 heads],
// the chunk's running max/sum/rescale [8] each, the fold's max/sum/factors [8] each, then the chunk's
// key rows (int32) [keys_per_chunk].
template <bool VEC4>
__global__ void __launch_bounds__(ATTEND_THREADS)
    attend_kernel(float *o_lat, const float *q_lat, const float *q, int q_head_stride, int pe_offset,
                  const float *latent_cache, const float *kpe_cache, const int32_t *sel, const int32_t *n_sel,
                  int sel_stride, int H, int C, int Dr, float scale, int keys_per_chunk, float *partial_out,
                  float *partial_stats) {
    chain_wait();
    extern __shared__ float smem[];
    const int s = blockIdx.x, h0 = blockIdx.y * ATTEND_HEADS, nh = min(ATTEND_HEADS, H - h0);
    float *qs = smem, *qp = qs + ATTEND_HEADS * C, *lat_buf = qp + ATTEND_HEADS * Dr;
    float *kpe_buf = lat_buf + 2 * ATTEND_KEYS * C, *p = kpe_buf + 2 * ATTEND_KEYS * Dr;
    float *run_max = p + ATTEND_HEADS * ATTEND_KEYS, *run_sum = run_max + ATTEND_HEADS;
    float *rescale = run_sum + ATTEND_HEADS, *fold_max = rescale + ATTEND_HEADS, *fold_sum = fold_max + ATTEND_HEADS;
    float *fold_a = fold_sum + ATTEND_HEADS, *fold_b = fold_a + ATTEND_HEADS, *grp_max = fold_b + ATTEND_HEADS;
    float *grp_sum = grp_max + ATTEND_HEADS, *tot_a = grp_sum + ATTEND_HEADS, *tot_b = tot_a + ATTEND_HEADS;
    int32_t *keys_s = (int32_t *)(tot_b + ATTEND_HEADS);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int C4 = C / 4, D4 = Dr / 4;
    const int32_t *idx = sel + (size_t)s * sel_stride;
    const int n_keys = n_sel[s], n_chunks = (n_keys + keys_per_chunk - 1) / keys_per_chunk;
    const int first_chunk = partial_out ? blockIdx.z : 0, end_chunk = partial_out ? blockIdx.z + 1 : n_chunks;
    // The first chunk's key rows (cp.async) arrive while the query rows are staged.
    if (first_chunk < end_chunk) attend_load_keys(keys_s, idx, first_chunk, keys_per_chunk, n_keys);
    stage_rows(qs, q_lat + ((size_t)s * H + h0) * C, nh, ATTEND_HEADS, C, C);
    stage_rows(qp, q + ((size_t)s * H + h0) * q_head_stride + pe_offset, nh, ATTEND_HEADS, Dr, q_head_stride);
    if (tid < ATTEND_HEADS) fold_max[tid] = grp_max[tid] = -INFINITY, fold_sum[tid] = grp_sum[tid] = 0.0f;
    // VEC4: thread owns float4 column c4 = tid % 128 of heads hb·4 .. hb·4+3
    const int hb = tid / 128, c4 = tid % 128;
    float4 acc4[4], grp4[4], fold4[4];  // the chunk's output, its group's, the folded groups'
    float acc[ATTEND_HEADS][ATTEND_MAX_COLS], grp[ATTEND_HEADS][ATTEND_MAX_COLS], fold[ATTEND_HEADS][ATTEND_MAX_COLS];
    if (VEC4) {
#pragma unroll
        for (int i = 0; i < 4; i++) grp4[i] = fold4[i] = make_float4(0, 0, 0, 0);
    } else {
#pragma unroll
        for (int hh = 0; hh < ATTEND_HEADS; hh++)
#pragma unroll
            for (int j = 0; j < ATTEND_MAX_COLS; j++) grp[hh][j] = fold[hh][j] = 0.0f;
    }
    // Tile `i0` (its first key's place in the chunk) of ni keys into buffer `buf`: cp.async (committed
    // as one group) with VEC4, else plain loads.
    auto load_tile = [&](int i0, int ni, int buf) {
        float *lat = lat_buf + buf * ATTEND_KEYS * C, *kpe = kpe_buf + buf * ATTEND_KEYS * Dr;
        if (VEC4) {  // a warp per key row (no index divisions); rows past ni are zero-filled
            for (int key = warp; key < ATTEND_KEYS; key += ATTEND_THREADS / 32) {
                const bool ok = key < ni;
                const size_t row = ok ? (size_t)keys_s[i0 + key] : 0;
                for (int k4 = lane; k4 < C4; k4 += 32)
                    cp_async16(smem_u32(lat + key * C + 4 * k4), latent_cache + (ok ? row * C + 4 * k4 : 0), ok);
                for (int d4 = lane; d4 < D4; d4 += 32)
                    cp_async16(smem_u32(kpe + key * Dr + 4 * d4), kpe_cache + (ok ? row * Dr + 4 * d4 : 0), ok);
            }
            cp_async_commit();
        } else {
            for (int i = tid; i < ATTEND_KEYS * C; i += ATTEND_THREADS) {
                const int key = i / C, c = i % C;
                lat[i] = key < ni ? latent_cache[(size_t)keys_s[i0 + key] * C + c] : 0.0f;
            }
            for (int i = tid; i < ATTEND_KEYS * Dr; i += ATTEND_THREADS) {
                const int key = i / Dr, d = i % Dr;
                kpe[i] = key < ni ? kpe_cache[(size_t)keys_s[i0 + key] * Dr + d] : 0.0f;
            }
        }
    };
    for (int chunk = first_chunk; chunk < end_chunk; chunk++) {
    const int begin = chunk * keys_per_chunk, n = min(n_keys, begin + keys_per_chunk);
    __syncthreads();  // the previous chunk's fold factors, key rows and tiles are used
    if (chunk != first_chunk) attend_load_keys(keys_s, idx, chunk, keys_per_chunk, n_keys);
    if (tid < ATTEND_HEADS) run_max[tid] = -INFINITY, run_sum[tid] = 0.0f;
    if (VEC4) {
#pragma unroll
        for (int i = 0; i < 4; i++) acc4[i] = make_float4(0, 0, 0, 0);
    } else {
#pragma unroll
        for (int hh = 0; hh < ATTEND_HEADS; hh++)
#pragma unroll
            for (int j = 0; j < ATTEND_MAX_COLS; j++) acc[hh][j] = 0.0f;
    }
    cp_async_wait<0>();
    __syncthreads();  // the chunk's key rows (and the query rows) are in shared memory
    if (begin < n) load_tile(0, min(ATTEND_KEYS, n - begin), 0);
    for (int i0 = begin, buf = 0; i0 < n; i0 += ATTEND_KEYS, buf ^= 1) {
        const int ni = min(ATTEND_KEYS, n - i0);
        const float *lat = lat_buf + buf * ATTEND_KEYS * C, *kpe = kpe_buf + buf * ATTEND_KEYS * Dr;
        __syncthreads();  // the tile before this one is used: its buffer takes the next tile
        if (i0 + ATTEND_KEYS < n) {
            load_tile(i0 + ATTEND_KEYS - begin, min(ATTEND_KEYS, n - i0 - ATTEND_KEYS), buf ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (VEC4) {
            // scores: warp w takes keys 2w and 2w+1 for all 8 heads (each key float4 read once from
            // shared memory for 8 heads: shared-memory bandwidth is what limits this phase)
            static_assert(ATTEND_KEYS == 2 * (ATTEND_THREADS / 32), "two keys per warp");
            const int k0 = 2 * warp;
            float d[2][ATTEND_HEADS];
#pragma unroll
            for (int hh = 0; hh < ATTEND_HEADS; hh++) d[0][hh] = 0.0f, d[1][hh] = 0.0f;
            const float4 *l0 = (const float4 *)(lat + k0 * C), *l1 = (const float4 *)(lat + (k0 + 1) * C);
            for (int k = lane; k < C4; k += 32) {
                const float4 a = l0[k], b = l1[k];
#pragma unroll
                for (int hh = 0; hh < ATTEND_HEADS; hh++) {
                    const float4 v = ((const float4 *)(qs + hh * C))[k];
                    d[0][hh] += v.x * a.x + v.y * a.y + v.z * a.z + v.w * a.w;
                    d[1][hh] += v.x * b.x + v.y * b.y + v.z * b.z + v.w * b.w;
                }
            }
            const float4 *r0 = (const float4 *)(kpe + k0 * Dr), *r1 = (const float4 *)(kpe + (k0 + 1) * Dr);
            for (int k = lane; k < D4; k += 32) {
                const float4 a = r0[k], b = r1[k];
#pragma unroll
                for (int hh = 0; hh < ATTEND_HEADS; hh++) {
                    const float4 v = ((const float4 *)(qp + hh * Dr))[k];
                    d[0][hh] += v.x * a.x + v.y * a.y + v.z * a.z + v.w * a.w;
                    d[1][hh] += v.x * b.x + v.y * b.y + v.z * b.z + v.w * b.w;
                }
            }
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int hh = 0; hh < ATTEND_HEADS; hh++) {
                    float v = d[j][hh];
                    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                    if (lane == 0) p[(k0 + j) * ATTEND_HEADS + hh] = k0 + j < ni ? v * scale : -INFINITY;
                }
        } else {
            // scores: one warp per (head, key) pair at a time, lanes split the C + Dr dimensions
            for (int pair = warp; pair < ATTEND_HEADS * ATTEND_KEYS; pair += ATTEND_THREADS / 32) {
                const int hh = pair / ATTEND_KEYS, key = pair % ATTEND_KEYS;
                const float *qh = qs + hh * C, *lk = lat + key * C;
                float dot = 0.0f, dot2 = 0.0f;
#pragma unroll 4
                for (int c = lane; c < C; c += 64) {
                    dot += qh[c] * lk[c];
                    if (c + 32 < C) dot2 += qh[c + 32] * lk[c + 32];
                }
                for (int d = lane; d < Dr; d += 32) dot2 += qp[hh * Dr + d] * kpe[key * Dr + d];
                dot += dot2;
                for (int o = 16; o; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
                if (lane == 0) p[key * ATTEND_HEADS + hh] = key < ni ? dot * scale : -INFINITY;
            }
        }
        __syncthreads();
        if (warp == 0) {  // softmax step: lane l takes head l % 8, keys l / 8 + 4i (p[l + 32i])
            static_assert(ATTEND_HEADS == 8 && ATTEND_KEYS == 16, "4 scores per lane");
            const int hh = lane & 7;
            float v[4], tile_max = -INFINITY;
#pragma unroll
            for (int i = 0; i < 4; i++) v[i] = p[lane + 32 * i], tile_max = fmaxf(tile_max, v[i]);
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 8));
            tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 16));
            const float old_max = run_max[hh], new_max = fmaxf(tile_max, old_max);
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float e = (lane >> 3) + 4 * i < ni ? expf(v[i] - new_max) : 0.0f;  // masked: -inf scores
                p[lane + 32 * i] = e;
                sum += e;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 8);
            sum += __shfl_xor_sync(0xffffffffu, sum, 16);
            if (lane < ATTEND_HEADS) {
                const float r = expf(old_max - new_max);  // exp(-inf) = 0 on the first tile
                run_max[hh] = new_max, run_sum[hh] = run_sum[hh] * r + sum, rescale[hh] = r;
            }
        }
        __syncthreads();
        if (VEC4) {
            if (c4 < C4) {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const float r = rescale[hb * 4 + i];
                    acc4[i].x *= r, acc4[i].y *= r, acc4[i].z *= r, acc4[i].w *= r;
                }
                for (int key = 0; key < ni; key++) {
                    const float4 l = ((const float4 *)lat)[key * C4 + c4];
                    const float4 pk = *(const float4 *)(p + key * ATTEND_HEADS + hb * 4);
                    const float pw[4] = {pk.x, pk.y, pk.z, pk.w};
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        acc4[i].x += pw[i] * l.x, acc4[i].y += pw[i] * l.y;
                        acc4[i].z += pw[i] * l.z, acc4[i].w += pw[i] * l.w;
                    }
                }
            }
        } else {
#pragma unroll
            for (int hh = 0; hh < ATTEND_HEADS; hh++)
#pragma unroll
                for (int j = 0; j < ATTEND_MAX_COLS; j++) acc[hh][j] *= rescale[hh];
            for (int key = 0; key < ni; key++) {
#pragma unroll
                for (int j = 0; j < ATTEND_MAX_COLS; j++) {
                    const int c = tid + j * ATTEND_THREADS;
                    if (c >= C) break;
                    const float l = lat[key * C + c];
#pragma unroll
                    for (int hh = 0; hh < ATTEND_HEADS; hh++) acc[hh][j] += p[key * ATTEND_HEADS + hh] * l;
                }
            }
        }
    }
    __syncthreads();  // the chunk's run_max / run_sum are final
    if (partial_out) break;
    // The chunk into its group; at the group's end (or the query's last chunk) the group into the fold.
    const bool group_end = chunk % ATTEND_FOLD_GROUP == ATTEND_FOLD_GROUP - 1 || chunk == end_chunk - 1;
    if (tid < ATTEND_HEADS)
        attend_fold_factors(tid, group_end, run_max, run_sum, grp_max, grp_sum, fold_max, fold_sum, fold_a, fold_b, tot_a,
                            tot_b);
    __syncthreads();
    if (VEC4) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int hh = hb * 4 + i;
            const float a = fold_a[hh], b = fold_b[hh], a2 = tot_a[hh], b2 = tot_b[hh];
            attend_fold_element(grp4[i].x, fold4[i].x, acc4[i].x, a, b, a2, b2, group_end);
            attend_fold_element(grp4[i].y, fold4[i].y, acc4[i].y, a, b, a2, b2, group_end);
            attend_fold_element(grp4[i].z, fold4[i].z, acc4[i].z, a, b, a2, b2, group_end);
            attend_fold_element(grp4[i].w, fold4[i].w, acc4[i].w, a, b, a2, b2, group_end);
        }
    } else {
#pragma unroll
        for (int hh = 0; hh < ATTEND_HEADS; hh++) {
            const float a = fold_a[hh], b = fold_b[hh], a2 = tot_a[hh], b2 = tot_b[hh];
#pragma unroll
            for (int j = 0; j < ATTEND_MAX_COLS; j++)
                attend_fold_element(grp[hh][j], fold[hh][j], acc[hh][j], a, b, a2, b2, group_end);
        }
    }
    }  // chunks
    if (partial_out) {  // this block's chunk, unnormalized, and its (max, sum); rows [T][H][chunks]
        const size_t row0 = ((size_t)s * H + h0) * gridDim.z + blockIdx.z;
        if (VEC4) {
            if (c4 < C4)
#pragma unroll
                for (int i = 0; i < 4; i++)
                    if (hb * 4 + i < nh) ((float4 *)(partial_out + (row0 + (size_t)(hb * 4 + i) * gridDim.z) * C))[c4] = acc4[i];
        } else {
#pragma unroll
            for (int hh = 0; hh < ATTEND_HEADS; hh++)
#pragma unroll
                for (int j = 0; j < ATTEND_MAX_COLS; j++) {
                    const int c = tid + j * ATTEND_THREADS;
                    if (hh < nh && c < C) partial_out[(row0 + (size_t)hh * gridDim.z) * C + c] = acc[hh][j];
                }
        }
        if (tid < nh) {
            partial_stats[2 * (row0 + (size_t)tid * gridDim.z)] = run_max[tid];
            partial_stats[2 * (row0 + (size_t)tid * gridDim.z) + 1] = run_sum[tid];
        }
        return;
    }
    if (VEC4) {
        if (c4 < C4)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int hh = hb * 4 + i;
                if (hh >= nh) continue;
                const float S = fold_sum[hh];
                const float4 v = fold4[i];
                ((float4 *)(o_lat + ((size_t)s * H + h0 + hh) * C))[c4] =
                    make_float4(attend_normalize(v.x, S), attend_normalize(v.y, S), attend_normalize(v.z, S),
                                attend_normalize(v.w, S));
            }
    } else {
#pragma unroll
        for (int hh = 0; hh < ATTEND_HEADS; hh++)
#pragma unroll
            for (int j = 0; j < ATTEND_MAX_COLS; j++) {
                const int c = tid + j * ATTEND_THREADS;
                if (hh < nh && c < C) o_lat[((size_t)s * H + h0 + hh) * C + c] = attend_normalize(fold[hh][j], fold_sum[hh]);
            }
    }
}

// The same attention on tensor cores (sm_80+ mma.sync BF16 -> FP32) for C a multiple of 64 up to
// 512 and Dr a multiple of 16: a block takes 16 heads (the MMA's rows) of one query, key tiles of
// 16. Every FP32 operand is split into BF16 hi + lo and three MMAs form hi·hi + hi·lo + lo·hi (about
// 16 significant bits per product against the FP32 kernel's 24; the FP32 sums are kept). Chunks, their
// softmax state and the folds are attend_kernel's, so a row is the same bits alone or batched.
// Warps: scores, warp w takes keys 8(w & 1).. of the tile over the K quarter w >> 1 (the quarters'
// partial sums meet in shared memory in quarter order); values, warp w owns latent columns
// [w·C/8, (w+1)·C/8).
// Key tiles are multi-buffered (NBUF, 2 by default): the next NBUF - 1 tiles' rows load (cp.async)
// while the block works on this one, so a chunk pays about one trip to memory rather than one per tile.
// Shared: q hi, lo (bf16) [16][CD + 8]; keys (f32) [NBUF][16][CD + 4] (first the query rows' staging); the
// quarters' scores [4][16][17]; P hi, lo (bf16) [16][24]; per-head state [11][16]; the chunk's key
// rows (int32) [keys_per_chunk]. CD = C + Dr.
enum { TCA_HEADS = 16, TCA_KEYS = 16, TCA_THREADS = 256, TCA_MAX_NT = 8, TCA_PS = 24 };

struct tca_layout {
    size_t qh, ql, keys, spart, ph, pl, stats, keys_s, bytes;
};
__host__ __device__ inline tca_layout tca_layout_of(int C, int Dr, int keys_per_chunk, int nbuf) {
    const size_t CD = (size_t)(C + Dr);
    auto up16 = [](size_t b) { return (b + 15) / 16 * 16; };
    tca_layout L;
    L.qh = 0;
    L.ql = up16(L.qh + 2 * TCA_HEADS * (CD + 8));
    L.keys = up16(L.ql + 2 * TCA_HEADS * (CD + 8));
    L.spart = up16(L.keys + (size_t)nbuf * 4 * TCA_KEYS * (CD + 4));
    L.ph = up16(L.spart + 4 * 4 * TCA_HEADS * 17);
    L.pl = up16(L.ph + 2 * TCA_HEADS * TCA_PS);
    L.stats = up16(L.pl + 2 * TCA_HEADS * TCA_PS);
    L.keys_s = up16(L.stats + 4 * 11 * TCA_HEADS);
    L.bytes = up16(L.keys_s + 4 * (size_t)keys_per_chunk);
    return L;
}

// CHAINS: the scores' three products (hi·hi, hi·lo, lo·hi) add into three accumulators, summed at the
// end, instead of one chain of 3 x per_quarter dependent MMAs per warp (27 at GLM-5's shapes; an
// experiment, GLINT_CUDA_ATTEND_CHAINS=1). NBUF: key tile buffers, 2 or 4 (4: a chunk of 4 tiles has
// all its loads in flight at once; an experiment, GLINT_CUDA_ATTEND_BUFS=4).
template <bool SPLIT, bool CHAINS, int NBUF>
__global__ void __launch_bounds__(TCA_THREADS, SPLIT ? 2 : 1)
    attend_tc_kernel(float *o_lat, const float *q_lat, const float *q, int q_head_stride, int pe_offset,
                     const float *latent_cache, const float *kpe_cache, const int32_t *sel, const int32_t *n_sel,
                     int sel_stride, int H, int C, int Dr, float scale, int keys_per_chunk, float *partial_out,
                     float *partial_stats) {
    chain_wait();
    extern __shared__ __align__(16) unsigned char tca_smem[];
    static_assert(NBUF == 2 || NBUF == 4, "2 or 4 key tile buffers");
    const tca_layout L = tca_layout_of(C, Dr, keys_per_chunk, NBUF);
    const int CD = C + Dr, QS = CD + 8, KS = CD + 4;
    __nv_bfloat16 *qh = (__nv_bfloat16 *)(tca_smem + L.qh), *ql = (__nv_bfloat16 *)(tca_smem + L.ql);
    float *keys = (float *)(tca_smem + L.keys), *spart = (float *)(tca_smem + L.spart);
    __nv_bfloat16 *ph = (__nv_bfloat16 *)(tca_smem + L.ph), *pl = (__nv_bfloat16 *)(tca_smem + L.pl);
    float *run_max = (float *)(tca_smem + L.stats), *run_sum = run_max + TCA_HEADS, *rescale = run_sum + TCA_HEADS;
    float *fold_max = rescale + TCA_HEADS, *fold_sum = fold_max + TCA_HEADS, *grp_max = fold_sum + TCA_HEADS;
    float *grp_sum = grp_max + TCA_HEADS, *fold_a = grp_sum + TCA_HEADS, *fold_b = fold_a + TCA_HEADS;
    float *tot_a = fold_b + TCA_HEADS, *tot_b = tot_a + TCA_HEADS;
    int32_t *keys_s = (int32_t *)(tca_smem + L.keys_s);
    const int s = blockIdx.x, h0 = blockIdx.y * TCA_HEADS, nh = min(TCA_HEADS, H - h0);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int32_t *idx = sel + (size_t)s * sel_stride;
    const int n_keys = n_sel[s], n_chunks = (n_keys + keys_per_chunk - 1) / keys_per_chunk;
    const int first_chunk = SPLIT ? blockIdx.z : 0, end_chunk = SPLIT ? blockIdx.z + 1 : n_chunks;
    if (first_chunk < end_chunk) attend_load_keys(keys_s, idx, first_chunk, keys_per_chunk, n_keys);
    // The query rows (latent part [16][C], then rope part [16][Dr]) staged in the key buffer, then
    // split into hi + lo.
    stage_rows(keys, q_lat + ((size_t)s * H + h0) * C, nh, TCA_HEADS, C, C);
    stage_rows(keys + TCA_HEADS * C, q + ((size_t)s * H + h0) * q_head_stride + pe_offset, nh, TCA_HEADS, Dr,
               q_head_stride);
    __syncthreads();
    for (int i = tid; i < TCA_HEADS * CD / 2; i += TCA_THREADS) {
        const int hh = i / (CD / 2), d = 2 * (i % (CD / 2));
        const float2 v = d < C ? *(const float2 *)(keys + hh * C + d)
                               : *(const float2 *)(keys + TCA_HEADS * C + hh * Dr + (d - C));
        const uint32_t hi = pack_bf16(v.x, v.y);
        *(uint32_t *)(qh + hh * QS + d) = hi;
        *(uint32_t *)(ql + hh * QS + d) = pack_bf16_residual(v.x, v.y, hi);
    }
    if (tid < TCA_HEADS) fold_max[tid] = grp_max[tid] = -INFINITY, fold_sum[tid] = grp_sum[tid] = 0.0f;
    const int NT = C / 64;  // n8 tiles of latent columns per warp
    float acc[TCA_MAX_NT][4], grp[SPLIT ? 1 : TCA_MAX_NT][4], fold[SPLIT ? 1 : TCA_MAX_NT][4];
    if (!SPLIT) {
#pragma unroll
        for (int j = 0; j < (SPLIT ? 1 : TCA_MAX_NT); j++)
#pragma unroll
            for (int i = 0; i < 4; i++) grp[j][i] = fold[j][i] = 0.0f;
    }
    const int steps = CD / 16, per_quarter = (steps + 3) / 4, kq = warp >> 1, key0 = 8 * (warp & 1);
    const int k_begin = kq * per_quarter, k_end = min(steps, k_begin + per_quarter);
    for (int chunk = first_chunk; chunk < end_chunk; chunk++) {
    const int begin = chunk * keys_per_chunk, n = min(n_keys, begin + keys_per_chunk);
    __syncthreads();  // the query split is done; the previous chunk's key rows, tiles and factors are used
    if (chunk != first_chunk) attend_load_keys(keys_s, idx, chunk, keys_per_chunk, n_keys);
    if (tid < TCA_HEADS) run_max[tid] = -INFINITY, run_sum[tid] = 0.0f;
#pragma unroll
    for (int j = 0; j < TCA_MAX_NT; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[j][i] = 0.0f;
    cp_async_wait<0>();
    __syncthreads();  // the chunk's key rows
    // The tile at i0 into buffer buf: warp w loads key rows w and w + 8 (rows past the chunk's end
    // zero-filled), one cp.async group.
    auto load_tile = [&](int i0, int buf) {
        float *kb = keys + buf * TCA_KEYS * KS;
        const int ni = min(TCA_KEYS, n - i0);
        for (int key = warp; key < TCA_KEYS; key += TCA_THREADS / 32) {
            const bool ok = key < ni;
            const size_t row = ok ? (size_t)keys_s[i0 - begin + key] : 0;
            for (int c4 = lane; c4 < C / 4; c4 += 32)
                cp_async16(smem_u32(kb + key * KS + 4 * c4), latent_cache + (ok ? row * C + 4 * c4 : 0), ok);
            for (int d4 = lane; d4 < Dr / 4; d4 += 32)
                cp_async16(smem_u32(kb + key * KS + C + 4 * d4), kpe_cache + (ok ? row * Dr + 4 * d4 : 0), ok);
        }
        cp_async_commit();
    };
    // Tiles k = 0, 1, ... of the chunk in buffers k % NBUF, one cp.async group each; when tile k is used,
    // the tiles up to k + NBUF - 1 (or the last) have been issued, so min(NBUF - 1, tiles after k) groups
    // may still be in flight.
    for (int b = 0; b < NBUF - 1 && begin + b * TCA_KEYS < n; b++) load_tile(begin + b * TCA_KEYS, b);
    for (int i0 = begin, k = 0; i0 < n; i0 += TCA_KEYS, k++) {
        const int ni = min(TCA_KEYS, n - i0), buf = k % NBUF;
        const float *kb = keys + buf * TCA_KEYS * KS;
        // the buffer of tile k + NBUF - 1 held tile k - 1, used before the last barrier
        if (i0 + (NBUF - 1) * TCA_KEYS < n) load_tile(i0 + (NBUF - 1) * TCA_KEYS, (k + NBUF - 1) % NBUF);
        const int after = (n - i0 - 1) / TCA_KEYS;  // tiles of the chunk after this one
        cp_async_wait_pending(after < NBUF - 1 ? after : NBUF - 1);
        __syncthreads();
        {  // scores of keys key0..key0+7 over this warp's K quarter
            float sc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, sc_hl[4] = {0.0f, 0.0f, 0.0f, 0.0f},
                  sc_lh[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int ks = k_begin; ks < k_end; ks++) {
                const int k0 = 16 * ks;
                uint32_t ah[4], al[4];
                ldmatrix_x4(smem_u32(qh + (lane & 15) * QS + k0 + (lane >> 4) * 8), ah[0], ah[1], ah[2], ah[3]);
                ldmatrix_x4(smem_u32(ql + (lane & 15) * QS + k0 + (lane >> 4) * 8), al[0], al[1], al[2], al[3]);
                const float *kr = kb + (key0 + g) * KS + k0 + 2 * t;
                const float2 x0 = *(const float2 *)kr, x1 = *(const float2 *)(kr + 8);
                const uint32_t bh[2] = {pack_bf16(x0.x, x0.y), pack_bf16(x1.x, x1.y)};
                const uint32_t bl[2] = {pack_bf16_residual(x0.x, x0.y, bh[0]), pack_bf16_residual(x1.x, x1.y, bh[1])};
                mma_bf16(sc, ah, bh);
                mma_bf16(CHAINS ? sc_hl : sc, ah, bl);
                mma_bf16(CHAINS ? sc_lh : sc, al, bh);
            }
            if (CHAINS)
#pragma unroll
                for (int i = 0; i < 4; i++) sc[i] += sc_hl[i] + sc_lh[i];
            float *sp = spart + kq * TCA_HEADS * 17;  // [row][key]
            sp[g * 17 + key0 + 2 * t] = sc[0], sp[g * 17 + key0 + 2 * t + 1] = sc[1];
            sp[(g + 8) * 17 + key0 + 2 * t] = sc[2], sp[(g + 8) * 17 + key0 + 2 * t + 1] = sc[3];
        }
        __syncthreads();
        {  // online softmax: half a warp per head row, a lane per key
            const int row = tid >> 4, key = tid & 15;
            const int at = row * 17 + key, q_stride = TCA_HEADS * 17;
            float v = ((spart[at] + spart[at + q_stride]) + spart[at + 2 * q_stride]) + spart[at + 3 * q_stride];
            v = key < ni ? v * scale : -INFINITY;
            float m = v;
#pragma unroll
            for (int o = 8; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            const float old_max = run_max[row], new_max = fmaxf(old_max, m);
            const float p = key < ni ? expf(v - new_max) : 0.0f;
            float sum = p;
#pragma unroll
            for (int o = 8; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            const __nv_bfloat16 p_hi = __float2bfloat16_rn(p);
            ph[row * TCA_PS + key] = p_hi;
            pl[row * TCA_PS + key] = __float2bfloat16_rn(p - __bfloat162float(p_hi));
            __syncwarp();
            if (key == 0) {
                const float r = expf(old_max - new_max);  // exp(-inf) = 0 on the first tile
                run_max[row] = new_max, run_sum[row] = run_sum[row] * r + sum, rescale[row] = r;
            }
        }
        __syncthreads();
        {  // values: acc (heads x this warp's columns) = rescaled acc + P · V
            const float r_lo = rescale[g], r_hi = rescale[g + 8];
            uint32_t ah[4], al[4];
            ldmatrix_x4(smem_u32(ph + (lane & 15) * TCA_PS + (lane >> 4) * 8), ah[0], ah[1], ah[2], ah[3]);
            ldmatrix_x4(smem_u32(pl + (lane & 15) * TCA_PS + (lane >> 4) * 8), al[0], al[1], al[2], al[3]);
#pragma unroll
            for (int j = 0; j < TCA_MAX_NT; j++) {
                if (j >= NT) break;
                const int col = warp * (C / 8) + 8 * j + g;
                acc[j][0] *= r_lo, acc[j][1] *= r_lo, acc[j][2] *= r_hi, acc[j][3] *= r_hi;
                const float v0 = kb[(2 * t) * KS + col], v1 = kb[(2 * t + 1) * KS + col];
                const float v2 = kb[(2 * t + 8) * KS + col], v3 = kb[(2 * t + 9) * KS + col];
                const uint32_t bh[2] = {pack_bf16(v0, v1), pack_bf16(v2, v3)};
                const uint32_t bl[2] = {pack_bf16_residual(v0, v1, bh[0]), pack_bf16_residual(v2, v3, bh[1])};
                mma_bf16(acc[j], ah, bh);
                mma_bf16(acc[j], ah, bl);
                mma_bf16(acc[j], al, bh);
            }
        }
        __syncthreads();  // the tile, the scores and P are used
    }
    // The chunk into its group; at the group's end (or the query's last chunk) the group into the fold.
    const bool group_end = chunk % ATTEND_FOLD_GROUP == ATTEND_FOLD_GROUP - 1 || chunk == end_chunk - 1;
    if (!SPLIT && tid < TCA_HEADS)
        attend_fold_factors(tid, group_end, run_max, run_sum, grp_max, grp_sum, fold_max, fold_sum, fold_a, fold_b, tot_a,
                            tot_b);
    if (!SPLIT) {  // (a split block has one chunk: its state is written below)
        __syncthreads();
#pragma unroll
        for (int j = 0; j < (SPLIT ? 1 : TCA_MAX_NT); j++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int hh = g + 8 * (i >> 1);
                attend_fold_element(grp[j][i], fold[j][i], acc[j][i], fold_a[hh], fold_b[hh], tot_a[hh], tot_b[hh],
                                    group_end);
            }
    }
    }  // chunks
    if (SPLIT) {  // this block's chunk, unnormalized, and its (max, sum); rows [T][H][chunks]
        const size_t row0 = ((size_t)s * H + h0) * gridDim.z + blockIdx.z;
#pragma unroll
        for (int j = 0; j < TCA_MAX_NT; j++) {
            if (j >= NT) break;
            const int col = warp * (C / 8) + 8 * j + 2 * t;
            if (g < nh) *(float2 *)(partial_out + (row0 + (size_t)g * gridDim.z) * C + col) = make_float2(acc[j][0], acc[j][1]);
            if (g + 8 < nh)
                *(float2 *)(partial_out + (row0 + (size_t)(g + 8) * gridDim.z) * C + col) = make_float2(acc[j][2], acc[j][3]);
        }
        if (tid < nh) {
            partial_stats[2 * (row0 + (size_t)tid * gridDim.z)] = run_max[tid];
            partial_stats[2 * (row0 + (size_t)tid * gridDim.z) + 1] = run_sum[tid];
        }
    } else {
#pragma unroll
        for (int j = 0; j < (SPLIT ? 1 : TCA_MAX_NT); j++) {
            if (j >= NT) break;
            const int col = warp * (C / 8) + 8 * j + 2 * t;
            for (int half = 0; half < 2; half++) {
                const int hh = g + 8 * half;
                if (hh >= nh) continue;
                const float S = fold_sum[hh];
                *(float2 *)(o_lat + ((size_t)s * H + h0 + hh) * C + col) =
                    make_float2(attend_normalize(fold[j][2 * half], S), attend_normalize(fold[j][2 * half + 1], S));
            }
        }
    }
}

enum { COMBINE_COLS = 32, COMBINE_THREADS = 256 };

// o_lat[row, c] from attend_kernel's chunks, folded as a block folds them: a thread per (group of
// ATTEND_FOLD_GROUP chunks, column) loads its group's chunks at once, folds them in order, then the
// groups are folded in order. Empty chunks and groups (max -inf) are skipped. Block: one row,
// COMBINE_COLS columns, 32 threads per group up to COMBINE_THREADS. Shared: the groups' outputs
// [groups][COMBINE_COLS], then their (max, sum) [groups][2].
__global__ void __launch_bounds__(COMBINE_THREADS)
    combine_attend_kernel(float *o_lat, const float *partial_out, const float *partial_stats, int chunks, int C) {
    chain_wait();
    extern __shared__ float group_out[];
    const int groups = (chunks + ATTEND_FOLD_GROUP - 1) / ATTEND_FOLD_GROUP;
    float *group_stats = group_out + groups * COMBINE_COLS;
    const size_t row = blockIdx.x;
    const int col = threadIdx.x % COMBINE_COLS, c = blockIdx.y * COMBINE_COLS + col;
    const float2 *st = (const float2 *)(partial_stats + 2 * row * chunks);
    for (int g = threadIdx.x / COMBINE_COLS; g < groups; g += blockDim.x / COMBINE_COLS) {
        const int k0 = g * ATTEND_FOLD_GROUP, nk = min(ATTEND_FOLD_GROUP, chunks - k0);
        float v[ATTEND_FOLD_GROUP];
        float2 m_s[ATTEND_FOLD_GROUP];
#pragma unroll
        for (int j = 0; j < ATTEND_FOLD_GROUP; j++) {
            v[j] = j < nk && c < C ? partial_out[(row * chunks + k0 + j) * C + c] : 0.0f;
            m_s[j] = j < nk ? st[k0 + j] : make_float2(-INFINITY, 0.0f);
        }
        float M = -INFINITY, S = 0.0f, acc = 0.0f;
#pragma unroll
        for (int j = 0; j < ATTEND_FOLD_GROUP; j++) {
            float a, b;
            if (attend_fold(M, S, m_s[j].x, m_s[j].y, a, b)) acc = attend_fold_value(acc, a, v[j], b);
        }
        group_out[g * COMBINE_COLS + col] = acc;
        if (col == 0) group_stats[2 * g] = M, group_stats[2 * g + 1] = S;
    }
    __syncthreads();
    if (threadIdx.x >= COMBINE_COLS || c >= C) return;
    float M = -INFINITY, S = 0.0f, acc = 0.0f;
    for (int g = 0; g < groups; g++) {
        float a, b;
        if (attend_fold(M, S, group_stats[2 * g], group_stats[2 * g + 1], a, b))
            acc = attend_fold_value(acc, a, group_out[g * COMBINE_COLS + col], b);
    }
    o_lat[row * C + c] = attend_normalize(acc, S);
}

// attend_tc_kernel is taken where the shapes allow (GLINT_CUDA_ATTEND_TC=0: the FP32 kernel). With its
// key tiles double-buffered (session 15) its shared memory leaves one block per SM, so it gets the FP32
// kernel's chunk count and partial-output size; 19.2 vs 24.4 us per GLM-5.1 layer at 4k on H200, +1.9
// points of copy bandwidth at 4k and +0.8 at 128k (bench/RESULTS.md).
// Both attention kernels take these arguments.
typedef void (*attend_fn)(float *o_lat, const float *q_lat, const float *q, int q_head_stride, int pe_offset,
                          const float *latent_cache, const float *kpe_cache, const int32_t *sel, const int32_t *n_sel,
                          int sel_stride, int H, int C, int Dr, float scale, int keys_per_chunk, float *partial_out,
                          float *partial_stats);

// glint_cuda_set_attention_splits; 0: from the shape and the card
static int attention_splits;
extern "C" void glint_cuda_set_attention_splits(int splits) {
    attention_splits = splits > 0 && splits <= GLINT_MAX_ATTENTION_SPLITS ? splits : 0;
}

// attend_tc_kernel<SPLIT, ...> for the experiments' settings (GLINT_CUDA_ATTEND_CHAINS, _BUFS)
template <bool SPLIT>
static attend_fn attend_tc_variant(bool chains, int bufs) {
    if (bufs == 4) return chains ? attend_tc_kernel<SPLIT, true, 4> : attend_tc_kernel<SPLIT, false, 4>;
    return chains ? attend_tc_kernel<SPLIT, true, 2> : attend_tc_kernel<SPLIT, false, 2>;
}

static int attend_tc_enabled(void) {
    static const int on = glint_cuda_switch("GLINT_CUDA_ATTEND_TC", 1);
    return on;
}

static void cuda_mla_attend(glint_backend *be, float *o_lat, const float *q_lat, const float *q, int q_head_stride,
                            int pe_offset, const float *latent_cache, const float *kpe_cache, const int32_t *sel,
                            const int32_t *n_sel, int sel_stride, int T, int H, int C, int Dr, float scale) {
    if (T <= 0) return;
    if (C > ATTEND_THREADS * ATTEND_MAX_COLS) {
        glint_set_error("CUDA mla_attend: kv_lora_rank %d exceeds %d", C, ATTEND_THREADS * ATTEND_MAX_COLS);
        glint_cuda_dev().op_failed = 1;
        return;
    }
    // Tensor cores where enabled and the shapes allow (attend_tc_kernel), else the FP32 kernel; the
    // choice depends on the shapes only, so a row takes the same kernel alone or batched.
    static_assert((int)TCA_KEYS == (int)ATTEND_KEYS, "both kernels cut chunks into 16-key tiles");
    // (its double-buffered tiles take ~126 KB at GLM-5's shapes: more than cards of compute capability
    // 8.6, 8.9 and 12.x give a block, which take the FP32 kernel)
    const int tiles = (sel_stride + ATTEND_KEYS - 1) / ATTEND_KEYS;  // a chunk's key rows: at most all of them
    // GLINT_CUDA_ATTEND_BUFS=4: four key tile buffers where they fit (an experiment; 2 by default)
    static const int want_bufs = [] {
        const char *v = getenv("GLINT_CUDA_ATTEND_BUFS");
        return v && !strcmp(v, "4") ? 4 : 2;
    }();
    const size_t smem_limit = cuda_of(be)->smem_per_block;
    const int bufs = want_bufs == 4 && tca_layout_of(C, Dr, tiles * TCA_KEYS, 4).bytes <= smem_limit ? 4 : 2;
    const bool tc = attend_tc_enabled() && C % 64 == 0 && C <= 64 * TCA_MAX_NT && Dr % 16 == 0 &&
                    q_head_stride % 2 == 0 && pe_offset % 2 == 0 && (uintptr_t)latent_cache % 16 == 0 &&
                    (uintptr_t)kpe_cache % 16 == 0 && (uintptr_t)q % 8 == 0 && (uintptr_t)o_lat % 8 == 0 &&
                    tca_layout_of(C, Dr, tiles * TCA_KEYS, bufs).bytes <= smem_limit;
    const int heads = tc ? (int)TCA_HEADS : (int)ATTEND_HEADS;
    const size_t smem =
        tc ? tca_layout_of(C, Dr, tiles * TCA_KEYS, bufs).bytes
           : sizeof(float) * ((size_t)ATTEND_HEADS * C + ATTEND_HEADS * Dr + 2 * ATTEND_KEYS * (C + Dr) +
                              ATTEND_HEADS * ATTEND_KEYS + 11 * ATTEND_HEADS) +
                 sizeof(int32_t) * (size_t)tiles * ATTEND_KEYS;
    // The two variants of the kernel (tensor cores: a block per chunk / folding its chunks; FP32: 16-byte
    // / scalar loads); the first one's occupancy sets the chunks.
    static const int chains = glint_cuda_switch("GLINT_CUDA_ATTEND_CHAINS", 0);
    const attend_fn variant[2] = {tc ? attend_tc_variant<true>(chains, bufs) : attend_kernel<true>,
                                  tc ? attend_tc_variant<false>(chains, bufs) : attend_kernel<false>};
    const int threads = tc ? (int)TCA_THREADS : (int)ATTEND_THREADS;
    if (smem > 48 * 1024 &&
        (cudaFuncSetAttribute(variant[0], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess ||
         cudaFuncSetAttribute(variant[1], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)) {
        glint_cuda_check("mla_attend shared memory");
        return;
    }
    // Chunks per shape (never per T, see attend_fold): enough that one query's head groups x chunks
    // fill one wave of resident blocks (or as many as --triton-attention-num-kv-splits says), each
    // chunk a whole number of 16-key tiles.
    cuda_backend *cb = cuda_of(be);
    if (cb->attend_smem != smem || cb->attend_tc != tc) {
        int resident = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, variant[0], threads, smem) != cudaSuccess)
            cudaGetLastError(), resident = 1;
        cb->attend_smem = smem, cb->attend_tc = tc, cb->attend_resident = resident > 0 ? resident : 1;
    }
    const int groups = (H + heads - 1) / heads, target = cb->attend_resident * cb->sms;
    int chunks = attention_splits ? attention_splits : (target + groups - 1) / groups;
    chunks = chunks < 1 ? 1 : chunks > tiles ? tiles : chunks;
    const int keys_per_chunk = (tiles + chunks - 1) / chunks * ATTEND_KEYS;
    chunks = (sel_stride + keys_per_chunk - 1) / keys_per_chunk;
    // A block per chunk when the queries alone leave the GPU idle and the chunks' partial outputs
    // stay small (they are written and read back); otherwise a block folds its query's chunks.
    // outputs [T][H][chunks][C], then (max, sum) pairs from a 16-byte boundary (read as float2)
    const size_t stats_at = ((size_t)T * H * chunks * C + 3) / 4 * 4;
    const size_t partial_floats = stats_at + (size_t)T * H * chunks * 2;
    const int split = chunks > 1 && T * groups < target && partial_floats * sizeof(float) <= (64u << 20);
    float *partial_out = NULL, *partial_stats = NULL;
    if (split) {
        partial_out = (float *)scratch(be, SCR_ATTEND, sizeof(float) * partial_floats);
        if (!partial_out) return;
        partial_stats = partial_out + stats_at;
    }
    // shared offsets are multiples of 8·C and 8·Dr floats, so only the caches' alignment matters
    const bool vec4 = C % 4 == 0 && Dr % 4 == 0 && C <= 4 * 128 && (uintptr_t)latent_cache % 16 == 0 &&
                      (uintptr_t)kpe_cache % 16 == 0 && (uintptr_t)o_lat % 16 == 0 &&
                      (partial_out == NULL || (uintptr_t)partial_out % 16 == 0);
    const attend_fn kernel = variant[tc ? !split : !vec4];
    launch_chained(kernel, dim3((unsigned)T, (unsigned)groups, (unsigned)(split ? chunks : 1)), threads, smem, o_lat,
        q_lat, q, q_head_stride, pe_offset, latent_cache, kpe_cache, sel, n_sel, sel_stride, H, C, Dr, scale,
        keys_per_chunk, partial_out, partial_stats);
    if (split) {
        const size_t groups = (size_t)(chunks + ATTEND_FOLD_GROUP - 1) / ATTEND_FOLD_GROUP;
        const int threads = groups * COMBINE_COLS < COMBINE_THREADS ? (int)groups * COMBINE_COLS : COMBINE_THREADS;
        launch_chained(combine_attend_kernel,
            dim3((unsigned)(T * H), (unsigned)((C + COMBINE_COLS - 1) / COMBINE_COLS)), threads,
            sizeof(float) * groups * (COMBINE_COLS + 2), o_lat, partial_out, partial_stats, chunks, C);
    }
    glint_cuda_check("mla_attend");
}

// o[t, h, :Dv] = W_UV[h] · o_lat[t, h]: one batched matmul over the heads' row slices of kv_b.
static void cuda_mla_up_v(glint_backend *be, float *o, const float *o_lat, int T, int H, int C, int Dn, int Dv,
                          const glint_weight *kv_b) {
    (void)be;
    if (T <= 0) return;
    dev_weight w = dev_weight_of(kv_b);
    w.rows = Dv, w.row0 = Dn;
    glint_cuda_matmul_batched(o, H * Dv, o_lat, H * C, T, w, H, Dn + Dv, C, Dv);
    glint_cuda_check("mla_up_v");
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs of decode steps (backend.h graph_begin / graph_end). A key seen for the first time
// runs eagerly (grow-only buffers reach the sizes its ops need, per-layer tables get made); the
// second time its ops are captured on glint_cuda_stream() and the graph is launched; from then on
// the graph is replayed. A key whose step reads back from the device is never captured; graphs
// captured before a grow-only buffer moved are captured again.

// The graphs are per device: each rank's thread captures and replays its own.

enum { GRAPH_SLOTS = 1024 };  // keys: batch sizes x context buckets x pieces of the layer stack
enum { G_NONE, G_EAGER_FIRST, G_CAPTURE, G_REPLAY };
struct graph_entry {
    uint64_t key;
    int state;  // 0: ran once eagerly, 1: captured, -1: never capture
    cudaGraphExec_t exec;
    unsigned long long epoch, last_use;
};
static struct graph_table {
    graph_entry graphs[GRAPH_SLOTS];
    int n_graphs;
    struct {
        int mode;
        graph_entry *e;
        unsigned long long epoch, uncapturable, clock;
        int op_failed;
    } step;
} graph_tables[GLINT_CUDA_MAX_DEVICES];

// The entry of key, made (state 0, least recently used entry evicted when full) if new (*is_new).
static graph_entry *graph_entry_of(graph_table &g, uint64_t key, int *is_new) {
    graph_entry *graphs = g.graphs;
    int &n_graphs = g.n_graphs;
    *is_new = 0;
    for (int i = 0; i < n_graphs; i++)
        if (graphs[i].key == key) return &graphs[i];
    *is_new = 1;
    graph_entry *e = &graphs[0];
    if (n_graphs < GRAPH_SLOTS) e = &graphs[n_graphs++];
    else
        for (int i = 1; i < GRAPH_SLOTS; i++)
            if (graphs[i].last_use < e->last_use) e = &graphs[i];
    if (e->exec) cudaGraphExecDestroy(e->exec);
    memset(e, 0, sizeof *e);
    e->key = key;
    return e;
}

static int cuda_graph_begin(glint_backend *be, uint64_t key) {
    (void)be;
    graph_table &g = graph_tables[glint_cuda_device()];
    glint_cuda_device_state &dev = glint_cuda_dev();
    auto &graph_step = g.step;
    graph_step.mode = G_NONE, graph_step.e = NULL;
    if (profile_on) return 0;  // per-op timing synchronizes after every op
    int is_new;
    graph_entry *e = graph_entry_of(g, key, &is_new);
    e->last_use = ++graph_step.clock;
    graph_step.e = e;
    if (is_new) {  // run eagerly and see whether the step could be captured
        graph_step.mode = G_EAGER_FIRST, graph_step.uncapturable = dev.uncapturable;
        return 0;
    }
    if (e->state < 0) return 0;
    if (e->state == 1 && e->epoch == dev.buffer_epoch) {
        graph_step.mode = G_REPLAY;
        return 1;
    }
    if (e->exec) cudaGraphExecDestroy(e->exec);
    e->exec = NULL, e->state = 0;
    cudaGetLastError();
    graph_step.epoch = dev.buffer_epoch, graph_step.uncapturable = dev.uncapturable;
    graph_step.op_failed = dev.op_failed;
    if (cudaStreamBeginCapture(dev.stream, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
        cudaGetLastError();
        e->state = -1;
        return 0;
    }
    graph_step.mode = G_CAPTURE;
    return 0;
}

static void cuda_join(glint_backend *be);

// A replayed graph runs every node at the priority of the stream it is launched into unless told to
// keep the priorities its kernels were captured with: the side lines' (highest, cuda_branch) carry the
// latency-bound chains (indexer selection, routing) that the main line's wide GEMVs would otherwise
// hold back. GLINT_CUDA_NODE_PRIORITY=0 replays at one priority.
static unsigned long long graph_flags(void) {
    static const int use = glint_cuda_switch("GLINT_CUDA_NODE_PRIORITY", 1);
    return use ? cudaGraphInstantiateFlagUseNodePriority : 0;
}

static int cuda_graph_end(glint_backend *be) {
    cuda_join(be);  // a capture must end with every side stream joined (the model joins first anyway)
    glint_cuda_device_state &dev = glint_cuda_dev();
    auto &graph_step = graph_tables[glint_cuda_device()].step;
    graph_entry *e = graph_step.e;
    const int mode = graph_step.mode;
    graph_step.mode = G_NONE;
    if (mode == G_EAGER_FIRST) {
        if (dev.uncapturable != graph_step.uncapturable) e->state = -1;
        return 0;
    }
    if (mode == G_REPLAY) {
        if (cudaGraphLaunch(e->exec, dev.stream) == cudaSuccess) return 0;
        cudaGetLastError();
        cudaGraphExecDestroy(e->exec);
        e->exec = NULL, e->state = -1;
        return -1;
    }
    if (mode != G_CAPTURE) return 0;
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamEndCapture(dev.stream, &graph);
    cudaGraphExec_t exec = NULL;
    if (err == cudaSuccess && graph && dev.buffer_epoch == graph_step.epoch &&
        dev.uncapturable == graph_step.uncapturable && !dev.op_failed &&
        cudaGraphInstantiate(&exec, graph, graph_flags()) == cudaSuccess &&
        cudaGraphLaunch(exec, dev.stream) == cudaSuccess) {
        cudaGraphDestroy(graph);
        e->exec = exec, e->state = 1, e->epoch = dev.buffer_epoch;
        return 0;
    }
    // Nothing ran: forget the capture and its errors; the model calls the ops again.
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    dev.op_failed = graph_step.op_failed;
    e->state = -1;
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Side lines (backend.h: branch, join): side stream k starts from an event recorded on the main
// stream; leaving it records its join event, which the main stream waits for at the next join. In a
// graph capture the same calls make parallel branches of the graph.

static void cuda_branch(glint_backend *be, int k) {
    (void)cuda_of(be);
    glint_cuda_device_state &dev = glint_cuda_dev();
    if (k < 0 || k > GLINT_CUDA_BRANCHES) {
        glint_set_error("CUDA branch: line %d is not 0..%d", k, GLINT_CUDA_BRANCHES);
        dev.op_failed = 1;
        return;
    }
    const int from = glint_cuda_thread_branch;
    if (from == k) return;
    if (from) {
        cudaEventRecord(dev.join_event[from - 1], dev.side[from - 1]);
        dev.pending_joins |= 1u << (from - 1);
    }
    glint_cuda_thread_branch = 0;
    if (!k) return;
    int least = 0, greatest = 0;  // side lines first: they carry the short latency-bound ops
    if (!dev.side[k - 1] && (cudaDeviceGetStreamPriorityRange(&least, &greatest) != cudaSuccess ||
                             cudaStreamCreateWithPriority(&dev.side[k - 1], cudaStreamDefault, greatest) != cudaSuccess ||
                             cudaEventCreateWithFlags(&dev.fork_event[k - 1], cudaEventDisableTiming) != cudaSuccess ||
                             cudaEventCreateWithFlags(&dev.join_event[k - 1], cudaEventDisableTiming) != cudaSuccess)) {
        glint_cuda_check("branch streams");  // the ops stay on the main stream
        dev.op_failed = 1;
        return;
    }
    cudaEventRecord(dev.fork_event[k - 1], dev.stream);
    cudaStreamWaitEvent(dev.side[k - 1], dev.fork_event[k - 1], 0);
    glint_cuda_thread_branch = k;
    glint_cuda_check("branch");
}

static void cuda_branch_wait(glint_backend *be, int k) {
    (void)cuda_of(be);
    glint_cuda_device_state &dev = glint_cuda_dev();
    if (k == glint_cuda_thread_branch && k > 0) return;  // in order already
    if (k < 1 || k > GLINT_CUDA_BRANCHES || !(dev.pending_joins & (1u << (k - 1)))) {  // left: its stream exists
        glint_set_error("CUDA branch_wait: side line %d has no work to wait for", k);
        dev.op_failed = 1;
        return;
    }
    cudaStreamWaitEvent(glint_cuda_stream(), dev.join_event[k - 1], 0);
    glint_cuda_check("branch_wait");
}

static void cuda_join(glint_backend *be) {
    (void)cuda_of(be);
    glint_cuda_device_state &dev = glint_cuda_dev();
    if (glint_cuda_thread_branch) cuda_branch(be, 0);
    for (int b = 0; b < GLINT_CUDA_BRANCHES; b++)
        if (dev.pending_joins & (1u << b)) cudaStreamWaitEvent(dev.stream, dev.join_event[b], 0);
    dev.pending_joins = 0;
    glint_cuda_check("join");
}

// ---------------------------------------------------------------------------------------------

// Makes the backend instance of `device` (the calling thread is bound to it); NULL with the error set.
// Ops run on the calling thread's device, which is this backend's (see glint_backend_cuda).
static int cuda_memory_info(glint_backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    return glint_cuda_memory_info(free_bytes, total_bytes);
}

static glint_backend *cuda_make(cuda_backend &cb, int device) {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, device);
    memset(&cb, 0, sizeof cb);
    cb.device = device, cb.sms = prop.multiProcessorCount, cb.smem_per_block = prop.sharedMemPerBlockOptin;
    prop.name[sizeof prop.name - 1] = 0;
    snprintf(cb.description, sizeof cb.description, "%.200s, %d SMs, sm_%d%d, %.0f GiB", prop.name,
             prop.multiProcessorCount, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
    const char *prof = getenv("GLINT_CUDA_PROFILE");
    if (prof && *prof && strcmp(prof, "0")) {
        if (!profile_on) atexit(profile_report);
        profile_on = 1, profiles[device].last = glint_now_seconds();
    }
    glint_backend *be = &cb.base;
    be->name = "cuda";
    be->n_threads = prop.multiProcessorCount;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->download = cuda_download;
    be->prepare_threads = 8;  // reading the checkpoint (page faults, disk) and the copies overlap
    be->upload = cuda_upload;
    be->prepare_weight = cuda_prepare_weight;
    be->measure_bandwidth = cuda_measure_bandwidth;
    be->describe = cuda_describe;
    be->memory_info = cuda_memory_info;
    be->embed = cuda_embed;
    be->matmul = glint_cuda_matmul;
    be->rmsnorm = cuda_rmsnorm;
    be->layernorm = cuda_layernorm;
    be->rope = cuda_rope;
    be->silu_mul = cuda_silu_mul;
    be->add = cuda_add;
    be->copy_rows = cuda_copy_rows;
    be->write_cache = cuda_write_cache;
    be->indexer_select = cuda_indexer_select;
    be->mla_absorb_q = cuda_mla_absorb_q;
    be->mla_attend = cuda_mla_attend;
    be->mla_up_v = cuda_mla_up_v;
    be->moe = glint_cuda_moe;
    be->synthesize = glint_cuda_synthesize;
    be->argmax = cuda_argmax;
    be->sample = cuda_sample;
    be->edit_logits = cuda_edit_logits;
    if (glint_cuda_switch("GLINT_CUDA_FUSED", 1)) {  // 0: the model calls the plain ops instead
        be->add_rmsnorm = cuda_add_rmsnorm;
        be->norm_rope_cache = cuda_norm_rope_cache;
        be->swiglu_matmul = glint_cuda_swiglu_matmul;
        be->matmul_rope = glint_cuda_matmul_rope;
    }
    if (cudaStreamCreate(&glint_cuda_devices[device].stream) != cudaSuccess) {
        glint_cuda_check("creating the stream");
        return NULL;
    }
    if (glint_cuda_switch("GLINT_CUDA_BRANCHES", 1)) {  // 0: every op on the one stream
        be->branch = cuda_branch;
        be->join = cuda_join;
        be->branch_wait = cuda_branch_wait;
    }
    if (glint_cuda_switch("GLINT_CUDA_GRAPHS", 1)) {  // 0: every op launched every step
        be->graph_begin = cuda_graph_begin;
        be->graph_end = cuda_graph_end;
    }
    be->tp_connect = glint_cuda_tp_connect;
    be->tp_disconnect = glint_cuda_tp_disconnect;
    be->all_reduce_sum = glint_cuda_all_reduce_sum;
    return be;
}

extern "C" glint_backend *glint_backend_cuda(int device) {
    static cuda_backend instances[GLINT_CUDA_MAX_DEVICES];
    static int ready[GLINT_CUDA_MAX_DEVICES];
    static pthread_mutex_t make_lock = PTHREAD_MUTEX_INITIALIZER;  // ranks' threads may call this at once
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count <= device || device < 0 || device >= GLINT_CUDA_MAX_DEVICES) {
        glint_set_error("no CUDA device %d (%s)", device,
                        err != cudaSuccess ? cudaGetErrorString(err)
                        : device >= GLINT_CUDA_MAX_DEVICES ? "the backend takes devices 0 to 15"
                                                          : "fewer devices present");
        cudaGetLastError();
        return NULL;
    }
    if ((err = cudaSetDevice(device)) != cudaSuccess) {
        glint_set_error("CUDA device %d: %s", device, cudaGetErrorString(err));
        return NULL;
    }
    glint_cuda_thread_device = device;
    pthread_mutex_lock(&make_lock);
    glint_cuda_trace_start();
    glint_backend *be = ready[device] ? &instances[device].base : cuda_make(instances[device], device);
    if (be && !ready[device]) {
        ready[device] = 1;
        if (first_device < 0) __atomic_store_n(&first_device, device, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&make_lock);
    return be;
}
